"""Local mode under faults: crashes, hangs with escaped grandchildren,
transient exit 4, missing files, flaky files, Ctrl-C, SIGKILL."""
import json
import os
import signal
import subprocess
import time

import srtest

SEGV = """
import os, signal

def test_crash():
    os.kill(os.getpid(), signal.SIGSEGV)
"""

HANG_WITH_GRANDCHILD = """
import os, subprocess, sys, time

def test_hangs():
    # A grandchild in its own session: a process-group kill misses it.
    subprocess.Popen([sys.executable, "-c",
                      "import time; time.sleep(600)", "TOKEN-grandchild"],
                     start_new_session=True)
    # And a plain child in our group.
    subprocess.Popen([sys.executable, "-c",
                      "import time; time.sleep(600)", "TOKEN-child"])
    time.sleep(600)
"""

PASS = """
def test_ok():
    pass
"""

# Exits 4 (usage error) on its first two runs, with the file present.
TRANSIENT_CONFTEST = """
import os, pytest

COUNT = os.path.join(os.path.dirname(__file__), ".transient-count")

def pytest_configure(config):
    n = int(open(COUNT).read()) if os.path.exists(COUNT) else 0
    open(COUNT, "w").write(str(n + 1))
    if n < 2:
        pytest.exit("simulated transient usage error", returncode=4)
"""

FLAKY = """
import os

MARK = os.path.join(os.path.dirname(__file__), ".flaky-ran")

def test_flaky():
    first = not os.path.exists(MARK)
    open(MARK, "w").close()
    assert not first, "fails on the first run only"
"""

CRASH_ONCE = """
import os, signal

MARK = os.path.join(os.path.dirname(__file__), ".crashed-once")

def test_crash_once():
    if not os.path.exists(MARK):
        open(MARK, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
"""


class LocalFaults(srtest.TestCase):
    def test_segfault_is_retried_then_crashed(self):
        self.ws.write("test_segv.py", SEGV)
        self.ws.write("test_ok.py", PASS)
        r = srtest.run(self.ws, ["-n", "2", "--max-restarts", "2"])
        self.assertEqual(r.code, 1, r)
        f = r.file("test_segv.py")
        self.assertEqual(f["outcome"], "crashed")
        self.assertEqual(f["signal"], "SEGV")
        self.assertEqual(f["attempts"], 3)
        self.assertIn("crashed", r.out)
        self.assertEqual(r.file("test_ok.py")["outcome"], "passed")

    def test_crash_then_pass_is_flaky(self):
        self.ws.write("test_crash_once.py", CRASH_ONCE)
        r = srtest.run(self.ws, ["-n", "1"])
        self.assertEqual(r.code, 0, r)
        f = r.file("test_crash_once.py")
        self.assertEqual(f["outcome"], "flaky")
        self.assertEqual(f["attempts"], 2)

    def test_hang_times_out_and_nothing_survives(self):
        self.ws.write("test_hang.py", HANG_WITH_GRANDCHILD)
        self.ws.write("test_ok.py", PASS)
        t0 = time.time()
        r = srtest.run(self.ws, ["-n", "2", "--timeout", "3",
                                 "--kill-grace", "1"])
        self.assertEqual(r.code, 1, r)
        f = r.file("test_hang.py")
        self.assertEqual(f["outcome"], "timeout")
        self.assertLess(time.time() - t0, 30)
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])

    def test_timeout_sends_sigterm_first(self):
        # The test cleans up on SIGTERM; SIGKILL would come only after the
        # grace period, so a prompt end proves SIGTERM reached it.
        self.ws.write("test_term.py", """
            import os, signal, time
            MARK = os.path.join(os.path.dirname(__file__), "terminated")
            def test_waits():
                def on_term(sig, frame):
                    open(MARK, "w").close()
                    os._exit(3)
                signal.signal(signal.SIGTERM, on_term)
                time.sleep(600)
            """)
        t0 = time.time()
        r = srtest.run(self.ws, ["--timeout", "2", "--kill-grace", "20"])
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.file("test_term.py")["outcome"], "timeout")
        self.assertTrue(os.path.exists(self.ws.path("terminated")))
        self.assertLess(time.time() - t0, 15)

    def test_transient_exit_4_recovers(self):
        self.ws.write("conftest.py", TRANSIENT_CONFTEST)
        self.ws.write("test_t.py", PASS)
        r = srtest.run(self.ws, ["-n", "1"])
        self.assertEqual(r.code, 0, r)
        f = r.file("test_t.py")
        self.assertEqual(f["outcome"], "passed")
        self.assertEqual(f["attempts"], 1)
        self.assertEqual(f["tries"], 3)

    def test_missing_file_fails_fast(self):
        # In the serial group files run in path order: a deletes b.
        self.ws.write("test_a_deleter.py", """
            import os, pytest
            pytestmark = pytest.mark.serial
            def test_delete():
                os.remove(os.path.join(os.path.dirname(__file__),
                                       "test_b_victim.py"))
            """)
        self.ws.write("test_b_victim.py", """
            import pytest
            pytestmark = pytest.mark.serial
            def test_never():
                pass
            """)
        t0 = time.time()
        r = srtest.run(self.ws, ["-n", "2"])
        self.assertEqual(r.code, 1, r)
        f = r.file("test_b_victim.py")
        self.assertEqual(f["outcome"], "error")
        self.assertEqual(f["attempts"], 1)
        self.assertIn("not found", f["message"])
        self.assertLess(time.time() - t0, 15)

    def test_reruns_make_flaky(self):
        self.ws.write("test_flaky.py", FLAKY)
        r = srtest.run(self.ws, ["--reruns", "1"])
        self.assertEqual(r.code, 0, r)
        f = r.file("test_flaky.py")
        self.assertEqual(f["outcome"], "flaky")
        self.assertEqual(f["attempts"], 2)
        self.assertEqual(r.json["counts"]["flaky"], 1)
        flaky = r.junit.getroot().findall(".//flakyFailure")
        self.assertEqual(len(flaky), 1)

    def test_failure_without_reruns_stays_failed(self):
        self.ws.write("test_flaky.py", FLAKY)
        r = srtest.run(self.ws, [])
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.file("test_flaky.py")["outcome"], "failed")


