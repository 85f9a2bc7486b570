"""The preloading fork server: shared modules imported once per slot, each
file still in a process of its own, a thread at import time makes it step
aside, crashes and hangs stay contained."""
import datetime
import json
import os
import shutil
import tempfile

import srtest

# The shared module records every import of itself (pid per line).
SHARED = """
import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "imports.log"), "a") as f:
    f.write("%d\\n" % os.getpid())
SEEN = []
{extra}
"""

TEST = """
import os
import shared_mod

def test_ok():
    # Module state is per process: a file sharing a process with another
    # would find the other's entry here.
    shared_mod.SEEN.append(__file__)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "runs.log"), "a") as f:
        f.write("%s %d %s\\n" % (os.environ["SHARDRUN_FILE"],
                                 len(shared_mod.SEEN), os.getcwd()))
"""


class ForkServer(srtest.TestCase):
    def suite(self, n, extra=""):
        self.ws.write("tests/shared_mod.py", SHARED.format(extra=extra))
        for i in range(n):
            self.ws.write("tests/test_%02d.py" % i, TEST)

    def lines(self, name):
        path = self.ws.path("tests/" + name)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().split("\n")[:-1]

    def test_imports_once_per_slot_each_file_own_process(self):
        self.suite(12)
        r = srtest.run(self.ws, ["-n", "2"])
        self.assertEqual(r.code, 0, r)
        runs = [l.split() for l in self.lines("runs.log")]
        self.assertEqual(len(runs), 12)
        # Each file in a process of its own, in the workspace, told its name.
        self.assertEqual({seen for _, seen, _ in runs}, {"1"})
        self.assertEqual({cwd for _, _, cwd in runs}, {self.ws.root})
        self.assertEqual(sorted(f for f, _, _ in runs),
                         ["tests/test_%02d.py" % i for i in range(12)])
        # Imported by the two servers and at most by the files that ran
        # before a server was ready, not by all twelve.
        self.assertLess(len(self.lines("imports.log")), 8)

    def test_off_imports_every_time(self):
        self.suite(6)
        r = srtest.run(self.ws, ["-n", "2", "--forkserver", "off"])
        self.assertEqual(r.code, 0, r)
        self.assertEqual(len(self.lines("imports.log")), 6)

    def test_thread_at_import_means_no_fork(self):
        self.suite(6, extra="import threading, time\n"
                            "threading.Thread(target=time.sleep, args=(60,),"
                            " daemon=True).start()\n")
        r = srtest.run(self.ws, ["-n", "2"])
        self.assertEqual(r.code, 0, r)
        # Every file was spawned plainly, so each imported the module.
        self.assertGreaterEqual(len(self.lines("imports.log")), 6)
        self.assert_one_result_per_file(
            r, ["tests/test_%02d.py" % i for i in range(6)])

    def test_crash_and_hang_in_forked_children(self):
        self.suite(4)
        self.ws.write("tests/test_segv.py", """
            import os, signal
            import shared_mod
            def test_crash():
                os.kill(os.getpid(), signal.SIGSEGV)
            """)
        self.ws.write("tests/test_hang.py", """
            import subprocess, sys, time
            import shared_mod
            def test_hang():
                subprocess.Popen([sys.executable, "-c",
                                  "import time; time.sleep(600)", "TOKEN"],
                                 start_new_session=True)
                time.sleep(600)
            """)
        hist = {"version": 1, "files": {
            "tests/test_segv.py": {"duration_s": 0.05, "runs": 1},
            "tests/test_hang.py": {"duration_s": 0.04, "runs": 1}}}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))
        r = srtest.run(self.ws, ["-n", "1", "--timeout", "3",
                                 "--kill-grace", "1", "--no-history"])
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.file("tests/test_segv.py")["outcome"], "crashed")
        self.assertEqual(r.file("tests/test_segv.py")["signal"], "SEGV")
        self.assertEqual(r.file("tests/test_hang.py")["outcome"], "timeout")
        for i in range(4):
            self.assertEqual(r.file("tests/test_%02d.py" % i)["outcome"],
                             "passed")
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])

    def test_daemons_die_before_the_slot_next_file(self):
        # Each file leaves a daemon in a session of its own and fails if
        # one left by another file is alive when its test starts: the
        # server kills everything below it but the child forked ahead
        # (without a PID namespace: what it adopted, a child subreaper).
        self.daemons(["tests/test_%s.py" % c for c in "abcd"])

    def test_daemons_die_before_another_configuration_next_file(self):
        # Files of two configurations take turns, each served by a server
        # of its own: the next file waits until the other server swept.
        self.ws.write("tests/x/conftest.py", HOOK)
        self.daemons(["tests/test_a.py", "tests/x/test_b.py",
                      "tests/test_c.py", "tests/x/test_d.py"])

    def daemons(self, files):
        for f in files:
            self.ws.write(f, DAEMON_TEST)
        r = srtest.run(self.ws, ["-n", "1", "--no-history"])
        self.assertEqual(r.code, 0, r)
        for f in files:
            self.assertEqual(r.file(f)["outcome"], "passed", r)
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])


