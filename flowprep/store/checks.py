"""Checks every format's verify shares: the Problem record, the collector, metadata sanity.

``flowprep verify`` (flowprep/verify.py) opens a store and hands a :class:`Collector`
to its format's ``verify`` (flowprep/store/<format>/verify.py); each format adds the
problems of its own layout, and these helpers check what every format holds alike.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import StoreError
from . import codec
from .base import Store, flow_stream, stat_suffix, stored_streams, stream_label, task_of
from .shards import INDEX_DIR, SHARD_DIR, merge_index

MAX_PER_VIDEO = 50


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store.

    Attributes:
        video_id: the video it concerns, or None for store-level problems.
        where: the item inside the video ("frame 12", "flow 3 x", "backward flow 0 y",
            "metadata") or the store-level thing ("shard X", "index part Y", "lists").
        message: what is wrong, for a person.
        path: the file concerned (relative to the store), when there is one.
    """

    video_id: Optional[str]
    where: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        head = f"{self.video_id}: " if self.video_id is not None else ""
        where = f"{self.where}: " if self.where else ""
        tail = f" [{self.path}]" if self.path else ""
        return f"{head}{where}{self.message}{tail}"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------
# metadata


REQUIRED_META = ("num_frames", "num_flows", "fps", "width", "height", "step", "quant",
                 "mean_flow", "config_key")


def record_meta(col: "Collector", meta: Dict[str, Any], vid: str, store_key: Optional[str],
                 rel: str) -> Optional[tuple]:
    """Record what is wrong with ``meta``; (num_frames, num_flows, height, width) when the
    counts are usable for checking the frames, None when they are not."""
    for m in check_meta(meta, vid, store_key):
        col.add(vid, "metadata", m, rel)
    if any(k not in meta for k in REQUIRED_META):
        return None
    try:
        return tuple(int(meta[k]) for k in ("num_frames", "num_flows", "height", "width"))
    except (TypeError, ValueError):
        return None


def check_meta(meta: Dict[str, Any], video_id: str, store_key: Optional[str]) -> List[str]:
    """Messages for what is wrong with one video's metadata dict (empty when sane)."""
    out: List[str] = []
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        return [f"metadata lacks {', '.join(missing)}"]
    try:
        n, f, step = int(meta["num_frames"]), int(meta["num_flows"]), int(meta["step"])
        w, h = int(meta["width"]), int(meta["height"])
    except (TypeError, ValueError) as exc:
        return [f"metadata counts are not integers ({exc})"]
    if meta.get("video_id", video_id) != video_id:
        out.append(f"metadata names video {meta.get('video_id')!r}")
    if n < 1 or w < 1 or h < 1 or step < 1:
        out.append(f"metadata has num_frames={n}, {w}x{h}, step={step}")
    task = task_of(meta)
    if task == "rgb":
        if f != 0:
            out.append(f"num_flows is {f}; a --task rgb video stores no flow")
    elif f != max(0, n - step):
        out.append(f"num_flows is {f}; {n} frames with step {step} give {max(0, n - step)}")
    dirs = [stat_suffix(b, w) for b, w in stored_streams(meta)]  # none for --task rgb
    if "timestamps" in meta:
        ts = meta["timestamps"]
        if not isinstance(ts, list) or len(ts) != n:
            out.append(f"timestamps has {len(ts) if isinstance(ts, list) else ts!r} entries "
                       f"for {n} frames")
        elif any(not b > a for a, b in zip(ts, ts[1:])):
            out.append("timestamps do not increase")
    for sfx in dirs:
        for key in ("mean_flow", "clipped_fraction"):
            vals = meta.get(key + sfx)
            if vals is None:
                if key == "mean_flow" or sfx in ("", "_warped"):
                    out.append(f"metadata lacks {key + sfx}")
                continue
            if len(vals) != f:
                out.append(f"{key + sfx} has {len(vals)} entries for {f} flows")
        for key in ("motion", "motion_p95"):  # optional: stores made before lack them
            vals = meta.get(key + sfx)
            if vals is not None and (not isinstance(vals, list) or len(vals) != f):
                out.append(f"{key + sfx} has {len(vals) if isinstance(vals, list) else vals!r} "
                           f"entries for {f} flows")
        if meta["quant"].get("scheme") == "adaptive":
            r = meta.get("ranges" + sfx)
            if r is None or len(r) != f:
                out.append(f"adaptive quantization needs ranges{sfx} for each of {f} flows, "
                           f"found {0 if r is None else len(r)}")
    if meta.get("warped"):
        out.extend(check_homography_meta(meta, f))
    q = meta["quant"]
    if q.get("scheme") not in ("fixed", "adaptive") or (q.get("scheme") == "fixed"
                                                        and not float(q.get("bound", 0)) > 0):
        out.append(f"unknown quantization record {q!r}")
    if store_key is not None and meta.get("config_key") != store_key:
        out.append(f"made with configuration {meta.get('config_key')}, the store's is {store_key} "
                   f"(rerun the extract to redo it)")
    return out


def meta_or_empty(store: Store, vid: str) -> Dict[str, Any]:
    try:
        return store.meta(vid)
    except (StoreError, OSError, ValueError):
        return {}