# Jobs (generic profile) record their PID namespace and their pid in it
# in ns-NAME.
RECORD_NS = """
import os
me = os.path.basename(__file__)
with open(os.path.join(os.path.dirname(__file__), "..", "ns-" + me), "w") as f:
    f.write("%s %d" % (os.readlink("/proc/self/ns/pid"), os.getpid()))
"""

# One that leaves a daemon in a session of its own and fails if a daemon
# left by another job is still alive when it starts.
DAEMON_JOB = RECORD_NS + srtest.OTHERS_DAEMONS + """
import subprocess, sys
seen = others_daemons(me)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                  "TOKEN-daemon", me], start_new_session=True)
print("daemons of other jobs alive:", seen)
sys.exit(3 if seen else 0)
"""


class GenericAttempts(srtest.TestCase):
    """Attempts started directly by the agent (no fork server)."""

    def run_jobs(self, extra):
        return srtest.run(self.ws, ["--profile", "generic", "--cmd",
                                    srtest.PYTHON + " {file}", "jobs"] + extra)

    def namespaces(self, names):
        """Each job's (PID namespace, pid in it); None when the jobs ran in
        ours (the agent gives attempts process groups)."""
        ns = {}
        for name in names:
            with open(self.ws.path("ns-" + name)) as f:
                ident, pid = f.read().split()
            ns[name] = (ident, int(pid))
        if os.readlink("/proc/self/ns/pid") in [v[0] for v in ns.values()]:
            return None
        return ns

    def test_daemons_die_before_the_slot_next_file(self):
        names = ["%s.py" % c for c in "abcd"]
        for name in names:
            self.ws.write("jobs/" + name, DAEMON_JOB)
        r = self.run_jobs(["-n", "1"])
        self.assertEqual(r.code, 0, r)
        for name in names:
            self.assertEqual(r.file("jobs/" + name)["outcome"], "passed")
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])
        ns = self.namespaces(names)
        if ns is None:
            return  # process groups: the lane adopted and killed them
        # One namespace served the slot's files one after another (path
        # order: no history); its pids keep counting up.
        self.assertEqual(len(set(v[0] for v in ns.values())), 1, ns)
        pids = [ns[name][1] for name in names]
        self.assertEqual(pids, sorted(set(pids)), ns)
        self.assertEqual(pids[0], 2, ns)  # the namespace's first process

    def test_file_ignoring_sigterm_is_killed_and_its_slot_goes_on(self):
        self.ws.write("jobs/a_hang.py", RECORD_NS + """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                  "TOKEN"], start_new_session=True)
time.sleep(600)
""")
        for name in "bc":
            self.ws.write("jobs/%s_ok.py" % name, RECORD_NS)
        t0 = time.time()
        r = self.run_jobs(["-n", "1", "--timeout", "2", "--kill-grace", "1",
                           "--max-restarts", "0"])
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.file("jobs/a_hang.py")["outcome"], "timeout")
        for name in "bc":
            self.assertEqual(r.file("jobs/%s_ok.py" % name)["outcome"],
                             "passed")
        ns = self.namespaces(["a_hang.py", "b_ok.py", "c_ok.py"])
        if ns is not None:
            # SIGKILL took the hanging file's namespace with it; the files
            # after it (path order: no history) share a new one, where b is
            # the first process.
            self.assertEqual(ns["a_hang.py"][1], 2, ns)
            self.assertEqual(ns["b_ok.py"][1], 2, ns)
            self.assertEqual(ns["b_ok.py"][0], ns["c_ok.py"][0], ns)
            self.assertGreater(ns["c_ok.py"][1], 2, ns)
        self.assertLess(time.time() - t0, 30)

    def test_timeout_sends_sigterm_first(self):
        self.ws.write("jobs/term.py", """
            import os, signal, time
            MARK = os.path.join(os.path.dirname(__file__), "..", "terminated")
            def on_term(sig, frame):
                open(MARK, "w").close()
                os._exit(3)
            signal.signal(signal.SIGTERM, on_term)
            time.sleep(600)
            """)
        self.ws.write("jobs/ok.py", "print('ok')\n")
        t0 = time.time()
        r = self.run_jobs(["-n", "1", "--timeout", "2", "--kill-grace", "20"])
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.file("jobs/term.py")["outcome"], "timeout")
        self.assertEqual(r.file("jobs/ok.py")["outcome"], "passed")
        self.assertTrue(os.path.exists(self.ws.path("terminated")))
        self.assertLess(time.time() - t0, 15)


