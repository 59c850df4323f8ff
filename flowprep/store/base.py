"""What every store shares: the video reader API, store-level files, failure records.

Store-level files (both formats):

    OUT/flowprep.json              {"format", "store_version", "config", "config_key", ...}
    OUT/.flowprep/failures/*.json  one record per failed input: {"input", "video_id", "reason"}
    OUT/.flowprep/tmp/, locks/     work in progress; never visible as videos

Per-video metadata (the ``meta`` dict, meta.json in the JPEG store) holds
counts, fps, size, the quantization record, the per-flow mean vectors,
motion statistics and clipped fractions (and per-flow (lo, hi) ranges for
adaptive quantization), the source path and the config key it was made with.
"motion" and "motion_p95" are the mean and the 95th percentile of the
per-pixel |d| of each flow, in pixels, on the float flow before quantization;
stores made before they existed lack them, and readers compute them from the
stored planes instead (approximate: quantized; see flowprep/report/stats.py).

Flow streams. A video holds up to four flow streams, each num_flows long, named
by :func:`flow_stream` from (backward, warped): "flow" (frame i -> i+step),
"bflow" (--backward: i+step -> i), "wflow" (--warped: frame i -> frame i+step
warped onto frame i by the camera homography) and "bwflow" (--warped
--backward). Their statistics use the suffix :func:`stat_suffix` ("",
"_backward", "_warped", "_warped_backward"): mean_flow_warped, motion_warped,
motion_p95_warped, clipped_fraction_warped, ranges_warped, ... With --warped the meta also holds
"warped" (the warp settings), "homographies" (per flow, 3x3 float64 as nested
lists: pixel (x, y, 1) of frame i -> frame i+step), "homography_inliers",
"homography_points" ([flow corners, feature matches]), "homography_fallback"
(per flow: the identity was used) and "homography_fallback_reason".
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import quantize as qz
from ..errors import StoreError
from ..names import has_unsafe, replace_unsafe
from ..fsutil import atomic_write_json, read_json
from ..report.stats import APPROX_FLOWS, rows_to_array, store_rows
from . import codec

STORE_FILE = "flowprep.json"
META_DIR = ".flowprep"
STORE_VERSION = 1


def task_of(meta_or_config: Dict[str, Any]) -> str:
    """"both" | "rgb" | "flow": what a video (its meta) or a store (its config) holds.

    Absent means "both" (stores made before --task).
    """
    return str(meta_or_config.get("task") or "both")


def stored_rgb_frames(meta: Dict[str, Any]) -> int:
    """RGB frames stored for a video: num_frames, or 0 for a --task flow video."""
    return 0 if task_of(meta) == "flow" else int(meta["num_frames"])


#: (backward, warped) -> the flow stream's name (JPEG file prefix, HDF5 dataset prefix)
FLOW_STREAMS = {(False, False): "flow", (True, False): "bflow",
                (False, True): "wflow", (True, True): "bwflow"}


def flow_stream(backward: bool = False, warped: bool = False) -> str:
    """The name of a flow stream: "flow", "bflow", "wflow" or "bwflow"."""
    return FLOW_STREAMS[(bool(backward), bool(warped))]


def stat_suffix(backward: bool = False, warped: bool = False) -> str:
    """Suffix of a stream's meta keys: "", "_backward", "_warped", "_warped_backward"."""
    return ("_warped" if warped else "") + ("_backward" if backward else "")


def stored_streams(meta: Dict[str, Any]) -> List[Tuple[bool, bool]]:
    """(backward, warped) of every flow stream a video's meta says it holds, in the
    order flow, bflow, wflow, bwflow; none for a --task rgb video."""
    if task_of(meta) == "rgb":
        return []
    out = [(False, False)]
    if meta.get("backward"):
        out.append((True, False))
    if meta.get("warped"):
        out.append((False, True))
        if meta.get("backward"):
            out.append((True, True))
    return out


def stream_label(backward: bool = False, warped: bool = False) -> str:
    """Human name of a stream: "flow", "backward flow", "warped flow", "backward warped flow"."""
    return ("backward " if backward else "") + ("warped " if warped else "") + "flow"


