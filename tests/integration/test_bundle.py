"""--bundle S: short files run several to a pytest session, each still ends
with exactly one result of its own, judged from its share of the session's
JUnit report. A file that fails in a bundle runs again alone (passing
there, it is an isolation leak); a bundle that crashes has each of its
files run alone; the merged report names every test exactly once."""
import json
import os

import srtest

# Each line of the log names the pytest process that ran the file: set by
# the first test file a process imports (pids repeat across PID namespaces).
TINY = """
import os, sys, uuid

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran.log")
if not hasattr(sys, "sr_session"):
    sys.sr_session = uuid.uuid4().hex

def test_one():
    with open(LOG, "a") as f:
        f.write("%s %s\\n" % (os.path.basename(__file__), sys.sr_session))

class TestGroup:
    def test_two(self):
        pass
"""

# Imported first in path order: leaves state behind in the session.
LEAKER = """
import os
os.environ["LEFT_BEHIND"] = "1"

def test_sets():
    pass
"""

# Fails only where test_a_leaker.py ran before it in the same process.
VICTIM = """
import os

def test_clean_environment():
    assert "LEFT_BEHIND" not in os.environ
"""

FAILS = """
def test_fails():
    assert 1 == 2
"""

CRASHES = """
import os, signal

def test_crash():
    os.kill(os.getpid(), signal.SIGKILL)
"""

BROKEN_IMPORT = """
import no_such_module_anywhere

def test_never():
    pass
"""

NO_TESTS = """
def helper():
    pass
"""


