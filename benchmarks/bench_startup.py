"""The fixed cost of a run (issues 17, 21): `flowprep extract tiny.mp4 -o OUT`, wall seconds
and CPU seconds (the children's rusage: the command, its fork server, workers).

A two-frame 64x64 H.264 clip, so the time is start-up: the command's imports, deciding
the device, the store's config and lock, one worker process started and closed.
Rows, interleaved rounds, best and median of --repeat:

- `--device auto` (the default): on a machine without a GPU driver the device is decided
  without importing torch (flowprep.flow.gpu_driver_present);
- `--device auto` with FLOWPREP_ASSUME_GPU=1: torch imported to learn there is no GPU,
  which is what every `--device auto` run did before issue 17;
- `--device cpu`;
- two such clips with `--jobs 2`: two workers forked from the fork server (the default
  since issue 21, flowprep/run/starter.py), and spawned as before issue 21
  (FLOWPREP_START_METHOD=spawn: each worker imports flowprep, OpenCV, NumPy, PyAV).

    python benchmarks/bench_startup.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
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
         ("--device cpu", ["--device", "cpu"], {}),
         ("2 clips, --jobs 2 (fork server)", ["--jobs", "2", "+"], {}),
         ("2 clips, --jobs 2, FLOWPREP_START_METHOD=spawn (before issue 21)", ["--jobs", "2", "+"],
          {"FLOWPREP_START_METHOD": "spawn"})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    from synth import translated_frames, write_video
    from flowprep.flow import gpu_driver_present
    work = tempfile.mkdtemp(prefix="flowprep-startup-")
    try:
        os.makedirs(os.path.join(work, "two"))
        tiny = write_video(os.path.join(work, "two", "tiny.mp4"),
                           translated_frames(2, 64, 64, 1.0, 0.0), codec="libx264", pix_fmt="yuv420p")
        shutil.copy(tiny, os.path.join(work, "two", "tiny2.mp4"))
        exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
        times = {name: [] for name, _, _ in CASES}
        cpus = {name: [] for name, _, _ in CASES}
        for _ in range(a.repeat):
            for name, extra, env in CASES:
                out = os.path.join(work, "out")
                shutil.rmtree(out, ignore_errors=True)
                src = os.path.join(work, "two") if "+" in extra else tiny
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run([exe, "extract", src, "-o", out, *[e for e in extra if e != "+"]],
                               check=True, capture_output=True, env=dict(os.environ, **env))
                times[name].append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"flowprep extract tiny.mp4 -o OUT: wall and CPU seconds, best / median of {a.repeat}")
    print("| run | best s | median s | CPU s, median |\n|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts):.2f} | {statistics.median(ts):.2f} | "
              f"{statistics.median(cpus[name]):.2f} |")
    print(f"\nMachine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"Python {platform.python_version()}; GPU driver present: {gpu_driver_present()}")
    print(f"Command: python benchmarks/bench_startup.py --repeat {a.repeat}")


if __name__ == "__main__":
    main()
