"""A fleet agent prepares its checkout for a run at another commit
(--prepare with {commit} and {workspace}, no shell), and without it refuses
the run; either way no file runs against the wrong code."""
import os
import subprocess
import time

import srtest


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t"] +
                   list(args), cwd=cwd, check=True, capture_output=True)


class FleetPrepare(srtest.TestCase):
    def setUp(self):
        super().setUp()
        self.procs = []
        ws = self.ws
        ws.write("repo/tests/test_a.py", "def test_a():\n    assert 1\n")
        self.repo = ws.path("repo")
        git(self.repo, "init", "-q")
        git(self.repo, "add", ".")
        git(self.repo, "commit", "-q", "-m", "one")
        self.agent_ws = ws.path("agent-checkout")
        git(ws.root, "clone", "-q", self.repo, self.agent_ws)
        # The coordinator's checkout moves on: a new test file.
        ws.write("repo/tests/test_b.py", "def test_b():\n    assert 2\n")
        git(self.repo, "add", ".")
        git(self.repo, "commit", "-q", "-m", "two")
        self.key = ws.path("k.key")
        subprocess.run([srtest.SHARDRUN, "keygen", "--cluster-key",
                        self.key], check=True, capture_output=True)
        self.url = None  # once the fleet agent listens

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if getattr(self, "log", None) is not None:
            self.log.close()
        super().tearDown()

    def fleet(self, prepare, extra=()):
        cmd = [srtest.SHARDRUN_AGENT, "--listen",
               "tcp://127.0.0.1:0", "--workspace", self.agent_ws,
               "--slots", "2", "--cluster-key-file", self.key, "-v"]
        cmd += list(extra)
        for p in prepare:
            cmd += ["--prepare", p]
        self.log = open(self.ws.path("fleet.log"), "w")
        p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                             env=srtest.env_for_tests())
        self.procs.append(p)
        self.url = srtest.bound_url(self.log.name, p)
        return p

    def run_once(self):
        return subprocess.run(
            [srtest.SHARDRUN, "run", "tests", "--agent", self.url,
             "--cluster-key-file", self.key, "--wait", "5",
             "--no-history"], cwd=self.repo,
            capture_output=True, text=True, env=srtest.env_for_tests(),
            timeout=60)

    def test_prepare_checks_out_the_runs_commit(self):
        self.fleet(["git -C {workspace} fetch -q origin",
                    "git -C {workspace} checkout -q {commit}"])
        r = self.run_once()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 passed", r.stdout)
        self.assertTrue(os.path.exists(
            os.path.join(self.agent_ws, "tests", "test_b.py")))

    def test_without_prepare_a_stale_checkout_refuses(self):
        fleet = self.fleet([])
        r = self.run_once()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("another commit", r.stderr)
        # A refusal is the run's failure, not the fleet agent's: it keeps
        # serving and stops cleanly.
        self.assertIsNone(fleet.poll())
        fleet.terminate()
        self.assertEqual(fleet.wait(timeout=10), 0)

    def test_failing_prepare_refuses_with_its_output(self):
        self.fleet(["git -C {workspace} checkout -q no-such-ref-{commit}"])
        r = self.run_once()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("prepare command failed", r.stderr)

    def test_hanging_prepare_is_killed_and_refuses(self):
        fleet = self.fleet(["sleep 37.25"], ["--prepare-timeout", "1"])
        t0 = time.monotonic()
        r = self.run_once()
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("prepare command timed out", r.stderr)
        self.assertLess(time.monotonic() - t0, 20)
        self.assertEqual(sleepers("37.25"), [])
        # The fleet agent goes on serving.
        self.assertIsNone(fleet.poll())

    def test_prepare_timeout_must_be_seconds(self):
        r = subprocess.run([srtest.SHARDRUN_AGENT, "--prepare-timeout", "0",
                            "--listen", "tcp://127.0.0.1:1", "--workspace",
                            self.agent_ws, "--cluster-key-file", self.key],
                           capture_output=True, text=True, timeout=30,
                           env=srtest.env_for_tests())
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("--prepare-timeout", r.stderr)


def sleepers(arg):
    """pids of live `sleep ARG` processes."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", arg.encode()] or \
                argv[1:2] == [arg.encode()] and argv[0].endswith(b"/sleep"):
            found.append(int(pid))
    return found


if __name__ == "__main__":
    srtest.main()