def config_key(config: Dict[str, Any]) -> str:
    """Stable short hash of the output-affecting configuration.

    The decoder counts by name only: its library versions are recorded in the
    config but not hashed (as OpenCV's version is not), so upgrading PyAV does not
    recompute a whole dataset. OpenCV's reader, the decoder of stores made before
    --decoder existed, is left out of the hash, so those stores keep their key
    when extended with ``--decoder opencv``. A preset (``--preset``) is recorded, not
    hashed: the options it set are hashed under their own keys.
    """
    hashed = dict(config)
    hashed.pop("preset", None)
    decoder = hashed.pop("decoder", None)
    name = decoder.get("name") if isinstance(decoder, dict) else decoder
    if name not in (None, "opencv"):
        hashed["decoder"] = name
    blob = json.dumps(hashed, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def read_store_file(root: str) -> Dict[str, Any]:
    path = os.path.join(root, STORE_FILE)
    if not os.path.isfile(path):
        raise StoreError(f"{root}: not a flowprep store (no {STORE_FILE})")
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable store file ({exc})") from None


def failure_path(root: str, video_id: str) -> str:
    h = hashlib.sha1(video_id.encode()).hexdigest()[:20]
    return os.path.join(root, META_DIR, "failures", h + ".json")


def record_failure(root: str, input_path: str, video_id: str, reason: str) -> None:
    """Record that ``input_path`` (as ``video_id``) failed, with a reason a person understands."""
    path = failure_path(root, video_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, {"input": input_path, "video_id": video_id, "reason": reason})


def clear_failure(root: str, video_id: str) -> None:
    try:
        os.unlink(failure_path(root, video_id))
    except FileNotFoundError:
        pass


def read_failures(root: str) -> Dict[str, Dict[str, str]]:
    """All failure records: input path -> {"video_id", "reason"}."""
    d = os.path.join(root, META_DIR, "failures")
    out: Dict[str, Dict[str, str]] = {}
    if not os.path.isdir(d):
        return out
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json"):
            continue
        try:
            rec = read_json(os.path.join(d, name))
        except (OSError, ValueError):
            continue
        out[rec["input"]] = {"video_id": rec["video_id"], "reason": rec["reason"]}
    return out


class Video:
    """One published video, read through the API of DESIGN.md.

    Subclasses provide the stored payloads; decoding and dequantization live here.

    Attributes:
        video_id: the video's id (path relative to the input root, no extension).
        meta: the stored metadata dict.
    """

    def __init__(self, video_id: str, meta: Dict[str, Any]) -> None:
        self.video_id = video_id
        self.meta = meta

    # --- metadata -------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def num_flows(self) -> int:
        return int(self.meta["num_flows"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def height(self) -> int:
        return int(self.meta["height"])

    @property
    def task(self) -> str:
        """"both" | "rgb" | "flow": what this video holds (--task it was extracted with)."""
        return task_of(self.meta)

    @property
    def timestamps(self) -> np.ndarray:
        """float64 (num_frames,) seconds: when each stored frame is shown.

        Videos stored before timestamps were recorded: index / fps.
        """
        ts = self.meta.get("timestamps")
        if ts is None:
            fps = float(self.meta.get("fps") or 0) or 25.0
            return np.arange(self.num_frames, dtype=np.float64) / fps
        return np.asarray(ts, dtype=np.float64).reshape(-1)

    @property
    def width(self) -> int:
        return int(self.meta["width"])

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def has_backward(self) -> bool:
        return bool(self.meta.get("backward", False))

    @property
    def has_warped(self) -> bool:
        """True when the video holds TSN's warped flow (extracted with --warped)."""
        return bool(self.meta.get("warped"))

    @property
    def quant(self) -> Dict[str, Any]:
        """{"scheme": "fixed", "bound": B} or {"scheme": "adaptive"}."""
        return self.meta["quant"]

    @property
    def label(self) -> Optional[int]:
        return self.meta.get("label")

    def mean_flows(self, backward: bool = False, warped: bool = False) -> np.ndarray:
        """float32 (num_flows, 2): per-flow mean (dx, dy) in pixels, before quantization,
        of the stream flow_stream(backward, warped)."""
        self._need_stream(backward, warped)
        key = "mean_flow" + stat_suffix(backward, warped)
        return np.asarray(self.meta[key], dtype=np.float32).reshape(-1, 2)

    @property
    def mean_flow(self) -> np.ndarray:
        """float32 (num_flows, 2): per-flow mean (dx, dy) in pixels, before quantization."""
        return self.mean_flows()

    @property
    def mean_flow_backward(self) -> np.ndarray:
        """float32 (num_flows, 2) for the backward flows (frame i+step -> i)."""
        return self.mean_flows(backward=True)

    @property
    def mean_flow_warped(self) -> np.ndarray:
        """float32 (num_flows, 2): per-flow mean (dx, dy) of the warped flow, pixels."""
        return self.mean_flows(warped=True)

    @property
    def mean_flow_warped_backward(self) -> np.ndarray:
        """float32 (num_flows, 2) for the backward warped flows (--warped --backward)."""
        return self.mean_flows(backward=True, warped=True)

    def motion(self, backward: bool = False, warped: bool = False) -> np.ndarray:
        """float32 (num_flows,): mean |d| of each flow of the stream, pixels, computed on the
        float flow at extraction; for a store made before that, from the stored planes
        (every flow decoded; approximate: clipped at the bound and quantized)."""
        return self._motion_stat(0, backward, warped)

    def motion_p95(self, backward: bool = False, warped: bool = False) -> np.ndarray:
        """float32 (num_flows,): 95th percentile of |d| of each flow, pixels (as :meth:`motion`)."""
        return self._motion_stat(1, backward, warped)

    def _motion_stat(self, which: int, backward: bool, warped: bool) -> np.ndarray:
        self._need("flow")
        self._need_stream(backward, warped)
        key = ("motion", "motion_p95")[which] + stat_suffix(backward, warped)
        if key in self.meta:
            return np.asarray(self.meta[key], dtype=np.float32).reshape(-1)
        return np.asarray([qz.motion_stats(self.flow(i, backward, warped))[which]
                           for i in range(self.num_flows)], dtype=np.float32)

    @property
    def clipped_fraction(self) -> np.ndarray:
        """float32 (num_flows,): fraction of flow components beyond the bound."""
        return np.asarray(self.meta["clipped_fraction"], dtype=np.float32)

    def homography(self, i: int) -> np.ndarray:
        """float64 (3, 3): the camera motion of flow i, mapping pixel (x, y, 1) of frame i
        to frame i+step (homogeneous, H[2, 2] = 1); the identity where the estimate fell
        back (see :meth:`homography_fallback`). Needs --warped."""
        i = self._check(i, self.num_flows, "flow")
        self._need_warped()
        return np.asarray(self.meta["homographies"][i], dtype=np.float64).reshape(3, 3)

    def homography_fallback(self, i: int) -> bool:
        """True when flow i's homography is the identity because the estimate was refused
        (too few correspondences or inliers; meta "homography_fallback_reason" says why)."""
        i = self._check(i, self.num_flows, "flow")
        self._need_warped()
        return bool(self.meta["homography_fallback"][i])

    def flow_ranges(self, i: int, backward: bool = False,
                    warped: bool = False) -> Optional[np.ndarray]:
        """float32 (2, 2) [[lo_x, hi_x], [lo_y, hi_y]] for adaptive quantization, else None."""
        key = "ranges" + stat_suffix(backward, warped)
        if key not in self.meta:
            return None
        return np.asarray(self.meta[key][i], dtype=np.float32)

    # --- payloads: the checks here, the reads in the subclasses ----------------
    def rgb_bytes(self, i: int) -> bytes:
        """The stored JPEG bytes of frame i (0-based; negative counts from the end)."""
        self._need("rgb")
        return self._rgb_bytes(self._check(i, self.num_frames, "frame"))

    def flow_payload(self, i: int, backward: bool = False, warped: bool = False):
        """(x, y) as stored: two JPEG byte strings, or two uint8 (H, W) arrays."""
        self._need("flow")
        i = self._check(i, self.num_flows, "flow")
        self._need_stream(backward, warped)
        return self._flow_payload(i, bool(backward), bool(warped))

    def flow_payloads(self, items: Sequence[Tuple[Any, ...]]) -> List[Tuple[Any, Any]]:
        """flow_payload(i, backward[, warped]) for each (i, backward) or (i, backward,
        warped) of ``items``, in order.

        JPEG payloads may come as bytes or as memoryviews (bytes-like, read-only);
        stores that can fetch many payloads in fewer reads override ``_flow_payloads``.
        """
        self._need("flow")
        norm = [(self._check(int(it[0]), self.num_flows, "flow"), bool(it[1]),
                 bool(it[2]) if len(it) > 2 else False) for it in items]
        for key in set((b, w) for _, b, w in norm):
            self._need_stream(*key)
        return self._flow_payloads(norm)

    def _rgb_bytes(self, i: int) -> bytes:
        """Frame i's stored bytes; i already checked (0 <= i < num_frames)."""
        raise NotImplementedError

    def _flow_payload(self, i: int, backward: bool, warped: bool):
        """Flow i's stored (x, y); i and the stream already checked."""
        raise NotImplementedError

    def _flow_payloads(self, items: List[Tuple[int, bool, bool]]) -> List[Tuple[Any, Any]]:
        """Checked (i, backward, warped) items -> their (x, y) payloads, in order."""
        return [self._flow_payload(i, b, w) for i, b, w in items]

    # --- decoded access ---------------------------------------------------
    def _check(self, i: int, n: int, what: str) -> int:
        if not (-n <= i < n):
            raise IndexError(f"{self.video_id}: {what} index {i} out of range [0, {n})")
        return i % n

    def _need_backward(self) -> None:
        if not self.has_backward:
            raise StoreError(f"{self.video_id}: no backward flow stored (extract with --backward)")

    def _need(self, what: str) -> None:
        """StoreError when this video holds no ``what`` ("rgb" or "flow") because of --task."""
        task = self.task
        if task != "both" and task != what:
            raise StoreError(f"{self.video_id}: no {'RGB frames' if what == 'rgb' else 'flow'} "
                             f"stored: the store was extracted with --task {task}; extract "
                             f"again with --task {what} or both")

    def _need_warped(self, backward: bool = False) -> None:
        if not self.has_warped:
            raise StoreError(f"{self.video_id}: no warped flow stored (extract with --warped)")
        if backward:
            self._need_backward()

    def _need_stream(self, backward: bool, warped: bool) -> None:
        if warped:
            self._need_warped(backward)
        elif backward:
            self._need_backward()

    def rgb(self, i: int) -> np.ndarray:
        """uint8 (H, W, 3), RGB order, frame i in [0, num_frames)."""
        self._need("rgb")
        i = self._check(i, self.num_frames, "frame")
        return codec.decode_rgb(self.rgb_bytes(i), f"{self.video_id} frame {i}")

    def flow_quantized(self, i: int, backward: bool = False, warped: bool = False) -> np.ndarray:
        """uint8 (H, W, 2) as stored, flow i in [0, num_flows); [..., 0] = x, [..., 1] = y."""
        self._need("flow")
        i = self._check(i, self.num_flows, "flow")
        self._need_stream(backward, warped)
        return self._flow_quantized(i, bool(backward), bool(warped))

    def _flow_quantized(self, i: int, backward: bool, warped: bool) -> np.ndarray:
        """flow_quantized once checked: the stored payload, JPEG planes decoded."""
        x, y = self._flow_payload(i, backward, warped)
        if isinstance(x, (bytes, bytearray, memoryview)):
            where = f"{self.video_id} {stream_label(backward, warped)} {i}"
            x = codec.decode_grey(bytes(x), where + " x")
            y = codec.decode_grey(bytes(y), where + " y")
        return np.stack([x, y], axis=-1)

    def flow(self, i: int, backward: bool = False, warped: bool = False) -> np.ndarray:
        """float32 (H, W, 2) pixels, [..., 0] = dx, [..., 1] = dy, flow i (frame i -> i+step).

        With backward=True, the flow from frame i+step back to frame i. With
        warped=True (stores made with --warped), TSN's warped flow: the flow from
        frame i to frame i+step warped back onto frame i by the camera homography
        (:meth:`homography`), so the camera's motion is removed.
        """
        q = self.flow_quantized(i, backward, warped)
        return qz.dequantize(q, self.quant,
                             self.flow_ranges(i % self.num_flows, backward, warped))

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.video_id!r} frames={self.num_frames} "
                f"flows={self.num_flows} {self.width}x{self.height}>")


def _resolving(fn):
    """``fn(self, video_id, ...)`` called with ``self.resolve_id(video_id)``."""
    import functools

    @functools.wraps(fn)
    def wrapper(self, video_id, *args, **kwargs):
        return fn(self, self.resolve_id(video_id), *args, **kwargs)
    wrapper._resolves_ids = True
    return wrapper


class Store:
    """A published store, read-only. Subclasses list videos and make Video objects.

    Attributes:
        root: the store's directory.
        info: the parsed flowprep.json.
    """

    format = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every format's ``__getitem__`` and ``meta`` take a name by either spelling: the
        key goes through :meth:`resolve_id` first (one rule for every format, new ones too)."""
        super().__init_subclass__(**kwargs)
        for name in ("__getitem__", "meta"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_resolves_ids", False):
                setattr(cls, name, _resolving(fn))

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.info = read_store_file(self.root)

    @property
    def config(self) -> Dict[str, Any]:
        """Algorithm and its parameters, quantization, resize, step, versions."""
        return self.info["config"]

    @property
    def failures(self) -> Dict[str, str]:
        """input path -> reason, for inputs that failed and were not published since."""
        return {inp: rec["reason"] for inp, rec in self.failure_records().items()}

    def failure_records(self) -> Dict[str, Dict[str, str]]:
        """input path -> {"video_id", "reason"}, for inputs that failed and were not
        published since."""
        published = set(self.video_ids)
        return {inp: rec for inp, rec in read_failures(self.root).items()
                if rec["video_id"] not in published}

    def video_stats(self, as_array: bool = False, include_failed: bool = True,
                    approx_flows: Optional[int] = APPROX_FLOWS):
        """One row per published video, then one per failed input: the rows of
        ``flowprep inspect --videos`` (fields and meaning: flowprep/report/stats.py).

        Statistics come from the metadata (computed at extraction on the float flow);
        for a store made before them, from up to ``approx_flows`` stored planes a video
        (None: all), marked stats="approximate". A video that cannot be read gives a row
        with status "unreadable" and the reason.

        Returns:
            a list of dicts (missing values None), or with ``as_array`` a numpy structured
            array (missing floats NaN, missing integers -1).
        """
        rows = store_rows(self, include_failed=include_failed, approx_flows=approx_flows)
        return rows_to_array(rows) if as_array else rows

    @property
    def video_ids(self) -> List[str]:
        raise NotImplementedError

    def meta(self, video_id: str) -> Dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, video_id: str) -> Video:
        raise NotImplementedError

    def top_file(self, name: str) -> Optional[bytes]:
        """The bytes of a file at the top of the store (an annotation list), None if absent."""
        try:
            with open(os.path.join(self.root, name), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def refresh(self) -> None:
        """Re-read the list of published videos (a running extract may have added some)."""

    def __len__(self) -> int:
        return len(self.video_ids)

    def __contains__(self, video_id: object) -> bool:
        return self.resolve_id(video_id) in set(self.video_ids)

    def resolve_id(self, video_id: Any) -> Any:
        """The id ``video_id`` is stored under: itself, or for a name spelled with whitespace
        (ids hold none, flowprep/names.py) the video whose meta's original_id it is."""
        if not isinstance(video_id, str) or not has_unsafe(video_id):
            return video_id
        ids = self.video_ids
        if video_id in ids:  # a store made before the rule keeps such ids
            return video_id
        safe = replace_unsafe(video_id)
        for vid in [safe] + [v for v in ids if v.startswith(safe + "_")]:
            try:
                if vid in ids and self.meta(vid).get("original_id") == video_id:
                    return vid
            except (KeyError, StoreError):
                continue
        return video_id

    def __iter__(self) -> Iterator[Video]:
        for vid in self.video_ids:
            yield self[vid]

    # --- streaming: the store in units read in sequence ------------------------
    #: videos per unit of the default stream_units (formats without shards)
    stream_unit_videos = 64

    def stream_units(self) -> List[Tuple[str, List[str]]]:
        """The store cut into units a streaming reader reads in sequence, one reader per
        unit: [(unit name, its video ids in reading order)], every published video in
        exactly one unit. Sharded formats: one unit per shard; otherwise runs of
        ``stream_unit_videos`` videos in video_ids order."""
        ids, n = self.video_ids, self.stream_unit_videos
        return [(f"videos {i}..{min(i + n, len(ids)) - 1}", ids[i:i + n])
                for i in range(0, len(ids), n)]

    def iter_unit(self, unit: str, video_ids: Sequence[str],
                  sequential: bool = True) -> Iterator[Video]:
        """The videos ``video_ids`` of ``unit`` (a subset of what stream_units names for
        it), in reading order. Formats with sequential shards (wds) read them front to
        back, every byte once; ``sequential=False``: every format yields its random-access
        videos, which read only the members a sample uses."""
        for vid in video_ids:
            yield self[vid]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.root!r} videos={len(self)}>"


