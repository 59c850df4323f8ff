"""The store tools' library side: ``describe_store`` (flowprep inspect) and ``verify_store``.

``verify_store`` checks what a reader relies on and returns a list of
:class:`Problem` (empty when the store is sound):

- both formats: every published video's metadata is sane (required keys,
  num_flows = num_frames - step, one mean vector / clipped fraction / range
  per flow, the store's config key), every frame and flow is present and
  decodes to the stored size, the annotation lists name exactly the
  published videos with their counts;
- JPEG store: exactly the expected files per video directory (no checksums
  are recorded there; decodability is the check);
- HDF5 store: every index part parses and names a shard that exists with
  the size recorded when it was sealed (a truncated or grown shard is
  caught before anything is read), each indexed group exists and carries
  its video id, the per-frame tables fit in the blob, the zlib.crc32 of
  every stored frame matches, raw flow has the shape of the metadata;
  shards no index part names, and groups no part lists, are reported.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np

from .errors import StoreError
from .fsutil import read_json
from .store import open_store
from .store import codec
from .store.base import (FLOW_STREAMS, META_DIR, Store, flow_stream, stat_suffix, stored_rgb_frames,
                         stored_streams, stream_label, task_of)

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


def _record_meta(col: "_Collector", meta: Dict[str, Any], vid: str, store_key: Optional[str],
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


def _meta_or_empty(store: Store, vid: str) -> Dict[str, Any]:
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


def _flow_items(meta: Dict[str, Any]):
    """((backward, warped), label, JPEG file prefix) for each stored flow stream (none for
    a --task rgb video)."""
    for b, w in stored_streams(meta):
        yield (b, w), stream_label(b, w), flow_stream(b, w)


class _Collector:
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


def _decode_ok(data: bytes, colour: bool, h: int, w: int) -> Optional[str]:
    try:
        img = codec.decode_rgb(data) if colour else codec.decode_grey(data)
    except StoreError:
        return "not a decodable JPEG"
    want = (h, w, 3) if colour else (h, w)
    if img.shape != want:
        return f"decodes to {img.shape}, metadata says {want}"
    return None


# --------------------------------------------------------------------------------------
# verify


def verify_store(path: str, decode: bool = True,
                 progress: Optional[Callable[[str], None]] = None) -> List[Problem]:
    """Check a store; returns every problem found (empty list: the store is sound).

    Args:
        path: the store directory.
        decode: decode every frame (False: counts, files and checksums only).
        progress: called with each video id before it is checked.
    Raises:
        StoreError when ``path`` is not a readable store at all.
    """
    root = os.path.abspath(os.fspath(path))
    store = open_store(root)
    col = _Collector()
    if store.format == "jpeg":
        _verify_jpeg(store, col, decode, progress)
    elif store.format == "hdf5":
        _verify_hdf5(store, col, decode, progress)
    _verify_lists(store, col)
    return col.problems


def _verify_jpeg(store: Store, col: _Collector, decode: bool, progress) -> None:
    from .store.jpeg import META_FILE, frame_name
    key = store.info.get("config_key")
    for vid in store.video_ids:
        if progress:
            progress(vid)
        d = os.path.join(store.root, vid)
        rel = vid + "/" + META_FILE
        try:
            meta = read_json(os.path.join(d, META_FILE))
        except (OSError, ValueError) as exc:
            col.add(vid, "metadata", f"unreadable ({exc})", rel)
            continue
        counts = _record_meta(col, meta, vid, key, rel)
        if counts is None:
            continue
        n, f, h, w = counts
        expected = {frame_name("img", i): ("frame", i, None, True)
                    for i in range(stored_rgb_frames(meta))}
        for _, label, p in _flow_items(meta):
            for i in range(f):
                for axis in "xy":
                    expected[frame_name(f"{p}_{axis}", i)] = (label, i, axis, False)
        try:
            present = set(os.listdir(d))
        except OSError as exc:
            col.add(vid, "", f"cannot list the video directory ({exc.strerror})", vid)
            continue
        for name in sorted(present - set(expected) - {META_FILE}):
            col.add(vid, name, "unexpected file (not part of the video by its metadata)",
                    f"{vid}/{name}")
        for name, (label, i, axis, colour) in expected.items():
            where = f"{label} {i}" + (f" {axis}" if axis else "")
            if name not in present:
                col.add(vid, where, "file missing", f"{vid}/{name}")
                continue
            if not decode:
                continue
            try:
                with open(os.path.join(d, name), "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                col.add(vid, where, f"unreadable ({exc.strerror})", f"{vid}/{name}")
                continue
            err = _decode_ok(data, colour, h, w)
            if err:
                col.add(vid, where, err, f"{vid}/{name}")


def _verify_hdf5(store, col: _Collector, decode: bool, progress) -> None:
    from .store import hdf5 as h5
    root = store.root
    key = store.info.get("config_key")
    parts, errors = h5.read_index_parts(root)
    for name, reason in errors:
        col.add(None, f"index part {name}", reason, f"{h5.INDEX_DIR}/{name}")
    try:
        shard_files = set(n for n in os.listdir(h5.shard_dir(root)) if n.endswith(h5.SHARD_EXT))
    except FileNotFoundError:
        shard_files = set()
    named = {p["shard"] for p in parts}
    for name in sorted(shard_files - named):
        col.add(None, f"shard {name}", "no index part names this shard (left by an interrupted "
                                       "run; its videos are not published; delete it)",
                f"{h5.SHARD_DIR}/{name}")
    winners = h5.merge_index(parts)
    bad_shards: Dict[str, str] = {}
    for part in parts:
        name = part["shard"]
        rel = f"{h5.SHARD_DIR}/{name}"
        path = os.path.join(h5.shard_dir(root), name)
        if name not in shard_files:
            bad_shards[name] = "missing"
            col.add(None, f"shard {name}", f"missing; index part {part['_part']} names it with "
                                           f"{len(part['videos'])} videos", rel)
            continue
        size = os.path.getsize(path)
        want = part.get("shard_bytes")
        if want is not None and size != int(want):
            bad_shards[name] = "truncated" if size < int(want) else "changed"
            col.add(None, f"shard {name}", f"{size} bytes, sealed with {want} "
                                           f"({'truncated' if size < int(want) else 'changed since'})",
                    rel)
            continue
        try:
            f = store._file(name)
        except StoreError as exc:
            bad_shards[name] = "unreadable"
            col.add(None, f"shard {name}", f"cannot be opened ({exc})", rel)
            continue
        listed = {e["group"] for e in part["videos"].values()}
        try:
            groups = {f"videos/{g}" for g in f["videos"].keys()}
        except (KeyError, OSError) as exc:
            bad_shards[name] = "unreadable"
            col.add(None, f"shard {name}", f"has no readable /videos group ({exc})", rel)
            continue
        for g in sorted(groups - listed):
            col.add(None, f"shard {name}", f"group {g} is not in the index (dead data)", rel)
    for vid in sorted(winners):
        e = winners[vid]
        rel = f"{h5.SHARD_DIR}/{e['shard']}"
        if e["shard"] in bad_shards:
            col.add(vid, "", f"its shard is {bad_shards[e['shard']]}; the video is unreadable", rel)
            continue
        if progress:
            progress(vid)
        _verify_hdf5_video(store, vid, e, key, col, decode, rel)


def _verify_hdf5_video(store, vid: str, e: Dict[str, Any], key, col: _Collector, decode: bool,
                       rel: str) -> None:
    from .store import hdf5 as h5
    f = store._file(e["shard"])
    try:
        g = f[e["group"]]
    except KeyError:
        col.add(vid, "", f"group {e['group']} named by the index is missing", rel)
        return
    if g.attrs.get("video_id") != vid:
        col.add(vid, "", f"group {e['group']} holds video {g.attrs.get('video_id')!r}", rel)
        return
    try:
        meta = store.meta(vid)
    except StoreError as exc:
        col.add(vid, "metadata", str(exc), rel)
        return
    counts = _record_meta(col, meta, vid, key, rel)
    if counts is None:
        return
    n, nf, h, w = counts
    for k, v in (("num_frames", n), ("num_flows", nf), ("config_key", meta.get("config_key"))):
        if e.get(k) != v:
            col.add(vid, "index", f"index says {k}={e.get(k)!r}, metadata {v!r}", rel)
    video = store[vid]
    try:
        blob = g["blob"]
        blob_len = int(blob.shape[0])
    except (KeyError, OSError) as exc:
        col.add(vid, "", f"no readable blob ({exc})", rel)
        return

    def check_stream(stream: str, count: int, label: str, axis: Optional[str], colour: bool) -> None:
        try:
            t = video.table(stream)
        except (StoreError, OSError, KeyError) as exc:
            col.add(vid, f"{label}s" + (f" {axis}" if axis else ""), f"table {stream} unreadable "
                                                                    f"({exc})", rel)
            return
        if t.shape[0] != count:
            col.add(vid, f"{label}s" + (f" {axis}" if axis else ""),
                    f"{t.shape[0]} stored, metadata says {count}", rel)
        for i in range(min(count, t.shape[0])):
            where = f"{label} {i}" + (f" {axis}" if axis else "")
            off, length, crc = (int(x) for x in t[i])
            if off < 0 or length <= 0 or off + length > blob_len:
                col.add(vid, where, f"bytes [{off}, {off + length}) outside the blob of {blob_len}",
                        rel)
                continue
            try:
                data = blob[off:off + length].tobytes()
            except OSError as exc:
                col.add(vid, where, f"unreadable ({exc})", rel)
                continue
            got = zlib.crc32(data)
            if got != crc:
                col.add(vid, where, f"checksum mismatch (stored crc32 {crc:08x}, data {got:08x})",
                        rel)
                continue
            if decode:
                err = _decode_ok(data, colour, h, w)
                if err:
                    col.add(vid, where, err, rel)

    check_stream("rgb", stored_rgb_frames(meta), "frame", None, True)
    for key, label, _ in _flow_items(meta):
        raw = h5.RAW_FLOW_STREAMS[key]
        if raw in g:
            _check_raw(g, raw, nf, h, w, vid, label, col, rel)
        else:
            for stream, axis in zip(h5.JPEG_FLOW_STREAMS[key], "xy"):
                if stream not in g:
                    col.add(vid, f"{label}s {axis}", f"no {stream} table in the shard", rel)
                    continue
                check_stream(stream, nf, label, axis, False)


def _check_raw(g, name: str, count: int, h: int, w: int, vid: str, label: str, col: _Collector,
               rel: str) -> None:
    ds = g[name]
    if tuple(ds.shape[1:]) != (2, h, w) or ds.dtype != np.uint8:
        col.add(vid, f"{label}s", f"raw flow is {ds.dtype} {ds.shape}, metadata says "
                                  f"uint8 (N, 2, {h}, {w})", rel)
        return
    if ds.shape[0] != count:
        col.add(vid, f"{label}s", f"{ds.shape[0]} stored, metadata says {count}", rel)
    try:
        crcs = np.asarray(g[name + "_crc32"][()], dtype=np.int64)
    except KeyError:
        col.add(vid, f"{label}s", f"no {name}_crc32 checksums", rel)
        crcs = None
    for i in range(min(count, ds.shape[0])):
        try:
            q = np.ascontiguousarray(ds[i])
        except OSError as exc:
            col.add(vid, f"{label} {i}", f"unreadable ({exc})", rel)
            continue
        if crcs is not None and i < crcs.size and zlib.crc32(q.tobytes()) != int(crcs[i]):
            col.add(vid, f"{label} {i}", f"checksum mismatch (stored crc32 {int(crcs[i]):08x}, "
                                         f"data {zlib.crc32(q.tobytes()):08x})", rel)


def _verify_lists(store: Store, col: _Collector) -> None:
    root = store.root
    store_task = task_of(store.config)
    metas = {vid: _meta_or_empty(store, vid) for vid in store.video_ids}

    def listed_in(skip: str):  # videos of another --task (an older run) are not in this list
        if store_task == "both":
            return set(metas)
        return {v for v, m in metas.items() if task_of(m) != skip}

    warped = {v for v, m in metas.items() if m.get("warped") and task_of(m) != "rgb"}
    lists = [("rgb_list.txt", "num_frames", listed_in("flow"), "flow"),
             ("flow_list.txt", "num_flows", listed_in("rgb"), "rgb")]
    if warped or os.path.isfile(os.path.join(root, "wflow_list.txt")):
        lists.append(("wflow_list.txt", "num_flows", warped, "rgb"))  # --warped videos only
    for list_name, key, have, skip in lists:  # skip: the task without this list
        path = os.path.join(root, list_name)
        if store_task == skip:
            if os.path.isfile(path):
                col.add(None, "lists", f"{list_name} exists, but the store was extracted with "
                                       f"--task {skip} (run flowprep index)", list_name)
            continue
        if not os.path.isfile(path):
            if have:
                col.add(None, "lists", f"{list_name} missing (run flowprep index)", list_name)
            continue
        listed: Dict[str, int] = {}
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                fields = line.rsplit(" ", 2)
                try:
                    listed[fields[0]] = int(fields[1])
                    int(fields[2])
                except (ValueError, IndexError):
                    col.add(None, "lists", f"{list_name}: unparsable line {line!r}", list_name)
        stale = sorted(set(listed) - have)
        absent = sorted(have - set(listed))
        for vid in stale[:MAX_PER_VIDEO]:
            col.add(vid, "lists", f"{list_name} lists it but it is not published", list_name)
        for vid in absent[:MAX_PER_VIDEO]:
            col.add(vid, "lists", f"published but not in {list_name} (run flowprep index)",
                    list_name)
        for vid in sorted(have & set(listed)):
            try:
                want = int(store.meta(vid)[key])
            except (StoreError, KeyError, ValueError, OSError):
                continue
            if listed[vid] != want:
                col.add(vid, "lists", f"{list_name} gives {listed[vid]}, metadata {key}={want}",
                        list_name)


# --------------------------------------------------------------------------------------
# inspect


def _tree_bytes(root: str) -> Dict[str, int]:
    """Apparent and allocated bytes of every file under root (the staging area excluded)."""
    size = alloc = files = 0
    skip = os.path.join(root, META_DIR, "tmp")
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == skip:
            dirnames[:] = []
            continue
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            size += st.st_size
            alloc += getattr(st, "st_blocks", 0) * 512
            files += 1
    return {"bytes": size, "allocated": alloc, "files": files}


def describe_store(path: str) -> Dict[str, Any]:
    """What ``flowprep inspect`` reports, as a JSON-ready dict.

    Keys: path, format, payload, config, config_key, videos, frames, flows (forward),
    backward_flows (plain), warped_flows (forward and backward warped), homography_fallbacks
    (warped flows made with the identity), failures (input -> reason), warnings (video id -> warnings of
    videos published from damaged inputs), disk {bytes, allocated, files},
    payload_bytes {rgb, flow, meta}, bytes_per_rgb_frame, bytes_per_flow (x and y of one
    flow), float32_bytes_per_flow, ratio_vs_float32, stale_videos; HDF5 also shards,
    index_parts, superseded (older copies of republished videos).
    """
    store = open_store(path)
    root = store.root
    out: Dict[str, Any] = {"path": root, "format": store.format,
                           "payload": store.config.get("payload", "jpeg"),
                           "config": store.config, "config_key": store.info.get("config_key"),
                           "classes": len(store.info.get("classes", []))}
    ids = store.video_ids
    frames = flows = bflows = wflows = total_flows = fallbacks = rgb_frames = 0
    float_bytes = 0
    stale = 0
    warnings: Dict[str, List[str]] = {}
    pb = {"rgb": 0, "flow": 0, "meta": 0}
    for vid in ids:
        meta = store.meta(vid)
        if meta.get("warnings"):
            warnings[vid] = list(meta["warnings"])
        n, f = int(meta["num_frames"]), int(meta["num_flows"])
        frames += n
        rgb_frames += stored_rgb_frames(meta)
        flows += f
        streams = stored_streams(meta)
        bflows += f * sum(1 for b, w in streams if b and not w)
        wflows += f * sum(1 for b, w in streams if w)
        total_flows += f * len(streams)
        fallbacks += sum(1 for x in meta.get("homography_fallback", []) if x)
        float_bytes += f * len(streams) * int(meta["height"]) * int(meta["width"]) * 8
        if meta.get("config_key") != out["config_key"]:
            stale += 1
        for k, v in _video_bytes(store, vid).items():
            pb[k] += v
    out.update(videos=len(ids), frames=frames, flows=flows, backward_flows=bflows,
               warped_flows=wflows, homography_fallbacks=fallbacks,
               stale_videos=stale, payload_bytes=pb, disk=_tree_bytes(root),
               failures=dict(sorted(store.failures.items())), warnings=warnings)
    out["task"] = task_of(store.config)
    out["bytes_per_rgb_frame"] = pb["rgb"] / rgb_frames if rgb_frames else None
    out["bytes_per_flow"] = pb["flow"] / total_flows if total_flows else None
    out["float32_bytes_per_flow"] = float_bytes / total_flows if total_flows else None
    out["ratio_vs_float32"] = (float_bytes / pb["flow"]) if pb["flow"] else None
    if store.format == "hdf5":
        from .store import hdf5 as h5
        parts, errors = h5.read_index_parts(root)
        copies = sum(len(p["videos"]) for p in parts)
        out.update(shards=len({p["shard"] for p in parts}), index_parts=len(parts),
                   unreadable_index_parts=len(errors), superseded=copies - len(h5.merge_index(parts)))
    return out


def _video_bytes(store: Store, vid: str) -> Dict[str, int]:
    """Stored payload bytes of one video: rgb, flow (all directions, x + y), meta."""
    out = {"rgb": 0, "flow": 0, "meta": 0}
    if store.format == "jpeg":
        d = os.path.join(store.root, vid)
        try:
            entries = list(os.scandir(d))
        except OSError:
            return out
        for e in entries:
            try:
                size = e.stat().st_size
            except OSError:
                continue
            if e.name.startswith("img_"):
                out["rgb"] += size
            elif e.name.startswith(("flow_", "bflow_", "wflow_", "bwflow_")):
                out["flow"] += size
            else:
                out["meta"] += size
        return out
    from .store import hdf5 as h5
    video = store[vid]
    g = video._group()
    out["rgb"] = int(video.table("rgb")[:, 1].sum())
    out["meta"] = int(g["meta"].shape[0])
    for key in FLOW_STREAMS:  # (backward, warped)
        raw = h5.RAW_FLOW_STREAMS[key]
        if raw in g:
            out["flow"] += int(g[raw].id.get_storage_size())
        for s in h5.JPEG_FLOW_STREAMS[key]:
            if s in g:
                out["flow"] += int(video.table(s)[:, 1].sum())
    return out


def _input_text(c: Dict[str, Any]) -> str:
    """How the inputs were decoded and selected, from a store config (for inspect)."""
    dec = c.get("decoder") or {}
    parts = [f"decoder {dec.get('name', 'opencv')}"
             + (f" (FFmpeg {dec['ffmpeg']})" if dec.get("ffmpeg") else "")]
    parts.append(f"resampled to {c['fps']:g} frames/s" if c.get("fps") else "every decoded frame")
    if c.get("time_range"):
        s, e = c["time_range"]
        parts.append(f"frames in [{0 if s is None else s:g}, {'end' if e is None else f'{e:g}'}) s")
    if c.get("input_fps"):
        parts.append(f"frame folders at {c['input_fps']:g} frames/s")
    return ", ".join(parts)


def format_description(d: Dict[str, Any]) -> str:
    """The human-readable form of :func:`describe_store`'s dict."""
    def hb(n: Optional[float]) -> str:
        if n is None:
            return "-"
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if abs(n) < 1000 or unit == "TB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1000.0
        return str(n)

    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    c = d["config"]
    q = c.get("quant", {})
    qtxt = (f"fixed quantization, bound {q.get('bound'):g} px" if q.get("scheme") == "fixed"
            else "adaptive quantization (per-flow range)")
    rs = c.get("resize", {})
    rtxt = (f"size {rs['size'][0]}x{rs['size'][1]}" if rs.get("size")
            else ("original size" if not rs.get("short_side") else f"short side {rs['short_side']}"))
    fmt = d["format"]
    if fmt == "hdf5":
        fmt += (f" (payload {d['payload']}), {n(d.get('shards', 0), 'shard')}, "
                f"{n(d.get('index_parts', 0), 'index part')}")
        if d.get("superseded"):
            fmt += f", {d['superseded']} superseded copies (dead bytes; convert to drop them)"
    lines = [
        f"store      {d['path']}",
        f"format     {fmt}",
        (f"config     RGB frames only (--task rgb), {rtxt}, JPEG quality {c.get('jpeg_quality')}"
         f"  [key {d['config_key']}]" if d.get("task") == "rgb" else
         f"config     {c.get('algo')} ({c.get('implementation')}), {qtxt}, {rtxt}, step "
         f"{c.get('step')}{', backward' if c.get('backward') else ''}"
         f"{', warped (' + c['warped'].get('features', '') + ' homography)' if c.get('warped') else ''}"
         f", JPEG quality {c.get('jpeg_quality')}"
         + (", flow only (--task flow)" if d.get("task") == "flow" else "")
         + f"  [key {d['config_key']}]"),
        f"input      {_input_text(c)}",
    ] + ([f"preset     {c['preset'].get('name')} ({c['preset'].get('source', '')})"]
         if isinstance(c.get("preset"), dict) else []) + [
        f"videos     {d['videos']} published, {len(d['failures'])} failed"
        + (f", {d['stale_videos']} made with another configuration" if d["stale_videos"] else ""),
        f"frames     {n(d['frames'], 'frame')}"
        + (" decoded (RGB not stored)" if d.get("task") == "flow" else "")
        + f", {n(d['flows'], 'flow')}"
        + (f" + {d['backward_flows']} backward" if d["backward_flows"] else "")
        + (f" (+ {d['warped_flows']} warped" + (f", {d['homography_fallbacks']} with the "
           f"identity homography (fallback)" if d.get("homography_fallbacks") else "") + ")"
           if d.get("warped_flows") else ""),
        f"disk       {hb(d['disk']['bytes'])} in {n(d['disk']['files'], 'file')} "
        f"({hb(d['disk']['allocated'])} allocated)",
        f"per frame  RGB {hb(d['bytes_per_rgb_frame'])}, flow {hb(d['bytes_per_flow'])} (x + y); "
        f"float32 flow would be {hb(d['float32_bytes_per_flow'])}"
        + (f" ({d['ratio_vs_float32']:.0f}x larger)" if d["ratio_vs_float32"] else ""),
    ]
    if d["failures"]:
        lines.append("failures")
        for inp, reason in d["failures"].items():
            lines.append(f"  {inp}: {reason}")
    else:
        lines.append("failures   none")
    if d.get("warnings"):
        lines.append(f"warnings   {n(len(d['warnings']), 'published video')} from damaged inputs")
        for vid, ws in d["warnings"].items():
            lines.append(f"  {vid}: {'; '.join(ws)}")
    return "\n".join(lines)


def iter_problem_lines(problems: Iterable[Problem]) -> Iterable[str]:
    for p in problems:
        yield str(p)