def check_homography_meta(meta: Dict[str, Any], f: int) -> List[str]:
    """Messages for what is wrong with a --warped video's homography records (f flows)."""
    out: List[str] = []
    for key in ("homographies", "homography_inliers", "homography_fallback"):
        vals = meta.get(key)
        if vals is None:
            out.append(f"metadata lacks {key} (extracted with --warped)")
        elif len(vals) != f:
            out.append(f"{key} has {len(vals)} entries for {f} flows")
    for i, H in enumerate(meta.get("homographies") or []):
        try:
            a = np.asarray(H, dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        if a is None or a.shape != (3, 3) or not np.all(np.isfinite(a)):
            out.append(f"homography {i} is not a finite 3x3 matrix")
        elif abs(np.linalg.det(a)) < 1e-12:
            out.append(f"homography {i} is singular")
    return out


def flow_items(meta: Dict[str, Any]):
    """((backward, warped), label, JPEG file prefix) for each stored flow stream (none for
    a --task rgb video)."""
    for b, w in stored_streams(meta):
        yield (b, w), stream_label(b, w), flow_stream(b, w)


class Collector:
    def __init__(self) -> None:
        self.problems: List[Problem] = []
        self._per_video: Dict[Optional[str], int] = {}

    def add(self, video_id: Optional[str], where: str, message: str, path: str = "") -> None:
        n = self._per_video.get(video_id, 0) + 1
        self._per_video[video_id] = n
        if video_id is not None and n > MAX_PER_VIDEO:
            if n == MAX_PER_VIDEO + 1:
                self.problems.append(Problem(video_id, "", f"more problems not listed (over "
                                                            f"{MAX_PER_VIDEO})", path))
            return
        self.problems.append(Problem(video_id, where, message, path))


def decode_ok(data: bytes, colour: bool, h: int, w: int) -> Optional[str]:
    try:
        img = codec.decode_rgb(data) if colour else codec.decode_grey(data)
    except StoreError:
        return "not a decodable JPEG"
    want = (h, w, 3) if colour else (h, w)
    if img.shape != want:
        return f"decodes to {img.shape}, metadata says {want}"
    return None




# --------------------------------------------------------------------------------------
# shard stores (HDF5, wds)


def check_shard_index(store, col: "Collector", unnamed: str
                      ) -> Tuple[List[Dict[str, Any]], Dict[str, int]]:
    """Record the unreadable index parts of a shard store and the shards no part names
    (``unnamed``: where such a shard comes from); (the readable parts, shard -> bytes)."""
    parts, errors = store.index_parts()
    for name, reason in errors:
        col.add(None, f"index part {name}", reason, f"{INDEX_DIR}/{name}")
    sizes = store.shard_sizes()  # local files, or objects on object storage
    named = {p["shard"] for p in parts}
    for name in sorted(set(sizes) - named):
        col.add(None, f"shard {name}", f"no index part names this shard ({unnamed}; its "
                                       f"videos are not published; delete it)",
                f"{SHARD_DIR}/{name}")
    return parts, sizes


def check_shard_size(col: "Collector", part: Dict[str, Any], sizes: Dict[str, int]
                     ) -> Optional[str]:
    """Record the shard of index part ``part`` if it is missing or not the size it was
    sealed with: "missing", "truncated" or "changed"; None when it is as sealed."""
    name = part["shard"]
    rel = f"{SHARD_DIR}/{name}"
    if name not in sizes:
        col.add(None, f"shard {name}", f"missing; index part {part['_part']} names it with "
                                       f"{len(part['videos'])} videos", rel)
        return "missing"
    size = sizes[name]
    want = part.get("shard_bytes")
    if want is not None and size != int(want):
        col.add(None, f"shard {name}", f"{size} bytes, sealed with {want} "
                                       f"({'truncated' if size < int(want) else 'changed since'})",
                rel)
        return "truncated" if size < int(want) else "changed"
    return None


def check_shard_videos(parts: List[Dict[str, Any]], bad_shards: Dict[str, str],
                       col: "Collector", progress,
                       check: Callable[[str, Dict[str, Any], str], None]) -> None:
    """``check(video_id, index entry, shard path)`` every published video (the newest entry
    of each), in id order; a video in one of ``bad_shards`` (shard -> what is wrong) is
    recorded unreadable instead."""
    winners = merge_index(parts)
    for vid in sorted(winners):
        e = winners[vid]
        rel = f"{SHARD_DIR}/{e['shard']}"
        if e["shard"] in bad_shards:
            col.add(vid, "", f"its shard is {bad_shards[e['shard']]}; the video is unreadable", rel)
            continue
        if progress:
            progress(vid)
        check(vid, e, rel)


def check_index_counts(col: "Collector", vid: str, e: Dict[str, Any], meta: Dict[str, Any],
                       n: int, nf: int, rel: str) -> None:
    """Record where the index entry ``e`` disagrees with the video's metadata."""
    for k, v in (("num_frames", n), ("num_flows", nf), ("config_key", meta.get("config_key"))):
        if e.get(k) != v:
            col.add(vid, "index", f"index says {k}={e.get(k)!r}, metadata {v!r}", rel)
