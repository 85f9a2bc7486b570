"""The fork server driven directly over its socket, file by file, against a
plain `python3 -m pytest` of the same arguments: the exit status of every
file must be the same, whichever directory's configuration the server
parsed before."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import textwrap
import time
import unittest

PY = "/usr/bin/python3"
SERVER = os.path.join(os.environ.get("SR_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")),
    "agent", "forkserver.py")

SLOW_IMPORT = """
    import os, time
    time.sleep(0.4)
    with open(os.environ["SR_MARK"], "a") as f:
        f.write("%r\\n" % time.monotonic())

    def test_slow():
        pass
    """

# A daemon: forked twice, in a session of its own, its parent gone; its
# pid noted as "FILE PID" in SR_MARK.
DAEMON = """
    import os

    def test_daemon():
        mid = os.fork()
        if mid == 0:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                try:
                    fd = os.open(os.devnull, os.O_RDWR)
                    for n in (0, 1, 2):
                        os.dup2(fd, n)
                    os.execv("/bin/sleep", ["sleep", "1000"])
                finally:
                    os._exit(127)
            with open(os.environ["SR_MARK"], "a") as f:
                f.write("%s %d\\n" % (os.environ["SHARDRUN_FILE"], pid))
            os._exit(0)
        assert os.waitpid(mid, 0)[1] == 0
    """

# A hook makes a conftest part of its directory's configuration (one that
# only adds fixtures is loaded while collecting, as pytest does).
HOOK = "def pytest_report_header(config):\n    return 'hooked'\n"

FILES = {
    # Imported by the root conftest: an environment variable set, a logging
    # handler bound to the stream pytest captures into while conftests load.
    "conftest.py": """
        import logging, os, sys
        import models  # fills the preloaded registry: once per process
        os.environ.setdefault("FROM_CONFTEST", "yes")
        if "SR_IMPORTS" in os.environ:
            with open(os.environ["SR_IMPORTS"], "a") as f:
                f.write("%d\\n" % os.getpid())
        logging.basicConfig(stream=sys.stderr)
        print("root conftest imported")
        """,
    "registry.py": """
        NAMES = set()

        def register(name):
            if name in NAMES:
                raise ValueError("already defined: " + name)
            NAMES.add(name)
        """,
    "models.py": "import registry\nregistry.register('user')\n",
    # A conftest that starts a thread when imported.
    "threads/conftest.py": """
        import threading, time
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        """,
    "threads/test_t.py": "def test_t():\n    pass\n",
    # Two directories whose conftests import a helper module of one name.
    "tests/a/helpers.py": "NAME = 'a'\n",
    "tests/b/helpers.py": "NAME = 'b'\n",
    "tests/a/conftest.py": """
        import helpers

        def pytest_configure(config):
            print("configured a")
        """,
    "tests/b/conftest.py": "import helpers\n",
    "tests/a/test_a.py": """
        import logging, os
        import helpers

        def test_a():
            logging.getLogger("t").warning("to the captured stream")
            assert os.environ.get("FROM_CONFTEST") == "yes"
            assert os.environ["SHARDRUN_FILE"] == "tests/a/test_a.py"
            assert helpers.NAME == "a"
        """,
    "tests/a/test_fail.py": """
        def test_fail():
            assert False
        """,
    "tests/b/test_b.py": """
        import logging
        import helpers

        def test_b():
            logging.getLogger("t").warning("to the captured stream")
            assert helpers.NAME == "b"
        """,
    # A conftest that skips its whole directory when imported.
    "tests/c/conftest.py": """
        import pytest
        pytest.skip("not here", allow_module_level=True)
        """,
    "tests/c/test_c.py": "def test_c():\n    pass\n",
    # So too, and with a hook: not plain, a configuration of its own.
    "tests/skip/conftest.py": """
        import pytest
        pytest.skip("not here", allow_module_level=True)

        def pytest_report_header(config):
            return "never"
        """,
    "tests/skip/test_s.py": "def test_s():\n    pass\n",
    # A conftest whose pytest_configure fails (in every process).
    "tests/d/conftest.py": """
        def pytest_configure(config):
            print("configure of d")
            raise RuntimeError("cannot configure d")
        """,
    "tests/d/test_d.py": "def test_d():\n    pass\n",
    "tests/e/test_e.py": "def test_e():\n    pass\n",
    "tests/e/test_writes_preloaded.py": """
        import sr_big

        def test_writes_every_page():
            n = len(range(0, len(sr_big.BIG), 4096))
            sr_big.BIG[::4096] = b"\\2" * n
        """,
    "tests/e/test_big.py": """
        def test_big():
            global BIG
            BIG = bytearray(1 << 29)  # written: the exit frees it
            assert False
        """,
    "tests/e/test_big_daemon.py": """
        import os
        import subprocess

        def test_big_daemon():
            global BIG
            BIG = bytearray(1 << 29)  # written: the exit takes a while
            p = subprocess.Popen(["sleep", "1000"], start_new_session=True)
            with open(os.environ["SR_MARK"], "a") as f:
                f.write("%d\\n" % p.pid)
        """,
    "tests/e/test_other_user.py": """
        import os
        import subprocess

        def test_other_user():
            p = subprocess.Popen([os.environ["SR_SETUID_RUN"], "sleep",
                                  "1000"], start_new_session=True)
            with open(os.environ["SR_MARK"], "a") as f:
                f.write("%d\\n" % p.pid)
        """,
    "tests/e/test_sleep.py": """
        import time

        def test_sleep():
            time.sleep(30)
        """,
    # A conftest that starts a thread when imported a second time.
    "tests/g/conftest.py": """
        import os, threading, time
        with open(os.environ["SR_MARK"] + ".g", "a") as f:
            f.write("imported\\n")
        with open(os.environ["SR_MARK"] + ".g") as f:
            if len(f.read().split()) == 2:
                threading.Thread(target=time.sleep, args=(30,),
                                 daemon=True).start()
        """,
    "tests/g/test_pid.py": """
        import os

        def test_pid():
            with open(os.environ["SR_MARK"], "a") as f:
                f.write("test %d\\n" % os.getpid())
        """,
    "tests/f/test_pid.py": """
        import os

        def test_pid():
            with open(os.environ["SR_MARK"], "a") as f:
                f.write("test %d\\n" % os.getpid())
        """,
    "tests/a/test_daemon.py": DAEMON,
    "tests/e/test_daemon.py": DAEMON,
    # Slow to collect: its import takes 0.4 s, then notes when it ended.
    "tests/a/test_slow.py": SLOW_IMPORT,
    "tests/b/test_slow.py": SLOW_IMPORT,
}

# Installed plugins (outside the workspace: they do not keep a child forked
# ahead from configuring before its file comes), loaded with -p.
PLUGINS = {
    "sr_fails_to_configure.py": """
        def pytest_configure(config):
            print("configure of the plugin")
            raise RuntimeError("cannot configure")
        """,
    "sr_thread_at_start.py": """
        import os, threading, time

        def pytest_sessionstart(session):
            threading.Thread(target=time.sleep, args=(30,),
                             daemon=True).start()
            with open(os.environ["SR_MARK"], "a") as f:
                f.write("start %d\\n" % os.getpid())
        """,
    # Preloaded: the first child forked while the file SR_GATE (of the
    # server's environment) exists takes it away and waits 5 s right
    # after its fork, before it could make a process group of its own.
    # Preloaded: 300 MiB of the server's own, every page written.
    "sr_big.py": """
        BIG = bytearray(300 << 20)
        BIG[::4096] = b"\\1" * len(range(0, len(BIG), 4096))
        """,
    "sr_fork_gate.py": """
        import os, time
        GATE = os.environ.get("SR_GATE")

        def wait():
            try:
                os.unlink(GATE)
            except (TypeError, OSError):
                return
            time.sleep(5)

        os.register_at_fork(after_in_child=wait)
        """,
}

# (file arguments, what they name) in the order the server gets them: b's
# configuration is parsed between a's files, then a file gone, an unknown
# test id, and a directory whose conftest skips.
RUNS = [
    ["tests/a/test_a.py"],
    ["tests/b/test_b.py"],
    ["tests/a/test_fail.py"],
    ["tests/a/test_a.py"],
    ["tests/a/test_gone.py"],
    ["tests/a/test_a.py::test_nope"],
    ["tests/a/test_a.py::test_a"],
    ["tests/c/test_c.py"],
    ["tests/b/test_b.py"],
]


def kill_group(pgid, leader_too=False):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if leader_too:  # also before it made its group
        try:
            os.kill(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def status_of(pid):
    """The fields of /proc/PID/status; {} once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.split("\n")
                if ":\t" in line)


