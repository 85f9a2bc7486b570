"""Local mode end to end: collection, results JSON, JUnit, history, exits."""
import json
import os
import subprocess
import time

import srtest

PASSING = """
def test_one():
    assert True

def test_two():
    assert 2 * 2 == 4
"""

FAILING = """
def test_good():
    pass

def test_bad():
    print("the value was wrong TOKEN")
    assert 1 == 2
"""


class LocalBasic(srtest.TestCase):
    def test_all_pass_json_junit_history(self):
        ws = self.ws
        ws.write("tests/test_a.py", PASSING)
        ws.write("tests/test_b.py", PASSING)
        ws.write("tests/sub/test_c.py", PASSING)
        ws.write("tests/helper.py", "X = 1\n")
        r = srtest.run(ws, ["-n", "2"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(
            r, ["tests/test_a.py", "tests/test_b.py", "tests/sub/test_c.py"])
        for key in ("run_id", "makespan_s", "lower_bound_s", "counts",
                    "files"):
            self.assertIn(key, r.json)
        self.assertEqual(r.json["counts"]["passed"], 3)
        f = r.file("tests/test_a.py")
        for key in ("file", "outcome", "attempts", "duration_s", "start_s",
                    "end_s", "agent", "slot", "exit_code", "signal"):
            self.assertIn(key, f)
        self.assertEqual(f["outcome"], "passed")
        self.assertEqual(f["attempts"], 1)
        self.assertEqual(f["exit_code"], 0)
        self.assertIsNone(f["signal"])
        self.assertGreater(f["end_s"], f["start_s"])
        self.assertGreaterEqual(r.json["makespan_s"] + 1e-6,
                                r.json["lower_bound_s"])
        # Merged JUnit: the six real test cases.
        cases = r.junit.getroot().findall(".//testcase")
        self.assertEqual(len(cases), 6)
        # History written and used next time.
        with open(ws.path(".shardrun/durations.json")) as h:
            hist = json.load(h)
        self.assertIn("tests/test_a.py", hist["files"])
        r2 = srtest.run(ws, ["-n", "2"])
        self.assertEqual(r2.code, 0, r2)

    def test_failure_exit_1_with_tail_and_repro(self):
        ws = self.ws
        ws.write("test_ok.py", PASSING)
        ws.write("test_fails.py", FAILING)
        r = srtest.run(ws, ["-n", "2"])
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.file("test_fails.py")["outcome"], "failed")
        self.assertEqual(r.file("test_fails.py")["exit_code"], 1)
        self.assertEqual(r.file("test_ok.py")["outcome"], "passed")
        self.assertIn("the value was wrong", r.out)
        self.assertIn("-m pytest test_fails.py", r.out)
        self.assertRegex(r.out.strip().splitlines()[-1],
                         r"^1 passed, 1 failed")
        failures = r.junit.getroot().findall(".//failure")
        self.assertEqual(len(failures), 1)

    def test_no_tests_is_an_error(self):
        self.ws.write("README.txt", "nothing\n")
        r = srtest.run(self.ws, [])
        self.assertEqual(r.code, 2, r)
        self.assertIn("no test files", r.err)

    def test_bad_option_is_usage_error(self):
        self.ws.write("test_a.py", PASSING)
        r = srtest.run(self.ws, ["--reruns", "x"])
        self.assertEqual(r.code, 2, r)
        self.assertIn("--reruns", r.err)

    def test_explicit_file_taken_as_is(self):
        self.ws.write("checks/mycheck.py", PASSING)
        r = srtest.run(self.ws, ["checks/mycheck.py"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, ["checks/mycheck.py"])

    def test_collect_pytest_sees_markers_hooks_add(self):
        # --collect pytest asks pytest itself: a marker a conftest hook
        # adds (invisible to reading the files) puts test_b.py in the
        # serial group; every file still ends with one result.
        self.ws.write("conftest.py", """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if "test_b" in item.nodeid:
            item.add_marker(pytest.mark.serial)
""")
        self.ws.write("tests/test_a.py", PASSING)
        self.ws.write("tests/test_b.py", PASSING)
        r = srtest.run(self.ws, ["--collect", "pytest", "--no-history"])
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, ["tests/test_a.py",
                                            "tests/test_b.py"])
        self.assertTrue(r.file("tests/test_b.py")["serial"], r)
        self.assertFalse(r.file("tests/test_a.py")["serial"], r)

    def test_generic_profile(self):
        ws = self.ws
        ws.write("jobs/ok.sh", "exit 0\n")
        ws.write("jobs/bad.sh", "echo broken TOKEN; exit 3\n")
        r = srtest.run(ws, ["--profile", "generic", "--cmd",
                            "sh {file}", "-n", "2", "jobs"])
        self.assertEqual(r.code, 1, r)
        self.assertEqual(r.file("jobs/ok.sh")["outcome"], "passed")
        self.assertEqual(r.file("jobs/bad.sh")["outcome"], "failed")
        self.assertEqual(r.file("jobs/bad.sh")["exit_code"], 3)
        self.assertIn("broken", r.out)

    def test_tests_do_not_see_the_cluster_key(self):
        self.ws.write("test_env.py", """
            import os
            def test_no_secret():
                assert "SHARDRUN_CLUSTER_KEY" not in os.environ
                assert os.environ["SHARDRUN_FILE"] == "test_env.py"
            """)
        r = srtest.run(self.ws, [], env={"SHARDRUN_CLUSTER_KEY": "ab" * 32})
        self.assertEqual(r.code, 0, r)

    def test_a_coordinator_on_port_0_says_the_port_it_got(self):
        """--listen tcp://HOST:0 takes a free port and says which; an
        agent dialing the address it says gets the run's files."""
        ws = self.ws
        ws.write("test_a.py", "def test_a():\n    pass\n")
        ws.write("test_b.py", "def test_b():\n    pass\n")
        key = ws.path(".k/cluster.key")
        os.makedirs(os.path.dirname(key))
        subprocess.run([srtest.SHARDRUN, "keygen", "--cluster-key", key],
                       check=True, capture_output=True)
        log = open(ws.path(".k/coordinator.log"), "w")
        out = ws.path(".k/results.json")
        coord = subprocess.Popen(
            [srtest.SHARDRUN, "run", "--listen", "tcp://127.0.0.1:0",
             "--agents-min", "1", "--wait", "20", "--cluster-key-file",
             key, "--json", out], cwd=ws.root, stdout=subprocess.DEVNULL,
            stderr=log, env=srtest.env_for_tests())
        agent = None
        try:
            url = srtest.bound_url(log.name, coord)
            self.assertNotEqual(url, "tcp://127.0.0.1:0")
            agent = subprocess.Popen(
                [srtest.SHARDRUN_AGENT, "--connect", url, "--workspace",
                 ws.root, "--cluster-key-file", key],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=srtest.env_for_tests())
            self.assertEqual(coord.wait(timeout=60), 0)
            self.assertEqual(agent.wait(timeout=20), 0)
        finally:
            for p in (coord, agent):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
            log.close()
        with open(out) as f:
            files = json.load(f)["files"]
        self.assertEqual(sorted((f["file"], f["outcome"]) for f in files),
                         [("test_a.py", "passed"), ("test_b.py", "passed")])

    def test_an_agent_on_any_address_without_a_port(self):
        """--listen with a wildcard host and no port: the agent says a
        loopback address with the port it got, and a run dialing it
        passes."""
        self.ws.write("test_a.py", "def test_a():\n    pass\n")
        with srtest.Agent(self.ws, listen="tcp://0.0.0.0") as agent:
            self.assertRegex(agent.url, r"^tcp://127\.0\.0\.1:[1-9]\d*$")
            r = srtest.run(self.ws, ["test_a.py"] + agent.run_args())
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.file("test_a.py")["outcome"], "passed")

    def test_plan_is_deterministic_lpt(self):
        ws = self.ws
        for i in range(6):
            ws.write("test_%d.py" % i, PASSING)
        hist = {"version": 1, "files": {
            "test_%d.py" % i: {"duration_s": float(i + 1), "runs": 1}
            for i in range(6)}}
        ws.write(".shardrun/durations.json", json.dumps(hist))
        outs = []
        for _ in range(2):
            p = subprocess.run([srtest.SHARDRUN, "plan", "--shards", "2"],
                               cwd=ws.root, capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            outs.append(p.stdout)
        self.assertEqual(outs[0], outs[1])
        plan = json.loads(outs[0])
        loads = sorted(s["estimate_s"] for s in plan["shards"])
        self.assertEqual(loads, [10.0, 11.0])  # LPT: {6,3,2} / {5,4,1}
        self.assertEqual(plan["shards"][0]["files"][0], "test_5.py")


if __name__ == "__main__":
    srtest.main()
