"""CPU cost of TV-L1: flowprep's native (compiled) TV-L1 against OpenCV's DualTVL1 and torch.

Part 1, per pair: the same real 340x256 grey pairs (frames k, k+1 of the clips
in data/samples, resized to 340x256 as TSN's frames are) through OpenCV
(cv2.setNumThreads(1)), the torch backend (torch.set_num_threads(1), one pair
per call) and native, one thread each, in interleaved rounds (round r runs
every implementation on the same pairs, so machine load hits all of them
alike). The figure is CPU-seconds per pair (time.process_time), and the ratio
is taken within each round, then the median over rounds. Also: mean
|native - OpenCV| in px on those pairs, and where native's time goes per
pyramid level and stage (its stats mode, thread CPU time).

--before REV (e.g. 50978b7, the last commit before issue 21's kernel work)
also builds flowprep/_tvl1.c as it was at REV (git show, same flags, into a
temporary folder) and measures it in the same rounds: per-pair time and the
per-stage table before and after, and the distance to the 45 ms target.

Part 2, end to end: `flowprep extract --algo tvl1 --jobs 2`, default backend
(native) against --backend opencv, frames/s (wall) and CPU seconds
(children's rusage), on data/samples and on synthetic 340x256 texture clips
(a texture translated by a different constant shift per clip, lossless FFV1).
--e2e-frames N keeps the first N frames of each clip (a trimmed lossless copy
written with imageio-ffmpeg). The sample clips hold only 25-30 frames (any N >= 30
keeps them whole) and the default 25 is short: a run's fixed start-up (~0.9 CPU-s)
weighs against 15-24 pairs a clip. UCF-101 clips average ~7 s, ~180 frames at 25
frames/s; `--e2e-frames 100` (whole sample clips, 100-frame textures) is nearer a
dataset's proportions, at the price of ~3 minutes of OpenCV per input set.

    .venv/bin/python benchmarks/bench_native_tvl1.py [--rounds 3] [--pairs 4] [--e2e-frames 25] [--before REV]
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flowprep.flow.native_tvl1 import native_isa, tvl1_flow  # noqa: E402
from flowprep.flow.torch_tvl1 import TVL1_DEFAULTS  # noqa: E402
from _machine import cpu_name  # noqa: E402 (benchmarks/_machine.py)

SAMPLES = sorted(glob.glob(os.path.join(ROOT, "data", "samples", "*", "*.mp4")))


def pairs_340x256(per_clip: int):
    out = []
    for path in SAMPLES:
        cap = cv2.VideoCapture(path)
        frames = []
        while len(frames) < per_clip + 1:
            ok, bgr = cap.read()
            if not ok:
                break
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            frames.append(cv2.resize(grey, (340, 256), interpolation=cv2.INTER_AREA))
        cap.release()
        out += [(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
    return out


def opencv_algo():
    of = cv2.optflow.DualTVL1OpticalFlow_create()
    p = TVL1_DEFAULTS
    of.setTau(p["tau"]); of.setLambda(p["lambda"]); of.setTheta(p["theta"])
    of.setScalesNumber(p["nscales"]); of.setWarpingsNumber(p["warps"]); of.setEpsilon(p["epsilon"])
    of.setInnerIterations(p["inner_iterations"]); of.setOuterIterations(p["outer_iterations"])
    of.setScaleStep(p["scale_step"]); of.setGamma(p["gamma"]); of.setMedianFiltering(p["median_filtering"])
    return of


TARGET_MS = 45.0  # issue 21: a real 340x256 pair on one core


def build_before(rev: str, dst: str):
    """flowprep/_tvl1.c at git revision ``rev`` compiled (setup.py's flags, with its own
    runtime dispatch) into ``dst`` and loaded as a module; exits when that fails."""
    import importlib.machinery
    import importlib.util
    import sysconfig
    src = os.path.join(dst, "_tvl1_before.c")
    with open(src, "wb") as fh:
        fh.write(subprocess.run(["git", "-C", ROOT, "show", f"{rev}:flowprep/_tvl1.c"], check=True,
                                capture_output=True).stdout)
    so = os.path.join(dst, "_tvl1" + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = shutil.which("cc") or shutil.which("gcc")
    cmd = [cc, "-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-std=c99", "-shared",
           "-fPIC", "-I" + sysconfig.get_paths()["include"], src, "-o", so, "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"building _tvl1.c at {rev} failed:\n{r.stderr}")
    loader = importlib.machinery.ExtensionFileLoader("_tvl1", so)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_file_location("_tvl1", so, loader=loader))
    loader.exec_module(mod)
    return mod


def ext_flow(mod, a, b, stats=False):
    """Flow of the defaults through an extension module's compute (for the --before build)."""
    p = TVL1_DEFAULTS
    out = np.empty(a.shape + (2,), np.float32)
    levels = mod.compute(a, b, out, p["tau"], p["lambda"], p["theta"], p["nscales"], p["warps"], p["epsilon"],
                         p["inner_iterations"], p["outer_iterations"], p["scale_step"], p["gamma"],
                         p["median_filtering"], stats=stats)
    return (out, levels) if stats else out


