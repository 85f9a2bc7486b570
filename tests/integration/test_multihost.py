"""Coordinator and agents on separate hosts (network namespaces): a real
distributed run, an agent killed with SIGKILL, an agent partitioned away,
a wrong key, a stale workspace, a dead coordinator, and a fleet agent
serving two runs at once. Every run checks the invariant: every file has
exactly one final result, and none ran to completion twice.
"""
import collections
import json
import os
import shutil
import signal
import subprocess
import time
import unittest

import netns
import srtest

# Each test file sleeps, then appends "file agent" to a completion log.
BODY = """
import os, time

def test_work():
    time.sleep({sleep})
    with open(os.environ["SR_DONE_LOG"], "a") as f:
        f.write("%s %s\\n" % (os.path.basename(__file__),
                              os.environ.get("SR_AGENT_NAME", "?")))
"""

# Stalls on the agent that ran its first attempt (a stuck mount there),
# passes at once anywhere else.
STALLS_ON_ITS_AGENT = """
import os, time

def test_stall():
    mark = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        ".first-agent")
    me = os.environ["SR_AGENT_NAME"]
    try:
        fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, me.encode())
        os.close(fd)
    except FileExistsError:
        pass
    with open(mark) as f:
        if f.read() == me:
            time.sleep(30)
"""

# Says it started (in the completion log), then runs until the stalling
# file has started (20 s at most).
UNTIL_THE_STALL = """
import os, time

def test_long():
    with open(os.environ["SR_DONE_LOG"], "a") as f:
        f.write("test_05.py started\\n")
    mark = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        ".first-agent")
    deadline = time.monotonic() + 20
    while not os.path.exists(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
"""

PORT = 7411


