"""Training-time reading of a store: snippet sampling, flow stacking, augmentation.

    from flowprep.loader import TwoStreamDataset
    ds = TwoStreamDataset("out/", modality="flow", length=10, num_segments=3,
                          mode="train", crop_size=224, seed=0)
    sample = ds[0]        # dict of numpy arrays + label + video_id + indices used

A plain map-style dataset (``__len__``, ``__getitem__``) that returns numpy
arrays, so ``torch.utils.data.DataLoader`` batches it; this module does not
import torch. docs/loader.md is the user guide; the conventions are fixed here.

Snippets and indices (N = num_flows, F = num_frames, s = the store's step, L = length)
    Flow i is the displacement from frame i to frame i+s (pixels of the stored
    frames). A snippet starts at frame tau. Its flow stack holds the flows
    tau, tau+s, ..., tau+(L-1)s, which chain end to end (frame tau -> tau+s ->
    ... -> tau+L*s); RGB is frame tau, so RGB and flow of a two-stream sample
    start at the same frame. Bidirectional stacks (``bidirectional=True``)
    hold L/2 forward flows tau, tau+s, ..., tau+(L/2-1)s (frames tau ->
    tau+(L/2)s) then L/2 backward flows tau-s, tau-2s, ..., tau-(L/2)s, each
    the stored backward flow i (frame i+s -> i), ordered outward from tau so
    they chain from frame tau back to frame tau-(L/2)s (the paper's "L/2
    forward flows between frames tau and tau+L/2 and L/2 backward flows
    between frames tau-L/2 and tau"). RGB-difference stacks use the L
    consecutive frames tau..tau+L-1 (frame stride 1, whatever the step) and
    hold their L-1 differences, frame tau+j+1 minus frame tau+j (TSN).

    tau ranges over the starts whose whole window exists: [0, N-(L-1)s)
    for flow, [(L/2)s, N-(L/2-1)s) bidirectional, [0, F) for RGB, [0, F-L+1)
    for RGB differences. The range is cut into K = num_segments equal
    segments (TSN): mode="train" draws one start uniformly inside each
    segment (K=1 is Simonyan & Zisserman's single random snippet); "val" takes
    each segment's centre; "test" takes ``test_snippets`` (25) evenly spaced
    centres (the papers' protocol). With fewer valid starts than segments,
    segments share starts.

Padding (videos shorter than one window)
    When a video has fewer flows (frames) than a window needs, tau is the
    first start (centred for bidirectional stacks) and out-of-range indices
    are mapped by ``pad``: "repeat_last" (default, TSN) clamps them into
    [0, N-1], so the stack repeats the last (first) flow; "loop" wraps them
    modulo N. No index error is ever raised for a short video.

Seeding (deterministic, worker-independent)
    Every random draw of sample ``index`` in epoch ``epoch`` comes from
    ``np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))``,
    drawn in a fixed order (segment offsets, crop, flip). A sample therefore
    depends only on (seed, epoch, index): not on the worker that loads it, on
    num_workers, on the start method or on what was loaded before; no numpy
    global state is used, so forked workers cannot repeat each other. The
    seed is fixed at construction (``seed=None`` draws one from the OS once)
    and travels with the dataset to the workers. ``set_epoch(e)`` selects the
    epoch; with ``persistent_workers=True`` the workers keep the epoch they
    were started with, so index with ``(index, epoch)`` pairs from the
    sampler instead (``ds[(i, e)]`` is accepted).

Values
    dtype="float32": flow in pixels of the output image (dequantized by the
    store's record; with ``mean_subtract=True`` the stored per-flow mean
    vector of flow i is subtracted from flow i's (dx, dy) -- the paper's
    zero-centering; mean_flow_backward for backward flows); RGB in [0, 1], or
    (x/255 - mean)/std when ``rgb_mean``/``rgb_std`` are given; RGB
    differences are differences of those values.
    dtype="uint8": flow and RGB exactly as stored (flip applied: 255-q on
    dx); RGB differences are int16. The sample then carries what is needed
    to finish on the GPU: ``flow_mean``, ``flow_scale`` and ``flow_bound``
    (fixed quantization) or ``flow_ranges`` (adaptive).

Crops and flips (the same box and flip for every segment, and for RGB and
flow of a two-stream sample)
    train: crop="multiscale" (default; TSN: a corner/centre/fixed-grid crop
    whose sides are picked from (1, .875, .75, .66) x the short side, aspect
    jittered by at most one scale step, resized to crop_size); "random" (the
    paper: a crop_size square anywhere in the frame); "center". Then a
    horizontal flip with probability 1/2 (``flip=True``).
    val: centre crop. test: centre crop (test_crops=1) or ten crops
    (test_crops=10): views 0-4 = centre, top-left, top-right, bottom-left,
    bottom-right; views 5-9 the same boxes flipped. Arrays hold V views x K
    snippets on axis 0, view-major: row v*K + k.
    A crop of w x h stored pixels resized to crop_size scales displacements:
    float output multiplies dx by sx = crop_size/w and dy by sy = crop_size/h
    (``flow_scale`` = (sx, sy)); uint8 output leaves the values alone (TSN's
    behaviour): multiply by flow_scale after dequantizing. The resize itself
    is bilinear on the stored uint8 planes (as TSN resizes its images; the
    rounding adds at most about one quantization step, 2B/255 px), followed
    by dequantization; a crop that needs no resize is exact. Crops larger
    than the frame are clipped to it.
    A flip mirrors the output and negates dx of every flow: -d exactly in
    float (the subtracted dx mean is negated with it), 255-q in uint8 (exact
    for fixed quantization; adaptive (lo, hi) becomes (-hi, -lo) in
    ``flow_ranges``). Trajectory stacks are computed unflipped and mirrored.

Decoding
    Flow planes and RGB frames are decoded only inside the union of the
    sample's crop boxes, by codec.decode_grey_crop / decode_rgb_crop
    (libjpeg-turbo partial decompression through flowprep._jpegcrop when
    built; else a whole cv2.imdecode and a copy): the same pixels either way.
    Trajectory stacks (which follow points anywhere in the frame) decode
    whole planes. docs/loader.md has the figures.

Trajectory stacking (stacking="trajectory", Simonyan & Zisserman eq. 2)
    Channel pair k of the output pixel p holds flow tau+k*s sampled at p_k,
    with p_1 = p and p_{k+1} = p_k + d_{tau+(k-1)s}(p_k): bilinear sampling
    (cv2.remap; positions in 1/32 pixel, clamped to the frame border) of the
    whole frame's stored planes, dequantized at the points (the same as
    sampling the dequantized flow: bilinear weights sum to one). Points follow
    the raw flow; the mean is subtracted from the sampled values. The
    backward half of a bidirectional stack starts again at p and follows the
    backward flows. uint8 output samples the stored planes the same way.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import ConfigError
from .store import codec
from .store.base import Store, Video

MODALITIES = ("flow", "rgb", "rgbdiff", "two-stream")
MODES = ("train", "val", "test")
CROPS = ("multiscale", "random", "center")
STACKINGS = ("plain", "trajectory")
PADS = ("repeat_last", "loop")
DTYPES = ("float32", "uint8")
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)
DEFAULT_LENGTH = {"flow": 10, "two-stream": 10, "rgbdiff": 5, "rgb": 1}



# --- decoding (module functions so a benchmark can time them) ---------------
def decode_grey(buf: Any, where: object = "") -> np.ndarray:
    """A stored grey payload -> uint8 (H, W): JPEG bytes decoded whole (codec.decode_grey,
    errors name ``where``), raw arrays as they are."""
    if isinstance(buf, np.ndarray):  # raw payload (HDF5 payload="raw"): a strided view
        return np.ascontiguousarray(buf, dtype=np.uint8)
    return codec.decode_grey(buf, where)


def union_box(views: Sequence[Tuple[int, int, int, int, bool]]) -> Tuple[int, int, int, int]:
    """The smallest (x0, y0, w, h) holding every view's box: the region a sample decodes."""
    x0, y0 = min(v[0] for v in views), min(v[1] for v in views)
    return (x0, y0, max(v[0] + v[2] for v in views) - x0, max(v[1] + v[3] for v in views) - y0)


