"""Per-video statistics of a store: the rows of ``flowprep inspect --videos`` and
``store.video_stats()``, and the per-flow series the report plots.

A row summarises a video's forward flow (stream "flow") from its metadata:

    motion            mean over its flows of the per-flow mean |d|, pixels (the motion
                      score a curator filters by)
    motion_p95        mean over its flows of the per-flow 95th percentile of |d|, pixels
    clipped_fraction  mean over its flows of the fraction of components beyond the bound
    camera_dx/dy      mean over its flows of the per-flow mean vector (dx, dy), pixels
    camera_motion     mean over its flows of the length of the per-flow mean vector, pixels
                      (a pan or a shake: the global part of the motion)

Stores made before the statistics existed lack "motion" and "motion_p95" in their
metadata; they are then computed from the stored planes (dequantized, so clipped at
the bound and rounded to the quantization step, and decoded at half size: approximate),
on up to ``approx_flows`` evenly spaced flows a video, and the row says
``stats="approximate"``.
A video whose metadata or planes cannot be read gives a row with
``status="unreadable"`` and the reason; nothing here raises for one bad video.
Mean vectors and clipped fractions were stored by every version, so they are exact.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional

import cv2
import numpy as np

from .. import quantize as qz
from ..errors import StoreError

#: flows read per video to compute motion statistics of a store made before them
APPROX_FLOWS = 8

#: (name, numpy dtype of store.video_stats(as_array=True), meaning) in row order
FIELDS = [
    ("video_id", "U", "the video's id (failed inputs: the id it would have had)"),
    ("status", "U", "published | failed | unreadable"),
    ("label", "i8", "class index (-1 in the array when none)"),
    ("class", "U", "class name"),
    ("num_frames", "i8", "stored frames"),
    ("num_flows", "i8", "flows per stream"),
    ("step", "i8", "flow i is frame i -> i+step"),
    ("task", "U", "both | rgb | flow"),
    ("fps", "f8", "frames/s of the stored frames"),
    ("width", "i8", "stored width, pixels"),
    ("height", "i8", "stored height, pixels"),
    ("motion", "f8", "mean |d| over the video, pixels"),
    ("motion_p95", "f8", "mean of the per-flow 95th percentile of |d|, pixels"),
    ("clipped_fraction", "f8", "mean fraction of flow components beyond the bound"),
    ("camera_dx", "f8", "mean of the per-flow mean dx, pixels"),
    ("camera_dy", "f8", "mean of the per-flow mean dy, pixels"),
    ("camera_motion", "f8", "mean length of the per-flow mean vector, pixels"),
    ("warnings", "i8", "decode warnings recorded for the input"),
    ("stats", "U", "extraction | approximate (from stored planes) | none"),
    ("input", "U", "the input path"),
    ("reason", "U", "why the input failed or the video is unreadable"),
]
FIELD_NAMES = [f[0] for f in FIELDS]

_INT_FIELDS = {n for n, t, _ in FIELDS if t == "i8"}
_FLOAT_FIELDS = {n for n, t, _ in FIELDS if t == "f8"}


def empty_row(video_id: str, status: str) -> Dict[str, Any]:
    """A row with every field None except the id and status."""
    row: Dict[str, Any] = dict.fromkeys(FIELD_NAMES)
    row.update(video_id=video_id, status=status, stats="none", input="", reason="", **{"class": ""})
    return row


def _evenly(n: int, count: Optional[int]) -> np.ndarray:
    if count is None or count >= n:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.rint(np.linspace(0, n - 1, max(1, count))).astype(np.int64))


def flow_series(meta: Dict[str, Any], open_video: Optional[Callable[[], Any]] = None,
                approx_flows: Optional[int] = None) -> Dict[str, Any]:
    """Per-flow statistics of a video's forward flow.

    Args:
        meta: the video's metadata dict.
        open_video: returns the store's Video; called only when the metadata lacks the
            motion statistics (a store made before them), to read planes.
        approx_flows: flows read from planes in that case (None: all).
    Returns:
        {"index": int64 (k,) flow indices, "motion": float64 (k,) mean |d| px,
         "motion_p95": float64 (k,) px, "clipped_fraction": float64 (k,),
         "mean_flow": float64 (k, 2) px, "source": "extraction" | "approximate"}.
        k = num_flows from metadata, or the flows read from planes.
    Raises:
        whatever reading the planes raises (StoreError, OSError, ...).
    """
    f = int(meta.get("num_flows") or 0)
    mean = np.asarray(meta.get("mean_flow") or np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    clipped = np.asarray(meta.get("clipped_fraction") or np.zeros(0), dtype=np.float64).reshape(-1)
    if "motion" in meta and "motion_p95" in meta:
        idx = np.arange(f, dtype=np.int64)
        motion = np.asarray(meta["motion"], dtype=np.float64).reshape(-1)
        p95 = np.asarray(meta["motion_p95"], dtype=np.float64).reshape(-1)
        source = "extraction"
    else:
        if open_video is None:
            raise ValueError("the metadata lacks motion statistics and no video to read")
        video = open_video()
        idx = _evenly(f, approx_flows)
        motion = np.zeros(len(idx))
        p95 = np.zeros(len(idx))
        for j, i in enumerate(idx):
            motion[j], p95[j] = qz.motion_stats(half_size_flow(video, int(i)))
        source = "approximate"
    sel = idx[idx < len(mean)]
    return {"index": idx, "motion": motion, "motion_p95": p95,
            "clipped_fraction": clipped[idx[idx < len(clipped)]],
            "mean_flow": mean[sel], "source": source}


def half_size_flow(video, i: int) -> np.ndarray:
    """Flow i of ``video`` as stored, at half size: float32 (ceil(H/2), ceil(W/2), 2) pixels
    (displacements in stored pixels, not rescaled).

    JPEG planes are decoded by libjpeg's DCT scaling (IMREAD_REDUCED_GRAYSCALE_2: ~5x
    faster than a full decode; the motion statistics agree with the full decode's within
    1 % on the demo store); raw planes are subsampled. For the approximate statistics of
    stores made before they were recorded.
    """
    x, y = video.flow_payload(i)
    planes = []
    for c, p in (("x", x), ("y", y)):
        if isinstance(p, (bytes, bytearray, memoryview)):
            img = cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2)
            if img is None:
                raise StoreError(f"{video.video_id} flow {i} {c}: not a decodable JPEG")
            planes.append(img)
        else:
            planes.append(np.asarray(p)[::2, ::2])
    return qz.dequantize(np.stack(planes, axis=-1), video.quant, video.flow_ranges(i))


def _mean(a: np.ndarray) -> Optional[float]:
    return float(np.mean(a)) if len(a) else None


def video_row(video_id: str, meta: Dict[str, Any], open_video: Optional[Callable[[], Any]] = None,
              approx_flows: Optional[int] = APPROX_FLOWS) -> Dict[str, Any]:
    """One row (see :data:`FIELDS`) from a video's metadata; planes read only for a store
    made before the statistics. A video whose planes cannot be read: status "unreadable"."""
    row = empty_row(video_id, "published")
    task = str(meta.get("task") or "both")
    row.update({"label": meta.get("label"), "class": meta.get("class_name") or "",
                "num_frames": int(meta.get("num_frames") or 0),
                "num_flows": int(meta.get("num_flows") or 0),
                "step": int(meta.get("step") or 1), "task": task,
                "fps": float(meta["fps"]) if meta.get("fps") is not None else None,
                "width": meta.get("width"), "height": meta.get("height"),
                "warnings": len(meta.get("warnings") or []), "input": meta.get("source") or ""})
    if task == "rgb" or row["num_flows"] == 0:
        return row
    try:
        s = flow_series(meta, open_video, approx_flows)
    except Exception as exc:  # one bad video never stops a listing
        row.update(status="unreadable", reason=f"{type(exc).__name__}: {exc}"
                   if not str(exc).startswith(video_id) else str(exc))
        return row
    mf = s["mean_flow"]
    row.update(motion=_mean(s["motion"]), motion_p95=_mean(s["motion_p95"]),
               clipped_fraction=_mean(s["clipped_fraction"]),
               camera_dx=_mean(mf[:, 0]), camera_dy=_mean(mf[:, 1]),
               camera_motion=_mean(np.hypot(mf[:, 0], mf[:, 1])), stats=s["source"])
    return row


def store_rows(store, include_failed: bool = True, approx_flows: Optional[int] = APPROX_FLOWS,
               progress: Optional[Callable[[str], None]] = None) -> List[Dict[str, Any]]:
    """The rows of every published video of ``store`` (in store.video_ids order), then one
    row per failed input (status "failed", with the reason), through the reader API only:
    store.video_ids, store.meta(id), store[id] (planes, pre-statistics stores only),
    store.failure_records()."""
    rows: List[Dict[str, Any]] = []
    for vid in store.video_ids:
        if progress is not None:
            progress(vid)
        try:
            meta = store.meta(vid)
        except Exception as exc:
            row = empty_row(vid, "unreadable")
            row["reason"] = f"metadata: {exc}"
            rows.append(row)
            continue
        rows.append(video_row(vid, meta, lambda vid=vid: store[vid], approx_flows))
    if include_failed:
        for inp, rec in sorted(store.failure_records().items()):
            row = empty_row(rec.get("video_id") or "", "failed")
            row.update(input=inp, reason=rec.get("reason") or "")
            rows.append(row)
    return rows


def rows_to_array(rows: List[Dict[str, Any]]) -> np.ndarray:
    """Rows as a numpy structured array (fields of :data:`FIELDS`): missing floats NaN,
    missing integers -1, strings as fixed-width unicode."""
    dtype = []
    for name, kind, _ in FIELDS:
        if kind == "U":
            width = max([len(str(r.get(name) or "")) for r in rows] + [1])
            dtype.append((name, f"U{width}"))
        else:
            dtype.append((name, kind))
    out = np.zeros(len(rows), dtype=dtype)
    for i, r in enumerate(rows):
        for name, kind, _ in FIELDS:
            v = r.get(name)
            if kind == "U":
                out[name][i] = "" if v is None else str(v)
            elif kind == "i8":
                out[name][i] = -1 if v is None else int(v)
            else:
                out[name][i] = math.nan if v is None else float(v)
    return out


def json_ready(row: Dict[str, Any]) -> Dict[str, Any]:
    """A row with NaN/inf floats as None (strict JSON)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def write_csv(rows: List[Dict[str, Any]], stream) -> None:
    """Rows as CSV (header = :data:`FIELD_NAMES`; missing values empty) to a text stream."""
    import csv
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(FIELD_NAMES)
    for r in rows:
        w.writerow(["" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])
                    for k in FIELD_NAMES])


