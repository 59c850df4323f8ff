"""Extraction throughput: `flowprep extract` against the bare OpenCV loop.

The bare loop is decode + resize + grey + the flow call, nothing quantized,
encoded or written, over the same frames, with the same OpenCV thread count
per process and the same number of processes. Ratios are taken within one
run (these machines are noisy). Targets (issue 2): pipeline >= 0.95 x bare at
equal cores; --jobs 2 >= 1.85 x --jobs 1 on a 2-core machine.

    python benchmarks/bench_extract.py [--algos farneback,dis] [--copies 4] [--repeat 2]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import cv2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def bare_video(args):
    path, algo, threads = args
    from flowprep.decode import Resize, VideoReader, rgb_to_grey
    from flowprep.flow import make_backend, merge_params, resolve
    cv2.setNumThreads(threads)
    be = make_backend(resolve(algo, "cpu"), merge_params(algo))
    prev = None
    n = 0
    for rgb in VideoReader(path, Resize(256)):
        g = rgb_to_grey(rgb)
        if prev is not None:
            be.compute(prev, g)
        prev = g
        n += 1
    return n


def bare(paths, algo, jobs):
    threads = max(1, (os.cpu_count() or 1) // jobs)
    t0 = time.perf_counter()
    if jobs == 1:
        n = sum(bare_video((p, algo, threads)) for p in paths)
    else:
        with mp.get_context("spawn").Pool(jobs) as pool:
            n = sum(pool.map(bare_video, [(p, algo, threads) for p in paths], chunksize=1))
    return n, time.perf_counter() - t0


def pipeline(inp, algo, jobs, out):
    shutil.rmtree(out, ignore_errors=True)
    exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
    t0 = time.perf_counter()
    subprocess.run([exe, "extract", inp, "-o", out, "--algo", algo, "--jobs", str(jobs),
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    import flowprep
    s = flowprep.open_store(out)
    return sum(s[v].num_frames for v in s.video_ids), dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algos", default="farneback,dis")
    ap.add_argument("--copies", type=int, default=4, help="copies of bikes.mp4 (250 frames each)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N")
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    from synth import sample_videos
    bikes = [p for p in sample_videos() if p.endswith("bikes.mp4")][0]
    work = tempfile.mkdtemp(prefix="flowprep-bench-")
    inp = os.path.join(work, "in")
    os.makedirs(inp)
    for k in range(a.copies):
        shutil.copy(bikes, os.path.join(inp, f"bikes{k}.mp4"))
    paths = sorted(os.path.join(inp, f) for f in os.listdir(inp))
    rows = []
    for algo in a.algos.split(","):
        res = {}
        best: dict = {}
        for _ in range(a.repeat):  # interleaved rounds: load from other jobs hits both alike
            for jobs in (1, 2):
                for kind, fn in (("bare", lambda: bare(paths, algo, jobs)),
                                 ("pipe", lambda: pipeline(inp, algo, jobs, os.path.join(work, "out")))):
                    n, dt = fn()
                    best[kind, jobs] = max(best.get((kind, jobs), 0.0), n / dt)
        for jobs in (1, 2):
            res[jobs] = (best["bare", jobs], best["pipe", jobs])
            rows.append((algo, jobs, res[jobs][0], res[jobs][1], res[jobs][1] / res[jobs][0]))
        rows.append((algo, "2 vs 1", res[2][0] / res[1][0], res[2][1] / res[1][1], None))
    shutil.rmtree(work, ignore_errors=True)
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}")
    print(f"Command: python benchmarks/bench_extract.py --algos {a.algos} --copies {a.copies} "
          f"--repeat {a.repeat}")
    print(f"Input: {a.copies} x bikes.mp4 (250 frames, 640x272 -> 602x256), best of {a.repeat} "
          f"interleaved rounds; load average before: {load0:.2f}, after: {os.getloadavg()[0]:.2f}\n")
    print("| algo | jobs | bare OpenCV loop (frames/s) | flowprep extract (frames/s) | pipeline / bare |")
    print("|---|---|---|---|---|")
    for algo, jobs, bfps, pfps, ratio in rows:
        if ratio is None:
            print(f"| {algo} | {jobs} | {bfps:.2f}x | {pfps:.2f}x | |")
        else:
            print(f"| {algo} | {jobs} | {bfps:.1f} | {pfps:.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
