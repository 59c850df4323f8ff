"""flowprep report on a big store: wall time and page size.

Builds a synthetic store of N videos by cloning the videos of a real store (the
demo store by default: `make demo`): each clone's frame files are hard links to the
source video's, its meta.json a copy with the motion statistics, mean vectors and
clipped fractions scaled by a random factor (so the distributions and the outlier
tables are not N copies of one value), spread over 50 classes, plus 1 % failure
records. Then times ``build_report`` on it (one process; pin it to one core with
``taskset -c 0``) and prints the time of each phase and the page's size.

    taskset -c 0 python benchmarks/bench_report.py [--src demo_out] [--videos 2000] [--sample 6]
        [--pre-statistics]   (a store made before the statistics: 8 flows a video decoded)

Prints a markdown table with the machine and the command.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _machine import cpu_name  # noqa: E402


def clone_store(src: str, dst: str, n: int, seed: int = 0, pre_statistics: bool = False) -> None:
    """A JPEG store of ``n`` videos at ``dst`` cloned (hard links) from the JPEG store ``src``."""
    import flowprep
    from flowprep.store.base import record_failure
    store = flowprep.open_store(src)
    if store.format != "jpeg":
        raise SystemExit(f"{src}: clone from a JPEG store (convert it first)")
    ids = store.video_ids
    rng = np.random.default_rng(seed)
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "flowprep.json"), dst)
    for i in range(n):
        vid = ids[i % len(ids)]
        meta = store.meta(vid)
        cls = f"C{i % 50:02d}"
        new = f"{cls}/v_{cls}_g{i:05d}"
        d = os.path.join(dst, new)
        os.makedirs(d)
        for name in os.listdir(os.path.join(src, vid)):
            if name != "meta.json":
                os.link(os.path.join(src, vid, name), os.path.join(d, name))
        k = float(rng.lognormal(0.0, 0.8)) if i % 97 else 0.0  # a few near-static
        for key in list(meta):
            if key.startswith(("motion", "mean_flow")):
                meta[key] = (np.asarray(meta[key]) * k).round(4).tolist()
            elif key.startswith("clipped_fraction"):
                meta[key] = np.clip(np.asarray(meta[key]) * k * k, 0, 1).round(5).tolist()
        meta.update(video_id=new, class_name=cls, label=i % 50)
        if pre_statistics:  # a store made before the motion statistics: computed from planes
            for key in [k for k in meta if k.startswith("motion")]:
                del meta[key]
        if i % 211 == 5:
            meta["warnings"] = ["a synthetic decode warning"]
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f)
    for j in range(max(1, n // 100)):
        record_failure(dst, f"/data/broken/v_{j:05d}.mp4", f"broken/v_{j:05d}",
                       "not a readable video (synthetic failure record)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="demo_out", help="a JPEG store to clone (make demo)")
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--sample", type=int, default=6)
    ap.add_argument("--keep", default=None, help="keep the cloned store and the page here")
    ap.add_argument("--pre-statistics", action="store_true",
                    help="clone without the motion statistics (a store made before them)")
    args = ap.parse_args()
    from flowprep.report.page import build_report

    work = args.keep or tempfile.mkdtemp(prefix="flowprep-bench-report-")
    store = os.path.join(work, "store")
    try:
        if not os.path.isdir(store):
            t = time.perf_counter()
            clone_store(args.src, store, args.videos, pre_statistics=args.pre_statistics)
            print(f"cloned {args.videos} videos in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        marks = []
        t0 = time.perf_counter()
        rep = build_report(store, sample=args.sample,
                           progress=lambda m: marks.append((m, time.perf_counter() - t0)))
        total = time.perf_counter() - t0
        page = rep.html.encode("utf-8")
        with open(os.path.join(work, "report.html"), "wb") as f:
            f.write(page)
        marks.append(("end", total))
        phases = [(a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]
        c = rep.content
        print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs visible, "
              f"{len(os.sched_getaffinity(0))} usable; Python {platform.python_version()}")
        print("command: " + " ".join([os.path.basename(sys.executable)] + sys.argv))
        print()
        print("| videos | failed | " + " | ".join(p for p, _ in phases)
              + " | total s | page MB | images | sampled |")
        print("|---:|---:|" + "---:|" * len(phases) + "---:|---:|---:|---:|")
        n_img = rep.html.count("<img ")
        print(f"| {c['counts']['published']} | {c['counts']['failed']} | "
              + " | ".join(f"{s:.2f}" for _, s in phases)
              + f" | {total:.2f} | {len(page) / 1e6:.2f} | {n_img} | {len(c['samples'])} |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