@unittest.skipUnless(netns.available(), "needs root and ip netns")
class MultiHost(srtest.TestCase):
    def setUp(self):
        super().setUp()
        self.hosts = netns.Hosts(3)
        self.procs = []
        self.logs = []
        self.key = self.ws.path("cluster.key")
        subprocess.run([srtest.SHARDRUN, "keygen", "--cluster-key", self.key],
                       check=True, capture_output=True)
        self.done_log = self.ws.path("done.log")
        open(self.done_log, "w").close()

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.hosts.close()
        for log in self.logs:
            log.close()
        super().tearDown()

    def suite(self, n, sleep, known=False):
        """n files that sleep; known: their durations in the history."""
        for i in range(n):
            self.ws.write("tests/test_%02d.py" % i, BODY.format(sleep=sleep))
        if known:
            self.ws.write(".shardrun/durations.json", json.dumps({
                "version": 1, "files": {
                    "tests/test_%02d.py" % i: {"duration_s": sleep,
                                               "runs": 1}
                    for i in range(n)}}))

    def env(self, name):
        return srtest.env_for_tests({"SR_DONE_LOG": self.done_log,
                                     "SR_AGENT_NAME": name})

    def agent(self, i, key=None, workspace=None, extra=()):
        name = "a%d" % i
        log = open(self.ws.path("agent%d.log" % i), "w")
        self.logs.append(log)
        p = self.hosts.popen(
            self.hosts.agent(i),
            [srtest.SHARDRUN_AGENT, "--connect",
             "tcp://%s:%d" % (self.hosts.addr(i), PORT),
             "--workspace", workspace or self.ws.root, "--slots", "2",
             "--name", name, "--lost", "6", "-v"] +
            ([] if "--keys" in extra else
             ["--cluster-key-file", key or self.key]) + list(extra),
            stdout=log, stderr=subprocess.STDOUT, env=self.env(name))
        self.procs.append(p)
        return p

    def coordinator(self, agents_min=3, extra=()):
        os.makedirs(self.ws.path(".out"), exist_ok=True)
        cmd = [srtest.SHARDRUN, "run", "tests",
               "--listen", "tcp://0.0.0.0:%d" % PORT,
               "--agents-min", str(agents_min), "--wait", "30",
               "--heartbeat", "0.5",
               "--lease", "4", "--json", self.ws.path(".out/results.json"),
               "--no-history"] + list(extra)
        if "--keys" not in extra:
            cmd += ["--cluster-key-file", self.key]
        p = self.hosts.popen(self.hosts.coord, cmd, cwd=self.ws.root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=self.env("coordinator"))
        self.procs.append(p)
        return p

    def finish(self, p, timeout=120):
        out, err = p.communicate(timeout=timeout)
        res = None
        if os.path.exists(self.ws.path(".out/results.json")):
            with open(self.ws.path(".out/results.json")) as f:
                res = json.load(f)
        return p.returncode, out, err, res

    def completions(self):
        with open(self.done_log) as f:
            return collections.Counter(line.split()[0] for line in f)

    def check_invariant(self, res, n, lost_agents=()):
        files = [f["file"] for f in res["files"]]
        self.assertEqual(sorted(files),
                         ["tests/test_%02d.py" % i for i in range(n)])
        self.assertEqual(len(set(files)), n)
        done = self.completions()
        for f in res["files"]:
            name = os.path.basename(f["file"])
            self.assertEqual(f["outcome"], "passed", f)
            # A file interrupted on a lost agent may have finished its test
            # body there just before the loss; nowhere else may it finish
            # twice.
            limit = 2 if f["attempts"] > 1 or lost_agents else 1
            self.assertGreaterEqual(done[name], 1, name)
            self.assertLessEqual(done[name], limit, name)

    def test_three_agents_share_a_suite(self):
        self.suite(24, 0.3)
        c = self.coordinator()
        for i in (1, 2, 3):
            self.agent(i)
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)
        self.check_invariant(res, 24)
        self.assertEqual({f["agent"] for f in res["files"]},
                         {"a1", "a2", "a3"})
        self.assertEqual(sum(self.completions().values()), 24)
        for p in self.procs[1:]:
            self.assertEqual(p.wait(timeout=15), 0)

    def kill_a2_mid_run(self, n, extra=()):
        """Three agents; a2 is killed by SIGKILL once work is flowing. The
        run must still end well, every file with one result."""
        c = self.coordinator(extra=extra)
        agents = [self.agent(i) for i in (1, 2, 3)]
        self.wait_for_completions(3)
        agents[1].send_signal(signal.SIGKILL)
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)
        self.assertIn("agent a2 lost", err)
        self.check_invariant(res, n, lost_agents=("a2",))
        return res

    def test_agent_killed_mid_run_loses_nothing(self):
        self.suite(24, 1.0)
        self.kill_a2_mid_run(24)

    def test_agent_killed_mid_bundle_charges_no_file(self):
        # Bundles of short files; the agent that dies was running some.
        # Which file was to blame is unknown, so none is charged: with no
        # restart allowed, a charged file would end "crashed".
        self.suite(48, 0.25, known=True)
        res = self.kill_a2_mid_run(48, ["--bundle", "1", "--max-restarts",
                                        "0"])
        self.assertTrue(any(f["bundled"] for f in res["files"]), res)

    def test_agent_killed_mid_run_charges_only_what_ran(self):
        # Files of 0.25 s: each slot holds one queued behind its running
        # one. A lost agent counts a restart against what each of its
        # slots ran, not against what waited behind: with no restart
        # allowed, at most two files (a2's two slots) end "crashed", each
        # one a2 ran; the files queued there run elsewhere and pass.
        self.suite(48, 0.25, known=True)
        c = self.coordinator(extra=["--max-restarts", "0"])
        agents = [self.agent(i) for i in (1, 2, 3)]
        self.wait_for_completions(3)
        agents[1].send_signal(signal.SIGKILL)
        code, out, err, res = self.finish(c)
        self.assertIn("agent a2 lost", err)
        self.assertEqual(len(res["files"]), 48)
        crashed = [f for f in res["files"] if f["outcome"] != "passed"]
        self.assertIn(len(crashed), (1, 2), crashed)
        for f in crashed:
            self.assertEqual((f["outcome"], f["agent"]), ("crashed", "a2"))
        self.assertEqual(len({f["slot"] for f in crashed}), len(crashed),
                         crashed)
        self.assertEqual(code, 1 if crashed else 0, err)

    def test_backup_attempt_goes_to_another_agent(self):
        # What stalls an attempt is often its machine: when its own agent
        # and another one both have an idle slot, the backup goes to the
        # other. a2 (one slot) joins first and runs a file that lasts until
        # a1, joining next (first in the coordinator's list of agents), has
        # started the stalling one. When that is late, both have idle
        # slots.
        self.suite(4, 0.2)
        self.ws.write("tests/test_04.py", STALLS_ON_ITS_AGENT)
        self.ws.write("tests/test_05.py", UNTIL_THE_STALL)
        hist = {"version": 1, "files": {
            "tests/test_%02d.py" % i: {"duration_s": d, "runs": 3}
            for i, d in enumerate([1.0] * 4 + [2.5, 10.0])}}
        self.ws.write(".shardrun/durations.json", json.dumps(hist))
        t0 = time.monotonic()
        c = self.coordinator(agents_min=1, extra=["--speculate", "on"])
        self.agent(2, extra=["--slots", "1"])
        self.wait_for_completions(1)  # test_05 started on a2
        self.agent(1)
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)
        self.assertLess(time.monotonic() - t0, 25, err)
        with open(self.ws.path("tests/.first-agent")) as f:
            self.assertEqual(f.read(), "a1")
        files = {f["file"]: f for f in res["files"]}
        self.assertEqual(len(files), 6, res)
        self.assertEqual(files["tests/test_05.py"]["agent"], "a2", res)
        stalled = files["tests/test_04.py"]
        self.assertEqual(stalled["outcome"], "passed", res)
        self.assertEqual(stalled["agent"], "a2", res)
        self.assertEqual((res["backups"], res["backup_wins"]), (1, 1), res)

    def test_partitioned_agent_loses_nothing(self):
        self.suite(24, 1.0)
        c = self.coordinator()
        agents = [self.agent(i) for i in (1, 2, 3)]
        self.wait_for_completions(3)
        self.hosts.cut(2)
        t_cut = time.time()
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)
        self.assertIn("agent a2 lost (silent", err)
        self.check_invariant(res, 24, lost_agents=("a2",))
        # The cut-off agent gives up on its own and kills its work.
        self.assertNotEqual(agents[1].wait(timeout=30), 0)
        self.assertLess(time.time() - t_cut, 40)

    def test_node_keys_with_authorized_lists(self):
        self.suite(6, 0.1)
        lines = {}
        for who in ("coord", "a1", "stranger"):
            p = subprocess.run([srtest.SHARDRUN, "keygen", "--node",
                                self.ws.path("keys/" + who)],
                               capture_output=True, text=True, check=True)
            lines[who] = p.stdout.strip()
        self.ws.write("coord_authorized", lines["a1"] + "\n")
        self.ws.write("agent_authorized", lines["coord"] + "\n")
        c = self.coordinator(agents_min=1, extra=[
            "--keys", self.ws.path("keys/coord"), "--authorized-keys",
            self.ws.path("coord_authorized")])
        # A node key nobody listed is refused, and the agent gives up.
        stranger = self.agent(2, extra=[
            "--keys", self.ws.path("keys/stranger"), "--authorized-keys",
            self.ws.path("agent_authorized")])
        self.assertEqual(stranger.wait(timeout=20), 2)
        self.agent(1, extra=[
            "--keys", self.ws.path("keys/a1"), "--authorized-keys",
            self.ws.path("agent_authorized")])
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)
        self.assertIn("is not in the authorized keys", err)
        self.assertEqual({f["agent"] for f in res["files"]}, {"a1"})
        self.check_invariant(res, 6)

    def test_wrong_key_is_refused_and_logged(self):
        self.suite(4, 0.1)
        bad = self.ws.path("other.key")
        subprocess.run([srtest.SHARDRUN, "keygen", "--cluster-key", bad],
                       check=True, capture_output=True)
        c = self.coordinator(agents_min=1)
        intruder = self.agent(2, key=bad)
        self.assertEqual(intruder.wait(timeout=20), 2)
        self.agent(1)
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)
        self.assertIn("handshake", err)
        self.assertIn("refused", err)
        self.assertEqual({f["agent"] for f in res["files"]}, {"a1"})
        with open(self.ws.path("agent2.log")) as f:
            self.assertIn("credentials", f.read())

    def test_other_kind_of_key_gives_up_instead_of_redialling(self):
        # The coordinator has a cluster key, the agent node keys: the
        # coordinator cannot read the agent's hello and hangs up each time.
        self.suite(2, 0.1)
        subprocess.run([srtest.SHARDRUN, "keygen", "--node",
                        self.ws.path("keys/odd")], check=True,
                       capture_output=True)
        self.ws.write("odd_authorized", "")
        c = self.coordinator(agents_min=1, extra=["--wait", "20"])
        odd = self.agent(2, extra=[
            "--keys", self.ws.path("keys/odd"), "--authorized-keys",
            self.ws.path("odd_authorized")])
        self.assertEqual(odd.wait(timeout=20), 2)
        with open(self.ws.path("agent2.log")) as f:
            self.assertIn("credentials", f.read())
        self.agent(1)
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)

    def test_workspace_mismatch_is_refused(self):
        self.suite(4, 0.1)
        stale = self.ws.path("stale")
        shutil.copytree(self.ws.path("tests"), os.path.join(stale, "tests"))
        with open(os.path.join(stale, "tests/test_02.py"), "a") as f:
            f.write("# changed\n")
        c = self.coordinator(agents_min=1, extra=["--wait", "5"])
        bad = self.agent(2, workspace=stale)
        self.assertEqual(bad.wait(timeout=20), 2)
        with open(self.ws.path("agent2.log")) as f:
            self.assertIn("tests/test_02.py", f.read())
        self.agent(1)
        code, out, err, res = self.finish(c)
        self.assertEqual(code, 0, err)
        self.assertIn("tests/test_02.py", err)
        self.check_invariant(res, 4)

    def test_dead_coordinator_leaves_no_orphans(self):
        self.ws.write("tests/test_hang.py", """
            import subprocess, sys, time
            def test_hang():
                subprocess.Popen([sys.executable, "-c",
                                  "import time; time.sleep(600)", "TOKEN"],
                                 start_new_session=True)
                time.sleep(600)
            """)
        c = self.coordinator(agents_min=1)
        a = self.agent(1)
        deadline = time.time() + 20
        while not self.ws.survivors() and time.time() < deadline:
            time.sleep(0.1)
        self.assertTrue(self.ws.survivors(), "the test never started")
        c.kill()
        c.wait()
        # The CI agent notices (lease), kills its work and exits.
        self.assertNotEqual(a.wait(timeout=30), 0)
        self.assertEqual(self.ws.wait_no_survivors(5.0), [])

    def test_fleet_agent_serves_two_runs_at_once(self):
        self.suite(6, 0.8)
        log = open(self.ws.path("fleet.log"), "w")
        self.logs.append(log)
        fleet = self.hosts.popen(
            self.hosts.agent(1),
            [srtest.SHARDRUN_AGENT, "--listen",
             "tcp://0.0.0.0:%d" % PORT, "--workspace", self.ws.root,
             "--slots", "4", "--name", "fleet", "--cluster-key-file",
             self.key, "-v"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env("fleet"))
        self.procs.append(fleet)
        url = "tcp://%s:%d" % (self.hosts.agent_addr(1), PORT)
        runs = []
        for k in range(2):
            jp = self.ws.path(".out/run%d.json" % k)
            os.makedirs(self.ws.path(".out"), exist_ok=True)
            runs.append((self.hosts.popen(
                self.hosts.coord,
                [srtest.SHARDRUN, "run", "tests", "--agent", url,
                 "--cluster-key-file", self.key, "--json", jp,
                 "--no-history"],
                cwd=self.ws.root, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
                env=self.env("coordinator")), jp))
        spans = []
        for p, jp in runs:
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
            with open(jp) as f:
                res = json.load(f)
            self.assertEqual(len(res["files"]), 6)
            self.assertEqual({f["agent"] for f in res["files"]}, {"fleet"})
            spans.append((min(f["start_s"] for f in res["files"]),
                          res["makespan_s"]))
        # The fleet agent is still up, ready for the next run.
        self.assertIsNone(fleet.poll())
        self.assertEqual(sum(self.completions().values()), 12)

    def wait_for_completions(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if sum(self.completions().values()) >= n:
                return
            time.sleep(0.05)
        self.fail("the run did not start")


if __name__ == "__main__":
    srtest.main()
