"""Speculative backup attempts (--speculate on): at the end of a run, an
idle slot starts a second attempt of a unit that runs well past its
estimate; the first result counts and the other attempt is killed."""
import json
import time

import srtest

QUICK = """
import time, sys
time.sleep(0.3)
"""

# A job that does {first} on its first attempt and {later} on any other
# (a mark directory beside it tells them apart).
BY_ATTEMPT = """
import os, signal, sys, time
mark = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".first")
try:
    os.mkdir(mark)
    {first}
except FileExistsError:
    {later}
"""

# Stalls on its first attempt only (a loaded runner, a stuck mount), then
# behaves: the case a backup attempt rescues.
STALLS_ONCE = BY_ATTEMPT.format(first="time.sleep(STALL)",
                                later="time.sleep(0.3)")

# Always slower than its history says: the backup cannot win.
ALWAYS_SLOW = """
import time
time.sleep(2.5)
"""

# Its backup is killed at once (as by a machine that runs out of memory)
# while its first attempt goes on to pass.
CRASHES_AS_BACKUP = BY_ATTEMPT.format(
    first="time.sleep(2.5)", later="os.kill(os.getpid(), signal.SIGKILL)")

# Its first attempt stalls into the timeout (4 s); the backup, started
# about 1.3 s in, takes 3.2 s: it ends after that timeout, within its own.
TIMES_OUT_FIRST = BY_ATTEMPT.format(first="time.sleep(60)",
                                    later="time.sleep(3.2)")

# As TIMES_OUT_FIRST, but the backup crashes where it would have passed:
# neither twin gives a verdict.
NEITHER_ANSWERS = BY_ATTEMPT.format(
    first="time.sleep(60)",
    later="time.sleep(3.2); os.kill(os.getpid(), signal.SIGKILL)")