DAEMON_TEST = "import os, subprocess, sys\n" + srtest.OTHERS_DAEMONS + """
def test_alone():
    me = os.path.basename(__file__)
    seen = others_daemons(me)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                      "TOKEN-daemon", me], start_new_session=True)
    assert seen == []
"""


# Kept configurations: a root conftest that logs each import of itself,
# and two directories whose conftests differ.
ROOT_CONFTEST = """
import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "conftest-imports.log"), "a") as f:
    f.write("%d\\n" % os.getpid())
"""

DIR_CONFTEST = """
import pytest
{addoption}
@pytest.fixture
def where():
    return "{name}"
"""

# A hook makes a conftest part of its directory's configuration (one that
# only adds fixtures is loaded while collecting, as pytest does).
HOOK = """
def pytest_report_header(config):
    return "hooked"
"""

ADDOPTION = """
def pytest_addoption(parser):
    parser.addoption("--colour", default="red")
"""

DIR_TEST = """
import os
import pytest

def test_where(where, request):
    # The child ran this very file, under its own directory's conftests.
    assert os.environ["SHARDRUN_FILE"] == os.path.relpath(__file__)
    assert where == "{name}"
    if where == "a":
        assert request.config.getoption("--colour") == "red"
    else:  # b's files never load a's conftest, so the option is unknown
        with pytest.raises(ValueError):
            request.config.getoption("--colour")
    assert {ok}
"""


PLAIN_CONFTEST = """
import os
import pytest
with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as f:
    f.write("%d\\n" % os.getpid())

os.environ["SR_SET_BY_{name}"] = "yes"

@pytest.fixture
def where():
    return "{name}"

@pytest.fixture
def only_{name}():
    return True
"""

PLAIN_TEST = """
import os
import pytest

def test_where(where, request):
    assert where == "{name}"
    assert os.environ["SR_SET_BY_{name}"] == "yes"
    assert request.getfixturevalue("only_{name}")
    for other in "abc".replace("{name}", ""):
        with pytest.raises(pytest.FixtureLookupError):
            request.getfixturevalue("only_" + other)
"""


# An installed plugin that notes the file arguments pytest parses, and a
# test that wants its own directory among them.
ARGS_PLUGIN = """
SEEN = []

def pytest_load_initial_conftests(early_config, parser, args):
    SEEN[:] = [a for a in args if a.endswith(".py")]
"""

ARGS_TEST = """
import os
import sr_args_plugin

def test_parsed_for_this_directory():
    here = os.path.dirname(os.path.relpath(__file__))
    assert [os.path.dirname(a) for a in sr_args_plugin.SEEN] == [here]
"""