def cpu_per_pair(fn, pairs):
    t = time.process_time()
    outs = [fn(a, b) for a, b in pairs]
    return (time.process_time() - t) / len(pairs), outs


def machine() -> str:
    cpu = cpu_name()
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, OpenCV {cv2.__version__}, native ISA {native_isa()}")


def part1(args) -> None:
    import torch
    from flowprep.flow.torch_tvl1 import TorchTVL1Backend
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    pairs = pairs_340x256(args.pairs)
    of = opencv_algo()
    th = TorchTVL1Backend({}, device="cpu", batch_size=1, threads=1)
    impls = {
        "opencv": lambda a, b: (of.setScalesNumber(5), of.calc(a, b, None))[1],
        "torch": th.compute,
        "native": tvl1_flow,
    }
    stage_fns = {"native": lambda a, b: tvl1_flow(a, b, stats=True)}
    if args.before:
        before = build_before(args.before, tempfile.mkdtemp(prefix="bench_tvl1_before_"))
        impls[f"native before ({args.before})"] = lambda a, b: ext_flow(before, a, b)
        stage_fns = {f"native before ({args.before})": lambda a, b: ext_flow(before, a, b, stats=True),
                     "native": stage_fns["native"]}
    skip = set() if args.torch else {"torch"}
    times = {k: [] for k in impls if k not in skip}
    ratios = {k: [] for k in impls if k not in skip and k != "native"}
    diffs = []
    tvl1_flow(*pairs[0])  # warm-up (page faults, dispatch)
    for r in range(args.rounds):
        got = {}
        for name, fn in impls.items():
            if name in skip:
                continue
            t, outs = cpu_per_pair(fn, pairs)
            times[name].append(t)
            got[name] = outs
        for name in ratios:
            ratios[name].append(times[name][-1] / times["native"][-1])
        if r == 0:
            diffs = [float(np.abs(n - o).mean()) for n, o in zip(got["native"], got["opencv"])]
            before_diffs = [float(np.abs(n - o).mean()) for k in got if k.startswith("native before")
                            for n, o in zip(got[k], got["opencv"])]
    print(f"\n### CPU-seconds per 340x256 pair, one thread ({len(pairs)} real pairs from "
          f"{len(SAMPLES)} clips, {args.rounds} interleaved rounds)\n")
    print("| implementation | CPU-s per pair (median of rounds) | rounds | native is N x faster (median of per-round ratios) |")
    print("|---|---|---|---|")
    for name in times:
        ts = times[name]
        ratio = "1" if name == "native" else f"{statistics.median(ratios[name]):.1f}x"
        print(f"| {name} | {statistics.median(ts):.4f} | {', '.join(f'{t:.4f}' for t in ts)} | {ratio} |")
    print(f"\nmean |native - OpenCV| per pair (px): {', '.join(f'{d:.4f}' for d in diffs)}")
    if before_diffs:
        print(f"mean |native before - OpenCV| per pair (px): {', '.join(f'{d:.4f}' for d in before_diffs)}")

    print(f"\nnative: {1e3 * statistics.median(times['native']):.1f} ms per pair (median of rounds), "
          f"target {TARGET_MS:.0f} ms: {'met' if statistics.median(times['native']) * 1e3 <= TARGET_MS else 'missed'} "
          f"({1e3 * statistics.median(times['native']) - TARGET_MS:+.1f} ms); OpenCV / native "
          f"{statistics.median(ratios['opencv']):.1f}x (target 25x)")
    for label, fn in stage_fns.items():
        stage_table(label, fn, pairs, args.rounds)


