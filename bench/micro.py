#!/usr/bin/python3
"""shardrun's micro benchmarks, side by side in one run:

  overhead  files per second through the real protocol (authenticated,
            sealed) with /bin/true as the command, against the raw
            posix_spawn rate on the same number of lanes, measured in the
            same run (bench/spawnrate.c); on one lane and on two; local
            mode and one agent over loopback TCP; with PID namespaces and
            with process groups
  plan      planning time and peak memory for 1,000,000 files
            (bench/planbench.c)
  agents    one coordinator with 200 simulated agents connected over
            loopback TCP, all heartbeating: the coordinator's CPU over 10 s
            (bench/simagents.c)

  micro.py [--quick] [--repeat N] [--build DIR] [--against DIR]
           [--markdown FILE]

--quick runs small sizes only, to check that everything works (CI).
--repeat N takes the median of N interleaved runs per overhead row (3).
--against DIR also runs another build's binaries (another revision, built
in DIR) in the overhead rows, interleaved with this one's, and gives its
ratio beside.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep bench/ free of __pycache__
from run import bound_url  # noqa: E402


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True,
                          **kw)


def coordinator(argv, work, env=None):
    """Start `shardrun run ARGV --listen tcp://127.0.0.1:0` in work; the
    process and the address it says it listens on."""
    log = os.path.join(work, "coordinator.log")
    with open(log, "wb") as f:
        c = subprocess.Popen(argv + ["--listen", "tcp://127.0.0.1:0"],
                             cwd=work, env=env, stdout=subprocess.DEVNULL,
                             stderr=f)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and c.poll() is None:
        url = bound_url(log)
        if url is not None:
            return c, url
        time.sleep(0.005)
    c.kill()
    c.wait()
    raise RuntimeError("the coordinator never said where it listens")


def spawn_rate(build, lanes, count, work):
    # The same command line as shardrun runs ("/bin/true {file}"): with an
    # argument /bin/true sets up its locale, ~30% of its cost here.
    out = sh([os.path.join(build, "bench", "sr-spawnrate"), "-n", str(lanes),
              "-c", str(count), "/bin/true", "files/f00000"],
             cwd=work).stdout
    return json.loads(out)["rate"]


def shardrun_rate(build, work, lanes, count, pidns, agent):
    env = dict(os.environ)
    env.pop("SHARDRUN_NO_PIDNS", None)
    if not pidns:
        env["SHARDRUN_NO_PIDNS"] = "1"
    hist = os.path.join(work, "hist.json")
    common = ["--profile", "generic", "--cmd", "/bin/true {file}",
              "--history", hist, "--no-history", "files"]
    sr = os.path.join(build, "shardrun")
    if not agent:
        cmd = [sr, "run", "-n", str(lanes)] + common
        t0 = time.monotonic()
        sh(cmd, cwd=work, env=env)
        return count / (time.monotonic() - t0)
    key = os.path.join(work, "k.key")
    if not os.path.exists(key):
        sh([sr, "keygen", "--cluster-key", key])
    t0 = time.monotonic()
    c, url = coordinator([sr, "run", "--agents-min", "1",
                          "--cluster-key-file", key] + common, work, env)
    a = subprocess.Popen([os.path.join(build, "shardrun-agent"), "--connect",
                          url, "--workspace", work, "--slots", str(lanes),
                          "--cluster-key-file", key, "--profile", "generic",
                          "--cmd", "/bin/true {file}"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if c.wait(timeout=600) != 0:
        raise RuntimeError("coordinator failed")
    a.wait(timeout=60)
    return count / (time.monotonic() - t0)


def overhead(build, quick, repeat=3, against=None):
    count, reps = (300, 1) if quick else (3000, repeat)
    work = tempfile.mkdtemp(prefix="sr-micro-")
    try:
        os.makedirs(os.path.join(work, "files"))
        for i in range(count):
            open(os.path.join(work, "files", "f%05d" % i), "w").close()
        # Exact history: every file is known to be short (it is).
        hist = {"version": 1, "files": {"files/f%05d" % i:
                                        {"duration_s": 0.001, "runs": 1}
                                        for i in range(count)}}
        with open(os.path.join(work, "hist.json"), "w") as f:
            json.dump(hist, f)
        rows = []
        for lanes in (1, 2):
            for pidns in (True, False):
                for agent in (False, True):
                    raw, ours, theirs = [], [], []
                    for i in range(reps):
                        # Interleaved: raw, then ours and theirs, which
                        # goes first alternating.
                        raw.append(spawn_rate(build, lanes, count, work))
                        runs = [(ours, build), (theirs, against)]
                        for out, b in runs[::-1] if i % 2 else runs:
                            if b:
                                out.append(shardrun_rate(
                                    b, work, lanes, count, pidns, agent))
                    r, o = statistics.median(raw), statistics.median(ours)
                    rows.append((lanes, "%s, %s" % (
                        "agent over TCP" if agent else "local",
                        "PID namespace" if pidns else "process group"),
                        r, o, o / r,
                        statistics.median(theirs) / r if against else None))
        return {"files": count, "repeat": reps, "rows": rows,
                "against": against}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plan(build, quick):
    files = 100000 if quick else 1000000
    out = sh([os.path.join(build, "bench", "sr-planbench"), "-f",
              str(files), "-k", "64"]).stdout
    return json.loads(out)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def agents(build, quick):
    n, secs = (20, 4) if quick else (200, 10)
    work = tempfile.mkdtemp(prefix="sr-agents-")
    try:
        os.makedirs(os.path.join(work, "jobs"))
        for i in range(n):
            with open(os.path.join(work, "jobs", "j%03d.sh" % i), "w") as f:
                f.write("sleep 1000\n")
        sr = os.path.join(build, "shardrun")
        key = os.path.join(work, "k.key")
        sh([sr, "keygen", "--cluster-key", key])
        c, url = coordinator([sr, "run", "--profile", "generic", "--cmd",
                              "sh {file}", "--agents-min", str(n),
                              "--cluster-key-file", key, "--no-history",
                              "jobs"], work)
        sim = subprocess.Popen([os.path.join(build, "bench", "sr-simagents"),
                                "-u", url, "-k", key, "-n", str(n), "-s",
                                str(secs + 8)], stdout=subprocess.PIPE,
                               text=True)
        time.sleep(4)  # all connected, each holding one endless file
        t0, c0 = time.monotonic(), cpu_ticks(c.pid)
        time.sleep(secs)
        used = (cpu_ticks(c.pid) - c0) / os.sysconf("SC_CLK_TCK")
        share = used / (time.monotonic() - t0)
        out = json.loads(sim.communicate(timeout=60)[0])
        c.kill()
        c.wait()
        return {"agents": n, "up": out["up"], "busy": out["busy"],
                "seconds": secs, "coordinator_cpu_share": share}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(res):
    o = res["overhead"]
    lines = ["### Per-file overhead (/bin/true, %d files, median of %d)" % (
             o["files"], o["repeat"]), "",
             "| lanes | shardrun | raw posix_spawn files/s | shardrun "
             "files/s | ratio |" + (" --against ratio |" if o["against"]
                                    else ""),
             "| ---: | --- | ---: | ---: | ---: |" +
             (" ---: |" if o["against"] else "")]
    for lanes, name, raw, ours, ratio, theirs in o["rows"]:
        lines.append("| %d | %s | %.0f | %.0f | %.2f |" % (
            lanes, name, raw, ours, ratio) +
            (" %.2f |" % theirs if theirs is not None else ""))
    p = res["plan"]
    lines += ["", "### Planning %d files (%d slots)" % (p["files"],
                                                         p["slots"]), "",
              "| estimates s | build s | hand out every unit s | static split s "
              "| total s | peak RSS MB |", "| ---: | ---: | ---: | ---: | "
              "---: | ---: |",
              "| %.3f | %.3f | %.3f | %.3f | %.3f | %.1f |" % (
                  p["estimate_s"], p["build_s"], p["dispatch_s"],
                  p["static_s"], p["total_s"], p["peak_rss_mb"])]
    a = res["agents"]
    lines += ["", "### One coordinator, %d agents over loopback TCP" %
              a["agents"], "",
              "| agents up | holding work | coordinator CPU (share of one "
              "core, %d s) |" % a["seconds"], "| ---: | ---: | ---: |",
              "| %d | %d | %.1f%% |" % (a["up"], a["busy"],
                                        100 * a["coordinator_cpu_share"])]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--against")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    against = os.path.abspath(args.against) if args.against else None
    res = {"overhead": overhead(build, args.quick, args.repeat, against),
           "plan": plan(build, args.quick),
           "agents": agents(build, args.quick)}
    text = markdown(res)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    ok = res["agents"]["up"] == res["agents"]["agents"] and all(
        r[3] > 0 for r in res["overhead"]["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