class KeptConfig(srtest.TestCase):
    """pytest's configuration parsed once per slot and configuration, in a
    fork server of its own, each child starting its session from a copy
    of it."""

    def suite(self, n, broken=False):
        self.ws.write("conftest.py", ROOT_CONFTEST)
        for name in ("a", "b"):
            self.ws.write("tests/%s/conftest.py" % name, DIR_CONFTEST.format(
                name=name, addoption=ADDOPTION if name == "a" else ""))
            for i in range(n):
                ok = not (name == "b" and i == 1)
                self.ws.write("tests/%s/test_%02d.py" % (name, i),
                              DIR_TEST.format(name=name, ok=ok))
        if broken:
            self.ws.write("tests/c/conftest.py", "raise RuntimeError('no')\n")
            self.ws.write("tests/c/test_c.py", "def test_c():\n    pass\n")
            self.ws.write("tests/e/conftest.py", "import pytest\n"
                          "pytest.skip('no', allow_module_level=True)\n")
            self.ws.write("tests/e/test_e.py", "def test_e():\n    pass\n")
        return sorted("tests/%s/test_%02d.py" % (d, i) for d in "ab"
                      for i in range(n))

    def imports(self):
        path = self.ws.path("conftest-imports.log")
        with open(path) as f:
            return len(f.read().split())

    def sleeping_files(self, plan):
        """tests/NAME/test_I.py for each (name, i, estimate, secs) of plan:
        a test that sleeps secs, and a history that estimates it."""
        hist = {"version": 1, "files": {}}
        for name, i, estimate, secs in plan:
            f = "tests/%s/test_%d.py" % (name, i)
            self.ws.write(f, "import time\n\ndef test_it():\n"
                          "    time.sleep(%s)\n" % secs)
            hist["files"][f] = {"duration_s": estimate, "runs": 1}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))

    def test_each_file_its_own_session_on_its_directory_config(self):
        files = self.suite(8)
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertEqual(r.code, 1, r)
        self.assert_one_result_per_file(r, files)
        for f in files:
            want = "failed" if f == "tests/b/test_01.py" else "passed"
            self.assertEqual(r.file(f)["outcome"], want, (f, r))

    def test_each_configuration_parsed_once_per_slot(self):
        # a's and b's files follow each other on each slot: each slot
        # keeps both configurations, in a server each once its server
        # became a front (a slot that kept only one parsed for every file
        # after its first change: 12 imports; here at most 3 a slot).
        files = self.suite(10)
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assert_one_result_per_file(r, files)
        self.assertLess(self.imports(), 9)

    def test_a_front_from_the_start_where_files_span_configurations(self):
        # One slot, a's and b's files in turns (by their history, too far
        # apart for the slot to keep to the configuration it holds). The
        # coordinator counts two configurations, so the slot's fork server
        # is a front from its start: a and b parsed once each. A server
        # that becomes a front at its first b file has parsed a already,
        # and parses it again in the front's server for a (3 imports).
        files = self.suite(2)
        order = ["tests/a/test_00.py", "tests/b/test_00.py",
                 "tests/a/test_01.py", "tests/b/test_01.py"]
        hist = {"version": 1, "files": {
            f: {"duration_s": 2.0 - 0.5 * i, "runs": 1}
            for i, f in enumerate(order)}}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))
        r = srtest.run(self.ws, ["-n", "1", "--no-history"])
        self.assertEqual(r.code, 1, r)  # tests/b/test_01.py fails
        self.assert_one_result_per_file(r, files)
        starts = sorted(order, key=lambda f: r.file(f)["start_s"])
        self.assertEqual(starts, order)
        self.assertEqual(self.imports(), 2)

    def test_slots_keep_to_the_configurations_they_hold(self):
        # Two slots; a's and b's files about as long as each other, so
        # that in the order of their history (the heaviest first) they take
        # turns. Each slot goes on with files of the configuration it
        # holds, a file nearly as heavy as the heaviest one queued, instead
        # of parsing the other configuration too (4 imports without).
        self.ws.write("conftest.py", ROOT_CONFTEST)
        hist, files = {"version": 1, "files": {}}, []
        for name in "ab":
            self.ws.write("tests/%s/conftest.py" % name,
                          DIR_CONFTEST.format(name=name, addoption=HOOK))
            for i in range(5):
                f = "tests/%s/test_%02d.py" % (name, i)
                secs = 0.45 - 0.04 * i - (0.01 if name == "b" else 0)
                self.ws.write(f, "import time\n\ndef test_it(where):\n"
                              "    time.sleep(%.2f)\n" % secs)
                hist["files"][f] = {"duration_s": secs, "runs": 1}
                files.append(f)
        self.ws.write(".shardrun/durations.json", json.dumps(hist))
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)
        for name in "ab":
            slots = {r.file(f)["slot"] for f in files if "/%s/" % name in f}
            self.assertEqual(len(slots), 1, (name, r))
        self.assertEqual(self.imports(), 2)

    def test_a_configuration_dear_to_parse_stays_where_it_is_held(self):
        # b's conftest takes a second to import. The slot that parsed b
        # says what that cost (parse_s), and the coordinator counts that
        # much, not its 0.2 s guess, against another slot's parsing b too:
        # slot 1, holding a, takes a's lighter file rather than b's heavier
        # one, and then, with only b's left, waits for the slot holding b,
        # due to be free sooner than a parse of b would take. Estimated /
        # run (s): b0 10 / 0.05, a0 9 / 3, b1 2.5 / 2.5, b2 1.5 / 0.05,
        # a1 1 / 0.05.
        self.ws.write("conftest.py", ROOT_CONFTEST)
        self.ws.write("tests/a/conftest.py", HOOK)
        self.ws.write("tests/b/conftest.py", ROOT_CONFTEST.replace(
            "conftest-imports.log", "b-imports.log") + HOOK +
            "import time\ntime.sleep(1.0)\n")
        plan = [("b", 0, 10, 0.05), ("a", 0, 9, 3), ("b", 1, 2.5, 2.5),
                ("b", 2, 1.5, 0.05), ("a", 1, 1, 0.05)]
        self.sleeping_files(plan)
        r = srtest.run(self.ws, ["-n", "2"])
        self.assertEqual(r.code, 0, r)
        b0, b1 = r.file("tests/b/test_0.py"), r.file("tests/b/test_1.py")
        self.assertGreater(b0["parse_s"], 1.0, r)
        self.assertEqual(b1["parse_s"], 0, r)  # the same slot kept b
        self.assertEqual(r.file("tests/a/test_1.py")["slot"],
                         r.file("tests/a/test_0.py")["slot"], r)
        self.assertEqual(r.file("tests/b/test_2.py")["slot"], b0["slot"], r)
        with open(self.ws.path("tests/b/b-imports.log")) as f:
            self.assertEqual(len(f.read().split()), 1)
        # The history takes the file's duration without the parse.
        with open(self.ws.path(".shardrun/durations.json")) as f:
            got = json.load(f)["files"]["tests/b/test_0.py"]["duration_s"]
        self.assertAlmostEqual(
            got, 0.5 * 10 + 0.5 * (b0["duration_s"] - b0["parse_s"]),
            delta=0.01)

    def test_no_affinity_for_an_agent_without_fork_servers(self):
        # Estimated / run (s): a0 3 / 2, b0 2.9 / 0.05, a1 0.5 / 0.05, b1
        # 0.48 / 0.05. When b0 ends, its slot holds b, and b1 is within a
        # parse of a1, LPT's pick: with fork servers it takes b1 first. An
        # agent started with --forkserver off keeps no configuration, so
        # there is nothing to save and its slot takes a1 first, as LPT
        # orders them.
        self.ws.write("conftest.py", ROOT_CONFTEST)
        for name in "ab":
            self.ws.write("tests/%s/conftest.py" % name, HOOK)
        plan = [("a", 0, 3, 2), ("b", 0, 2.9, 0.05), ("a", 1, 0.5, 0.05),
                ("b", 1, 0.48, 0.05)]
        self.sleeping_files(plan)

        def b1_first(r):
            self.assertEqual(r.code, 0, r)
            a1, b1 = r.file("tests/a/test_1.py"), r.file("tests/b/test_1.py")
            return b1["start_s"] < a1["start_s"]

        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertTrue(b1_first(r), r)
        with srtest.Agent(self.ws, ["--slots", "2", "--forkserver", "off"]) \
                as agent:
            r = srtest.run(self.ws, agent.run_args() + ["--no-history"])
        self.assertFalse(b1_first(r), r)

    def test_configuration_parsed_once_per_slot(self):
        self.ws.write("conftest.py", ROOT_CONFTEST)
        self.ws.write("tests/a/conftest.py", DIR_CONFTEST.format(
            name="a", addoption=ADDOPTION))
        files = []
        for i in range(10):
            files.append("tests/a/test_%02d.py" % i)
            self.ws.write(files[-1], DIR_TEST.format(name="a", ok=True))
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)
        # Parsed (and the conftests imported) once per slot, plus by files
        # that ran before a server was ready - not once per file.
        self.assertLess(self.imports(), 6)

    def test_directories_without_setup_files_share_a_configuration(self):
        # Neither tests/a nor tests/b has a conftest or an ini file of its
        # own: pytest parses their files alike, so one configuration
        # serves both (a change of directory used to leave the slot a
        # server that keeps none, and every later file parsing anew).
        self.ws.write("conftest.py", ROOT_CONFTEST)
        files = ["tests/%s/test_%02d.py" % (d, i) for i in range(10)
                 for d in "ab"]
        for f in files:
            self.ws.write(f, "def test_it():\n    pass\n")
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)
        self.assertLess(self.imports(), 6)

    def test_plain_conftests_share_a_configuration(self):
        # Each directory's conftest adds a fixture and nothing else: pytest
        # parses their files alike, so one configuration serves them all
        # (the coordinator counts one: no front), and each slot's server
        # loads a directory's conftest once, as pytest loads a directory's
        # conftest while collecting, not each file's child again. A file
        # sees its own directory's fixtures, never another's, and what its
        # conftest set in the environment.
        self.plain_conftests(ROOT_CONFTEST)

    def test_plain_conftests_where_children_configure(self):
        # The root conftest's pytest_configure: each child configures for
        # itself, from the environment the server keeps for them.
        self.plain_conftests(ROOT_CONFTEST +
                             "\ndef pytest_configure(config):\n    pass\n")

    def test_plain_conftests_of_packages_stay_apart(self):
        # Two directories that are packages of one name (svcN/tests/ with
        # an __init__.py): their conftests would be one module in one
        # process, so they are not plain, and each keeps a configuration
        # of its own, as pytest run on each alone would.
        files = []
        for svc in ("svc1", "svc2"):
            self.ws.write("%s/tests/__init__.py" % svc, "")
            self.ws.write("%s/tests/conftest.py" % svc,
                          PLAIN_CONFTEST.format(name=svc))
            for i in range(4):
                files.append("%s/tests/test_%d.py" % (svc, i))
                self.ws.write(files[-1], "def test_it(where):\n"
                              "    assert where == %r\n" % svc)
        r = srtest.run(self.ws, ["-n", "1", "--no-history"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)

    def plain_conftests(self, root):
        self.ws.write("conftest.py", root)
        files = []
        for name in "abc":
            self.ws.write("tests/%s/conftest.py" % name, PLAIN_CONFTEST.format(
                name=name))
            for i in range(8):
                files.append("tests/%s/test_%02d.py" % (name, i))
                self.ws.write(files[-1], PLAIN_TEST.format(name=name))
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)
        self.assertLess(self.imports(), 6)  # the root's: once per slot
        for name in "abc":
            with open(self.ws.path("tests/%s/imports.log" % name)) as f:
                # per slot: its server, and a child forked ahead before
                # the server met the directory (8 without)
                self.assertLess(len(f.read().split()), 6, (name, r))

    def run_args_plugin(self, files):
        """An installed plugin sees the file arguments while pytest parses
        them (as pytest-django looks for manage.py above them); each file
        checks it saw the file's own directory."""
        plugins = tempfile.mkdtemp(prefix="sr-plugin-")
        self.addCleanup(shutil.rmtree, plugins, ignore_errors=True)
        with open(os.path.join(plugins, "sr_args_plugin.py"), "w") as f:
            f.write(ARGS_PLUGIN)
        self.ws.write("pytest.ini", "[pytest]\naddopts = -p sr_args_plugin\n")
        self.ws.write("conftest.py", ROOT_CONFTEST)
        for f in files:
            self.ws.write(f, ARGS_TEST)
        r = srtest.run(self.ws, ["-n", "2", "--no-history"],
                       env={"PYTHONPATH": plugins})
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)

    def test_a_plugin_that_reads_the_file_arguments_keeps_directories_apart(
            self):
        # A configuration parsed for tests/a/... must not serve tests/b.
        self.run_args_plugin(["tests/%s/test_%02d.py" % (d, i)
                              for i in range(4) for d in "ab"])

    def test_a_plugin_that_reads_the_file_arguments_and_one_directory(self):
        # The files of one directory still share one configuration.
        self.run_args_plugin(["tests/a/test_%02d.py" % i for i in range(10)])
        self.assertLess(self.imports(), 6)

    def test_same_outcomes_as_without_the_fork_server(self):
        files = self.suite(3, broken=True) + ["tests/c/test_c.py",
                                               "tests/e/test_e.py"]
        runs = {}
        for fs in ("on", "off"):
            r = srtest.run(self.ws, ["-n", "2", "--no-history",
                                     "--forkserver", fs, "--reruns", "0"])
            self.assert_one_result_per_file(r, files)
            runs[fs] = (r.code, {f: (r.file(f)["outcome"],
                                     r.file(f)["exit_code"]) for f in files})
        self.assertEqual(runs["on"], runs["off"])
        self.assertEqual(runs["on"][1]["tests/c/test_c.py"][0], "error")
        self.assertEqual(runs["on"][1]["tests/e/test_e.py"][1], 1)