class Bundle(srtest.TestCase):
    def history(self, files, seconds=0.01):
        hist = {"version": 1, "files": {
            p: {"duration_s": seconds, "runs": 1} for p in files}}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))

    def write_tiny(self, n, where="tests"):
        files = []
        for i in range(n):
            rel = "%s/test_t%02d.py" % (where, i)
            self.ws.write(rel, TINY)
            files.append(rel)
        return files

    def sessions(self, where="tests"):
        """file -> the session (process) that ran its test_one."""
        with open(self.ws.path(os.path.join(where, "ran.log"))) as f:
            return dict(l.split() for l in f if l.strip())

    def run_bundled(self, files, extra=()):
        self.history(files)
        return srtest.run(self.ws, ["-n", "2", "--no-history", "--bundle",
                                    "1"] + list(extra))

    def run_tiny_and(self, n, rel, src, extra=()):
        """n tiny files and one more, bundled: exit 1, one result each."""
        files = self.write_tiny(n)
        self.ws.write(rel, src)
        files.append(rel)
        r = self.run_bundled(files, extra)
        self.assertEqual(r.code, 1, r)
        self.assert_one_result_per_file(r, files)
        return r, files

    def junit_cases(self, r):
        return sorted((tc.get("classname"), tc.get("name"))
                      for tc in r.junit.iter("testcase"))

    def check_all_passed_in_bundles(self, forkserver):
        files = self.write_tiny(12)
        r = self.run_bundled(files, ["--forkserver", forkserver])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)
        for f in r.json["files"]:
            self.assertEqual(f["outcome"], "passed", f)
            self.assertTrue(f["bundled"], f)
            self.assertFalse(f["isolation_leak"], f)
            self.assertEqual(f["attempts"], 1, f)
        ran = self.sessions()
        self.assertEqual(sorted(ran), sorted(os.path.basename(p)
                                             for p in files))
        # Several files to a session, and more than one session.
        self.assertLess(len(set(ran.values())), len(files), ran)
        self.assertGreater(len(set(ran.values())), 1, ran)
        # Every test exactly once in the merged report, in its own file's
        # suite.
        cases = self.junit_cases(r)
        want = sorted([("tests.test_t%02d" % i, "test_one")
                       for i in range(12)] +
                      [("tests.test_t%02d.TestGroup" % i, "test_two")
                       for i in range(12)])
        self.assertEqual(cases, want, r)
        for suite in r.junit.iter("testsuite"):
            props = {p.get("name"): p.get("value")
                     for p in suite.iter("property")}
            mod = props["shardrun.file"][:-3].replace("/", ".")
            for tc in suite.iter("testcase"):
                self.assertTrue(tc.get("classname").startswith(mod), tc)

    def test_short_files_share_sessions_fork_server(self):
        self.check_all_passed_in_bundles("on")

    def test_short_files_share_sessions_plain_spawn(self):
        self.check_all_passed_in_bundles("off")

    def test_failure_in_a_bundle_is_retried_alone(self):
        files = self.write_tiny(4)
        for rel, src in (("tests/test_a_leaker.py", LEAKER),
                         ("tests/test_b_victim.py", VICTIM),
                         ("tests/test_c_fails.py", FAILS),
                         ("tests/test_d_empty.py", NO_TESTS)):
            self.ws.write(rel, src)
            files.append(rel)
        r = self.run_bundled(files)
        self.assertEqual(r.code, 1, r)
        self.assert_one_result_per_file(r, files)
        victim = r.file("tests/test_b_victim.py")
        self.assertEqual(victim["outcome"], "passed", victim)
        self.assertTrue(victim["isolation_leak"], victim)
        self.assertFalse(victim["bundled"], victim)
        self.assertEqual(victim["attempt_outcomes"], ["failed", "passed"])
        fails = r.file("tests/test_c_fails.py")
        self.assertEqual(fails["outcome"], "failed", fails)
        self.assertFalse(fails["isolation_leak"], fails)
        self.assertEqual(fails["attempt_outcomes"], ["failed", "failed"])
        self.assertEqual(r.file("tests/test_d_empty.py")["outcome"],
                         "passed")
        for rel in files[:4] + ["tests/test_a_leaker.py"]:
            f = r.file(rel)
            self.assertEqual((f["outcome"], f["attempts"], f["bundled"]),
                             ("passed", 1, True), f)
        self.assertIn("ISOLATION LEAK tests/test_b_victim.py", r.out, r)
        # The failure shows once, from the file's own (alone) attempt.
        failures = [tc for tc in r.junit.iter("testcase")
                    if tc.find("failure") is not None]
        self.assertEqual([(tc.get("classname"), tc.get("name"))
                          for tc in failures],
                         [("tests.test_c_fails", "test_fails")], r)

    def test_crashed_bundle_runs_its_files_alone(self):
        r, files = self.run_tiny_and(12, "tests/test_crash.py", CRASHES,
                                     ["--max-restarts", "1"])
        crash = r.file("tests/test_crash.py")
        self.assertEqual(crash["outcome"], "crashed", crash)
        self.assertEqual(crash["signal"], "KILL", crash)
        self.assertEqual(r.json["counts"]["passed"], 12, r.json)
        # In the bundle (no budget used), then alone: once, and once more
        # after the one restart allowed.
        self.assertEqual(crash["attempt_outcomes"], ["crashed"] * 3, crash)
        # The crash's bundle-mates were run again alone.
        again = [f for f in r.json["files"]
                 if f["file"] != "tests/test_crash.py" and
                 f["attempts"] == 2]
        self.assertTrue(again, r.json)
        for f in again:
            self.assertFalse(f["bundled"], f)
            self.assertEqual(f["attempt_outcomes"][1], "passed", f)

    def test_files_a_stopped_session_never_reached_run_alone(self):
        # -x stops the session at the first failure: the files after it
        # have no testcase in the report, and must not pass unrun.
        self.ws.write("pytest.ini", "[pytest]\naddopts = -x\n")
        r, files = self.run_tiny_and(12, "tests/test_a_fails.py", FAILS)
        self.assertEqual(r.file("tests/test_a_fails.py")["outcome"],
                         "failed")
        self.assertEqual(r.json["counts"]["passed"], 12, r.json)
        self.assertEqual(sorted(self.sessions()),
                         sorted(os.path.basename(p) for p in files[:12]))
        unreached = [f for f in r.json["files"]
                     if f["attempt_outcomes"] == ["error", "passed"]]
        self.assertTrue(unreached, r.json)
        for f in unreached:
            self.assertFalse(f["bundled"], f)

    def test_collection_error_in_a_bundle(self):
        # pytest stops a session with a collection error before any test:
        # the bundle says nothing about its files, so each runs alone, and
        # the broken one ends as it would have alone (exit 2: error).
        r, files = self.run_tiny_and(8, "tests/test_broken.py",
                                     BROKEN_IMPORT)
        broken = r.file("tests/test_broken.py")
        self.assertEqual(broken["outcome"], "error", broken)
        self.assertEqual(broken["attempt_outcomes"], ["error", "error"])
        self.assertFalse(broken["bundled"], broken)
        self.assertEqual(r.json["counts"]["passed"], 8, r.json)

    def test_bundles_stay_in_their_directory(self):
        files = self.write_tiny(4, "tests/a") + self.write_tiny(4, "tests/b")
        r = self.run_bundled(files)
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, files)
        a, b = self.sessions("tests/a"), self.sessions("tests/b")
        self.assertFalse(set(a.values()) & set(b.values()), (a, b))
        self.assertTrue(all(f["bundled"] for f in r.json["files"]), r.json)

    def test_long_files_are_not_bundled(self):
        files = self.write_tiny(4)
        hist = {"version": 1, "files": {
            p: {"duration_s": 0.01 if i else 5.0, "runs": 1}
            for i, p in enumerate(files)}}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))
        r = srtest.run(self.ws, ["-n", "2", "--no-history", "--bundle", "1"])
        self.assertEqual(r.code, 0, r)
        self.assertFalse(r.file(files[0])["bundled"])
        self.assertTrue(r.file(files[1])["bundled"])

    def test_generic_profile_refuses_bundle(self):
        self.ws.write("jobs/a.sh", "true\n")
        r = srtest.run(self.ws, ["--profile", "generic", "--cmd",
                                 "/bin/sh {file}", "--bundle", "1", "jobs"])
        self.assertEqual(r.code, 2, r)
        self.assertIn("--bundle needs the pytest profile", r.err)


if __name__ == "__main__":
    srtest.main()
