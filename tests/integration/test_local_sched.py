"""Scheduling in local mode: the serial group never overlaps itself, an
exclusive file runs alone, long files start first."""
import json
import os

import srtest

# Each test appends "start end" (wall clock) to a log shared by the suite.
RECORDER = """
import os, time{imports}
{mark}
LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "times.log")

{deco}
def test_record():
    t0 = time.time()
    time.sleep({sleep})
    t1 = time.time()
    with open(LOG, "a") as f:
        f.write("%s %f %f\\n" % (os.path.basename(__file__), t0, t1))
"""


def recorder(sleep, mark="", deco=""):
    imports = "\nimport pytest" if (mark or deco) else ""
    return RECORDER.format(imports=imports, mark=mark, deco=deco, sleep=sleep)


def read_times(ws):
    spans = {}
    with open(ws.path("times.log")) as f:
        for line in f:
            name, a, b = line.split()
            spans[name] = (float(a), float(b))
    return spans


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


class Scheduling(srtest.TestCase):
    def test_serial_group_never_overlaps(self):
        ws = self.ws
        ws.write("test_s1.py", recorder(0.6, mark="pytestmark = pytest.mark.serial"))
        ws.write("test_s2.py", recorder(0.6, deco="@pytest.mark.serial"))
        ws.write("test_s3.py", recorder(0.6, mark="pytestmark = [pytest.mark.no_parallel]"))
        ws.write("test_s4.py", """
            import os, time, pytest
            LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "times.log")
            @pytest.mark.parallel_unsafe
            class TestX:
                def test_record(self):
                    t0 = time.time(); time.sleep(0.6); t1 = time.time()
                    with open(LOG, "a") as f:
                        f.write("test_s4.py %f %f\\n" % (t0, t1))
            """)
        for i in range(4):
            ws.write("test_p%d.py" % i, recorder(0.6))
        r = srtest.run(ws, ["-n", "4"])
        self.assertEqual(r.code, 0, r)
        spans = read_times(ws)
        serial = ["test_s1.py", "test_s2.py", "test_s3.py", "test_s4.py"]
        for i, a in enumerate(serial):
            for b in serial[i + 1:]:
                self.assertFalse(overlaps(spans[a], spans[b]),
                                 "%s and %s overlapped" % (a, b))
        # Same from the coordinator's own timeline.
        for i, a in enumerate(serial):
            fa = r.file(a)
            for b in serial[i + 1:]:
                fb = r.file(b)
                self.assertFalse(
                    overlaps((fa["start_s"], fa["end_s"]),
                             (fb["start_s"], fb["end_s"])))
        # The serial group ran on one slot, in path order.
        self.assertEqual(len({r.file(s)["slot"] for s in serial}), 1)
        starts = [r.file(s)["start_s"] for s in serial]
        self.assertEqual(starts, sorted(starts))

    def test_exclusive_runs_alone(self):
        ws = self.ws
        ws.write("test_x.py", recorder(1.0, deco="@pytest.mark.exclusive"))
        for i in range(6):
            ws.write("test_p%d.py" % i, recorder(0.5))
        r = srtest.run(ws, ["-n", "3"])
        self.assertEqual(r.code, 0, r)
        spans = read_times(ws)
        x = spans.pop("test_x.py")
        for name, span in spans.items():
            self.assertFalse(overlaps(x, span),
                             "%s ran beside the exclusive file" % name)

    def test_longest_first_with_history(self):
        ws = self.ws
        durations = {"test_short.py": 0.1, "test_long.py": 1.2,
                     "test_mid.py": 0.5}
        for name, d in durations.items():
            ws.write(name, recorder(d))
        hist = {"version": 1, "files": {
            n: {"duration_s": d, "runs": 3} for n, d in durations.items()}}
        ws.write(".shardrun/durations.json", json.dumps(hist))
        r = srtest.run(ws, ["-n", "1"])
        self.assertEqual(r.code, 0, r)
        order = sorted(durations, key=lambda n: r.file(n)["start_s"])
        self.assertEqual(order, ["test_long.py", "test_mid.py",
                                 "test_short.py"])


if __name__ == "__main__":
    srtest.main()
