"""CPU cost of TV-L1: flowprep's native (compiled) TV-L1 against OpenCV's DualTVL1 and torch.

Part 1, per pair: the same real 340x256 grey pairs (frames k, k+1 of the clips
in data/samples, resized to 340x256 as TSN's frames are) through OpenCV
(cv2.setNumThreads(1)), the torch backend (torch.set_num_threads(1), one pair
per call) and native, one thread each, in interleaved rounds (round r runs
every implementation on the same pairs, so machine load hits all of them
alike). The figure is CPU-seconds per pair (time.process_time), and the ratio
is taken within each round, then the median over rounds. Also: mean
|native - OpenCV| in px on those pairs, and where native's time goes per
pyramid level and stage (its stats mode, thread CPU time).

Part 2, end to end: `flowprep extract --algo tvl1 --jobs 2` on data/samples,
default backend (native) against --backend opencv, frames/s (wall) and CPU
seconds (children's rusage). --frames N keeps the first N frames of each
clip (--end N/fps through a copy of the clips cut by ffmpeg is not needed:
a trimmed lossless copy is written with imageio-ffmpeg).

    .venv/bin/python benchmarks/bench_native_tvl1.py [--rounds 3] [--pairs 4] [--e2e-frames 25]
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

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flowprep.flow.native_tvl1 import native_isa, tvl1_flow  # noqa: E402
from flowprep.flow.torch_tvl1 import TVL1_DEFAULTS  # noqa: E402
from _machine import cpu_name  # noqa: E402 (benchmarks/_machine.py)

SAMPLES = sorted(glob.glob(os.path.join(ROOT, "data", "samples", "*", "*.mp4")))


def pairs_340x256(per_clip: int):
    out = []
    for path in SAMPLES:
        cap = cv2.VideoCapture(path)
        frames = []
        while len(frames) < per_clip + 1:
            ok, bgr = cap.read()
            if not ok:
                break
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            frames.append(cv2.resize(grey, (340, 256), interpolation=cv2.INTER_AREA))
        cap.release()
        out += [(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
    return out


def opencv_algo():
    of = cv2.optflow.DualTVL1OpticalFlow_create()
    p = TVL1_DEFAULTS
    of.setTau(p["tau"]); of.setLambda(p["lambda"]); of.setTheta(p["theta"])
    of.setScalesNumber(p["nscales"]); of.setWarpingsNumber(p["warps"]); of.setEpsilon(p["epsilon"])
    of.setInnerIterations(p["inner_iterations"]); of.setOuterIterations(p["outer_iterations"])
    of.setScaleStep(p["scale_step"]); of.setGamma(p["gamma"]); of.setMedianFiltering(p["median_filtering"])
    return of


def cpu_per_pair(fn, pairs):
    t = time.process_time()
    outs = [fn(a, b) for a, b in pairs]
    return (time.process_time() - t) / len(pairs), outs


def machine() -> str:
    cpu = cpu_name()
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, OpenCV {cv2.__version__}, native ISA {native_isa()}")


def part1(args) -> None:
    import torch
    from flowprep.flow.torch_tvl1 import TorchTVL1Backend
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    pairs = pairs_340x256(args.pairs)
    of = opencv_algo()
    th = TorchTVL1Backend({}, device="cpu", batch_size=1, threads=1)
    impls = {
        "opencv": lambda a, b: (of.setScalesNumber(5), of.calc(a, b, None))[1],
        "torch": th.compute,
        "native": tvl1_flow,
    }
    skip = set() if args.torch else {"torch"}
    times = {k: [] for k in impls if k not in skip}
    ratios = {k: [] for k in impls if k not in skip and k != "native"}
    diffs = []
    tvl1_flow(*pairs[0])  # warm-up (page faults, dispatch)
    for r in range(args.rounds):
        got = {}
        for name, fn in impls.items():
            if name in skip:
                continue
            t, outs = cpu_per_pair(fn, pairs)
            times[name].append(t)
            got[name] = outs
        for name in ratios:
            ratios[name].append(times[name][-1] / times["native"][-1])
        if r == 0:
            diffs = [float(np.abs(n - o).mean()) for n, o in zip(got["native"], got["opencv"])]
    print(f"\n### CPU-seconds per 340x256 pair, one thread ({len(pairs)} real pairs from "
          f"{len(SAMPLES)} clips, {args.rounds} interleaved rounds)\n")
    print("| implementation | CPU-s per pair (median of rounds) | rounds | native is N x faster (median of per-round ratios) |")
    print("|---|---|---|---|")
    for name in times:
        ts = times[name]
        ratio = "1" if name == "native" else f"{statistics.median(ratios[name]):.1f}x"
        print(f"| {name} | {statistics.median(ts):.4f} | {', '.join(f'{t:.4f}' for t in ts)} | {ratio} |")
    print(f"\nmean |native - OpenCV| per pair (px): {', '.join(f'{d:.4f}' for d in diffs)}")

    # where native's time goes
    agg = {}
    total_iters = 0
    t0 = time.process_time()
    for a, b in pairs:
        _, levels = tvl1_flow(a, b, stats=True)
        for lv in levels:
            s = agg.setdefault(lv["level"], dict(size=f"{lv['width']}x{lv['height']}", iterations=0,
                                                 medians=0, warp_s=0.0, median_s=0.0, iterate_s=0.0,
                                                 resize_s=0.0, px=lv["width"] * lv["height"]))
            for k in ("iterations", "medians", "warp_s", "median_s", "iterate_s", "resize_s"):
                s[k] += lv[k]
            total_iters += lv["iterations"] * lv["width"] * lv["height"]
    wall_cpu = (time.process_time() - t0) / len(pairs)
    n = len(pairs)
    print(f"\n### Native: where the time goes (per pair, mean over the {n} pairs; thread CPU ms)\n")
    print("| level | size | inner iterations | ns per pixel-iteration | warp ms | median ms | iterations ms | resize ms | total ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    tot = dict(warp_s=0.0, median_s=0.0, iterate_s=0.0, resize_s=0.0)
    for lvl in sorted(agg):
        s = agg[lvl]
        for k in tot:
            tot[k] += s[k]
        ns = 1e9 * s["iterate_s"] / max(1, s["iterations"] * s["px"])
        row_total = s["warp_s"] + s["median_s"] + s["iterate_s"] + s["resize_s"]
        print(f"| {lvl} | {s['size']} | {s['iterations'] / n:.0f} | {ns:.2f} | {1e3 * s['warp_s'] / n:.1f} | "
              f"{1e3 * s['median_s'] / n:.1f} | {1e3 * s['iterate_s'] / n:.1f} | {1e3 * s['resize_s'] / n:.2f} | "
              f"{1e3 * row_total / n:.1f} |")
    all_ms = 1e3 * sum(tot.values()) / n
    print(f"| all | | | | {1e3 * tot['warp_s'] / n:.1f} | {1e3 * tot['median_s'] / n:.1f} | "
          f"{1e3 * tot['iterate_s'] / n:.1f} | {1e3 * tot['resize_s'] / n:.2f} | {all_ms:.1f} |")
    print(f"\n{total_iters / n / 1e6:.1f} M pixel-iterations per pair; {1e3 * wall_cpu:.1f} CPU-ms per pair "
          f"with timing on (the rest: Python, conversion, allocation); estimate in issue 11: ~40 ms.")


def trimmed_clips(dst: str, frames: int) -> str:
    """Copies of data/samples' clips cut to their first ``frames`` frames (lossless FFV1)."""
    import imageio_ffmpeg
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    for path in SAMPLES:
        rel = os.path.relpath(path, os.path.join(ROOT, "data", "samples"))
        out = os.path.join(dst, os.path.splitext(rel)[0] + ".mkv")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run([ff, "-v", "error", "-y", "-i", path, "-frames:v", str(frames), "-c:v", "ffv1", out],
                       check=True)
    return dst