STALLING_TEST = """
import os, time
def test_once():
    mark = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".stalled")
    try:
        os.mkdir(mark)
        with open("/proc/self/status") as st:  # the host's pid, first
            pid = [l.split()[1] for l in st if l.startswith("NSpid:")][0]
        with open(os.path.join(mark, "pid"), "w") as f:
            f.write(pid)
        time.sleep(60)
    except FileExistsError:
        pass
"""


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Speculate(srtest.TestCase):
    def suite(self, slow_name, slow_text, stall=30):
        ws = self.ws
        names = ["jobs/q%d.py" % i for i in range(4)] + [slow_name]
        for n in names[:-1]:
            ws.write(n, QUICK)
        ws.write(slow_name, slow_text.replace("STALL", str(stall)))
        hist = {"version": 1, "files": {
            n: {"duration_s": 0.3, "runs": 3} for n in names}}
        ws.write(".shardrun/durations.json", json.dumps(hist))
        return names

    def run_generic(self, extra):
        cmd = "%s {file} %s" % (srtest.PYTHON, self.ws.token)
        t0 = time.monotonic()
        r = srtest.run(self.ws, ["--profile", "generic", "--cmd", cmd,
                                 "-n", "2", "jobs"] + extra)
        return r, time.monotonic() - t0

    def assert_one_backup(self, r, names, slow, won):
        """Every file passed once; the slow one had one backup attempt
        (which answered first if won); the cancelled twin is no attempt."""
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, names)
        f = r.file(slow)
        self.assertEqual(f["outcome"], "passed", r)
        self.assertEqual(f["attempts"], 1, f)
        self.assertEqual(r.json["backups"], 1, r)
        self.assertEqual(r.json["backup_wins"], 1 if won else 0, r)

    def test_backup_rescues_a_stalled_file(self):
        names = self.suite("jobs/stall.py", STALLS_ONCE)
        r, wall = self.run_generic(["--speculate", "on"])
        self.assert_one_backup(r, names, "jobs/stall.py", won=True)
        self.assertLess(wall, 20, r)  # not the 30 s stall
        self.assertIn("backup attempt", r.out + r.err)
        # The stalled original was killed: tearDown checks no process of
        # this workspace survives.
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])

    def test_original_answering_first_cancels_the_backup(self):
        names = self.suite("jobs/slow.py", ALWAYS_SLOW)
        r, _ = self.run_generic(["--speculate", "on"])
        self.assert_one_backup(r, names, "jobs/slow.py", won=False)
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])

    def assert_twin_decided(self, r, names, slow, outcomes, won):
        """The twin that ended without a verdict is an attempt of the file,
        the other one's result decided it (a pass after it is flaky)."""
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, names)
        f = r.file(slow)
        self.assertEqual(f["outcome"], "flaky", f)
        self.assertEqual(sorted(f["attempt_outcomes"]), outcomes, f)
        self.assertEqual(r.json["backups"], 1, r)
        self.assertEqual(r.json["backup_wins"], 1 if won else 0, r)

    def test_a_crashed_backup_leaves_its_original_to_pass(self):
        names = self.suite("jobs/crash.py", CRASHES_AS_BACKUP)
        r, _ = self.run_generic(["--speculate", "on"])
        self.assert_twin_decided(r, names, "jobs/crash.py",
                                 ["crashed", "passed"], won=False)

    def test_a_timed_out_original_leaves_its_backup_to_pass(self):
        names = self.suite("jobs/late.py", TIMES_OUT_FIRST)
        r, wall = self.run_generic(["--speculate", "on", "--timeout", "4"])
        self.assert_twin_decided(r, names, "jobs/late.py",
                                 ["passed", "timeout"], won=True)
        self.assertLess(wall, 30, r)  # not the 60 s stall
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])

    def test_a_backup_that_outlives_its_original_wins_only_with_a_verdict(
            self):
        names = self.suite("jobs/late.py", NEITHER_ANSWERS)
        r, _ = self.run_generic(["--speculate", "on", "--timeout", "4",
                                 "--max-restarts", "0"])
        self.assertEqual(r.code, 1, r)
        self.assert_one_result_per_file(r, names)
        f = r.file("jobs/late.py")
        self.assertEqual(f["outcome"], "crashed", f)
        self.assertEqual(sorted(f["attempt_outcomes"]),
                         ["crashed", "timeout"], f)
        self.assertEqual(r.json["backups"], 1, r)
        self.assertEqual(r.json["backup_wins"], 0, r)
        self.assertEqual(self.ws.wait_no_survivors(3.0), [])

    def test_off_by_default(self):
        names = self.suite("jobs/stall.py", STALLS_ONCE, stall=4)
        r, wall = self.run_generic([])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, names)
        self.assertEqual(r.json["backups"], 0, r)
        self.assertGreater(wall, 4, r)

    def test_no_backup_while_work_is_held_back(self):
        # The slow file is late while the exclusive file waits for the
        # agent to drain: the idle slot must not start a backup, which
        # would hold the exclusive file back longer still.
        ws = self.ws
        ws.write("tests/test_a_slow.py",
                 "import time\ndef test_slow():\n    time.sleep(4)\n")
        ws.write("tests/test_b_excl.py",
                 "import pytest\n@pytest.mark.exclusive\n"
                 "def test_alone():\n    pass\n")
        names = ["tests/test_a_slow.py", "tests/test_b_excl.py"]
        hist = {"version": 1, "files": {
            n: {"duration_s": 0.3, "runs": 3} for n in names}}
        ws.write(".shardrun/durations.json", json.dumps(hist))
        r = srtest.run(ws, ["-n", "2", "--speculate", "on", "tests"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, names)
        self.assertEqual(r.json["backups"], 0, r)

    def test_backup_through_the_fork_server(self):
        ws = self.ws
        names = ["tests/test_q%d.py" % i for i in range(3)]
        for n in names:
            ws.write(n, "def test_ok():\n    pass\n")
        ws.write("tests/test_stall.py", STALLING_TEST)
        names.append("tests/test_stall.py")
        hist = {"version": 1, "files": {
            n: {"duration_s": 0.2, "runs": 3} for n in names}}
        ws.write(".shardrun/durations.json", json.dumps(hist))
        t0 = time.monotonic()
        r = srtest.run(ws, ["-n", "2", "--speculate", "on", "tests"])
        self.assertEqual(r.code, 0, r)
        self.assertLess(time.monotonic() - t0, 40, r)
        self.assert_one_result_per_file(r, names)
        f = r.file("tests/test_stall.py")
        self.assertEqual(f["outcome"], "passed", r)
        self.assertEqual(r.json["backup_wins"], 1, r)
        with open(ws.path("tests/.stalled/pid")) as pf:
            stalled = int(pf.read())
        deadline = time.monotonic() + 3
        while alive(stalled) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(alive(stalled), "the cancelled attempt survived")


if __name__ == "__main__":
    srtest.main()