class Interrupts(srtest.TestCase):
    SLEEPER = """
        import subprocess, sys, time
        def test_sleeps():
            subprocess.Popen([sys.executable, "-c",
                              "import time; time.sleep(600)", "TOKEN"],
                             start_new_session=True)
            time.sleep(600)
        """

    # The same as a job of the generic profile: started by the agent
    # itself, in its slot's lane where attempts get PID namespaces.
    SLEEPER_JOB = """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c",
                          "import time; time.sleep(600)", "TOKEN"],
                         start_new_session=True)
        time.sleep(600)
        """

    def start(self, n_sleepers, generic=False):
        extra = []
        if generic:
            self.ws.write("jobs/quick.py", "print('ok')\n")
            for i in range(n_sleepers):
                self.ws.write("jobs/sleep_%d.py" % i, self.SLEEPER_JOB)
            extra = ["--profile", "generic", "--cmd",
                     srtest.PYTHON + " {file}", "jobs"]
        else:
            self.ws.write("test_quick.py", PASS)
            for i in range(n_sleepers):
                self.ws.write("test_sleep_%d.py" % i, self.SLEEPER)
        os.makedirs(self.ws.path(".out"), exist_ok=True)
        return subprocess.Popen(
            [srtest.SHARDRUN, "run", "-n", "3", "--json",
             self.ws.path(".out/results.json")] + extra,
            cwd=self.ws.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=srtest.env_for_tests())

    def wait_for_sleepers(self, n):
        deadline = time.time() + 20
        while time.time() < deadline:
            if len(self.ws.survivors()) >= n:
                return
            time.sleep(0.1)
        self.fail("sleepers never started")

    def test_ctrl_c_kills_everything_and_reports(self):
        p = self.start(2)
        self.wait_for_sleepers(2)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 130, err)
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])
        with open(self.ws.path(".out/results.json")) as f:
            res = json.load(f)
        done = {f["file"]: f["outcome"] for f in res["files"]}
        self.assertEqual(done.get("test_quick.py"), "passed")

    def test_sigkill_of_shardrun_leaves_no_orphans(self):
        for generic in (False, True):
            with self.subTest(generic=generic):
                p = self.start(2, generic)
                self.wait_for_sleepers(2)
                p.kill()
                p.communicate(timeout=30)
                self.assertEqual(self.ws.wait_no_survivors(5.0), [])


if __name__ == "__main__":
    srtest.main()
