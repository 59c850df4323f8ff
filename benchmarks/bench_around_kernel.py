"""Around the TV-L1 kernel (issue 21, item 2): `flowprep extract --algo tvl1 --jobs 2`, native,
this checkout against an older revision, in interleaved rounds.

Everything but the kernel is compared: each round runs the same command with this
checkout's flowprep and with REV's (git archive into a temporary folder, this checkout's
compiled extensions copied in, so both sides run the same kernel), on the same inputs:
the 4 synthetic 340x256 texture clips of bench_native_tvl1.py and data/samples cut to
their first N frames (the sample clips hold 25-30 frames; 0: whole). Printed per side:
median and best wall seconds, median CPU seconds (children's rusage: the command, its
fork server and workers), frames/s from the median wall.

    .venv/bin/python benchmarks/bench_around_kernel.py [--before db4c7b9] [--rounds 5] [--frames 16,100]

With 2 workers on a 2-core machine the run is CPU-bound from its first second, so CPU
seconds saved anywhere (start-up included) are wall seconds saved: about half of them.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_name  # noqa: E402
from bench_native_tvl1 import texture_clips, trimmed_clips  # noqa: E402


def checkout(rev: str, dst: str) -> str:
    """REV's flowprep package in ``dst`` with this checkout's compiled extensions."""
    os.makedirs(dst)
    tar = subprocess.run(["git", "-C", ROOT, "archive", rev, "flowprep"], check=True,
                         capture_output=True).stdout
    subprocess.run(["tar", "x", "-C", dst], input=tar, check=True)
    for so in glob.glob(os.path.join(ROOT, "flowprep", "*.so")):
        shutil.copy(so, os.path.join(dst, "flowprep"))
    return dst


def run_once(code_root: str, src: str, out: str):
    """(wall s, CPU s, frames) of one run with flowprep from ``code_root``."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", "from flowprep.cli.main import main; main()", "extract", src,
           "-o", out, "--algo", "tvl1", "--jobs", "2", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=code_root)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    # run from the output's parent folder: with -c, the current folder comes first on sys.path
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=os.path.dirname(out))
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    frames = int(p.stdout.split("(")[1].split()[0])  # "4 published, ... (64 frames in 1.9 s)"
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="db4c7b9", metavar="REV",
                    help="the revision to compare with (default db4c7b9, before this work)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", default="16,100",
                    help="frames a clip, comma-separated (default 16,100; 0: whole sample clips, "
                         "25 texture frames)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench_around_")
    try:
        sides = [("this checkout", ROOT), (a.before, checkout(a.before, os.path.join(work, "old")))]
        inputs = []
        for n in [int(x) for x in a.frames.split(",")]:
            inputs.append((f"4 synthetic 340x256 texture clips, {n or 25} frames",
                           texture_clips(os.path.join(work, f"tex{n}"), n or 25)))
            inputs.append((f"data/samples, {f'first {n} frames' if n else 'whole'} (25-30 a clip)",
                           trimmed_clips(os.path.join(work, f"s{n}"), n) if n
                           else os.path.join(ROOT, "data", "samples")))
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
              f"Python {platform.python_version()}")
        print(f"command: .venv/bin/python {' '.join(sys.argv)}\n")
        print("| input | flowprep | frames | wall s, median (best) | frames/s | CPU s, median |")
        print("|---|---|---:|---|---:|---:|")
        for what, src in inputs:
            got = {name: [] for name, _ in sides}
            for r in range(a.rounds):
                for name, code in (sides if r % 2 == 0 else sides[::-1]):
                    got[name].append(run_once(code, src, os.path.join(work, "out")))
            for name, _ in sides:
                walls = [g[0] for g in got[name]]
                med = statistics.median(walls)
                frames = got[name][0][2]
                print(f"| {what} | {name} | {frames} | {med:.2f} ({min(walls):.2f}) | "
                      f"{frames / med:.1f} | {statistics.median(g[1] for g in got[name]):.2f} |")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
