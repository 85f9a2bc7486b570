#!/usr/bin/python3
"""Seeded synthetic suites for the shardrun benchmarks.

    gen.py KIND --out DIR --files N --seed S [--scale X] [--import-cost S]
           [--dirs D] [--conftests [fixtures|hooks]]

KIND is one of:

  sleep         generic-profile files jobs/job_NNNN.sh, each `sleep D`
  pytest-sleep  pytest files tests/test_NNNN.py, a few tests that time.sleep
                (the file's tests sleep D in total)
  pytest-cpu    pytest files whose tests run a busy loop calibrated (once, at
                generation time) to about D seconds of CPU on this machine
  tiny          many tiny pytest files, trivial asserts: the interpreter
                start dominates
  heavy-import  pytest files that all import tests/heavy_shared.py, which
                burns --import-cost seconds of CPU at import; each file has
                short sleeping tests
  long-tail     as pytest-sleep, but one file (chosen by the seed) holds
                HUGE_SHARE of the work in HUGE_TESTS tests: more than a
                fair share of two slots, so no schedule of whole files can
                finish near sum/K (xdist --dist load hands out its tests
                one by one; shardrun splits it by its tests' history). The
                histories carry per-test times (as JUnit reports would
                have left them); the LB is max(sum/K, longest test).
  straggler     as sleep, but a few files (STRAGGLER_FRACTION, chosen by the
                seed) stall on their first attempt for STALL_FACTOR times
                their duration (at least STALL_MIN_S) - a loaded runner, a
                stuck mount - and run normally when tried again. The stall
                marker lives in .stall/ in the suite; bench/run.py clears it
                before every run, so every configuration meets the same
                stalls. truth.json holds the normal durations.

File durations D are heavy-tailed: lognormal with median 0.4 s * scale
(sigma 0.7), plus a few long files (2 for N >= 10, 1 for N >= 3) at 8-10x
that median. Everything is a function of (KIND, N, seed, scale,
import-cost) except the CPU calibration, which is recorded.

Written to DIR:

  truth.json        {"PATH": seconds}: the intended duration of each file,
                    excluding the interpreter start. pytest-cpu: calibrated
                    CPU seconds; heavy-import: import cost + test sleeps
                    (what running the file alone costs beyond interpreter
                    start); tiny: a nominal 0.001 s.
  hist-exact.json   shardrun history equal to the truth
  hist-noisy.json   each duration times lognormal noise (sigma 0.5), and 20%
                    of the files (chosen by the seed) left out as "new files"
  meta.json         the parameters, the calibration, and the file list
  pytest.ini        (pytest kinds) markers and `testpaths = tests`

Standard library only; run with /usr/bin/python3.
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

KINDS = ("sleep", "pytest-sleep", "pytest-cpu", "tiny", "heavy-import",
         "straggler", "long-tail")
PYTEST_KINDS = ("pytest-sleep", "pytest-cpu", "tiny", "heavy-import",
                "long-tail")
# Kinds whose files may be spread over directories (--dirs): heavy-import's
# files import their shared module from their own directory.
DIR_KINDS = ("pytest-sleep", "pytest-cpu", "tiny", "long-tail")

MEDIAN_S = 0.4  # median file duration at scale 1
SIGMA = 0.7  # lognormal sigma of file durations
NOISE_SIGMA = 0.5  # lognormal sigma of the noisy history
NEW_FRACTION = 0.2  # share of files missing from the noisy history
HEAVY_TEST_FACTOR = 0.25  # heavy-import: tests are this much shorter
TINY_DURATION_S = 0.001  # nominal truth of a tiny file
STRAGGLER_FRACTION = 0.05  # straggler: share of files that stall once
STALL_FACTOR = 8.0  # ... for this many times their duration
STALL_MIN_S = 4.0  # ... and at least this long
HUGE_SHARE = 0.6  # long-tail: the huge file's share of the total work
HUGE_TESTS = 24  # ... in this many tests

# The busy loop used by pytest-cpu tests and heavy_shared.py. It is copied
# verbatim into the generated files, so the calibration measures exactly the
# code that runs.
BURN_SRC = '''\
def _burn(n):
    x = 1
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x
'''

_ns = {}
exec(BURN_SRC, _ns)
_burn = _ns["_burn"]


def calibrate(trials=5, target_s=0.2):
    """Iterations per second of _burn on this machine, median of trials."""
    n = 50000
    while True:  # grow n until one trial takes ~target_s
        t0 = time.perf_counter()
        _burn(n)
        dt = time.perf_counter() - t0
        if dt >= target_s / 4:
            break
        n *= 2
    n = max(1, int(n * target_s / max(dt, 1e-6)))
    rates = []
    for _ in range(trials):
        t0 = time.perf_counter()
        _burn(n)
        rates.append(n / (time.perf_counter() - t0))
    rates.sort()
    return {
        "iters_per_s": rates[len(rates) // 2],
        "trials_iters_per_s": rates,
        "iters_per_trial": n,
        "method": "median of %d trials of _burn(n), time.perf_counter" % trials,
        "loadavg_1m": os.getloadavg()[0],
        "loop": BURN_SRC,
    }


def draw_durations(rng, n, scale):
    """Heavy-tailed durations: lognormal body plus a few long files."""
    median = MEDIAN_S * scale
    mu = math.log(median)
    durs = [round(max(0.005, rng.lognormvariate(mu, SIGMA)), 3)
            for _ in range(n)]
    n_long = 2 if n >= 10 else (1 if n >= 3 else 0)
    long_idx = sorted(rng.sample(range(n), n_long)) if n_long else []
    for i in long_idx:
        durs[i] = round(median * rng.uniform(8.0, 10.0), 3)
    return durs, long_idx


def split_duration(rng, total, parts):
    """Split total into parts positive pieces (random weights)."""
    w = [rng.expovariate(1.0) + 0.05 for _ in range(parts)]
    s = sum(w)
    return [total * x / s for x in w]


PYTEST_INI = """\
[pytest]
testpaths = tests
markers =
    slow: one of the suite's few long files
    serial: must not run at the same time as other serial tests
    exclusive: needs the whole machine