class _plane_name:
    """Names a stored plane in error messages; formatted only when an error is raised."""

    __slots__ = ("video", "i", "back", "c")

    def __init__(self, video: Video, i: int, back: bool, c: int) -> None:
        self.video, self.i, self.back, self.c = video, i, back, c

    def __str__(self) -> str:
        kind = "backward flow" if self.back else "flow"
        return f"{self.video.video_id}: {kind} {self.i} {'xy'[self.c]}"


# --- sampling (pure functions) ----------------------------------------------
def segment_offsets(num_valid: int, num_segments: int, mode: str,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Snippet offsets in [0, num_valid) for K = num_segments segments (TSN).

    Segment k is [floor(k M/K), floor((k+1) M/K)) with M = num_valid (at
    least one position wide). "train": one uniform draw in each segment;
    otherwise the centre floor(M/K (k + 1/2)).

    Returns:
        int64 (K,).
    """
    m, k = max(int(num_valid), 1), int(num_segments)
    if mode == "train":
        b = (np.arange(k + 1, dtype=np.int64) * m) // k
        lo = np.minimum(b[:-1], m - 1)
        hi = np.maximum(b[1:], lo + 1)
        return rng.integers(lo, hi).astype(np.int64)
    tick = m / k
    return np.minimum((tick / 2 + tick * np.arange(k)).astype(np.int64), m - 1)


def pad_indices(idx: np.ndarray, n: int, pad: str) -> np.ndarray:
    """Map indices outside [0, n) by the padding rule: "repeat_last" clamps, "loop" wraps."""
    if pad == "loop":
        return np.mod(idx, n)
    return np.clip(idx, 0, n - 1)


def flow_window(tau: int, length: int, step: int, bidirectional: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Flow indices and directions of the stack starting at frame tau (before padding).

    Returns:
        (indices int64 (L,), backward bool (L,)); see the module docstring for the order.
    """
    if not bidirectional:
        return tau + step * np.arange(length, dtype=np.int64), np.zeros(length, bool)
    h = length // 2
    idx = np.concatenate([tau + step * np.arange(h, dtype=np.int64),
                          tau - step * np.arange(1, h + 1, dtype=np.int64)])
    return idx, np.repeat(np.array([False, True]), h)


def multiscale_boxes(height: int, width: int, size: int,
                     scales: Sequence[float] = TSN_SCALES, max_distort: int = 1
                     ) -> Tuple[List[Tuple[int, int]], int]:
    """TSN's candidate crop sizes [(w, h), ...] for a frame; and the 13 fixed positions' count."""
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(x - size) < 3 else x for x in sides]
    pairs = [(min(w, width), min(h, height)) for i, h in enumerate(sides)
             for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    return pairs, 13


def fixed_offsets(width: int, height: int, cw: int, ch: int) -> List[Tuple[int, int]]:
    """TSN's 13 crop positions (corners, centre, edge centres, quarter points)."""
    ws, hs = (width - cw) // 4, (height - ch) // 4
    return [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs),
            (0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
            (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]


# --- the dataset ------------------------------------------------------------
class TwoStreamDataset:
    """Map-style dataset of two-stream snippets read from a flowprep store.

    Args:
        store: a Store, or the path of one (opened with open_store).
        videos: None (every published video), a list of video ids, or the
            path of an annotation list ("<video dir> <count> <label>" lines,
            e.g. OUT/flow_list.txt; the dir is a video id, or a path inside
            the store; the count is ignored, the stored counts are used).
        labels: None (the list file's labels, else the stored label from the
            class folders, -1 when none), or a mapping video_id -> int.
        modality: "flow" | "rgb" | "rgbdiff" | "two-stream".
        length: L, flows per stack (frames for rgbdiff); default 10 (5 for rgbdiff).
        num_segments: K snippets per sample (TSN segments) in train/val.
        mode: "train" | "val" | "test".
        crop_size: output side S in pixels, or None for whole frames (no crop).
        crop: train crop, "multiscale" | "random" | "center".
        scales: multiscale crop sides as fractions of the short side.
        flip: random horizontal flip in train.
        stacking: "plain" | "trajectory".
        bidirectional: half forward, half backward flows (needs --backward).
        mean_subtract: subtract the stored per-flow mean vectors (float32 only).
        dtype: "float32" | "uint8"; see the module docstring.
        rgb_mean, rgb_std: per-channel (R, G, B) in [0, 1] units (float32 only).
        pad: "repeat_last" | "loop", for videos shorter than one window.
        test_snippets: snippets per video in test mode (25).
        test_crops: 1 (centre) or 10 (ten-crop) in test mode.
        seed: base seed of every random draw (None: drawn once from the OS).
        video_cache: open Video objects kept per worker.

    Each item is a dict (shapes for V views, K snippets, S = crop_size):
        "flow": (V*K, 2L, S, S) float32 or uint8; channel 2j = dx, 2j+1 = dy
            of the j-th flow of the stack.
        "rgb": (V*K, 3, S, S) float32 or uint8, RGB order.
        "rgbdiff": (V*K, 3(L-1), S, S) float32 or int16.
        "label": int; "video_id": str; "index": int; "epoch": int.
        "tau": int64 (K,) snippet start frames.
        "flow_indices": int64 (K, L); "flow_backward": bool (K, L).
        "frame_indices": int64 (K, 1) for rgb, (K, L) for rgbdiff.
        "crop_box": int64 (V, 4) = (x0, y0, w, h) in stored frame pixels.
        "flip": bool (V,); "flow_scale": float32 (V, 2) = (sx, sy).
        "flow_mean": float32 (V*K, L, 2) stored mean vectors (dx negated on
            flipped views), stored pixels.
        "flow_bound" float32 () or "flow_ranges" float32 (V*K, L, 2, 2): with dtype uint8.
    """

    def __init__(self, store: Union[Store, str, os.PathLike], videos: Any = None,
                 labels: Optional[Mapping[str, int]] = None, *, modality: str = "flow",
                 length: Optional[int] = None, num_segments: int = 1, mode: str = "train",
                 crop_size: Optional[int] = 224, crop: str = "multiscale",
                 scales: Sequence[float] = TSN_SCALES, flip: bool = True,
                 stacking: str = "plain", bidirectional: bool = False,
                 mean_subtract: bool = False, dtype: str = "float32",
                 rgb_mean: Optional[Sequence[float]] = None,
                 rgb_std: Optional[Sequence[float]] = None, pad: str = "repeat_last",
                 test_snippets: int = 25, test_crops: int = 1, seed: Optional[int] = None,
                 video_cache: int = 64) -> None:
        def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, "
                                  f"got {value!r}")
            return value

        self.modality = choice("modality", modality, MODALITIES)
        self.mode = choice("mode", mode, MODES)
        self.crop = choice("crop", crop, CROPS)
        self.stacking = choice("stacking", stacking, STACKINGS)
        self.pad = choice("pad", pad, PADS)
        self.dtype = choice("dtype", dtype, DTYPES)
        self.test_crops = choice("test_crops", test_crops, (1, 10))
        self.length = int(DEFAULT_LENGTH[modality] if length is None else length)
        self.num_segments = int(num_segments)
        self.test_snippets = int(test_snippets)
        self.bidirectional = bool(bidirectional)
        self.mean_subtract = bool(mean_subtract)
        self.flip = bool(flip)
        self.scales = tuple(float(s) for s in scales)
        self.video_cache = max(1, int(video_cache))
        if self.length < 1:
            raise ConfigError(f"length must be at least 1, got {length}")
        if modality == "rgbdiff" and self.length < 2:
            raise ConfigError(f"rgbdiff needs length >= 2 (L frames give L-1 differences), got {length}")
        if self.bidirectional and (self.length % 2 or not self.uses_flow):
            raise ConfigError("bidirectional needs a flow modality and an even length "
                              f"(L/2 forward + L/2 backward flows), got length {self.length}")
        if self.num_segments < 1 or self.test_snippets < 1:
            raise ConfigError("num_segments and test_snippets must be at least 1")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ConfigError(f"scales must be fractions in (0, 1], got {scales!r}")
        if crop_size is not None and int(crop_size) < 1:
            raise ConfigError(f"crop_size must be a positive number of pixels or None, got {crop_size!r}")
        self.crop_size = None if crop_size is None else int(crop_size)
        if self.crop_size is None and self.test_crops == 10:
            raise ConfigError("test_crops=10 needs a crop_size (ten crops of crop_size squares)")
        if self.mean_subtract and self.dtype == "uint8":
            raise ConfigError("mean_subtract needs dtype='float32' (uint8 cannot hold the centred "
                              "values); with uint8, subtract sample['flow_mean'] on the GPU")
        if (rgb_mean is None) != (rgb_std is None):
            raise ConfigError("give rgb_mean and rgb_std together")
        if rgb_mean is not None:
            if self.dtype == "uint8":
                raise ConfigError("rgb_mean/rgb_std need dtype='float32'")
            m = np.asarray(rgb_mean, np.float32).reshape(-1)
            sd = np.asarray(rgb_std, np.float32).reshape(-1)
            if m.size != 3 or sd.size != 3 or np.any(sd <= 0):
                raise ConfigError("rgb_mean and rgb_std take 3 values (R, G, B), std > 0")
        else:
            m, sd = np.zeros(3, np.float32), np.ones(3, np.float32)
        # per-channel float LUTs: q -> (q/255 - mean)/std
        q = np.arange(256, dtype=np.float32) / np.float32(255.0)
        self._rgb_luts = [((q - m[c]) / sd[c]).astype(np.float32) for c in range(3)]
        self._flip_u8 = (255 - np.arange(256)).astype(np.uint8)
        self._multiscale: Dict[tuple, list] = {}  # (H, W, S, scales) -> multiscale crop candidates

        if seed is None:
            seed = int(np.random.SeedSequence().entropy) % (1 << 63)
        if int(seed) < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed}")
        self.seed = int(seed)
        self.epoch = 0

        if isinstance(store, Store):
            self.root = store.root
            self._store: Optional[Store] = store
        else:
            from .store import open_store
            self.root = os.path.abspath(os.fspath(store))
            self._store = open_store(self.root)
        self._pid = os.getpid()
        self._videos: "OrderedDict[str, Tuple[Video, Dict[str, Any]]]" = OrderedDict()
        st = self._store
        if self.bidirectional and not st.config.get("backward", False):
            raise ConfigError(f"{self.root}: bidirectional stacks need backward flows; "
                              "extract the store with --backward")
        self.video_ids, list_labels = self._resolve_videos(st, videos)
        if labels is not None:
            missing = [v for v in self.video_ids if v not in labels]
            if missing:
                raise ConfigError(f"labels has no entry for {len(missing)} video(s), e.g. {missing[0]!r}")
            self._labels: Optional[List[int]] = [int(labels[v]) for v in self.video_ids]
        else:
            self._labels = list_labels

    # --- inputs -------------------------------------------------------------
    @property
    def uses_flow(self) -> bool:
        return self.modality in ("flow", "two-stream")

    def _resolve_videos(self, st: Store, videos: Any) -> Tuple[List[str], Optional[List[int]]]:
        known = set(st.video_ids)
        if videos is None:
            return list(st.video_ids), None
        if isinstance(videos, (str, os.PathLike)):
            return self._read_list(st, os.fspath(videos), known)
        ids = [str(v) for v in videos]
        missing = [v for v in ids if v not in known]
        if missing:
            raise ConfigError(f"{len(missing)} video id(s) not in the store {self.root}, "
                              f"e.g. {missing[0]!r}")
        return ids, None

    def _read_list(self, st: Store, path: str, known: set) -> Tuple[List[str], Optional[List[int]]]:
        if not os.path.isfile(path):
            raise ConfigError(f"annotation list {path!r} does not exist")
        base = os.path.dirname(os.path.abspath(path))
        root = os.path.realpath(st.root)
        ids: List[str] = []
        labels: List[Optional[int]] = []
        missing: List[str] = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                parts = line.rsplit(None, 2)  # ids may hold spaces; count and label do not
                if len(parts) == 3 and parts[1].lstrip("-").isdigit() and parts[2].lstrip("-").isdigit():
                    name, label = parts[0], int(parts[2])
                elif len(parts) >= 2 and parts[-1].lstrip("-").isdigit():
                    name, label = line.rsplit(None, 1)[0], None
                else:
                    name, label = line.strip(), None
                vid = name if name in known else None
                if vid is None:
                    full = name if os.path.isabs(name) else os.path.join(base, name)
                    rel = os.path.relpath(os.path.realpath(full), root).replace(os.sep, "/")
                    vid = rel if rel in known else None
                if vid is None:
                    missing.append(f"line {n}: {name}")
                    continue
                ids.append(vid)
                labels.append(label)
        if missing:
            raise ConfigError(f"{path}: {len(missing)} entr{'y' if len(missing) == 1 else 'ies'} "
                              f"not in the store {self.root}, e.g. {missing[0]}")
        if any(lab is None for lab in labels):
            return ids, None
        return ids, [int(lab) for lab in labels]  # type: ignore[arg-type]

    # --- per-process store and video objects ---------------------------------
    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        state["_videos"] = OrderedDict()
        state.pop("_scratch", None)  # work memory stays in its process
        return state

    def _open(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            from .store import open_store
            self._store = open_store(self.root)
            self._videos = OrderedDict()
            self._pid = os.getpid()
        return self._store

    def video(self, video_id: str) -> Video:
        """The open Video of ``video_id`` (kept in a small per-process LRU cache)."""
        return self._entry(video_id)[0]

    def _entry(self, video_id: str) -> Tuple[Video, Dict[str, Any]]:
        """(video, per-video cache of parsed arrays), from the per-process LRU."""
        st = self._open()
        e = self._videos.get(video_id)
        if e is None:
            e = (st[video_id], {})
            self._videos[video_id] = e
            if len(self._videos) > self.video_cache:
                self._videos.popitem(last=False)
        else:
            self._videos.move_to_end(video_id)
        return e

    def _means(self, video_id: str, backward: bool) -> np.ndarray:
        """float32 (num_flows, 2) stored mean vectors, parsed once per cached video."""
        video, cache = self._entry(video_id)
        key = "mean_b" if backward else "mean_f"
        if key not in cache:
            cache[key] = video.mean_flow_backward if backward else video.mean_flow
        return cache[key]

    # --- dataset protocol ---------------------------------------------------
    def __len__(self) -> int:
        return len(self.video_ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes (see Seeding)."""
        self.epoch = int(epoch)

    def label(self, index: int) -> int:
        if self._labels is not None:
            return self._labels[index]
        lab = self.video(self.video_ids[index]).label
        return -1 if lab is None else int(lab)

    def __repr__(self) -> str:
        return (f"<TwoStreamDataset {self.root!r} videos={len(self)} modality={self.modality} "
                f"L={self.length} K={self.num_segments} mode={self.mode}>")

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = int(key[0]), int(key[1])
        else:
            index, epoch = int(key), self.epoch
        n = len(self.video_ids)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        index %= n
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))
        vid = self.video_ids[index]
        video = self.video(vid)
        taus = self._taus(video, rng)
        views = self._views(video, rng)
        out: Dict[str, Any] = {"video_id": vid, "label": self.label(index), "index": index,
                               "epoch": epoch, "tau": taus}
        out["crop_box"] = np.array([v[:4] for v in views], dtype=np.int64).reshape(-1, 4)
        out["flip"] = np.array([v[4] for v in views], dtype=bool)
        oh, ow = self._out_size(video)
        out["flow_scale"] = np.array([[ow / v[2], oh / v[3]] for v in views], np.float32)
        if self.uses_flow:
            self._flow_sample(video, taus, views, out)
        if self.modality in ("rgb", "two-stream"):
            out["frame_indices"] = taus[:, None].copy()
            out["rgb"] = self._rgb_stack(video, taus[:, None], views)
        elif self.modality == "rgbdiff":
            fi = pad_indices(taus[:, None] + np.arange(self.length), video.num_frames, self.pad)
            out["frame_indices"] = fi
            out["rgbdiff"] = self._rgbdiff_stack(video, fi, views)
        return out

    # --- sampling -------------------------------------------------------------
    def _taus(self, video: Video, rng: np.random.Generator) -> np.ndarray:
        """Snippet start frames, int64 (K,)."""
        L, s = self.length, video.step
        if self.uses_flow:
            n = video.num_flows
            lo = (L // 2) * s if self.bidirectional else 0
            m = n - (L - 1) * s
        elif self.modality == "rgb":
            n, lo, m = video.num_frames, 0, video.num_frames
        else:
            n, lo, m = video.num_frames, 0, video.num_frames - L + 1
        k = self.test_snippets if self.mode == "test" else self.num_segments
        offs = segment_offsets(m, k, self.mode, rng)
        if m >= 1:
            return lo + offs
        tau = int(np.clip(lo + m // 2, 0, max(n - 1, 0)))
        return np.full(k, tau, dtype=np.int64)

    def _out_size(self, video: Video) -> Tuple[int, int]:
        if self.crop_size is None:
            return video.height, video.width
        return self.crop_size, self.crop_size

    def _views(self, video: Video, rng: np.random.Generator) -> List[Tuple[int, int, int, int, bool]]:
        """Crop views [(x0, y0, w, h, flip)] in stored frame pixels."""
        H, W = video.height, video.width
        S = self.crop_size
        if S is None:
            flip = self.mode == "train" and self.flip and bool(rng.random() < 0.5)
            return [(0, 0, W, H, flip)]
        cw, ch = min(S, W), min(S, H)
        centre = ((W - cw) // 2, (H - ch) // 2, cw, ch)
        if self.mode == "test":
            if self.test_crops == 1:
                return [centre + (False,)]
            boxes = [centre, (0, 0, cw, ch), (W - cw, 0, cw, ch), (0, H - ch, cw, ch),
                     (W - cw, H - ch, cw, ch)]
            return [b + (False,) for b in boxes] + [b + (True,) for b in boxes]
        if self.mode == "val":
            return [centre + (False,)]
        if self.crop == "random":
            box = (int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1)), cw, ch)
        elif self.crop == "multiscale":
            key = (H, W, S, self.scales)
            cands = self._multiscale.get(key)
            if cands is None:  # computed once per frame size
                pairs, _ = multiscale_boxes(H, W, S, self.scales)
                cands = self._multiscale[key] = [((bw, bh), fixed_offsets(W, H, bw, bh))
                                                    for bw, bh in pairs]
            (bw, bh), offsets = cands[int(rng.integers(len(cands)))]
            x0, y0 = offsets[int(rng.integers(len(offsets)))]
            box = (x0, y0, bw, bh)
        else:
            box = centre
        flip = self.flip and bool(rng.random() < 0.5)
        return [box + (flip,)]

    # --- flow -------------------------------------------------------------------
    def _flow_sample(self, video: Video, taus: np.ndarray, views, out: Dict[str, Any]) -> None:
        K, L, V = len(taus), self.length, len(views)
        offs, back = flow_window(0, L, video.step, self.bidirectional)
        idx = pad_indices(taus[:, None] + offs, video.num_flows, self.pad)   # (K, L)
        bwd = np.repeat(back[None], K, axis=0)
        out["flow_indices"], out["flow_backward"] = idx, bwd
        oh, ow = self._out_size(video)
        dt = np.float32 if self.dtype == "float32" else np.uint8
        stack = np.empty((V * K, 2 * L, oh, ow), dt)
        out["flow"] = stack

        fixed = video.quant["scheme"] == "fixed"
        means = self._means(video.video_id, False)[idx]                     # (K, L, 2)
        if bwd.any():
            means[bwd] = self._means(video.video_id, True)[idx[bwd]]
        ranges = None
        if not fixed:
            ranges = np.empty((K, L, 2, 2), np.float32)
            for k in range(K):
                for j in range(L):
                    ranges[k, j] = video.flow_ranges(int(idx[k, j]), bool(bwd[k, j]))
        flips = np.array([v[4] for v in views], bool)
        sign = np.where(flips, -1.0, 1.0).astype(np.float32)
        fm = np.repeat(means[None], V, axis=0)          # (V, K, L, 2)
        fm[..., 0] *= sign[:, None, None]
        out["flow_mean"] = fm.reshape(V * K, L, 2)
        if self.dtype == "uint8":
            if fixed:
                out["flow_bound"] = np.float32(video.quant["bound"])
            else:
                r = np.repeat(ranges[None], V, axis=0)     # (V, K, L, 2, 2)
                rx = r[..., 0, :].copy()
                r[flips, ..., 0, 0] = -rx[flips, ..., 1]
                r[flips, ..., 0, 1] = -rx[flips, ..., 0]
                out["flow_ranges"] = r.reshape(V * K, L, 2, 2)

        # dequantization as an affine map of q per flow and component: d = a*q + b
        if fixed:
            B = np.float32(video.quant["bound"])
            a = np.full((K, L, 2), 2 * B / np.float32(255.0), np.float32)
            b = np.full((K, L, 2), -B, np.float32)
        else:
            a = ((ranges[..., 1] - ranges[..., 0]) / np.float32(255.0)).astype(np.float32)
            b = ranges[..., 0].copy()
        scale = out["flow_scale"]                                            # (V, 2)
        if self.stacking == "trajectory":
            self._trajectory(video, idx, bwd, views, stack, a, b, means, scale)
            return
        # Plain stacks: decode each stored plane, crop and resize it (bilinear, uint8, as
        # TSN) into a uint8 stack, mirror the rows of flipped views, then dequantize the
        # whole stack at once: value = q * A + C per (row, channel), two float32 roundings
        # (a product, then a sum), where A and C fold in the dequantization, the mean, the
        # resize scale and the dx sign. With A = -a and C = -b the flipped value is -d
        # bit-exactly.
        float_out = dt is np.float32
        u8 = np.empty((V * K, 2 * L, oh, ow), np.uint8) if float_out else stack
        # Only the region the views need is decoded: the union of their boxes (one
        # box in train and val, the whole frame for ten crops), with libjpeg-turbo's
        # partial decompression where flowprep._jpegcrop is built (codec.decode_grey_crop).
        region_box = ux0, uy0, uw, uh = union_box(views)
        plan = [(y0 - uy0, y0 - uy0 + h, x0 - ux0, x0 - ux0 + w, (h, w) != (oh, ow), v * K)
                for v, (x0, y0, w, h, _) in enumerate(views)]
        # one view needing no resize: decode straight into its plane of the stack
        direct = V == 1 and not plan[0][4]
        region = None if direct else np.empty((uh, uw), np.uint8)
        resize, linear, size = cv2.resize, cv2.INTER_LINEAR, (ow, oh)
        crop_decode, raw_crop = codec.decode_grey_crop, (slice(uy0, uy0 + uh), slice(ux0, ux0 + uw))
        idx_l, bwd_l = idx.tolist(), bwd.tolist()
        pairs = video.flow_payloads([(i, b) for k in range(K) for i, b in zip(idx_l[k], bwd_l[k])])
        for k in range(K):
            for j in range(L):
                i, back = idx_l[k][j], bwd_l[k][j]
                pair = pairs[k * L + j]
                for c in (0, 1):
                    buf, ch = pair[c], 2 * j + c
                    dst = u8[k, ch] if direct else region
                    if isinstance(buf, np.ndarray):  # raw payload: a (H, W) uint8 array
                        dst[...] = buf[raw_crop]
                    else:
                        crop_decode(buf, region_box, dst, _plane_name(video, i, back, c))
                    if direct:
                        continue
                    for ya, yb, xa, xb, rs, r0 in plan:
                        if rs:
                            resize(region[ya:yb, xa:xb], size, dst=u8[r0 + k, ch], interpolation=linear)
                        else:
                            u8[r0 + k, ch] = region[ya:yb, xa:xb]
        for v in np.flatnonzero(flips):
            rows = u8[v * K:(v + 1) * K]
            # one in-place cv2.flip over every row of the view's planes (each image row is
            # mirrored on its own): a tenth of numpy's reversed copy, a fifth of one call a plane
            flat = rows.reshape(-1, ow)
            cv2.flip(flat, 1, dst=flat)
            if not float_out:
                np.subtract(255, rows[:, 0::2], out=rows[:, 0::2])
        if not float_out:
            return
        if self.mean_subtract:
            b = b - means
        f = scale * np.stack([sign, np.ones_like(sign)], axis=1)            # (V, 2)
        A = (a[None] * f[:, None, None, :]).reshape(V * K, 2 * L, 1, 1)
        C = (b[None] * f[:, None, None, :]).reshape(V * K, 2 * L, 1, 1)
        stack[...] = u8  # exact; then float32 products and sums in place (faster than
        np.multiply(stack, A, out=stack)  # numpy's uint8 * float32 loop, same bits)
        np.add(stack, C, out=stack)

    def _float_scratch(self, shape: Tuple[int, ...]) -> np.ndarray:
        """A float32 work array of ``shape`` kept by the dataset (one per worker process).

        Reused across samples: a fresh 12 MB array a sample costs more in page faults
        than the conversion written into it. Never returned to the caller.
        """
        buf = self.__dict__.get("_scratch")
        if buf is None or buf.shape != shape:
            buf = self._scratch = np.empty(shape, np.float32)
        return buf

    @staticmethod
    def _resize_into(img: np.ndarray, dst: np.ndarray) -> None:
        if img.shape == dst.shape:
            dst[...] = img
        else:
            cv2.resize(img, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_LINEAR)

    def _trajectory(self, video: Video, idx, bwd, views, stack, a, b, means, scale) -> None:
        """Trajectory stacks (eq. 2 of Simonyan & Zisserman), see the module docstring."""
        K, L = idx.shape
        float_out = stack.dtype == np.float32
        halves = [range(L // 2), range(L // 2, L)] if self.bidirectional else [range(L)]
        remap_kw = dict(interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for k in range(K):
            # per flow: the stored planes, uint8 (H, W), and as float32 q values. Bilinear
            # sampling commutes with the affine dequantization (its weights sum to 1), so the
            # q planes are sampled and only the samples dequantized: a cast of the frame
            # instead of a dequantized float copy of it, and two 1-channel remaps, which are
            # ~4x cheaper here than one remap of an interleaved 2-channel frame.
            q_planes = []
            qf_planes = self._float_scratch((L, 2, video.height, video.width))
            payloads = video.flow_payloads([(int(idx[k, j]), bool(bwd[k, j])) for j in range(L)])
            for j in range(L):
                i, back = int(idx[k, j]), bool(bwd[k, j])
                qs = [decode_grey(payloads[j][c], _plane_name(video, i, back, c)) for c in (0, 1)]
                q_planes.append(qs)
                for c in (0, 1):
                    np.copyto(qf_planes[j, c], qs[c], casting="unsafe")
            done: Dict[Tuple[int, int, int, int], List[List[np.ndarray]]] = {}
            for v, (x0, y0, w, h, fl) in enumerate(views):
                box = (x0, y0, w, h)
                if box not in done:
                    gx, gy = np.meshgrid(np.arange(x0, x0 + w, dtype=np.float32),
                                         np.arange(y0, y0 + h, dtype=np.float32))
                    sampled: List[List[np.ndarray]] = [[] for _ in range(L)]
                    for half in halves:
                        px, py = gx.copy(), gy.copy()
                        for j in half:
                            # the points in remap's fixed-point form (1/32 pixel, what remap
                            # makes of float maps itself), once for every plane sampled there
                            m1, m2 = cv2.convertMaps(px, py, cv2.CV_16SC2)
                            # d = a*q + b at the points (float32, pixels of the stored frame)
                            dx, dy = (cv2.remap(qf_planes[j][c], m1, m2, **remap_kw) for c in (0, 1))
                            for c, dc in enumerate((dx, dy)):
                                np.multiply(dc, a[k, j, c], out=dc)
                                np.add(dc, b[k, j, c], out=dc)
                            if float_out:
                                sampled[j] = [dx, dy]
                            else:
                                sampled[j] = [cv2.remap(q, m1, m2, **remap_kw) for q in q_planes[j]]
                            np.add(px, dx, out=px)
                            np.add(py, dy, out=py)
                    done[box] = sampled
                sampled = done[box]
                row = v * K + k
                direct = (h, w) == stack.shape[2:] and not fl  # the value goes straight to dst
                tmp = None if direct else np.empty((h, w), stack.dtype)
                for j in range(L):
                    for c in range(2):
                        val = sampled[j][c]
                        dst = stack[row, 2 * j + c]
                        neg = fl and c == 0
                        out = dst if direct else tmp
                        if float_out:  # (val - mean) * scale in float32, without temporaries
                            sc = np.float32(scale[v, c] * (-1.0 if neg else 1.0))
                            if self.mean_subtract:
                                np.subtract(val, means[k, j, c], out=out)
                                np.multiply(out, sc, out=out)
                            else:
                                np.multiply(val, sc, out=out)
                        elif neg:
                            cv2.LUT(val, self._flip_u8, dst=out)
                        else:
                            out[...] = val
                        if direct:
                            continue
                        if fl:
                            cv2.flip(tmp, 1, dst=tmp)
                        self._resize_into(tmp, dst)

    # --- rgb --------------------------------------------------------------------
    def _rgb_views(self, video: Video, frame: int, views, dsts: List[np.ndarray],
                   region: Tuple[Tuple[int, int, int, int], np.ndarray]) -> None:
        """Decode the views' region of one frame and write each view's (3, S, S) into dsts[v].

        region: (the union box of the views, a uint8 (h, w, 3) scratch array of its size).
        """
        box, buf = region
        codec.decode_rgb_crop(video.rgb_bytes(int(frame)), box, buf,
                              f"{video.video_id}: frame {int(frame)}")
        ux0, uy0 = box[:2]
        for v, (x0, y0, w, h, fl) in enumerate(views):
            crop = buf[y0 - uy0:y0 - uy0 + h, x0 - ux0:x0 - ux0 + w]
            dst = dsts[v]
            if crop.shape[:2] != dst.shape[1:]:  # resize, then mirror: as the flow planes
                crop = cv2.resize(crop, (dst.shape[2], dst.shape[1]), interpolation=cv2.INTER_LINEAR)
            if fl:
                crop = cv2.flip(crop, 1)
            chans = cv2.split(np.ascontiguousarray(crop))
            for c in range(3):
                if dst.dtype == np.float32:
                    cv2.LUT(chans[c], self._rgb_luts[c], dst=dst[c])
                else:
                    dst[c] = chans[c]

    @staticmethod
    def _rgb_region(views) -> Tuple[Tuple[int, int, int, int], np.ndarray]:
        box = union_box(views)
        return box, np.empty((box[3], box[2], 3), np.uint8)

    def _rgb_stack(self, video: Video, frames: np.ndarray, views) -> np.ndarray:
        K, V = len(frames), len(views)
        oh, ow = self._out_size(video)
        dt = np.float32 if self.dtype == "float32" else np.uint8
        out = np.empty((V * K, 3, oh, ow), dt)
        region = self._rgb_region(views)
        for k in range(K):
            self._rgb_views(video, int(frames[k, 0]), views, [out[v * K + k] for v in range(V)],
                            region)
        return out

    def _rgbdiff_stack(self, video: Video, frames: np.ndarray, views) -> np.ndarray:
        K, L = frames.shape
        V = len(views)
        oh, ow = self._out_size(video)
        if self.dtype == "float32":
            tmp = np.empty((V, L, 3, oh, ow), np.float32)
        else:
            tmp = np.empty((V, L, 3, oh, ow), np.uint8)
        out = np.empty((V * K, 3 * (L - 1), oh, ow), np.float32 if self.dtype == "float32" else np.int16)
        region = self._rgb_region(views)
        for k in range(K):
            for j in range(L):
                self._rgb_views(video, int(frames[k, j]), views, [tmp[v, j] for v in range(V)],
                                region)
            for v in range(V):
                t = tmp[v] if self.dtype == "float32" else tmp[v].astype(np.int16)
                out[v * K + k] = (t[1:] - t[:-1]).reshape(3 * (L - 1), oh, ow)
        return out


__all__ = ["TwoStreamDataset", "segment_offsets", "flow_window", "pad_indices",
           "multiscale_boxes", "fixed_offsets", "union_box", "decode_grey"]