def alive(pid):
    return status_of(pid).get("State", "Z")[0] != "Z"


def children_of(pid):
    """The pids of pid's children."""
    found = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            found += [int(kid) for kid in f.read().split()]
    return found


def fds_named(pid, name):
    """The /proc paths of pid's descriptors whose link holds name (those
    the server opens for a moment, as it reads /proc, may close while we
    look)."""
    found = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        path = "/proc/%d/fd/%s" % (pid, fd)
        try:
            if name in os.readlink(path):
                found.append(path)
        except FileNotFoundError:
            pass
    return found


def kill_sleep(pid):
    """Kill pid if it is still one of the tests' `sleep 1000`s."""
    try:
        with open("/proc/%d/cmdline" % pid) as f:
            if f.read() != "sleep\0" "1000\0":
                return
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


class Server:
    def __init__(self, root, tmp, preload=("registry",), env=None,
                 user=None):
        path = self.path = os.path.join(tmp, "fs.sock")
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(1)
        self.log = open(os.path.join(tmp, "server.log"), "w")
        if user is not None:  # it may connect
            os.chown(path, user, user)
        self.proc = subprocess.Popen([PY, SERVER, path, root] +
                                     list(preload),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log,
                                     env=env, user=user, group=user,
                                     extra_groups=None if user is None
                                     else [])
        self.lsock.settimeout(30)
        self.sock, _ = self.lsock.accept()
        self.sock.settimeout(60)
        self.buf = b""
        self.seen = []  # (time.monotonic(), message) of every message

    def recv(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server went away")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        self.seen.append((time.monotonic(), json.loads(line)))
        return self.seen[-1][1]

    def run(self, req):
        """The run's wait status (after its "pid", maybe two of them, and
        maybe the "ahead" of the child forked for the next file, which
        may also come after the status)."""
        self.sock.sendall((json.dumps({"run": req}) + "\n").encode())
        while True:
            msg = self.recv()
            if "nofork" in msg:
                raise AssertionError("server refused: %s" % msg)
            if "status" in msg:
                return msg["status"]

    def servers(self):
        """The pids of the servers a front forked (one per shape), once
        the server has become one."""
        return children_of(self.proc.pid)

    def close(self):
        self.argv = []  # the server's and those it forked, after execs
        for pid in [self.proc.pid] + self.servers():
            try:
                with open("/proc/%d/cmdline" % pid) as f:
                    self.argv.append(f.read().split("\0")[:-1])
            except OSError:  # a child that ended meanwhile
                pass
        self.sock.close()
        self.proc.wait(timeout=30)
        self.log.close()
        self.lsock.close()
        os.unlink(self.path)


class ForkServerProtocol(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sr-fsp-")
        self.ws = os.path.join(self.tmp, "ws")
        self.plugins = os.path.join(self.tmp, "plugins")
        self.extra = []  # pytest arguments before the files
        self.more_env = {}  # for every run, served or plain
        for root, files in ((self.ws, FILES), (self.plugins, PLUGINS)):
            for rel, text in files.items():
                path = os.path.join(root, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(textwrap.dedent(text))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def request(self, files, log, n):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PYTEST")}
        env.update({"SHARDRUN_FILE": files[0].split("::")[0],
                    "SHARDRUN_ATTEMPT": str(n),
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPATH": self.plugins})
        env.update(self.more_env)
        args = ["-q", "-p", "no:cacheprovider",
                "--junitxml=" + os.path.join(self.tmp, "junit.xml")] + \
            self.extra + files
        return {"args": args, "files": files, "cwd": self.ws, "log": log,
                "env": env}

    def started(self, preload=("registry",), user=None, **env):
        """A server started as the agent starts it, ready."""
        server = self.server = Server(
            self.ws, self.tmp, preload,
            env=dict(os.environ, PYTHONPATH=self.plugins, **env), user=user)
        self.assertEqual(server.recv(), {"ready": True})
        return server

    def plain(self, req):
        r = subprocess.run([PY, "-m", "pytest"] + req["args"],
                           cwd=req["cwd"], env=req["env"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        return r.returncode, r.stdout

    def serve(self, runs):
        """Run each file through one server and plainly; the exit codes."""
        # Started as the agent starts it: in the files' environment.
        server = self.server = Server(
            self.ws, self.tmp, env=dict(os.environ, PYTHONPATH=self.plugins))
        codes = []
        try:
            self.assertEqual(server.recv(), {"ready": True})
            for n, files in enumerate(runs):
                log = os.path.join(self.tmp, "run-%d.log" % n)
                req = self.request(files, log, n)
                status = server.run(req)
                with open(log) as f:
                    out = f.read()
                code, plain_out = self.plain(req)
                codes.append(code)
                self.assertTrue(os.WIFEXITED(status), (files, status, out))
                # No exception of the server's chained to the tests'.
                self.assertNotIn("BecameServer", out, files)
                self.assertEqual(os.WEXITSTATUS(status), code,
                                 (files, out, plain_out))
                self.assertNotIn("Logging error", out, files)
                # What the conftests printed while the server parsed went
                # to its log, not into every child's; what pytest_configure
                # printed (in a child forked ahead: before its file was
                # known) went to the file's log.
                if "root conftest imported" not in plain_out:
                    self.assertNotIn("root conftest imported", out, files)
                for line in ("configured a", "configure of d",
                             "configure of the plugin"):
                    self.assertEqual(line in out, line in plain_out,
                                     (files, line, out))
        finally:
            server.close()
        for argv in server.argv:  # an exec'd server is no front
            self.assertFalse("--front" in argv and "--no-keep" in argv, argv)
        return codes

    def test_each_file_as_a_plain_pytest_run_would_end(self):
        codes = self.serve(RUNS)
        # Passed, failed, usage error (a file gone, an unknown id) all came.
        self.assertLessEqual({0, 1, 4}, set(codes))

    def test_files_of_one_configuration_one_after_another(self):
        # All but the first are served by a child forked ahead: configured
        # and in its session before the request came.
        codes = self.serve([["tests/a/test_a.py"], ["tests/a/test_fail.py"],
                            ["tests/a/test_a.py"], ["tests/a/test_gone.py"],
                            ["tests/a/test_a.py::test_nope"],
                            ["tests/a/test_a.py::test_a"],
                            ["tests/a/test_a.py", "tests/a/test_fail.py"],
                            ["tests/a/test_a.py"]])
        self.assertEqual(codes, [0, 1, 0, 4, 4, 0, 1, 0])

    def test_configured_ahead_one_after_another(self):
        # b's conftest implements no session hook: its children forked
        # ahead configure and start their sessions before their files.
        codes = self.serve([["tests/b/test_b.py"], ["tests/b/test_b.py"],
                            ["tests/b/test_gone.py"],
                            ["tests/b/test_b.py::test_nope"],
                            ["tests/b/test_b.py"]])
        self.assertEqual(codes, [0, 0, 4, 4, 0])

    def test_a_pytest_configure_that_fails(self):
        # d's conftest hook fails once its file came; each file ends as a
        # plain run would, and then c's.
        codes = self.serve([["tests/d/test_d.py"]] * 3 +
                           [["tests/c/test_c.py"]])
        self.assertEqual(codes[:3], [3, 3, 3])
        # Each d child ended before collecting its file; the next child
        # was forked all the same, and served the next d file.
        ahead, pids = None, []
        for _, msg in self.server.seen:
            if "pid" in msg:
                pids.append((msg["pid"], ahead))
            ahead = msg.get("ahead", ahead)
        self.assertEqual(len(pids), 4, self.server.seen)
        for pid, forked_ahead in pids[1:3]:
            self.assertEqual(pid, forked_ahead, self.server.seen)

    def test_a_plugin_whose_configure_fails_ahead(self):
        # An installed plugin's hook fails in the child forked ahead,
        # before its file came: the file gets a child of its own, which
        # ends as a plain run would (its log has what the hook printed).
        self.extra = ["-p", "sr_fails_to_configure"]
        codes = self.serve([["tests/e/test_e.py"]] * 4)
        self.assertEqual(codes, [3, 3, 3, 3])

    def test_a_plugin_that_starts_a_thread_in_the_session(self):
        # Started in the server's own session, the thread would be there
        # at every fork: the server gives that session up, and each file's
        # child starts a session of its own.
        self.extra = ["-p", "sr_thread_at_start"]
        mark = self.more_env["SR_MARK"] = os.path.join(self.tmp, "mark")
        codes = self.serve([["tests/f/test_pid.py"]] * 3)
        self.assertEqual(codes, [0, 0, 0])
        with open(mark) as f:
            lines = [line.split() for line in f]
        started = {pid for what, pid in lines if what == "start"}
        tested = [pid for what, pid in lines if what == "test"]
        self.assertEqual(len(tested), 6, lines)  # served and plain
        self.assertLessEqual(set(tested), started, lines)

    def test_a_second_exec_serves_on(self):
        # Named to be configured once per slot, the plugin starts a thread
        # in the server's session: the server gives that session up and
        # execs one whose children configure for themselves; parsing
        # again there imports g's conftest a second time, which starts a
        # thread, so that one execs a front, whose server for g keeps the
        # configuration (a third import: no thread). Each exec drops the
        # previous one's descriptors.
        self.extra = ["-p", "sr_thread_at_start"]
        self.more_env["SR_MARK"] = os.path.join(self.tmp, "mark")
        self.more_env["SHARDRUN_CONFIGURE_ONCE"] = "sr_thread_at_start"
        codes = self.serve([["tests/g/test_pid.py"]] * 3 +
                           [["tests/f/test_pid.py"]])
        self.assertEqual(codes, [0, 0, 0, 0])
        argv = self.server.argv[0]  # the process the agent started
        for flag in ("--configure-in-children", "--front", "--fd",
                     "--pending"):
            self.assertEqual(argv.count(flag), 1, argv)
        self.assertNotIn("--no-keep", argv)

    def test_configurations_taking_turns_are_each_parsed_once(self):
        # a's and b's files alternate: the first change makes the server
        # a front, and each configuration is then parsed once, by a server
        # of its own, and kept for all its files (a server that keeps one
        # configuration only would parse for every file after the first
        # change). a's was parsed by the server before it became a front.
        imports = self.more_env["SR_IMPORTS"] = os.path.join(self.tmp, "i")
        server = self.started()
        try:
            for n in range(8):
                f = ["tests/a/test_a.py", "tests/b/test_b.py"][n % 2]
                req = self.request([f], os.path.join(self.tmp, "t.log"), n)
                self.assertEqual(server.run(req), 0, n)
            self.assertEqual(len(server.servers()), 2)
        finally:
            server.close()
        with open(imports) as f:
            self.assertEqual(len(f.read().split()), 3)

    def test_a_first_configuration_that_cannot_be_kept(self):
        # c's conftest skips its directory when imported: its parse fails,
        # so the server becomes a front; c's server keeps nothing, and a's
        # configuration is still parsed once and kept (a server that gave
        # keeping up for the slot would import the root conftest in each
        # of a's files too).
        imports = self.more_env["SR_IMPORTS"] = os.path.join(self.tmp, "i")
        server = self.started()
        try:
            for n, f in enumerate(["tests/c/test_c.py"] +
                                  ["tests/a/test_a.py"] * 4):
                req = self.request([f], os.path.join(self.tmp, "k.log"), n)
                status = server.run(req)
                self.assertTrue(status == 0 or "/c/" in f, (f, status))
            self.assertEqual(len(server.servers()), 2)
        finally:
            server.close()
        with open(imports) as f:  # c's: failed twice, its child; a's
            self.assertEqual(len(f.read().split()), 4)

    def test_a_file_waits_until_the_last_child_is_gone(self):
        # A child says its status before its exit is done (freeing 512 MiB
        # takes a while): the next file starts only once the child has
        # ended and what it left is swept - on the same server, and on
        # another configuration's server too, also right after two files
        # in a row on one server.
        server = self.started()
        files = [("tests/a/test_a.py", 0), ("tests/e/test_big.py", 1),
                 ("tests/e/test_big.py", 1), ("tests/a/test_a.py", 0),
                 ("tests/e/test_big.py", 1), ("tests/a/test_a.py", 0)]
        last = None
        try:
            for n, (f, code) in enumerate(files):
                req = self.request([f], os.path.join(self.tmp, "w.log"), n)
                server.sock.sendall(
                    (json.dumps({"run": req}) + "\n").encode())
                while True:
                    msg = server.recv()
                    if "pid" in msg and last is not None:
                        self.assertFalse(os.path.exists("/proc/%d" % last),
                                         (n, f))
                    if "pid" in msg:
                        pid = msg["pid"]
                    if "status" in msg:
                        self.assertEqual(msg["status"], code << 8, f)
                        break
                last = pid
        finally:
            server.close()

    def became_front(self, server):
        """Make the server a front: a file of a's configuration, then one
        of another's, whose server is then the only one."""
        req = self.request(["tests/a/test_a.py"],
                           os.path.join(self.tmp, "a.log"), 0)
        self.assertEqual(server.run(req), 0)
        req = self.request(["tests/e/test_e.py"],
                           os.path.join(self.tmp, "e.log"), 0)
        self.mark = len(server.seen)  # what came from the front
        self.assertEqual(server.run(req), 0)
        self.assertEqual(len(server.servers()), 1)
        return req

    def test_a_server_that_dies_between_files(self):
        # The front goes on: the child the server forked ahead dies with
        # it, and the next file of its configuration gets a new server.
        server = self.started()
        try:
            req = self.became_front(server)
            while not any(m.get("ahead") for _, m in server.seen[self.mark:]):
                server.recv()
            ahead = [m["ahead"] for _, m in server.seen[self.mark:]
                     if m.get("ahead")][-1]
            (first,) = server.servers()
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while (server.servers() or os.path.exists("/proc/%d" % ahead)) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(server.servers(), [])
            self.assertFalse(os.path.exists("/proc/%d" % ahead))
            self.assertEqual(server.run(req), 0)
            self.assertNotIn(first, server.servers())
            self.assertEqual(len(server.servers()), 1)
        finally:
            server.close()

    def test_the_least_recently_used_configuration_makes_room(self):
        # Ten directories, each its own configuration (a's parsed by the
        # server before it became a front): the servers of the three used
        # least recently end, and h's is parsed again.
        for d in "hijklmnopq":
            os.makedirs(os.path.join(self.ws, "tests", d))
            for name, text in (("conftest.py", HOOK),
                               ("test_x.py", "def test_x():\n    pass\n")):
                with open(os.path.join(self.ws, "tests", d, name), "w") as f:
                    f.write(text)
        imports = self.more_env["SR_IMPORTS"] = os.path.join(self.tmp, "i")
        server = self.started()
        try:
            dirs = ["a"] + list("hijklmnopq") + ["h"]
            for n, d in enumerate(dirs):
                f = "tests/%s/test_%s.py" % (d, "a" if d == "a" else "x")
                req = self.request([f], os.path.join(self.tmp, "t.log"), n)
                self.assertEqual(server.run(req), 0, d)
            deadline = time.monotonic() + 10
            while len(server.servers()) > 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(len(server.servers()), 8)
        finally:
            server.close()
        with open(imports) as f:
            self.assertEqual(len(f.read().split()), len(dirs))

    def test_a_server_that_dies_while_its_file_runs(self):
        # The front goes with it: the agent sees the fork server gone and
        # reports the attempt as it would any crash of it.
        server = self.started()
        try:
            self.became_front(server)
            req = self.request(["tests/e/test_sleep.py"],
                               os.path.join(self.tmp, "s.log"), 0)
            server.sock.sendall((json.dumps({"run": req}) + "\n").encode())
            # The "ahead" of the file before may come first.
            child = next(m["pid"] for m in iter(server.recv, None)
                         if "pid" in m)
            self.addCleanup(kill_group, child)  # unless the front did
            os.kill(server.servers()[0], signal.SIGKILL)
            with self.assertRaises(EOFError):
                while True:
                    server.recv()
            self.assertEqual(server.proc.wait(timeout=10), 1)
        finally:
            server.sock.close()
            server.log.close()
            server.lsock.close()

    def ahead_after_two_files(self, wait_s=20, **env):
        """Two files through a server started with env, then the child
        forked for a third: the pages the first child noted, and the
        Private_Dirty (KiB) of that child once it reached 90% of them, or
        after wait_s seconds."""
        server = self.started(**env)
        try:
            for n in range(2):
                req = self.request(["tests/e/test_e.py"],
                                   os.path.join(self.tmp, "e.log"), n)
                self.assertEqual(server.run(req), 0)
            while not any("ahead" in m for _, m in server.seen[-2:]):
                server.recv()  # the child forked for a third file
            ahead = [m["ahead"] for _, m in server.seen if "ahead" in m][-1]
            noted = fds_named(server.proc.pid, "shardrun-touched")
            self.assertEqual(len(noted), 1)
            pages = os.stat(noted[0]).st_size // 8
            self.assertGreater(pages, 100)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                with open("/proc/%d/smaps_rollup" % ahead) as f:
                    dirty = [int(line.split()[1]) for line in f
                             if line.startswith("Private_Dirty:")][0]
                if dirty >= pages * 4 * 0.9:
                    break
                time.sleep(0.05)
            return pages, dirty
        finally:
            server.close()

    def test_a_child_forked_ahead_copies_what_files_write_first(self):
        # The first child of the server's session to end notes the pages
        # it wrote; a child forked ahead after that writes to them before
        # it says it is ready, so its file does not take those faults.
        pages, dirty = self.ahead_after_two_files(SHARDRUN_COPY_AHEAD="on")
        self.assertGreaterEqual(dirty, pages * 4 * 0.9)

    def test_no_copying_ahead_where_it_only_takes_cpu(self):
        # Off, nothing is copied ahead. So too by default while every CPU
        # is busy (more spinners than CPUs), unless the server measured
        # copying ahead to cost markedly less than the faults it spares
        # (it says so in its log).
        pages, dirty = self.ahead_after_two_files(1, SHARDRUN_COPY_AHEAD="off")
        self.assertLess(dirty, pages * 4 * 0.6)
        spinners = [subprocess.Popen([PY, "-c", "while True: pass"])
                    for _ in range(len(os.sched_getaffinity(0)) + 1)]
        try:
            pages, dirty = self.ahead_after_two_files(1)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        with open(os.path.join(self.tmp, "server.log")) as f:
            pays = "copying ahead pays" in f.read()
        if pays:
            self.assertGreaterEqual(dirty, pages * 4 * 0.9)
        else:
            self.assertLess(dirty, pages * 4 * 0.6)

    def test_the_status_comes_before_the_exit_is_done(self):
        # A child says the status it is about to exit with: the server
        # sends it without waiting for the kernel to free the child's
        # memory (here 512 MiB), and reaps the child later. Whether the
        # child is still there when the status arrives is a race the
        # server wins by far unless the machine stalls it: one win in
        # three is required (a server that waits for the exit never wins).
        server = self.started()
        early = 0
        try:
            files = [("test_e", 0)] + [("test_big", 1)] * 3
            for n, (name, code) in enumerate(files):
                req = self.request(["tests/e/%s.py" % name],
                                   os.path.join(self.tmp, "e.log"), n)
                start = len(server.seen)
                status = server.run(req)
                self.assertEqual(status, code << 8)
                if name == "test_big":
                    pid = [m["pid"] for _, m in server.seen[start:]
                           if "pid" in m][-1]
                    early += os.path.exists("/proc/%d" % pid)
        finally:
            server.close()
        self.assertGreaterEqual(early, 1)

    def test_a_signal_that_came_with_the_first_request(self):
        # The run and a signal for it in one read: the server starts its
        # session on the run, and the signal, already read, is handled
        # next (before the child has a process group of its own, maybe).
        server = self.started()
        try:
            req = self.request(["tests/e/test_sleep.py"],
                               os.path.join(self.tmp, "sleep.log"), 0)
            server.sock.sendall((json.dumps({"run": req}) + "\n" +
                                 json.dumps({"signal": 15}) + "\n").encode())
            self.assert_ends_by_sigterm(server, time.monotonic(), 20)
        finally:
            server.close()

    def test_the_next_child_is_forked_once_a_file_is_collected(self):
        # Forked while the handed child imports its file, the next child's
        # fork and configuration would compete with that import. a's
        # children wait before configuring, b's configure ahead.
        for where in ("a", "b"):
            mark = os.path.join(self.tmp, "mark-" + where)
            server = Server(self.ws, self.tmp,
                            env=dict(os.environ, PYTHONPATH=self.plugins))
            try:
                self.assertEqual(server.recv(), {"ready": True})
                for n in range(3):
                    req = self.request(["tests/%s/test_slow.py" % where],
                                       os.path.join(self.tmp, "slow.log"),
                                       n)
                    req["env"]["SR_MARK"] = mark
                    self.assertEqual(os.WEXITSTATUS(server.run(req)), 0)
                # The next child may be announced after the status.
                last = max(i for i, (_, m) in enumerate(server.seen)
                           if "pid" in m)
                while not any("ahead" in m for _, m in server.seen[last:]):
                    server.recv()
            finally:
                server.close()
            # Each run's messages: from its "pid" to the next run's.
            starts = [i for i, (_, m) in enumerate(server.seen)
                      if "pid" in m] + [len(server.seen)]
            runs = [server.seen[a:b] for a, b in zip(starts, starts[1:])]
            self.assertEqual(len(runs), 3, server.seen)
            with open(mark) as f:
                collected = [float(line) for line in f]
            self.assertEqual(len(collected), 3)
            # The first file was forked from the server itself.
            ahead = [t for t, m in runs[0] if "ahead" in m]
            self.assertEqual(len(ahead), 1, (where, runs))
            self.assertGreater(ahead[0], collected[0], (where, runs))
            for n in (1, 2):
                ahead_before = [m["ahead"] for _, m in runs[n - 1]
                                if "ahead" in m]
                pids = [m["pid"] for _, m in runs[n] if "pid" in m]
                ahead = [t for t, m in runs[n] if "ahead" in m]
                # Served by the child forked ahead, which forked the
                # next one only after its file's import had ended.
                self.assertEqual(pids, ahead_before[-1:], (where, runs))
                self.assertEqual(len(ahead), 1, (where, runs))
                self.assertGreater(ahead[0], collected[n], (where, runs))

    def test_a_conftest_that_starts_a_thread(self):
        codes = self.serve([["threads/test_t.py"], ["threads/test_t.py"],
                            ["tests/a/test_a.py"]])
        self.assertEqual(codes, [0, 0, 0])

    def test_an_orphan_the_server_cannot_kill_holds_nothing(self):
        """A file leaves a daemon of another user (started through a
        setuid program, as sudo would): the server cannot kill it and
        does not wait for it (it used to, up to a second per sweep, two
        sweeps a file); it stays the server's child. Needs root, to be two
        other users."""
        built = os.environ.get("SR_SETUID_RUN")
        if os.geteuid() != 0 or not built:
            self.skipTest("needs root and SR_SETUID_RUN")
        server_uid, other_uid = 64001, 64002
        for root, dirs, files in os.walk(self.tmp):
            for name in dirs + files:
                os.chown(os.path.join(root, name), server_uid, server_uid)
        os.chown(self.tmp, server_uid, server_uid)
        run = os.path.join(self.tmp, "setuid-run")
        shutil.copy(built, run)
        os.chown(run, other_uid, other_uid)
        os.chmod(run, 0o4755)
        mark = self.more_env["SR_MARK"] = os.path.join(self.tmp, "mark")
        self.more_env["SR_SETUID_RUN"] = run
        server = self.started(user=server_uid)
        try:
            req = self.request(["tests/e/test_other_user.py"],
                               os.path.join(self.tmp, "o.log"), 0)
            self.assertEqual(server.run(req), 0)
            with open(mark) as f:
                daemon = int(f.read().split()[-1])
            self.addCleanup(kill_sleep, daemon)
            req = self.request(["tests/e/test_e.py"],
                               os.path.join(self.tmp, "e.log"), 1)
            start = time.monotonic()
            self.assertEqual(server.run(req), 0)
            self.assertLess(time.monotonic() - start, 1.0)
            self.assertTrue(alive(daemon))
            self.assertEqual(int(status_of(daemon)["PPid"]), server.proc.pid)
        finally:
            server.close()

    def test_servers_of_the_front_kill_what_their_files_left(self):
        """Each server of the front kills the daemon its file left before
        it says it is idle (a child subreaper, it adopted it; without a
        PID namespace it kills its children round after round), so before
        the front hands the next file to another server."""
        mark = self.more_env["SR_MARK"] = os.path.join(self.tmp, "mark")
        server = self.started()
        try:
            self.became_front(server)
            for n, f in enumerate(["tests/e/test_daemon.py",
                                   "tests/a/test_daemon.py"]):
                req = self.request([f], os.path.join(self.tmp, "d.log"), n)
                self.assertEqual(server.run(req), 0, f)
            with open(mark) as f:
                daemons = {k: int(v) for k, v in (line.split() for line in f)}
            for pid in daemons.values():
                self.addCleanup(kill_sleep, pid)
            self.assertFalse(alive(daemons["tests/e/test_daemon.py"]))
            a_daemon = daemons["tests/a/test_daemon.py"]
            deadline = time.monotonic() + 3
            while alive(a_daemon) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertFalse(alive(a_daemon))
            self.assertEqual(len(server.servers()), 2)
        finally:
            server.close()

    def test_what_a_killed_server_left_comes_to_the_front(self):
        """A server killed right after its file's status, its child still
        exiting (freeing 512 MiB) with a daemon of its own below it: the
        daemon comes to the front once the child is gone, and the front
        kills it (sweep_orphans), then goes on."""
        mark = self.more_env["SR_MARK"] = os.path.join(self.tmp, "mark")
        server = self.started()
        try:
            req = self.became_front(server)
            (e_server,) = server.servers()
            big = self.request(["tests/e/test_big_daemon.py"],
                               os.path.join(self.tmp, "b.log"), 1)
            self.assertEqual(server.run(big), 0)
            os.kill(e_server, signal.SIGKILL)
            with open(mark) as f:
                daemon = int(f.read().split()[-1])
            self.addCleanup(kill_sleep, daemon)
            deadline = time.monotonic() + 5
            while alive(daemon) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertFalse(alive(daemon))
            self.assertEqual(server.run(req), 0)
            self.assertNotIn(e_server, server.servers())
        finally:
            server.close()

    def test_a_server_of_the_front_that_gives_up_keeping(self):
        """A server of the front that cannot keep its configuration (skip's
        conftest skips while parsed; threads/ conftest, adopted by e's
        server, starts a thread) execs one that keeps nothing, still a
        server of the front: each file gets one status, a plain run's,
        and the front serves on."""
        server = self.started()
        try:
            self.became_front(server)
            (e_server,) = server.servers()
            server.sock.settimeout(10)  # a front waiting forever fails
            start = len(server.seen)
            files = ["tests/skip/test_s.py", "threads/test_t.py",
                     "tests/e/test_e.py", "threads/test_t.py",
                     "tests/a/test_a.py", "tests/skip/test_s.py",
                     "tests/e/test_e.py"]
            codes = []
            for n, f in enumerate(files):
                req = self.request([f], os.path.join(self.tmp, "g.log"), n)
                status = server.run(req)
                code, out = self.plain(req)
                self.assertEqual(status, code << 8, (f, out))
                codes.append(code)
            self.assertEqual(codes, [1, 0, 0, 0, 0, 1, 0])
            statuses = [m for _, m in server.seen[start:] if "status" in m]
            self.assertEqual(len(statuses), len(files), server.seen)
            argv = {}
            for pid in server.servers():
                with open("/proc/%d/cmdline" % pid) as f:
                    argv[pid] = f.read().split("\0")
            gave_up = [a for a in argv.values() if "--no-keep" in a]
            self.assertEqual(len(argv), 3, argv)  # e's, a's, skip's
            self.assertEqual(len(gave_up), 2, argv)  # skip's, e's
            self.assertIn("--no-keep", argv[e_server])  # the same pid
            for a in gave_up:
                self.assertIn("--served", a)
                self.assertNotIn("--front", a)
        finally:
            server.close()

    def test_a_signal_before_the_child_has_a_group_of_its_own(self):
        """A signal for a child still in the server's process group (it
        waits right after its fork, before its setsid): the group the
        server signals does not exist yet, and the child gets the signal
        all the same."""
        gate = os.path.join(self.tmp, "gate")
        server = self.started(preload=("registry", "sr_fork_gate"),
                              SR_GATE=gate)
        pid = None
        try:
            server.sock.settimeout(4)  # the child waits 5 s, then 30
            open(gate, "w").close()
            req = self.request(["tests/e/test_sleep.py"],
                               os.path.join(self.tmp, "sleep.log"), 0)
            server.sock.sendall((json.dumps({"run": req}) + "\n").encode())
            pid = server.recv()["pid"]
            deadline = time.monotonic() + 3
            while os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertFalse(os.path.exists(gate))  # the child waits
            self.assertNotEqual(os.getpgid(pid), pid)
            start = time.monotonic()
            server.sock.sendall(
                (json.dumps({"signal": 15}) + "\n").encode())
            self.assert_ends_by_sigterm(server, start, 3)
            pid = None  # reaped: its number may be another's now
        finally:
            if pid is not None:  # no status came: not reaped, still ours
                kill_group(pid, True)
            server.close()

    def assert_ends_by_sigterm(self, server, start, within):
        """The attempt's status comes, a death by SIGTERM, within
        `within` seconds of start."""
        while True:
            msg = server.recv()
            if "status" in msg:
                break
        self.assertTrue(os.WIFSIGNALED(msg["status"]), msg)
        self.assertEqual(os.WTERMSIG(msg["status"]), 15)
        self.assertLess(time.monotonic() - start, within)

    def touched_note(self, server):
        """The pages the server's note (TOUCHED) holds."""
        for link in fds_named(server.proc.pid, "shardrun-touched"):
            with open(link, "rb") as f:
                data = f.read()
            return [p for (p,) in struct.iter_unpack("Q", data)]
        self.fail("the server has no note")

    def next_files_through_children_forked_ahead(self, server):
        """The next two files are each served by the child forked ahead
        for them; the second was forked after the note was written, and
        copied its pages first."""
        for n in (1, 2):
            start = len(server.seen)
            while not any("ahead" in m for _, m in server.seen[-2:]):
                server.recv()
            ahead = [m["ahead"] for _, m in server.seen if "ahead" in m][-1]
            req = self.request(["tests/e/test_e.py"],
                               os.path.join(self.tmp, "e.log"), n)
            self.assertEqual(server.run(req), 0)
            pids = [m["pid"] for _, m in server.seen[start:] if "pid" in m]
            self.assertEqual(pids, [ahead])

    def test_a_childs_own_memory_is_not_noted(self):
        """The first child of the server's session writes 512 MiB of its
        own: it ends with its own status, and the note holds only pages
        of the server's memory, which later children share."""
        server = self.started(SHARDRUN_COPY_AHEAD="on")
        try:
            before = private_memory(server.proc.pid)
            req = self.request(["tests/e/test_big.py"],
                               os.path.join(self.tmp, "big.log"), 0)
            self.assertEqual(server.run(req), 1 << 8)
            noted = self.touched_note(server)
            self.assertTrue(0 < len(noted) < 1 << 16, len(noted))
            # The server's memory at the fork lies within what it had
            # before or has after (it may have grown or shrunk since).
            mine = before + private_memory(server.proc.pid)
            self.assertEqual([p for p in noted if not any(
                start <= p < end for start, end in mine)], [])
            self.next_files_through_children_forked_ahead(server)
        finally:
            server.close()

    def test_a_child_that_wrote_more_pages_than_are_noted(self):
        """The server preloads 300 MiB that the first child of its
        session writes all of, more pages than the server notes
        (MAX_NOTED, 1 << 16): the child ends with its own status, the
        note holds MAX_NOTED pages, and the children forked ahead since,
        which copy them first, serve the next files."""
        server = self.started(preload=("registry", "sr_big"),
                              SHARDRUN_COPY_AHEAD="on")
        try:
            req = self.request(["tests/e/test_writes_preloaded.py"],
                               os.path.join(self.tmp, "big.log"), 0)
            self.assertEqual(server.run(req), 0)
            self.assertEqual(len(self.touched_note(server)), 1 << 16)
            self.next_files_through_children_forked_ahead(server)
        finally:
            server.close()


def private_memory(pid):
    """(start, end) of pid's private anonymous writable mappings, as the
    fork server counts its own (private_memory)."""
    found = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split()
            if fields[1] == "rw-p" and (len(fields) < 6 or
                                        fields[5] == "[heap]"):
                start, end = fields[0].split("-")
                found.append((int(start, 16), int(end, 16)))
    return found


if __name__ == "__main__":
    unittest.main(verbosity=2)