"""


def header(kind, idx, dur, is_long):
    lines = ['"""Generated by bench/gen.py (%s), file %d: %.3f s."""' %
             (kind, idx, dur)]
    return lines


def write_sleep_file(path, dur, stall=0.0, name=None):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n# generated by bench/gen.py\n")
        if stall > 0:  # the first attempt only (run from the suite root)
            f.write("mkdir -p .stall\n"
                    "if mkdir .stall/%s 2>/dev/null; then sleep %.3f; fi\n"
                    % (name, stall))
        f.write("sleep %.3f\n" % dur)


def pytest_sleep_src(rng, kind, idx, dur, is_long, extra_import=None,
                     parts=None):
    if parts is None:
        parts = split_duration(rng, dur, rng.randint(1, 4))
    out = header(kind, idx, dur, is_long)
    out.append("import time")
    out.append("")
    out.append("import pytest")
    if extra_import:
        out.append("")
        out.append(extra_import)
    out.append("")
    if is_long:
        out.append("pytestmark = pytest.mark.slow")
        out.append("")
    for t, d in enumerate(parts):
        out.append("")
        out.append("def test_%d():" % t)
        out.append("    time.sleep(%.4f)" % d)
        if extra_import:
            out.append("    assert heavy_shared.CHECKSUM >= 0")
        else:
            out.append("    assert %d + %d == %d" % (t, idx, t + idx))
    return "\n".join(out) + "\n"


def pytest_cpu_src(rng, idx, dur, is_long, rate):
    parts = split_duration(rng, dur, rng.randint(1, 4))
    out = header("pytest-cpu", idx, dur, is_long)
    out.append("import pytest")
    out.append("")
    if is_long:
        out.append("pytestmark = pytest.mark.slow")
        out.append("")
    out.append("")
    out.append(BURN_SRC.rstrip())
    out.append("")
    for t, d in enumerate(parts):
        iters = max(1, int(round(d * rate)))
        out.append("")
        out.append("def test_%d():  # ~%.4f s of CPU" % (t, d))
        out.append("    assert _burn(%d) >= 0" % iters)
    return "\n".join(out) + "\n"


def tiny_src(rng, idx):
    out = header("tiny", idx, TINY_DURATION_S, False)
    for t in range(rng.randint(1, 3)):
        out.append("")
        out.append("")
        out.append("def test_%d():" % t)
        out.append("    assert %d * 2 == %d" % (idx + t, 2 * (idx + t)))
    return "\n".join(out) + "\n"


def heavy_shared_src(import_cost, rate):
    iters = max(1, int(round(import_cost * rate)))
    return (
        '"""Generated by bench/gen.py: burns ~%.3f s of CPU at import '
        '(deterministic),\nlike a large shared import every test file '
        'pays once per process."""\n\n' % import_cost
        + BURN_SRC + "\n\nITERS = %d\nCHECKSUM = _burn(ITERS)\n" % iters
    )


