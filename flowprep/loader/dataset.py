"""TwoStreamDataset: a map-style dataset composing sampling, views and stacking.

The conventions (indices, padding, seeding, values, crops, layouts) are stated in the
package docstring, flowprep/loader/__init__.py; docs/loader.md is the user guide.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, StoreError
from ..store.base import Store, Video
from .sampling import flow_window, frame_window, pad_indices, snippet_starts, valid_starts
from .source import FlowSource
from .stacking import (affine_coefficients, dequant_affine, plain_flow_stack, rgb_differences,
                       rgb_frames, rgb_luts, stack_to_clip, trajectory_flow_stack, unit_affine)
from .views import TSN_SCALES, View, multiscale_candidates, resize_scales, sample_views

MODALITIES = ("flow", "warped-flow", "rgb", "rgbdiff", "two-stream")
MODES = ("train", "val", "test")
CROPS = ("multiscale", "random", "center")
STACKINGS = ("plain", "trajectory")
LAYOUTS = ("stack", "clip")
FLOW_SCALES = ("pixels", "unit")
PADS = ("repeat_last", "loop")
DTYPES = ("float32", "uint8")
DEFAULT_LENGTH = {"flow": 10, "warped-flow": 10, "two-stream": 10, "rgbdiff": 5, "rgb": 1}
CLIP_LENGTH = 16  # default L of layout="clip", every modality
TASKS = {"both": ("rgb", "flow"), "rgb": ("rgb",), "flow": ("flow",)}


class TwoStreamDataset:
    """Map-style dataset of two-stream snippets read from a flowprep store.

    Args:
        store: a Store, or the path or fsspec URL (s3://...) of one (opened with
            open_store; ``storage_options`` go to fsspec, in memory only).
        videos: None (every published video), a list of video ids, or the
            path of an annotation list ("<video dir> <count> <label>" lines,
            e.g. OUT/flow_list.txt; the dir is a video id, or a path inside
            the store; the count is ignored, the stored counts are used).
        labels: None (the list file's labels, else the stored label from the
            class folders, -1 when none), or a mapping video_id -> int.
        modality: "flow" | "warped-flow" | "rgb" | "rgbdiff" | "two-stream". "warped-flow"
            (stores made with --warped) gives the samples of "flow" with TSN's warped
            flow planes (camera homography removed) in place of the plain ones, under the
            same "flow" key; every flow option applies except stacking="trajectory".
        length: L, flows per stack (frames for rgbdiff; frames of an RGB clip); default 10
            (5 for rgbdiff, 1 for rgb); 16 for every modality in layout="clip".
        num_segments: K snippets per sample (TSN segments) in train/val.
        mode: "train" | "val" | "test".
        crop_size: output side S in pixels, or None for whole frames (no crop).
        crop: train crop, "multiscale" | "random" | "center".
        scales: multiscale crop sides as fractions of the short side.
        flip: random horizontal flip in train.
        stacking: "plain" | "trajectory" (not with "warped-flow").
        bidirectional: half forward, half backward flows (needs --backward; stack layout).
        layout: "stack" (2D CNNs, TSN: flow (V*K, 2L, S, S), RGB (V*K, 3, S, S)) | "clip"
            (3D CNNs, I3D: flow (V*K, 2, L, S, S), RGB (V*K, 3, L, S, S) of L frames).
        frame_interval: clip layout: temporal stride between clip elements (mmaction2's
            SampleFrames frame_interval): flows tau + j*f*step, frames tau + j*f.
        flow_scale: "pixels" (output pixels) | "unit" (d / B, in [-1, 1]: I3D; fixed
            quantization, float32).
        mean_subtract: subtract the stored per-flow mean vectors (float32 only).
        dtype: "float32" | "uint8"; see the package docstring.
        rgb_mean, rgb_std: per-channel (R, G, B) in [0, 1] units (float32 only); 0.5 and 0.5
            give RGB in [-1, 1] (I3D).
        pad: "repeat_last" | "loop", for videos shorter than one window.
        test_snippets: snippets per video in test mode (25).
        test_crops: 1 (centre) or 10 (ten-crop) in test mode.
        seed: base seed of every random draw (None: drawn once from the OS).
        video_cache: open Video objects kept per worker.
        storage_options: for a URL ``store``: passed to fsspec (endpoint, credentials).

    Each item is a dict (shapes for V views, K snippets, S = crop_size):
        "flow": (V*K, 2L, S, S) float32 or uint8; channel 2j = dx, 2j+1 = dy
            of the j-th flow of the stack. Clip layout: (V*K, 2, L, S, S), [:, 0] = dx.
        "rgb": (V*K, 3, S, S) float32 or uint8, RGB order; clip layout (V*K, 3, L, S, S).
        "rgbdiff": (V*K, 3(L-1), S, S) float32 or int16.
        "label": int; "video_id": str; "index": int; "epoch": int.
        "tau": int64 (K,) snippet start frames.
        "flow_indices": int64 (K, L); "flow_backward": bool (K, L).
        "frame_indices": int64 (K, 1) for rgb, (K, L) for rgbdiff and RGB clips.
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
                 layout: str = "stack", frame_interval: int = 1, flow_scale: str = "pixels",
                 mean_subtract: bool = False, dtype: str = "float32",
                 rgb_mean: Optional[Sequence[float]] = None,
                 rgb_std: Optional[Sequence[float]] = None, pad: str = "repeat_last",
                 test_snippets: int = 25, test_crops: int = 1, seed: Optional[int] = None,
                 video_cache: int = 64,
                 storage_options: Optional[Mapping[str, Any]] = None) -> None:
        def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, "
                                  f"got {value!r}")
            return value

        self.modality = choice("modality", modality, MODALITIES)
        self.mode = choice("mode", mode, MODES)
        self.crop = choice("crop", crop, CROPS)
        self.stacking = choice("stacking", stacking, STACKINGS)
        self.layout = choice("layout", layout, LAYOUTS)
        self.flow_scale = choice("flow_scale", flow_scale, FLOW_SCALES)
        self.pad = choice("pad", pad, PADS)
        self.dtype = choice("dtype", dtype, DTYPES)
        self.test_crops = choice("test_crops", test_crops, (1, 10))
        clip = self.layout == "clip"
        default = CLIP_LENGTH if clip else DEFAULT_LENGTH[modality]
        self.length = int(default if length is None else length)
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
        if isinstance(frame_interval, bool) or int(frame_interval) != frame_interval \
                or int(frame_interval) < 1:
            raise ConfigError(f"frame_interval must be a positive integer, got {frame_interval!r}")
        self.frame_interval = int(frame_interval)
        if clip and modality == "rgbdiff":
            raise ConfigError("layout='clip' has no rgbdiff: use modality='rgb' with "
                              "layout='clip' (an RGB clip, whose differences along axis 2 are "
                              "TSN's RGB differences) or layout='stack' for rgbdiff stacks")
        if self.stacking == "trajectory" and modality == "warped-flow":
            raise ConfigError("stacking='trajectory' follows the plain flow's displacement "
                              "from frame to frame; the warped flow's is in each warped "
                              "frame's coordinates (camera motion removed), so trajectories "
                              "cannot be chained: use stacking='plain' with "
                              "modality='warped-flow', or modality='flow'")
        if clip and self.bidirectional:
            raise ConfigError("layout='clip' holds L consecutive forward flows; bidirectional "
                              "stacks need layout='stack'")
        if not clip and self.frame_interval != 1:
            raise ConfigError("frame_interval is the stride between clip frames: use it with "
                              "layout='clip' (stacks chain flows end to end, frame_interval=1)")
        if self.flow_scale == "unit":
            if not self.uses_flow:
                raise ConfigError(f"flow_scale='unit' scales flow; modality {modality!r} has "
                                  "none (for RGB in [-1, 1] give rgb_mean=rgb_std=(0.5, 0.5, 0.5))")
            if self.dtype == "uint8":
                raise ConfigError("flow_scale='unit' needs dtype='float32' (uint8 output is "
                                  "always q as stored; with uint8, compute (2q - 255)/255 on "
                                  "the GPU)")
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
        self._rgb_luts = rgb_luts(m, sd)
        self._multiscale: Dict[tuple, list] = {}  # (H, W, S, scales) -> multiscale crop candidates

        if seed is None:
            seed = int(np.random.SeedSequence().entropy) % (1 << 63)
        if int(seed) < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed}")
        self.seed = int(seed)
        self.epoch = 0

        from ..remote import is_url
        if isinstance(store, Store):
            self.root = store.root
            self._store: Optional[Store] = store
            remote = getattr(store, "remote", None)  # a store on object storage
            #: (path or URL, storage_options) that open the store again in another process
            self._source = ((remote.url, remote.storage_options) if remote is not None
                            else (store.root, None))
        else:
            from ..store import open_store
            where = os.fspath(store)
            self._source = ((where, dict(storage_options or {})) if is_url(where)
                            else (os.path.abspath(where), None))
            self._store = open_store(*self._source)
            self.root = self._store.root
        self._pid = os.getpid()
        self._videos: "OrderedDict[str, Tuple[Video, Dict[str, Any]]]" = OrderedDict()
        st = self._store
        self._check_store(st)
        self._check_shards(st)
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
        return self.modality in ("flow", "warped-flow", "two-stream")

    @property
    def uses_rgb(self) -> bool:
        return self.modality in ("rgb", "rgbdiff", "two-stream")

    def _check_store(self, st: Store) -> None:
        """Refuse what the store cannot serve: modalities it lacks (--task), backward flows
        it lacks, unit scale of adaptive quantization."""
        config = st.config
        task = config.get("task", "both")
        held = TASKS.get(task)
        if held is None:
            raise ConfigError(f"{self.root}: unknown task {task!r} in flowprep.json "
                              f"(expected one of {', '.join(TASKS)})")
        for need, uses in (("flow", self.uses_flow), ("rgb", self.uses_rgb)):
            if uses and need not in held:
                other = "rgb" if need == "flow" else "flow"
                raise ConfigError(
                    f"{self.root}: modality {self.modality!r} needs {need} frames, but this "
                    f"store was extracted with --task {task} and holds {task} only; use "
                    f"modality={other!r} here, or a store extracted with --task both "
                    f"(or --task {need})")
        if self.modality == "warped-flow" and not config.get("warped"):
            raise ConfigError(f"{self.root}: modality 'warped-flow' needs TSN's warped flow, "
                              "but this store was extracted without --warped; extract it "
                              "again with --warped (and the same options), or use "
                              "modality='flow'")
        if self.bidirectional and not config.get("backward", False):
            raise ConfigError(f"{self.root}: bidirectional stacks need backward flows; "
                              "extract the store with --backward"
                              + (" --warped" if self.modality == "warped-flow" else ""))
        if self.flow_scale == "unit":
            scheme = (config.get("quant") or {}).get("scheme", "fixed")
            if scheme != "fixed":
                raise ConfigError(
                    f"{self.root}: flow_scale='unit' divides by the fixed bound B, but this "
                    f"store is quantized {scheme!r} (no common bound): use flow_scale='pixels', "
                    "or extract with --quant fixed --bound B")

    def _check_shards(self, st: Store) -> None:
        """Refuse a sharded store whose index names a missing shard (its videos would be
        silently left out, or read from older copies): StoreError naming part and shard."""
        from ..store import registry
        from ..store.shards import missing_shards
        if not registry.get(st.format).sharded:
            return
        missing = missing_shards(st.root)
        if missing:
            part, shard, n = missing[0]
            more = f" (and {len(missing) - 1} more shards)" if len(missing) > 1 else ""
            raise StoreError(f"{st.root}: index part index/{part} names shard shards/{shard}, "
                             f"which is missing{more}: {n} video{'s' if n != 1 else ''} "
                             f"unreadable; run flowprep verify, then rerun the extract to "
                             f"redo them")

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
            from ..store import open_store
            self._store = open_store(*self._source)
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

    def _float_scratch(self, shape: Tuple[int, ...]) -> np.ndarray:
        """A float32 work array of ``shape`` kept by the dataset (one per worker process).

        Reused across samples: a fresh 12 MB array a sample costs more in page faults
        than the conversion written into it. Never returned to the caller.
        """
        buf = self.__dict__.get("_scratch")
        if buf is None or buf.shape != shape:
            buf = self._scratch = np.empty(shape, np.float32)
        return buf

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
                f"layout={self.layout} L={self.length} K={self.num_segments} mode={self.mode}>")

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = int(key[0]), int(key[1])
        else:
            index, epoch = int(key), self.epoch
        n = len(self.video_ids)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        index %= n
        video, cache = self._entry(self.video_ids[index])
        return self.sample(index, epoch, video, cache)

    def sample(self, index: int, epoch: int, video: Video,
               cache: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The sample of video ``index`` (0 <= index < len) in ``epoch``, read from ``video``
        (that video, opened from any store or read from a stream): what ``self[index]``
        returns in that epoch. ``cache``: a per-video dict of parsed arrays, kept by the
        caller between samples of the same video (a fresh one when None)."""
        cache = {} if cache is None else cache
        vid = self.video_ids[index]
        # every draw of this sample, in a fixed order: segment offsets, crop, flip
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))
        taus = self._taus(video, rng)
        views = self._views(video, rng)
        label = self._labels[index] if self._labels is not None else \
            (-1 if video.label is None else int(video.label))
        out: Dict[str, Any] = {"video_id": vid, "label": label, "index": index,
                               "epoch": epoch, "tau": taus}
        out["crop_box"] = np.array([v[:4] for v in views], dtype=np.int64).reshape(-1, 4)
        out["flip"] = np.array([v[4] for v in views], dtype=bool)
        out_hw = self._out_size(video)
        out["flow_scale"] = resize_scales(views, out_hw)
        if self.uses_flow:
            self._flow_sample(FlowSource(video, cache, warped=self.modality == "warped-flow"),
                              taus, views, out)
        dt = np.float32 if self.dtype == "float32" else np.uint8
        where = lambda f: f"{vid}: frame {f}"  # noqa: E731
        if self.modality in ("rgb", "two-stream"):
            if self.layout == "clip":
                fi = frame_window(taus, self.length, self.frame_interval, video.num_frames, self.pad)
            else:
                fi = taus[:, None].copy()
            out["frame_indices"] = fi
            out["rgb"] = rgb_frames(video.rgb_bytes, fi, views, out_hw, dt, self._rgb_luts,
                                    self.layout, where)
        elif self.modality == "rgbdiff":
            fi = frame_window(taus, self.length, 1, video.num_frames, self.pad)
            out["frame_indices"] = fi
            out["rgbdiff"] = rgb_differences(video.rgb_bytes, fi, views, out_hw,
                                             dt is np.float32, self._rgb_luts, where)
        return out

    # --- sampling and views -----------------------------------------------------
    def _taus(self, video: Video, rng: np.random.Generator) -> np.ndarray:
        """Snippet start frames, int64 (K,)."""
        if self.uses_flow:
            kind, L, stride = "flow", self.length, self.frame_interval
        elif self.modality == "rgb":
            kind = "rgb"
            L, stride = (self.length, self.frame_interval) if self.layout == "clip" else (1, 1)
        else:
            kind, L, stride = "rgbdiff", self.length, 1
        n, lo, m = valid_starts(video.num_flows, video.num_frames, video.step, L, kind=kind,
                                bidirectional=self.bidirectional, stride=stride)
        k = self.test_snippets if self.mode == "test" else self.num_segments
        return snippet_starts(n, lo, m, k, self.mode, rng)

    def _out_size(self, video: Video) -> Tuple[int, int]:
        if self.crop_size is None:
            return video.height, video.width
        return self.crop_size, self.crop_size

    def _views(self, video: Video, rng: np.random.Generator) -> List[View]:
        """Crop views [(x0, y0, w, h, flip)] in stored frame pixels."""
        H, W, S = video.height, video.width, self.crop_size
        cands = None
        if S is not None and self.mode == "train" and self.crop == "multiscale":
            key = (H, W, S, self.scales)
            cands = self._multiscale.get(key)
            if cands is None:  # computed once per frame size
                cands = self._multiscale[key] = multiscale_candidates(H, W, S, self.scales)
        return sample_views(H, W, S, self.mode, self.crop, self.flip, self.test_crops, rng, cands)

    # --- flow -------------------------------------------------------------------
    def _flow_sample(self, src: FlowSource, taus: np.ndarray, views: List[View],
                     out: Dict[str, Any]) -> None:
        video = src.video
        K, L, V = len(taus), self.length, len(views)
        offs, back = flow_window(0, L, video.step * self.frame_interval, self.bidirectional)
        idx = pad_indices(taus[:, None] + offs, video.num_flows, self.pad)   # (K, L)
        bwd = np.repeat(back[None], K, axis=0)
        out["flow_indices"], out["flow_backward"] = idx, bwd
        oh, ow = self._out_size(video)

        fixed = video.quant["scheme"] == "fixed"
        unit = self.flow_scale == "unit"
        if unit and not fixed:
            raise StoreError(f"{video.video_id}: flow_scale='unit' needs fixed quantization, "
                             f"this video is quantized {video.quant['scheme']!r}")
        means = src.means(False)[idx]                                       # (K, L, 2)
        if bwd.any():
            means[bwd] = src.means(True)[idx[bwd]]
        ranges = None
        if not fixed:
            ranges = np.empty((K, L, 2, 2), np.float32)
            for k in range(K):
                for j in range(L):
                    ranges[k, j] = src.ranges(int(idx[k, j]), bool(bwd[k, j]))
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
        a, b = dequant_affine(video.quant, ranges, K, L)
        scale = out["flow_scale"]                                            # (V, 2)
        bound = float(video.quant["bound"]) if fixed else None
        if self.stacking == "trajectory":
            stack = np.empty((V * K, 2 * L, oh, ow), np.float32 if self.dtype == "float32" else np.uint8)
            out_scale = np.full((V, 2), 1.0 / bound, np.float32) if unit else scale
            trajectory_flow_stack(src.payloads, idx, bwd, views, stack, a, b, means, out_scale,
                                  self.mean_subtract, self.bidirectional, self._float_scratch,
                                  (video.height, video.width), src.plane_name,
                                  clip_unit=unit and not self.mean_subtract)
            out["flow"] = stack if self.layout == "stack" else stack_to_clip(stack)
            return
        # Plain stacks: decode each stored plane, crop and resize it (bilinear, uint8, as
        # TSN) into a uint8 stack, mirror the rows of flipped views, then dequantize the
        # whole stack at once: value = q * A + C per (row, channel), two float32 roundings
        # (a product, then a sum), where A and C fold in the dequantization, the mean, the
        # resize scale and the dx sign. With A = -a and C = -b the flipped value is -d
        # bit-exactly.
        idx_l, bwd_l = idx.tolist(), bwd.tolist()
        payloads = src.payloads([(i, b_) for k in range(K) for i, b_ in zip(idx_l[k], bwd_l[k])])
        coeffs, divisor = None, None
        if self.dtype == "float32":
            ones = np.ones_like(sign)
            if unit:  # (2q - 255)/255 = d/B: exact in [-1, 1], exactly negated by a flip
                a, b = unit_affine(bound, means if self.mean_subtract else None, K, L)
                f, divisor = np.stack([sign, ones], axis=1), 255.0
            else:
                if self.mean_subtract:
                    b = b - means
                f = scale * np.stack([sign, ones], axis=1)                  # (V, 2)
            coeffs = affine_coefficients(a, b, f)
        name = lambda k, j, c: src.plane_name(idx_l[k][j], bwd_l[k][j], c)  # noqa: E731
        out["flow"] = plain_flow_stack(payloads, views, K, L, (oh, ow), coeffs, divisor,
                                       self.layout, name)


__all__ = ["TwoStreamDataset", "MODALITIES", "MODES", "CROPS", "STACKINGS", "LAYOUTS",
           "FLOW_SCALES", "PADS", "DTYPES", "DEFAULT_LENGTH", "CLIP_LENGTH"]