# An installed plugin's pytest_configure runs in each file's own process,
# in the child forked ahead while the current file runs; once per slot, in
# its fork server, when SHARDRUN_CONFIGURE_ONCE names the plugin; and in
# each file's process once the previous file ended when the suite's own
# code implements a session-wide hook. The hook that records it lives in
# an installed plugin (a module outside the workspace, loaded with -p).
AHEAD_PLUGIN = """
import os, time
CONFIGURED = []

def pytest_configure(config):
    CONFIGURED.append(time.time())
    os.environ["FROM_PLUGIN"] = str(os.getpid())
    print("configured in %d" % os.getpid())
"""

AHEAD_TEST = """
import json, os, time
import sr_ahead_plugin

def open_files():
    for fd in os.listdir("/proc/self/fd"):
        try:
            yield os.readlink("/proc/self/fd/" + fd)
        except OSError:  # the directory's own fd, closed by now
            pass

def test_it():
    start = time.time()
    time.sleep({sleep})
    log = [l for l in open_files() if l.endswith("output.log")][0]
    with open(log) as f:
        printed = "configured in %s" % os.environ["FROM_PLUGIN"] in f.read()
    with open(os.path.join(os.path.dirname(__file__), "ahead.log"),
              "a") as f:
        f.write(json.dumps([os.environ["SHARDRUN_FILE"], os.getpid(),
                            sr_ahead_plugin.CONFIGURED, start, time.time(),
                            printed, os.environ.get("FROM_HOOK"),
                            os.environ.get("FROM_PLUGIN")]) + "\\n")
"""