def noisy_history(rng, truth):
    files = sorted(truth)
    n_new = int(round(NEW_FRACTION * len(files)))
    new = set(rng.sample(files, n_new)) if n_new else set()
    hist = {}
    for p in files:
        noise = rng.lognormvariate(0.0, NOISE_SIGMA)  # drawn for every file
        if p not in new:
            hist[p] = {"duration_s": round(truth[p] * noise, 4), "runs": 1}
    return hist, sorted(new)


def with_tests(hist, tests, truth):
    """History entries with per-test times, scaled as their file's."""
    for p, e in hist.items():
        k = e["duration_s"] / truth[p] if truth[p] > 0 else 1.0
        e["tests"] = {t: round(d * k, 4) for t, d in tests[p].items()}
    return hist


def long_tail_durations(seed, durs):
    """One file of the suite made to hold HUGE_SHARE of the work."""
    rng = random.Random("long-tail/%d/huge" % seed)
    huge = rng.randrange(len(durs))
    rest = sum(durs) - durs[huge]
    durs[huge] = round(rest * HUGE_SHARE / (1 - HUGE_SHARE), 3)
    return huge


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def prepare_out(out):
    """Create out, or clear a directory this script generated before."""
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, "meta.json")):
            raise SystemExit("gen.py: %s exists, is not empty and was not "
                             "made by gen.py; refusing to clear it" % out)
        for name in os.listdir(out):
            p = os.path.join(out, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
    os.makedirs(out, exist_ok=True)


DIR_CONFTEST = '''# Generated: this directory's own conftest.
import pytest


@pytest.fixture
def where():
    return "%s"
'''
# With --conftests hooks: a hook too, which makes each directory a pytest
# configuration of its own (a conftest of fixtures only does not: pytest
# loads it while collecting, and so do shardrun's fork servers).
DIR_HOOK = '''

def pytest_report_header(config):
    return "directory %s"
'''
CONFTEST_KINDS = ("fixtures", "hooks")


def generate(kind, out, files, seed, scale=1.0, import_cost=1.5,
             calibration=None, dirs=1, conftests=False):
    """Generate a suite; returns its meta dict. calibration: reuse one.
    dirs > 1 spreads a pytest suite's files over that many directories
    (tests/dNN/), as real suites are laid out, each with a conftest.py of
    its own when conftests (one of CONFTEST_KINDS); the durations do not
    change."""
    if kind not in KINDS:
        raise ValueError("unknown kind %r" % kind)
    if files < 1:
        raise ValueError("--files must be >= 1")
    if dirs < 1 or (dirs > 1 and kind not in DIR_KINDS):
        raise ValueError("--dirs: >= 1, and more than 1 only for " +
                         ", ".join(DIR_KINDS))
    prepare_out(out)
    # Separate streams, so the noise does not change the durations.
    rng = random.Random("%s/%d/durations" % (kind, seed))
    rng_files = random.Random("%s/%d/files" % (kind, seed))
    rng_noise = random.Random("%s/%d/noise" % (kind, seed))

    durs, long_idx = draw_durations(rng, files, scale)
    huge = long_tail_durations(seed, durs) if kind == "long-tail" else -1
    tests = {}  # long-tail: per file, per test id, seconds
    cal = None
    if kind in ("pytest-cpu", "heavy-import"):
        cal = calibration or calibrate()
    truth = {}
    paths = []
    stalls = {}
    if kind == "straggler":
        n = max(1, int(round(files * STRAGGLER_FRACTION)))
        for i in sorted(rng_files.sample(range(files), n)):
            stalls[i] = round(max(STALL_MIN_S, durs[i] * STALL_FACTOR), 3)
    if kind in ("sleep", "straggler"):
        os.makedirs(os.path.join(out, "jobs"))
    else:
        os.makedirs(os.path.join(out, "tests"))
        with open(os.path.join(out, "pytest.ini"), "w") as f:
            f.write(PYTEST_INI)
    if kind == "heavy-import":
        with open(os.path.join(out, "tests", "heavy_shared.py"), "w") as f:
            f.write(heavy_shared_src(import_cost, cal["iters_per_s"]))

    for i in range(files):
        is_long = i in long_idx
        d = durs[i]
        if kind in ("sleep", "straggler"):
            rel = "jobs/job_%04d.sh" % i
            write_sleep_file(os.path.join(out, rel), d, stalls.get(i, 0.0),
                             "job_%04d" % i)
            truth[rel] = d
        else:
            rel = "tests/test_%04d.py" % i
            if dirs > 1:
                rel = "tests/d%02d/test_%04d.py" % (i % dirs, i)
                make_dir(out, os.path.dirname(rel), conftests)
            if kind == "pytest-sleep":
                src = pytest_sleep_src(rng_files, kind, i, d, is_long)
                truth[rel] = d
            elif kind == "pytest-cpu":
                src = pytest_cpu_src(rng_files, i, d, is_long,
                                     cal["iters_per_s"])
                truth[rel] = d
            elif kind == "long-tail":
                n = HUGE_TESTS if i == huge else rng_files.randint(1, 4)
                parts = split_duration(rng_files, d, n)
                src = pytest_sleep_src(rng_files, kind, i, d,
                                       is_long or i == huge, parts=parts)
                truth[rel] = d
                tests[rel] = {"test_%d" % t: round(x, 4)
                              for t, x in enumerate(parts)}
            elif kind == "tiny":
                src = tiny_src(rng_files, i)
                truth[rel] = TINY_DURATION_S
            else:  # heavy-import
                d = round(d * HEAVY_TEST_FACTOR, 3)
                src = pytest_sleep_src(rng_files, kind, i, d, is_long,
                                       extra_import="import heavy_shared")
                truth[rel] = round(import_cost + d, 4)
            with open(os.path.join(out, rel), "w") as f:
                f.write(src)
        paths.append(rel)

    exact = {p: {"duration_s": truth[p], "runs": 1} for p in truth}
    noisy, new_files = noisy_history(rng_noise, truth)
    if tests:
        exact = with_tests(exact, tests, truth)
        noisy = with_tests(noisy, tests, truth)
    write_json(os.path.join(out, "truth.json"), truth)
    write_json(os.path.join(out, "hist-exact.json"),
               {"version": 1, "files": exact})
    write_json(os.path.join(out, "hist-noisy.json"),
               {"version": 1, "files": noisy})
    meta = {
        "kind": kind,
        "files": files,
        "seed": seed,
        "scale": scale,
        "dirs": dirs,
        "conftests": conftests if dirs > 1 else False,
        "median_s": MEDIAN_S * scale,
        "sigma": SIGMA,
        "long_files": [paths[i] for i in long_idx],
        "noise_sigma": NOISE_SIGMA,
        "new_files_in_noisy": new_files,
        "profile": "pytest" if kind in PYTEST_KINDS else "generic",
        "stalls": {paths[i]: stalls[i] for i in stalls},
        "paths": paths,
        "truth_sum_s": round(sum(truth.values()), 4),
        "truth_max_s": max(truth.values()),
    }
    if tests:
        meta["huge_file"] = paths[huge]
        meta["truth_max_test_s"] = max(d for t in tests.values()
                                       for d in t.values())
    if kind == "heavy-import":
        meta["import_cost_s"] = import_cost
        meta["heavy_test_factor"] = HEAVY_TEST_FACTOR
    if cal is not None:
        meta["calibration"] = cal
        write_json(os.path.join(out, "calibration.json"), cal)
    write_json(os.path.join(out, "meta.json"), meta)
    return meta


def make_dir(out, rel, conftest):
    """tests/dNN/, with its conftest.py when conftest (one of
    CONFTEST_KINDS)."""
    path = os.path.join(out, rel)
    if os.path.isdir(path):
        return
    os.makedirs(path)
    if conftest:
        with open(os.path.join(path, "conftest.py"), "w") as f:
            f.write(DIR_CONFTEST % os.path.basename(rel))
            if conftest == "hooks":
                f.write(DIR_HOOK % os.path.basename(rel))


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Generate a seeded synthetic suite for bench/run.py.")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--out", required=True, help="suite directory")
    ap.add_argument("--files", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies every duration (median 0.4 s at 1)")
    ap.add_argument("--import-cost", type=float, default=1.5,
                    help="heavy-import: CPU seconds burnt by the shared "
                    "import (default 1.5)")
    ap.add_argument("--dirs", type=int, default=1,
                    help="spread the files over this many directories "
                    "(pytest-sleep, pytest-cpu, tiny, long-tail)")
    ap.add_argument("--conftests", nargs="?", const="fixtures",
                    choices=CONFTEST_KINDS,
                    help="with --dirs: a conftest.py in each directory, "
                    "with a fixture (default) or a hook too")
    a = ap.parse_args(argv)
    if a.scale <= 0:
        ap.error("--scale must be > 0")
    try:
        meta = generate(a.kind, a.out, a.files, a.seed, a.scale,
                        a.import_cost, dirs=a.dirs, conftests=a.conftests)
    except ValueError as e:
        ap.error(str(e))
    print("%s: %d files in %s, total %.2f s, longest %.2f s%s" % (
        a.kind, a.files, a.out, meta["truth_sum_s"], meta["truth_max_s"],
        (", calibration %.0f iters/s" % meta["calibration"]["iters_per_s"])
        if "calibration" in meta else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
