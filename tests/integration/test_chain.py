"""A slot's next files start without the agent (agent/slot.h): the spawner
starts each chained file the moment the one before it ends, and holds the
chain while a file is to be retried. In both containment modes."""
import json
import os
import signal
import subprocess
import time

import srtest

# A generic job: journals its start and end, says its name, sleeps.
JOB = """\
name=$(basename "$0" .sh)
echo "$name start" >> journal
touch "$name.started"
sleep %(sleep)s
echo "I am $name"
echo "$name end" >> journal
exit %(code)s
"""

# Exits 4 (transient here) on its first run, then passes.
FIRST_TRANSIENT = """\
echo "t0 start" >> journal
if [ ! -e t0.ran ]; then touch t0.ran; echo "t0 end 4" >> journal; exit 4; fi
sleep 0.2
echo "I am t0"
echo "t0 end 0" >> journal
exit 0
"""

MODES = (("pidns", {}), ("pgroup", {"SHARDRUN_NO_PIDNS": "1"}))


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


class Chain(srtest.TestCase):
    def jobs(self, n, sleep):
        names = []
        for i in range(n):
            name = "jobs/j%d.sh" % i
            self.ws.write(name, JOB % {"sleep": sleep, "code": i % 2})
            names.append(name)
        return names

    def history(self, est):
        self.ws.write(".shardrun/durations.json", json.dumps(
            {"version": 1, "files": {
                n: {"duration_s": d, "runs": 3} for n, d in est.items()}}))

    def fresh_ws(self):
        self.ws.cleanup()
        self.ws = srtest.Workspace()

    def started(self):
        return sorted(n for n in os.listdir(self.ws.root)
                      if n.endswith(".started"))

    def assert_tails(self, r, names):
        """Each failed job's output is its own."""
        for n in names:
            f = r.file(n)
            base = os.path.basename(n)[:-3]
            if f["outcome"] == "failed":
                self.assertRegex(r.out, r"FAILED %s: .*\n.*\n +I am %s\n"
                                 % (n, base))

    def test_queued_files_start_while_the_agent_is_stopped(self):
        for mode, env in MODES:
            with self.subTest(mode=mode):
                self.fresh_ws()
                names = self.jobs(8, 0.4)
                self.history({n: 0.01 for n in names})
                out = self.ws.path("results.json")
                p = subprocess.Popen(
                    [srtest.SHARDRUN, "run", "-n", "1", "--profile",
                     "generic", "--cmd", "sh {file}", "--json", out,
                     "jobs"], cwd=self.ws.root, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True,
                    env=srtest.env_for_tests(env))
                try:
                    self.assertTrue(wait_for(lambda: self.started(), 20))
                    time.sleep(0.2)  # the agent chains the next two
                    os.kill(p.pid, signal.SIGSTOP)
                    first = self.started()
                    self.assertEqual(len(first), 1, first)
                    # The first ends, then each chained one in turn.
                    self.assertTrue(wait_for(
                        lambda: len(self.started()) == 3, 10),
                        self.started())
                    time.sleep(1.0)  # and nothing else starts
                    self.assertEqual(len(self.started()), 3)
                finally:
                    os.kill(p.pid, signal.SIGCONT)
                o, e = p.communicate(timeout=60)
                with open(out) as f:
                    res = json.load(f)
                self.assertEqual(p.returncode, 1, e)
                self.assertEqual(sorted(f["file"] for f in res["files"]),
                                 sorted(names))
                for f in res["files"]:
                    code = int(f["file"][6:-3]) % 2
                    self.assertEqual(f["exit_code"], code, f)
                    self.assertEqual(f["attempts"], 1, f)
                    self.assertEqual(f["tries"], 1, f)
                r = srtest.Run(p, o, e, self.ws, out, None)
                self.assert_tails(r, names)

    def test_a_transient_exit_holds_the_chain(self):
        for mode, env in MODES:
            with self.subTest(mode=mode):
                self.fresh_ws()
                names = self.jobs(6, 0.05)
                self.ws.write("jobs/a0.sh", FIRST_TRANSIENT)
                est = {n: 0.01 for n in names}
                est["jobs/a0.sh"] = 0.04  # runs first
                self.history(est)
                r = srtest.run(self.ws, [
                    "-n", "1", "--profile", "generic", "--cmd",
                    "sh {file}", "--exit-codes",
                    "0=passed,4=transient,*=failed", "jobs"], env=env,
                    junit_out=False)
                self.assertEqual(r.code, 1, r)
                with open(self.ws.path("journal")) as f:
                    journal = f.read().split("\n")
                # The retry comes before any other file.
                self.assertEqual(journal[:4], [
                    "t0 start", "t0 end 4", "t0 start", "t0 end 0"],
                    journal)
                f = r.file("jobs/a0.sh")
                self.assertEqual((f["outcome"], f["tries"]), ("passed", 2))
                self.assert_one_result_per_file(r, names + ["jobs/a0.sh"])
                self.assert_tails(r, names)

    def test_results_travel_several_to_a_message(self):
        # While every slot has a unit queued behind its running one, the
        # agent holds Results in its outbox for a moment (hold_results), so
        # one message carries several. Measured here: ~45 messages for 300
        # files of /bin/true on two slots; ~240 without the hold.
        n = 300
        names = ["files/f%03d" % i for i in range(n)]
        for name in names:
            self.ws.write(name, "")
        self.history({name: 0.001 for name in names})
        r = srtest.run(self.ws, [
            "-n", "2", "--profile", "generic", "--cmd", "/bin/true {file}",
            "files"], junit_out=False)
        self.assertEqual(r.code, 0, r)
        self.assert_one_result_per_file(r, names)
        self.assertEqual(r.json["counts"]["passed"], n)
        msgs = r.json["messages"]
        self.assertGreater(msgs["received"], 0, msgs)
        self.assertLess(msgs["received"], n // 2, msgs)


if __name__ == "__main__":
    srtest.main()
