"""``flowprep verify`` for the HDF5 store: index parts, shard sizes, groups, tables, crc32.

Every index part parses and names a shard that exists with the size recorded
when it was sealed (a truncated or grown shard is caught before anything is
read), each indexed group exists and carries its video id, the per-frame
tables fit in the blob, the zlib.crc32 of every stored frame matches, raw flow
has the shape of the metadata; shards no index part names, and groups no part
lists, are reported.
"""
from __future__ import annotations

import zlib
from typing import Any, Dict, Optional

import numpy as np

from ...errors import StoreError
from ..base import stored_rgb_frames
from ..checks import (Collector, check_index_counts, check_shard_index, check_shard_size,
                      check_shard_videos, decode_ok, flow_items, record_meta)
from . import store as h5


def verify(store, col: Collector, decode: bool, progress) -> None:
    """Add the problems of the HDF5 store ``store`` (index, shards, videos) to ``col``."""
    key = store.info.get("config_key")
    parts, sizes = check_shard_index(store, col, "left by an interrupted run")
    bad_shards: Dict[str, str] = {}
    for part in parts:
        name = part["shard"]
        rel = f"{h5.SHARD_DIR}/{name}"
        bad = check_shard_size(col, part, sizes)
        if bad:
            bad_shards[name] = bad
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
    check_shard_videos(parts, bad_shards, col, progress, lambda vid, e, rel: _verify_hdf5_video(
        store, vid, e, key, col, decode, rel))


def _verify_hdf5_video(store, vid: str, e: Dict[str, Any], key, col: Collector, decode: bool,
                       rel: str) -> None:
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
    counts = record_meta(col, meta, vid, key, rel)
    if counts is None:
        return
    n, nf, h, w = counts
    check_index_counts(col, vid, e, meta, n, nf, rel)
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
                err = decode_ok(data, colour, h, w)
                if err:
                    col.add(vid, where, err, rel)

    check_stream("rgb", stored_rgb_frames(meta), "frame", None, True)
    for key, label, _ in flow_items(meta):
        raw = h5.RAW_FLOW_STREAMS[key]
        if raw in g:
            _check_raw(g, raw, nf, h, w, vid, label, col, rel)
        else:
            for stream, axis in zip(h5.JPEG_FLOW_STREAMS[key], "xy"):
                if stream not in g:
                    col.add(vid, f"{label}s {axis}", f"no {stream} table in the shard", rel)
                    continue
                check_stream(stream, nf, label, axis, False)


def _check_raw(g, name: str, count: int, h: int, w: int, vid: str, label: str, col: Collector,
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

