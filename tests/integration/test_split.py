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

SMALL = """
def test_small():
    pass
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


if __name__ == "__main__":
    srtest.main()