class VideoWriter:
    """Receives one video's frames in order; publishes on ``commit``, leaves nothing on ``abort``.

    Formats implement the payload-level appends (``add_rgb_bytes``, ``add_flow_bytes``
    and, where raw flow is stored, ``add_flow_raw``); ``add_rgb`` / ``add_flow`` encode
    arrays with the store's JPEG codec at ``quality`` and append the bytes, so every
    format stores the same bytes for the same frames, and ``flowprep convert`` copies
    stored bytes between formats without decoding them.
    """

    quality: int = codec.DEFAULT_JPEG_QUALITY
    #: "jpeg" (flow as two grey JPEGs) or "raw" (HDF5's lossless uint8 flow)
    payload: str = "jpeg"

    def add_rgb(self, rgb: np.ndarray) -> None:
        """Append frame: uint8 (H, W, 3) RGB."""
        self.add_rgb_bytes(codec.encode_rgb(rgb, self.quality))

    def add_flow(self, q: np.ndarray, backward: bool = False, warped: bool = False) -> None:
        """Append quantized flow: uint8 (H, W, 2), to the stream flow_stream(backward, warped)."""
        self.add_flow_bytes(codec.encode_grey(np.ascontiguousarray(q[..., 0]), self.quality),
                            codec.encode_grey(np.ascontiguousarray(q[..., 1]), self.quality),
                            backward, warped)

    def add_rgb_bytes(self, data: bytes) -> None:
        """Append frame: its JPEG bytes as stored."""
        raise NotImplementedError

    def add_flow_bytes(self, x: bytes, y: bytes, backward: bool = False,
                       warped: bool = False) -> None:
        """Append flow: the grey JPEG bytes of dx and dy as stored."""
        raise NotImplementedError

    def add_flow_raw(self, q: np.ndarray, backward: bool = False, warped: bool = False) -> None:
        """Append flow: uint8 (H, W, 2) stored losslessly (formats with the raw payload)."""
        raise StoreError(f"{type(self).__name__} stores no raw flow payload")

    def commit(self, meta: Dict[str, Any]) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class StoreWriter:
    """A worker's writer into a store; a context manager. ``begin`` returns a VideoWriter.

    A committed video is published either at once (JPEG store) or when its
    shard is sealed (HDF5 store); ``drain_published`` returns the ids that
    became published since the last call, so the caller knows which videos
    are safe and which would be lost if this worker died now.
    """

    _published: List[str]
    #: the flow payload its videos store: "jpeg", or "raw" (HDF5 --payload raw)
    payload: str = "jpeg"

    def begin(self, video_id: str) -> VideoWriter:
        raise NotImplementedError

    def drain_published(self) -> List[str]:
        pending = getattr(self, "_published", [])
        out = list(pending)
        pending.clear()
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_store_file(root: str, info: Dict[str, Any]) -> None:
    atomic_write_json(os.path.join(root, STORE_FILE), info)
