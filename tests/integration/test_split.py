"""Files longer than a fair share are split into parts of their test ids:
every test still runs exactly once, a failure in any part fails the file,
tests the history never saw still run, and the run beats the long file."""
import json
import os

import srtest

BIG = """
import os, time, pytest

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran.log")

@pytest.mark.parametrize("i", range({n}))
def test_piece(i):
    time.sleep({sleep})
    with open(LOG, "a") as f:
        f.write("%s %d %d\\n" % (os.path.basename(__file__), i, os.getpid()))
    assert i != {fail}
"""

# A few slow tests first, then many fast ones: parts of equal counts would
# put every slow test into the first part. Each line of the log names the
# pytest process (the part) that ran the test: pids repeat across PID
# namespaces.
SLOW_FAST = """
import os, time, uuid, pytest

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran.log")
SLOW = {slow}
SESSION = uuid.uuid4().hex  # one per pytest process, so one per part

@pytest.mark.parametrize("i", range({n}))
def test_piece(i):
    time.sleep(SLOW.get(i, 0.01))
    with open(LOG, "a") as f:
        f.write("%s %d %s\\n" % (os.path.basename(__file__), i, SESSION))
"""

SMALL = """
def test_small():
    pass
"""

SMALL_MARKS = """
import os, time

def test_small():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "marks.log"), "a") as f:
        f.write("small %f\\n" % time.time())
"""

# The coordinator's pytest run that lists a long file's test ids takes
# 2.5 s more; the fork servers note when they start (marker.py, preloaded).
SLOW_IDS = """
import os, time

def pytest_collection_finish(session):
    if session.config.pluginmanager.has_plugin("shardrun_collect"):
        time.sleep(2.5)
        with open(os.path.join(os.path.dirname(__file__), "marks.log"),
                  "a") as f:
            f.write("ids %f\\n" % time.time())
"""

MARKER = """
import os, sys, time

if sys.argv[0] == "-c":  # a fork server
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "marks.log"), "a") as f:
        f.write("server %f\\n" % time.time())
"""