def part2(args) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
    work = tempfile.mkdtemp(prefix="bench_native_")
    try:
        src = os.path.join(ROOT, "data", "samples")
        note = "all frames"
        if args.e2e_frames:
            src = trimmed_clips(os.path.join(work, "in"), args.e2e_frames)
            note = f"first {args.e2e_frames} frames of each clip"
        rows = []
        for label, extra in (("default (native)", []), ("--backend opencv", ["--backend", "opencv"])):
            out = os.path.join(work, label.split()[0].strip("-"))
            cmd = [exe, "extract", src, "-o", out, "--algo", "tvl1", "--jobs", "2", "--no-progress"] + extra
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
            import flowprep
            store = flowprep.open_store(out)
            frames = sum(store[v].num_frames for v in store.video_ids)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rows.append((label, store.config["implementation"], frames, wall, cpu))
        print(f"\n### End to end: flowprep extract --algo tvl1 --jobs 2 on data/samples ({note})\n")
        print("| backend | implementation | frames | wall s | frames/s | CPU s |")
        print("|---|---|---|---|---|---|")
        for label, impl, frames, wall, cpu in rows:
            print(f"| {label} | {impl} | {frames} | {wall:.1f} | {frames / wall:.1f} | {cpu:.1f} |")
        print(f"\nnative / opencv frames/s: {(rows[0][2] / rows[0][3]) / (rows[1][2] / rows[1][3]):.1f}x; "
              f"CPU-seconds ratio {rows[1][4] / rows[0][4]:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--pairs", type=int, default=4, help="pairs per clip (default 4)")
    ap.add_argument("--no-torch", dest="torch", action="store_false", help="leave the torch backend out")
    ap.add_argument("--e2e-frames", type=int, default=25,
                    help="frames per clip for the end-to-end part (0: whole clips; default 25)")
    ap.add_argument("--skip-e2e", action="store_true", help="only the per-pair part")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.relpath(sys.executable, ROOT)] + sys.argv)}")
    part1(args)
    if not args.skip_e2e:
        part2(args)


if __name__ == "__main__":
    main()
