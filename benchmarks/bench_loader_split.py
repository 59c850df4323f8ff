"""The split loader package against the single-module loader it replaced, in one process.

Issue 14 split flowprep/loader.py into flowprep/loader/ (sampling, views, stacking, source,
dataset). This loads the old module from a file (``git show b2ad0aa:flowprep/loader.py``)
as flowprep._loader_old, beside the package, so both run on the same store code, in the
same process, on one core, alternating every 5 samples; the ratio old time / new time
is taken per round (> 1: the split loader is faster).

    git show b2ad0aa:flowprep/loader.py > /tmp/loader_old.py
    python benchmarks/bench_loader_split.py --old /tmp/loader_old.py [--samples 100] [--repeat 7]

The stores are those of bench_loader.py (bikes.mp4, --algo dis, short side 256), in --work.
Also checks the two loaders' outputs are identical on every configuration timed.
"""
from __future__ import annotations

import argparse
import importlib.util
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


def load_old(path: str):
    import flowprep  # noqa: F401  (the parent package of the old module)
    spec = importlib.util.spec_from_file_location("flowprep._loader_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["flowprep._loader_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="the old flowprep/loader.py (git show b2ad0aa:...)")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    from bench_loader import build_stores
    work = a.work or tempfile.mkdtemp(prefix="flowprep-bench-loader-")
    stores = build_stores(work, "dis")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    old = load_old(a.old)
    from flowprep.loader import TwoStreamDataset as New
    Old = old.TwoStreamDataset
    configs = [
        ("flow, JPEG, float32", "jpeg", {}),
        ("flow, JPEG, uint8", "jpeg", {"dtype": "uint8"}),
        ("flow, HDF5, float32, mean subtraction", "hdf5", {"mean_subtract": True}),
        ("flow, JPEG, trajectory", "jpeg", {"stacking": "trajectory"}),
        ("two-stream K=3, JPEG", "jpeg", {"modality": "two-stream", "num_segments": 3}),
        ("rgbdiff K=3, JPEG", "jpeg", {"modality": "rgbdiff", "num_segments": 3}),
    ]
    runs = []
    for name, st, kw in configs:
        kw = {"modality": "flow", "length": 10, "crop_size": 224, "seed": 0, **kw}
        pair = [cls(stores[st], **kw) for cls in (Old, New)]
        for e in range(3):  # same outputs
            x, y = pair[0][(0, e)], pair[1][(0, e)]
            for k, v in x.items():
                if isinstance(v, np.ndarray):
                    assert np.array_equal(v, y[k]) and v.dtype == y[k].dtype, (name, k)
        runs.append((name, pair))
    times = {(n, w): [] for n, _ in runs for w in (0, 1)}
    for name, pair in runs:
        for ds in pair:
            ds[(0, 0)]
    chunk = 5  # old and new alternate every few samples: load from other processes hits both
    for r in range(a.repeat):
        for name, pair in runs:
            spent = [0.0, 0.0]
            for c0 in range(0, a.samples, chunk):
                for w in ((0, 1) if (c0 // chunk + r) % 2 == 0 else (1, 0)):
                    ds = pair[w]
                    t0 = time.perf_counter()
                    for i in range(c0, min(c0 + chunk, a.samples)):
                        ds[(0, 1000 * r + i)]
                    spent[w] += time.perf_counter() - t0
            for w in (0, 1):
                times[(name, w)].append(spent[w])
    cpu = cpu_name()
    print(f"Machine: {cpu}, 1 core, cv2.setNumThreads(1); Python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}, numpy {np.__version__}; load {os.getloadavg()[0]:.1f}")
    print(f"Store: bikes.mp4 602x256 --algo dis; L=10, 224 crop, train augmentation; "
          f"{a.samples} samples a round, {a.repeat} interleaved rounds")
    print(f"Command: python benchmarks/bench_loader_split.py --old OLD --samples {a.samples} "
          f"--repeat {a.repeat}")
    print()
    print("| configuration | old samples/s (best) | new samples/s (best) | speed new/old (old time / new time), median of rounds | range |")
    print("|---|---:|---:|---:|---:|")
    for name, _ in runs:
        to, tn = np.array(times[(name, 0)]), np.array(times[(name, 1)])
        ratio = to / tn  # > 1: the new loader is faster
        print(f"| {name} | {a.samples / to.min():.1f} | {a.samples / tn.min():.1f} | "
              f"{np.median(ratio):.3f} | {ratio.min():.3f}–{ratio.max():.3f} |")


if __name__ == "__main__":
    main()
