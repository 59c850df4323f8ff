"""``flowprep verify`` for the wds store: index parts, member tables, the tars themselves.

- every index part parses and names a shard that exists with the size it was
  sealed with (a truncated or grown shard is reported, and its members are
  still checked one by one, so the report names the members that were cut);
- every shard has a readable member table; the tar is read through from its
  headers, and every member the table lists is there at the recorded offset
  and size, with the recorded crc32; members the table does not list (written
  by another tool, or left by a crash) are reported as foreign;
- shards no index part names are reported;
- each published video: metadata sane and its members decode to the stored size.

Every problem names the shard (path) and, where it concerns one, the member.
"""
from __future__ import annotations

import tarfile
import zlib
from typing import Any, Dict, Optional, Tuple

from ...errors import StoreError
from ..base import stored_rgb_frames
from ..checks import (Collector, check_index_counts, check_shard_index, check_shard_size,
                      check_shard_videos, decode_ok, flow_items, record_meta)
from ..shards import SHARD_DIR
from . import store as wds


def scan_tar(path: str, opener=None) -> Tuple[Dict[str, Tuple[int, int, bool]], Optional[str]]:
    """name -> (data offset, size, regular file) of every member the tar's headers hold,
    and the reason reading stopped early (None when the archive ends properly).
    ``opener()``: the binary file object to read (default: ``path`` opened)."""
    out: Dict[str, Tuple[int, int, bool]] = {}
    last = "the first member"
    try:
        with (opener or (lambda: open(path, "rb")))() as fh, \
                tarfile.open(fileobj=fh, mode="r:") as tf:
            while True:
                info = tf.next()
                if info is None:
                    break
                out[info.name] = (int(info.offset_data), int(info.size), info.isreg())
                last = f"the member after {info.name}"
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
        return out, f"unreadable tar headers at {last} ({exc})"
    return out, None


def verify(store, col: Collector, decode: bool, progress) -> None:
    """Add the problems of the wds store ``store`` (index, shards, members, videos) to ``col``."""
    key = store.info.get("config_key")
    parts, sizes = check_shard_index(store, col, "left by an interrupted run, or not written "
                                                 "by flowprep")
    bad_shards: Dict[str, str] = {}
    scanned: Dict[str, Dict[str, Tuple[int, int, bool]]] = {}
    for part in parts:
        name = part["shard"]
        rel = f"{SHARD_DIR}/{name}"
        path = store.shard_path(name)
        if check_shard_size(col, part, sizes) == "missing":  # a wrong size: members checked
            bad_shards[name] = "missing"
            continue
        try:
            table = store.read_members(name)
        except StoreError as exc:
            bad_shards[name] = "without a readable member table"
            col.add(None, f"shard {name}", str(exc), f"index/{wds.MEMBERS_DIR}/{name[:-4]}.json")
            continue
        found, stopped = scan_tar(path, lambda name=name: store.open_shard_stream(name))
        scanned[name] = found
        if stopped:
            col.add(None, f"shard {name}", stopped, rel)
        listed = {m[0] for v in table["videos"].values() for m in v["members"]}
        for member in sorted(set(found) - listed)[:50]:
            col.add(None, f"shard {name}", f"member {member}: foreign (not in the shard's member "
                                           f"table; not written by flowprep)", rel)
    check_shard_videos(parts, bad_shards, col, progress, lambda vid, e, rel: _verify_video(
        store, vid, e, key, col, decode, rel, scanned.get(e["shard"], {})))


def _verify_video(store, vid: str, e: Dict[str, Any], key, col: Collector, decode: bool,
                  rel: str, found: Dict[str, Tuple[int, int, bool]]) -> None:
    try:
        _, vkey, members = store._video_members(vid)
    except (StoreError, KeyError, ValueError, TypeError) as exc:
        col.add(vid, "members", str(exc), rel)
        return
    if e.get("key") != vkey:
        col.add(vid, "index", f"index says key {e.get('key')!r}, member table {vkey!r}", rel)
    # every member the table lists: its tar header, its bytes, its crc32 (metadata or not)
    good: Dict[str, bytes] = {}
    for field, (off, size, crc) in members.items():
        member = f"{vkey}.{field}"
        got = found.get(member)
        if got is None:
            col.add(vid, f"member {member}", "no tar header for it in the shard", rel)
        elif got[:2] != (off, size):
            col.add(vid, f"member {member}", f"the tar header puts it at {got[0]} ({got[1]} "
                                             f"bytes), the member table at {off} ({size} bytes)",
                    rel)
        try:
            data = store.read_range(e["shard"], off, size, member)
        except StoreError:
            col.add(vid, f"member {member}", "truncated (beyond the end of the shard)", rel)
            continue
        c = zlib.crc32(data)
        if c != crc:
            col.add(vid, f"member {member}", f"checksum mismatch (stored crc32 {crc:08x}, "
                                             f"data {c:08x})", rel)
            continue
        good[field] = data
    if wds.META_FIELD not in good:
        col.add(vid, "metadata", f"member {vkey}.{wds.META_FIELD} unreadable", rel)
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
    expected = {wds.field_name("img", i): ("frame", i, None, True)
                for i in range(stored_rgb_frames(meta))}
    for _, label, p in flow_items(meta):
        for i in range(nf):
            for axis in "xy":
                expected[wds.field_name(f"{p}_{axis}", i)] = (label, i, axis, False)
    for field in sorted(set(members) - set(expected) - {wds.META_FIELD}):
        col.add(vid, f"member {vkey}.{field}", "not part of the video by its metadata", rel)
    for field, (label, i, axis, colour) in expected.items():
        where = f"{label} {i}" + (f" {axis}" if axis else "")
        if field not in members:
            col.add(vid, where, f"member {vkey}.{field} missing from the member table", rel)
            continue
        if decode and field in good:
            err = decode_ok(good[field], colour, h, w)
            if err:
                col.add(vid, where, f"member {vkey}.{field}: {err}", rel)