class ForkedAhead(srtest.TestCase):
    def run_suite(self, conftest=None, once=None):
        plugins = tempfile.mkdtemp(prefix="sr-plugin-")
        self.addCleanup(shutil.rmtree, plugins, ignore_errors=True)
        with open(os.path.join(plugins, "sr_ahead_plugin.py"), "w") as f:
            f.write(AHEAD_PLUGIN)
        self.ws.write("pytest.ini", "[pytest]\naddopts = -p sr_ahead_plugin\n")
        if conftest:
            self.ws.write("tests/conftest.py", conftest)
        self.ws.write("tests/test_long.py", AHEAD_TEST.format(sleep=1.5))
        hist = {"version": 1, "files": {
            "tests/test_long.py": {"duration_s": 1.6, "runs": 1}}}
        quick = ["tests/test_q%d.py" % i for i in range(3)]
        for f in quick:
            self.ws.write(f, AHEAD_TEST.format(sleep=0))
            hist["files"][f] = {"duration_s": 0.1, "runs": 1}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))
        env = {"PYTHONPATH": plugins}
        if once:
            env["SHARDRUN_CONFIGURE_ONCE"] = once
        r = srtest.run(self.ws, ["-n", "1", "--no-history"], env=env)
        self.assertEqual(r.code, 0, r)
        with open(self.ws.path("tests/ahead.log")) as f:
            seen = {row[0]: row[1:] for row in map(json.loads, f)}
        self.assertEqual(sorted(seen), sorted(quick + ["tests/test_long.py"]))
        # Each file in a process of its own, configured once (in the server
        # or in itself): what the hook printed is in the file's own log,
        # what it put in the environment stayed.
        for f, (pid, configured, _, _, printed, _, env) in seen.items():
            self.assertEqual(len(configured), 1, f)
            self.assertTrue(printed, f)
            if not once:
                self.assertEqual(env, str(pid), f)
        self.assertEqual(len({row[0] for row in seen.values()}), 4)
        configured_in = {row[6] for row in seen.values()}
        self.assertEqual(len(configured_in), 1 if once else 4)
        nxt = min(quick, key=lambda f: seen[f][2])
        return r, seen, nxt

    def test_next_file_configured_while_the_current_one_runs(self):
        r, seen, nxt = self.run_suite()
        # The file after the long one was configured before that one
        # ended; its report counts its own run, not the wait.
        _, _, long_start, long_end, _, _, _ = seen["tests/test_long.py"]
        self.assertLess(seen[nxt][1][0], long_end)
        self.assertGreater(seen[nxt][1][0], long_start)
        self.assertGreater(seen[nxt][2], long_end)

    def test_configured_once_per_slot_before_its_files(self):
        self.check_configured_once("sr_ahead_plugin")

    def test_configured_once_with_every_plugin_named(self):
        self.check_configured_once("*")

    def check_configured_once(self, once):
        r, seen, nxt = self.run_suite(once=once)
        # The slot was configured before any file started; the report of
        # the file after the long one counts its own run, not the wait.
        _, _, long_start, long_end, _, _, _ = seen["tests/test_long.py"]
        first_start = min(row[2] for row in seen.values())
        for row in seen.values():
            self.assertEqual(row[1], seen[nxt][1])
        self.assertLess(seen[nxt][1][0], first_start)
        self.assertGreater(seen[nxt][2], long_end)
        suite = [s for s in r.junit.getroot().iter("testsuite")
                 if s.find("testcase").get("classname") ==
                 nxt[:-3].replace("/", ".")][0]
        self.assertLess(float(suite.get("time")), 1.0)
        stamp = datetime.datetime.fromisoformat(suite.get("timestamp"))
        self.assertGreater(stamp.timestamp(), long_end - 0.01)

    def test_crash_report_of_a_child_configured_ahead(self):
        # faulthandler took its copy of stderr at configure, before the
        # file's log existed: the crash report still lands in the log.
        self.ws.write("tests/test_a.py",
                      "import time\ndef test_a():\n    time.sleep(0.5)\n")
        self.ws.write("tests/test_segv.py", """
            import os, signal
            def test_crash():
                os.kill(os.getpid(), signal.SIGSEGV)
            """)
        hist = {"version": 1, "files": {
            "tests/test_a.py": {"duration_s": 0.6, "runs": 1},
            "tests/test_segv.py": {"duration_s": 0.1, "runs": 1}}}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))
        r = srtest.run(self.ws, ["-n", "1", "--no-history",
                                 "--max-restarts", "0"])
        self.assertEqual(r.file("tests/test_segv.py")["outcome"], "crashed",
                         r)
        # The tail of faulthandler's stack dump, frame by frame.
        self.assertRegex(r.out, r"line \d+ in pytest_runtestloop")

    def test_suite_session_hooks_wait_for_the_previous_file(self):
        # A conftest's pytest_configure may set up per-slot resources: it
        # runs after the previous file ended, knowing its file, and what it
        # puts in the environment stays.
        r, seen, nxt = self.run_suite(conftest=(
            "import os\n"
            "def pytest_configure(config):\n"
            "    os.environ['FROM_HOOK'] = os.environ['SHARDRUN_FILE']\n"))
        _, _, _, long_end, _, _, _ = seen["tests/test_long.py"]
        self.assertGreater(seen[nxt][1][0], long_end)
        for f, row in seen.items():
            self.assertEqual(row[5], f)


if __name__ == "__main__":
    srtest.main()
