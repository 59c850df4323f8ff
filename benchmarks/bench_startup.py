"""The fixed cost of a run (issue 17): `flowprep extract tiny.mp4 -o OUT`, wall seconds.

A two-frame 64x64 H.264 clip, so the time is start-up: the command's imports, deciding
the device, the store's config and lock, one worker process started (spawn) and closed.
Rows, interleaved rounds, best and median of --repeat:

- `--device auto` (the default): on a machine without a GPU driver the device is decided
  without importing torch (flowprep.flow.gpu_driver_present);
- `--device auto` with FLOWPREP_ASSUME_GPU=1: torch imported to learn there is no GPU,
  which is what every `--device auto` run did before issue 17;
- `--device cpu`.

    python benchmarks/bench_startup.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_name  # noqa: E402

CASES = [("--device auto (default)", [], {}),
         ("--device auto, torch asked (FLOWPREP_ASSUME_GPU=1; before issue 17)", [],
          {"FLOWPREP_ASSUME_GPU": "1"}),
         ("--device cpu", ["--device", "cpu"], {})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    from synth import translated_frames, write_video
    from flowprep.flow import gpu_driver_present
    work = tempfile.mkdtemp(prefix="flowprep-startup-")
    try:
        tiny = write_video(os.path.join(work, "tiny.mp4"), translated_frames(2, 64, 64, 1.0, 0.0),
                           codec="libx264", pix_fmt="yuv420p")
        exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
        times = {name: [] for name, _, _ in CASES}
        for _ in range(a.repeat):
            for name, extra, env in CASES:
                out = os.path.join(work, "out")
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                subprocess.run([exe, "extract", tiny, "-o", out, *extra], check=True,
                               capture_output=True, env=dict(os.environ, **env))
                times[name].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"flowprep extract tiny.mp4 -o OUT: wall seconds, best / median of {a.repeat}")
    print("| run | best s | median s |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts):.2f} | {statistics.median(ts):.2f} |")
    print(f"\nMachine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"Python {platform.python_version()}; GPU driver present: {gpu_driver_present()}")
    print(f"Command: python benchmarks/bench_startup.py --repeat {a.repeat}")


if __name__ == "__main__":
    main()