class Split(srtest.TestCase):
    def history(self, durations):
        hist = {"version": 1, "files": {
            p: {"duration_s": d, "runs": 1} for p, d in durations.items()}}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))

    def ran(self):
        with open(self.ws.path("ran.log")) as f:
            return [l.split() for l in f if l.strip()]

    def test_long_file_is_split_and_every_test_runs_once(self):
        self.ws.write("test_big.py", BIG.format(n=16, sleep=0.25, fail=-1))
        self.ws.write("test_small.py", SMALL)
        self.history({"test_big.py": 4.0, "test_small.py": 0.1})
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertEqual(r.code, 0, r)
        big = r.file("test_big.py")
        self.assertEqual(big["outcome"], "passed")
        self.assertGreaterEqual(big["parts"], 2)
        ran = self.ran()
        self.assertEqual(sorted(int(i) for _, i, _ in ran), list(range(16)))
        # The parts ran side by side: the file took less than its tests.
        self.assertLess(big["end_s"] - big["start_s"], 16 * 0.25)
        self.assertEqual(len(r.junit.getroot().findall(".//testcase")), 17)

    def test_failure_in_one_part_fails_the_file(self):
        self.ws.write("test_big.py", BIG.format(n=12, sleep=0.2, fail=7))
        self.history({"test_big.py": 3.0})
        r = srtest.run(self.ws, ["-n", "2", "--no-history"])
        self.assertEqual(r.code, 1, r)
        big = r.file("test_big.py")
        self.assertEqual(big["outcome"], "failed")
        self.assertGreaterEqual(big["parts"], 2)
        self.assertEqual(len(self.ran()), 12)
        self.assertEqual(len(r.junit.getroot().findall(".//failure")), 1)

    def test_split_off(self):
        self.ws.write("test_big.py", BIG.format(n=8, sleep=0.1, fail=-1))
        self.history({"test_big.py": 3.0})
        r = srtest.run(self.ws, ["-n", "2", "--no-history", "--split",
                                 "off"])
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.file("test_big.py")["parts"], 1)
        self.assertEqual(len({pid for _, _, pid in self.ran()}), 1)

    def test_history_records_the_whole_file(self):
        self.ws.write("test_big.py", BIG.format(n=8, sleep=0.25, fail=-1))
        self.history({"test_big.py": 3.0})
        r = srtest.run(self.ws, ["-n", "2"])
        self.assertEqual(r.code, 0, r)
        with open(self.ws.path(".shardrun/durations.json")) as f:
            hist = json.load(f)
        # EWMA of the old 3.0 and the sum of the parts (about 2 s).
        self.assertGreater(hist["files"]["test_big.py"]["duration_s"], 2.0)

    def test_parts_balanced_by_test_durations(self):
        slow = {0: 1.5, 1: 1.0, 2: 1.0}
        self.ws.write("test_big.py", SLOW_FAST.format(n=40, slow=slow))
        # First run: no history, so the file runs whole and its JUnit
        # report leaves a time per test.
        r = srtest.run(self.ws, ["-n", "2"])
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.file("test_big.py")["parts"], 1)
        hist = self.read_history()["files"]["test_big.py"]
        self.assertEqual(len(hist["tests"]), 40, hist)
        self.assertGreater(hist["tests"]["test_piece[0]"], 1.4)
        self.assertLess(hist["tests"]["test_piece[39]"], 0.5)
        os.unlink(self.ws.path("ran.log"))

        # Second run: split by those times, not by count.
        r = srtest.run(self.ws, ["-n", "2"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, ["test_big.py"])
        big = r.file("test_big.py")
        self.assertEqual(big["outcome"], "passed")
        self.assertGreaterEqual(big["parts"], 3, r)
        ran = self.ran()
        self.assertEqual(sorted(int(i) for _, i, _ in ran), list(range(40)))
        part_of = {int(i): session for _, i, session in ran}
        # Each slow test in a part of its own; the slowest alone (count
        # parts would hold about 40 / parts tests, all three slow ones).
        self.assertEqual(len({part_of[i] for i in slow}), 3, ran)
        with_slowest = [i for i, session in part_of.items()
                        if session == part_of[0]]
        self.assertEqual(with_slowest, [0], ran)
        # The parts' reports fed the history too.
        hist = self.read_history()["files"]["test_big.py"]
        self.assertEqual(hist["runs"], 2)
        self.assertEqual(len(hist["tests"]), 40, hist)

    def test_other_files_run_while_the_ids_are_collected(self):
        """While pytest lists the long file's test ids, the agents start
        their fork servers and the slots run the other files; the long
        file waits for its parts."""
        self.ws.write("conftest.py", SLOW_IDS)
        self.ws.write("marker.py", MARKER)
        self.ws.write("test_big.py", BIG.format(n=8, sleep=0.25, fail=-1))
        small = ["test_small_%d.py" % i for i in range(4)]
        for f in small:
            self.ws.write(f, SMALL_MARKS)
        self.history(dict({"test_big.py": 3.0},
                          **{f: 0.1 for f in small}))
        r = srtest.run(self.ws, ["-n", "2", "--no-history", "--preload",
                                 "marker"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, ["test_big.py"] + small)
        self.assertGreaterEqual(r.file("test_big.py")["parts"], 2)
        self.assertEqual(sorted(int(i) for _, i, _ in self.ran()),
                         list(range(8)))
        with open(self.ws.path("marks.log")) as f:
            marks = [l.split() for l in f]
        ids = [float(t) for what, t in marks if what == "ids"]
        servers = [float(t) for what, t in marks if what == "server"]
        smalls = [float(t) for what, t in marks if what == "small"]
        self.assertEqual(len(ids), 1, marks)
        self.assertGreaterEqual(len(servers), 2, marks)  # one per slot
        self.assertLess(max(servers[:2]), ids[0], marks)
        self.assertEqual(len(smalls), 4, marks)
        self.assertLess(max(smalls), ids[0], marks)

    def read_history(self):
        with open(self.ws.path(".shardrun/durations.json")) as f:
            return json.load(f)


if __name__ == "__main__":
    srtest.main()
