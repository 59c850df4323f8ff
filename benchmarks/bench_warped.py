"""The cost of --warped per frame pair, against the plain flow, on real clips.

For every pair (t, t+1) of the clips (decoded, resized to short side 256, grey),
in one process with one OpenCV thread, in the stage's own order:

    plain flow        backend.compute(frame t, frame t+1)         (what extract does anyway)
    corners           Shi-Tomasi on frame t + the flow sampled at them
    features          SIFT / ORB keypoints + descriptors of frame t+1 (frame t's come
                      from the previous pair, as WarpStage caches them)
    matching          windowed descriptor matching + ratio test
    RANSAC            cv2.findHomography + the least-squares refit
    warp              frame t+1 warped onto frame t (cv2.warpPerspective + fill)
    second flow       backend.compute(frame t, warped frame)

Times are medians per pair over all pairs, in ms; "overhead" is the warped
stage's total over the plain flow (a ratio from the same run). A second table
times `flowprep extract` end to end with and without --warped (--jobs 1).

    python benchmarks/bench_warped.py [--algos dis,farneback,tvl1] [--features sift,orb,none]
                                      [--clips PATH,...] [--short-side 256] [--no-e2e]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_CLIPS = [os.path.join(REPO, "data", "samples", "Talking", "v_Talking_g01_c01.mp4"),
                 os.path.join(REPO, "data", "samples", "Biking", "v_Biking_g01_c02.mp4")]


def grey_frames(path, short_side):
    from flowprep.decode import Resize, VideoReader, rgb_to_grey
    return [rgb_to_grey(rgb) for rgb in VideoReader(path, Resize(short_side))]


def time_pairs(frames, algo, features):
    """Per-pair times (s) of every step, as lists, for one clip."""
    from flowprep.flow import make_backend, merge_params, resolve
    from flowprep.flow import warp as wp
    be = make_backend(resolve(algo, "cpu"), merge_params(algo))
    s = wp.WarpSettings(features=features)
    det, norm = wp.make_detector(s.features, s.max_features)
    steps = {k: [] for k in ("plain flow", "corners", "features", "matching", "RANSAC", "warp",
                             "second flow")}
    fallbacks = 0
    prev_feats = wp.detect_features(frames[0], det)
    for a, b in zip(frames, frames[1:]):
        h, w = a.shape
        t0 = time.perf_counter()
        flow = be.compute(a, b)
        t1 = time.perf_counter()
        src_c, dst_c = wp.flow_correspondences(a, flow, s)
        t2 = time.perf_counter()
        feats = wp.detect_features(b, det)
        t3 = time.perf_counter()
        src_m, dst_m = wp.match_features(prev_feats[0], prev_feats[1], feats[0], feats[1],
                                         s.match_window * float(np.hypot(h, w)), s.match_ratio,
                                         norm or cv2.NORM_L2)
        t4 = time.perf_counter()
        est = wp.estimate_homography(np.concatenate([src_c, src_m]), np.concatenate([dst_c, dst_m]),
                                     h, w, s.ransac_threshold, s.min_points, s.min_inliers)
        t5 = time.perf_counter()
        warped = wp.warp_onto(b, est.H, a)
        t6 = time.perf_counter()
        be.compute(a, warped)
        t7 = time.perf_counter()
        prev_feats = feats
        fallbacks += bool(est.fallback)
        for k, (x, y) in zip(steps, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6),
                                     (t6, t7)]):
            steps[k].append(y - x)
    return steps, fallbacks


def e2e(clips, algo, warped, out):
    shutil.rmtree(out, ignore_errors=True)
    exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
    cmd = [exe, "extract", *clips, "-o", out, "--algo", algo, "--jobs", "1", "--no-progress"]
    if warped:
        cmd.append("--warped")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", default="dis,farneback")
    ap.add_argument("--features", default="sift,orb,none")
    ap.add_argument("--clips", default=",".join(DEFAULT_CLIPS))
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--no-e2e", action="store_true")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    clips = a.clips.split(",")
    frames = [grey_frames(c, a.short_side) for c in clips]
    pairs = sum(len(f) - 1 for f in frames)
    sizes = sorted({f"{f[0].shape[1]}x{f[0].shape[0]}" for f in frames})
    print(f"Machine: {platform.machine()} ({platform.processor() or 'cpu'}), {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}, one OpenCV thread")
    print(f"Command: python benchmarks/{os.path.basename(__file__)} " + " ".join(sys.argv[1:]))
    print(f"Clips: {', '.join(os.path.basename(c) for c in clips)} ({pairs} pairs, {', '.join(sizes)})")
    print()
    cols = ["plain flow", "corners", "features", "matching", "RANSAC", "warp", "second flow"]
    print("| algo | features | " + " | ".join(cols) + " | --warped total | overhead | fallbacks |")
    print("|---|---|" + "---:|" * (len(cols) + 3))
    for algo in a.algos.split(","):
        for feat in a.features.split(","):
            steps = {k: [] for k in cols}
            fb = 0
            for f in frames:
                s, n = time_pairs(f, algo, feat)
                fb += n
                for k in cols:
                    steps[k] += s[k]
            med = {k: 1000 * float(np.median(v)) for k, v in steps.items()}
            extra = sum(med[k] for k in cols[1:])
            print(f"| {algo} | {feat} | " + " | ".join(f"{med[k]:.1f}" for k in cols)
                  + f" | {extra:.1f} | {extra / med['plain flow']:.2f}x | {fb}/{pairs} |")
    if a.no_e2e:
        return
    print()
    print("flowprep extract end to end (--jobs 1, default SIFT), seconds:")
    print()
    print("| algo | plain | --warped | ratio |")
    print("|---|---:|---:|---:|")
    tmp = tempfile.mkdtemp(prefix="bench-warped-")
    try:
        for algo in a.algos.split(","):
            p = e2e(clips, algo, False, os.path.join(tmp, "p"))
            w = e2e(clips, algo, True, os.path.join(tmp, "w"))
            print(f"| {algo} | {p:.2f} | {w:.2f} | {w / p:.2f}x |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