def stage_table(label, fn, pairs, rounds) -> None:
    """Where the time goes, per level and stage: thread CPU ms per pair, min over rounds."""
    best = {}
    for _ in range(rounds):
        agg = {}
        for a, b in pairs:
            _, levels = fn(a, b)
            for lv in levels:
                s = agg.setdefault(lv["level"], dict(size=f"{lv['width']}x{lv['height']}", iterations=0,
                                                     warp_s=0.0, median_s=0.0, iterate_s=0.0, resize_s=0.0,
                                                     px=lv["width"] * lv["height"]))
                for k in ("iterations", "warp_s", "median_s", "iterate_s", "resize_s"):
                    s[k] += lv[k]
        for lvl, s in agg.items():
            b = best.setdefault(lvl, dict(s))
            for k in ("warp_s", "median_s", "iterate_s", "resize_s"):
                b[k] = min(b[k], s[k])
    n = len(pairs)
    print(f"\n### {label}: where the time goes (per pair, mean over the {n} pairs, min of {rounds} rounds; "
          "thread CPU ms)\n")
    print("| level | size | inner iterations | ns per pixel-iteration | warp ms | median ms | iterations ms | resize ms | total ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    tot = dict(warp_s=0.0, median_s=0.0, iterate_s=0.0, resize_s=0.0)
    pix_it = 0
    for lvl in sorted(best):
        s = best[lvl]
        for k in tot:
            tot[k] += s[k]
        pix_it += s["iterations"] * s["px"]
        ns = 1e9 * s["iterate_s"] / max(1, s["iterations"] * s["px"])
        row_total = s["warp_s"] + s["median_s"] + s["iterate_s"] + s["resize_s"]
        print(f"| {lvl} | {s['size']} | {s['iterations'] / n:.0f} | {ns:.2f} | {1e3 * s['warp_s'] / n:.1f} | "
              f"{1e3 * s['median_s'] / n:.1f} | {1e3 * s['iterate_s'] / n:.1f} | {1e3 * s['resize_s'] / n:.2f} | "
              f"{1e3 * row_total / n:.1f} |")
    all_ms = 1e3 * sum(tot.values()) / n
    print(f"| all | | | {1e9 * tot['iterate_s'] / max(1, pix_it):.2f} | {1e3 * tot['warp_s'] / n:.1f} | "
          f"{1e3 * tot['median_s'] / n:.1f} | {1e3 * tot['iterate_s'] / n:.1f} | {1e3 * tot['resize_s'] / n:.2f} | "
          f"{all_ms:.1f} |")
    print(f"\n{pix_it / n / 1e6:.1f} M pixel-iterations per pair; {all_ms:.1f} ms against the {TARGET_MS:.0f} ms "
          f"target: {all_ms - TARGET_MS:+.1f} ms")


def trimmed_clips(dst: str, frames: int) -> str:
    """Copies of data/samples' clips cut to their first ``frames`` frames (lossless FFV1)."""
    import imageio_ffmpeg
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    for path in SAMPLES:
        rel = os.path.relpath(path, os.path.join(ROOT, "data", "samples"))
        out = os.path.join(dst, os.path.splitext(rel)[0] + ".mkv")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run([ff, "-v", "error", "-y", "-i", path, "-frames:v", str(frames), "-c:v", "ffv1", out],
                       check=True)
    return dst


def texture_clips(dst: str, frames: int) -> str:
    """Four 340x256 lossless clips of a smooth random texture, each translated by its own
    constant shift per frame (tests/synth.py), ``frames`` frames each."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from synth import translated_video
    for k, (dx, dy) in enumerate(((1.0, 0.5), (-2.0, 1.5), (3.0, -1.0), (0.5, -2.5))):
        os.makedirs(os.path.join(dst, "Texture"), exist_ok=True)
        translated_video(os.path.join(dst, "Texture", f"t{k}.mkv"), n=frames, h=256, w=340, dx=dx, dy=dy, seed=k)
    return dst


def part2(args) -> None:
    work = tempfile.mkdtemp(prefix="bench_native_")
    try:
        src = os.path.join(ROOT, "data", "samples")
        note = "all frames"
        if args.e2e_frames:
            src = trimmed_clips(os.path.join(work, "in"), args.e2e_frames)
            note = f"first {args.e2e_frames} frames of each clip"
        e2e(src, f"data/samples ({note})", os.path.join(work, "samples"))
        src = texture_clips(os.path.join(work, "tex"), args.e2e_frames or 25)
        e2e(src, f"4 synthetic 340x256 texture clips of {args.e2e_frames or 25} frames", os.path.join(work, "tex_out"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def e2e(src: str, what: str, work: str) -> None:
    """One side-by-side run: default (native) and --backend opencv on the same inputs."""
    exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
    rows = []
    for label, extra in (("default (native)", []), ("--backend opencv", ["--backend", "opencv"])):
        out = os.path.join(work, label.split()[0].strip("-"))
        cmd = [exe, "extract", src, "-o", out, "--algo", "tvl1", "--jobs", "2", "--no-progress"] + extra
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
        import flowprep
        store = flowprep.open_store(out)
        frames = sum(store[v].num_frames for v in store.video_ids)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows.append((label, store.config["implementation"], frames, wall, cpu))
    print(f"\n### End to end: flowprep extract --algo tvl1 --jobs 2 on {what}\n")
    print("| backend | implementation | frames | wall s | frames/s | CPU s |")
    print("|---|---|---|---|---|---|")
    for label, impl, frames, wall, cpu in rows:
        print(f"| {label} | {impl} | {frames} | {wall:.1f} | {frames / wall:.1f} | {cpu:.1f} |")
    print(f"\nnative / opencv frames/s: {(rows[0][2] / rows[0][3]) / (rows[1][2] / rows[1][3]):.1f}x "
          f"(target 18x); CPU-seconds ratio {rows[1][4] / rows[0][4]:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--pairs", type=int, default=4, help="pairs per clip (default 4)")
    ap.add_argument("--no-torch", dest="torch", action="store_false", help="leave the torch backend out")
    ap.add_argument("--e2e-frames", type=int, default=25,
                    help="frames per clip for the end-to-end part (0: whole clips; default 25; "
                         "the sample clips hold 25-30, UCF-101's ~180: see the module doc)")
    ap.add_argument("--skip-e2e", action="store_true", help="only the per-pair part")
    ap.add_argument("--before", metavar="REV", default=None,
                    help="also measure flowprep/_tvl1.c as of git revision REV (built into a temp folder)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.relpath(sys.executable, ROOT)] + sys.argv)}")
    part1(args)
    if not args.skip_e2e:
        part2(args)


if __name__ == "__main__":
    main()