def format_rows(rows: List[Dict[str, Any]]) -> str:
    """Rows as an aligned text table (``flowprep inspect OUT --videos``); failed and
    unreadable videos follow with their reasons."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    head = ["video_id", "class", "frames", "flows", "fps", "size", "motion", "p95", "clipped",
            "camera", "warn"]
    table = [head]
    bad = []
    for r in rows:
        if r["status"] != "published":
            bad.append(f"{r['status']:10s} {r['video_id'] or r['input']}: {r['reason']}")
            continue
        table.append([r["video_id"], r["class"] or "-", str(r["num_frames"]), str(r["num_flows"]),
                      num(r["fps"], ".2f"), f"{r['width']}x{r['height']}",
                      num(r["motion"], ".3f") + ("~" if r["stats"] == "approximate" else ""),
                      num(r["motion_p95"], ".2f"),
                      "-" if r["clipped_fraction"] is None else f"{100 * r['clipped_fraction']:.2f}%",
                      num(r["camera_motion"], ".2f"), str(r["warnings"])])
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(t, widths))).rstrip() for t in table]
    if any(r["stats"] == "approximate" for r in rows):
        lines.append("~ computed from stored (quantized) planes: the store predates the "
                     "motion statistics")
    lines.append("motion, p95, camera: pixels (mean |d|, its 95th percentile, mean flow vector "
                 "length); clipped: flow components beyond the bound")
    return "\n".join(lines + bad)
