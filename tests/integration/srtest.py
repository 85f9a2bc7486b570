"""Helpers for shardrun's integration tests.

Each test builds a throwaway workspace with real pytest files, runs the real
`shardrun` binary on it, and checks what came out: the exit status, the
results JSON, the JUnit XML, and that no process it started survives.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import unittest
import uuid
import xml.etree.ElementTree as ET

SHARDRUN = os.environ.get("SHARDRUN", "shardrun")
SHARDRUN_AGENT = os.environ.get("SHARDRUN_AGENT", "shardrun-agent")
PYTHON = "/usr/bin/python3"


class Workspace:
    """A temporary workspace; files are written relative to its root."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="shardrun-it-")
        self.token = "srtok" + uuid.uuid4().hex[:12]

    def write(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).replace("TOKEN", self.token))
        return path

    def path(self, rel):
        return os.path.join(self.root, rel)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def survivors(self):
        """Processes whose command line carries this workspace's token."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.token in cmd and int(pid) != os.getpid():
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if state != "Z":
                    found.append((int(pid), cmd))
        return found

    def wait_no_survivors(self, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.survivors():
                return []
            time.sleep(0.1)
        return self.survivors()


class Run:
    def __init__(self, proc, out, err, ws, json_path, junit_path):
        self.code = proc.returncode
        self.out = out
        self.err = err
        self.ws = ws
        self.json = None
        self.junit = None
        if json_path and os.path.exists(json_path):
            with open(json_path) as f:
                self.json = json.load(f)
        if junit_path and os.path.exists(junit_path):
            self.junit = ET.parse(junit_path)

    def file(self, rel):
        for f in self.json["files"]:
            if f["file"] == rel:
                return f
        raise KeyError(rel)

    def __repr__(self):
        return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (
            self.code, self.out, self.err)


# Code for a test job (it imports os): others_daemons(me), the command
# lines of live processes that carry TOKEN-daemon and not the name me.
OTHERS_DAEMONS = """
def others_daemons(me):
    seen = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if "TOKEN-daemon" in cmd and me not in cmd:
            seen.append(cmd)
    return seen
"""


def env_for_tests(extra=None):
    env = dict(os.environ)
    env["SHARDRUN_PYTHON"] = PYTHON
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("NO_COLOR", None)
    if extra:
        env.update(extra)
    return env


def run(ws, args, timeout=120, env=None, json_out=True, junit_out=True):
    """Run `shardrun run ARGS` in the workspace and collect its outputs."""
    jp = ws.path(".out/results.json") if json_out else None
    xp = ws.path(".out/junit.xml") if junit_out else None
    os.makedirs(ws.path(".out"), exist_ok=True)
    cmd = [SHARDRUN, "run"] + list(args)
    if jp:
        cmd += ["--json", jp]
    if xp:
        cmd += ["--junit-xml", xp]
    proc = subprocess.Popen(cmd, cwd=ws.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=env_for_tests(env))
    out, err = proc.communicate(timeout=timeout)
    return Run(proc, out, err, ws, jp, xp)


def bound_url(log, proc, timeout=10.0):
    """The address a program told to listen on port 0 says it got, read
    from its log ("... listening on tcp://127.0.0.1:PORT")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log) as f:
            m = re.search(r"listening on (tcp://\S+)", f.read())
        if m:
            return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise AssertionError("%s never said where it listens" % log)


class Agent:
    """A shardrun-agent serving the workspace from a loopback port
    (--listen), with a cluster key of its own; a context manager that stops
    it. `run_args()` are the `shardrun run` arguments that use it."""

    def __init__(self, ws, extra=(), listen="tcp://127.0.0.1:0"):
        self.ws = ws
        self.extra = list(extra)
        self.listen = listen
        self.key = ws.path(".agent/cluster.key")
        self.proc = None
        self.log = None
        self.url = None  # once it listens

    def __enter__(self):
        os.makedirs(os.path.dirname(self.key), exist_ok=True)
        subprocess.run([SHARDRUN, "keygen", "--cluster-key", self.key],
                       check=True, capture_output=True)
        self.log = open(self.ws.path(".agent/agent.log"), "w")
        self.proc = subprocess.Popen(
            [SHARDRUN_AGENT, "--listen", self.listen, "--workspace",
             self.ws.root, "--cluster-key-file", self.key, "-v"] +
            self.extra, stdout=self.log, stderr=subprocess.STDOUT,
            env=env_for_tests())
        try:
            self.url = bound_url(self.log.name, self.proc)
        except BaseException:
            self.__exit__()  # not entered: the with block would not stop it
            raise
        return self

    def run_args(self):
        return ["--agent", self.url, "--cluster-key-file", self.key,
                "--wait", "10"]

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class TestCase(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()

    def tearDown(self):
        left = self.ws.wait_no_survivors(2.0)
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.ws.cleanup()
        self.assertEqual(left, [], "processes survived the run")

    def assert_one_result_per_file(self, r, files):
        got = sorted(f["file"] for f in r.json["files"])
        self.assertEqual(got, sorted(files), r)
        for f in r.json["files"]:
            self.assertIn(f["outcome"], ("passed", "failed", "flaky",
                                         "crashed", "timeout", "error"), f)


def main():
    unittest.main(verbosity=2)
