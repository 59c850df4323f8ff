"""What the sharded formats (HDF5, wds) share: shard and index-part files, the merged index,
sealing a shard into place.

    OUT/shards/<writer>-<n><ext>     sealed shards (".h5", ".tar"); never modified once here
    OUT/index/<writer>-<n>.json      one index part per sealed shard, written after it

Sealing is two separate steps, each atomic (a reader never sees a partial shard):

1. :func:`install_shard`: the finished shard file (written aside, in the run's
   staging area) is fsynced and renamed into OUT/shards;
2. :func:`write_index_part`: its index part is written (temp name, fsync, rename).

Only the index part publishes the shard's videos. A crash between the steps
leaves a shard no part names: ignored by readers and resume, reported by
``flowprep verify``, deleted by the next run (``flowprep.lock.clean_stale``).

An index part (the format adds its own per-video fields)::

    {"flowprep_index": 1, "shard": "<name><ext>", "shard_bytes": 123,
     "sealed_ns": 1700000000000000000, "writer": "<tag>", ...,
     "videos": {"<video_id>": {"config_key": "...", "num_frames": 120, "num_flows": 119,
                               "label": 3, ...}}}

Readers merge every part; a video named by several parts (a rerun with
``--force``, a new configuration) resolves to the entry with the largest
``(sealed_ns, shard)``: the newest, and deterministic even on a tie.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Tuple

from ..errors import WriteError
from ..fsutil import atomic_write_json, fsync_dir, read_json
from .registry import StoreFormat

SHARD_DIR = "shards"
INDEX_DIR = "index"
INDEX_VERSION = 1


def index_dir(root: str) -> str:
    return os.path.join(root, INDEX_DIR)


def shard_dir(root: str) -> str:
    return os.path.join(root, SHARD_DIR)


def safe_tag(tag: str) -> str:
    """A writer tag as it appears in shard names (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", tag) or "w"


def read_index_parts(root: str) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
    """Every index part of ``root``, oldest first, and the parts that could not be read.

    Returns:
        (parts, errors): parts are the parsed JSON dicts with "_part" (file name) added,
        sorted by (sealed_ns, shard); errors are (part file, reason).
    """
    d = index_dir(root)
    parts: List[Dict[str, Any]] = []
    errors: List[Tuple[str, str]] = []
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return parts, errors
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(d, name)
        try:
            part = read_json(path)
            if part.get("flowprep_index") != INDEX_VERSION:
                raise ValueError(f"unknown index version {part.get('flowprep_index')!r}")
            int(part["sealed_ns"])
            str(part["shard"])
            dict(part["videos"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            errors.append((name, f"unreadable index part ({exc})"))
            continue
        part["_part"] = name
        parts.append(part)
    parts.sort(key=lambda p: (int(p["sealed_ns"]), str(p["shard"])))
    return parts, errors


def shard_sizes(root: str, ext: str) -> Dict[str, int]:
    """shard file name -> bytes, of every ``ext`` file in OUT/shards."""
    d = shard_dir(root)
    try:
        names = [n for n in os.listdir(d) if n.endswith(ext)]
    except FileNotFoundError:
        return {}
    out = {}
    for n in names:
        try:
            out[n] = os.path.getsize(os.path.join(d, n))
        except OSError:
            continue
    return out


def merge_index(parts: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """video_id -> winning entry (newest part wins), each with "shard", "sealed_ns" added.

    ``parts`` must be sorted oldest first (as :func:`read_index_parts` returns them).
    """
    out: Dict[str, Dict[str, Any]] = {}
    for part in parts:
        for vid, entry in part["videos"].items():
            e = dict(entry)
            e["shard"] = part["shard"]
            e["sealed_ns"] = int(part["sealed_ns"])
            out[vid] = e
    return out


def load_index(root: str, check_shards: bool = True) -> Dict[str, Dict[str, Any]]:
    """The merged index of ``root``; with check_shards, entries whose shard is missing are dropped."""
    parts, _ = read_index_parts(root)
    if check_shards:
        present = set()
        try:
            present = set(os.listdir(shard_dir(root)))
        except FileNotFoundError:
            pass
        parts = [p for p in parts if p["shard"] in present]
    return merge_index(parts)


def published_keys(root: str) -> Dict[str, str]:
    """video_id -> config_key of every video an index part names (for resume)."""
    return {vid: e.get("config_key") for vid, e in load_index(root).items()}


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install_shard(tmp_path: str, root: str, name: str) -> int:
    """Step 1 of sealing: fsync the finished shard ``tmp_path`` and rename it into
    OUT/shards/``name`` (same filesystem: atomic); returns its size in bytes.

    Raises OSError (the caller maps it to its write error)."""
    fsync_file(tmp_path)
    dest_dir = shard_dir(root)
    os.makedirs(dest_dir, exist_ok=True)
    os.makedirs(index_dir(root), exist_ok=True)
    size = os.path.getsize(tmp_path)
    os.rename(tmp_path, os.path.join(dest_dir, name))
    fsync_dir(dest_dir)
    return size


def write_index_part(root: str, shard_name: str, shard_ext: str, part: Dict[str, Any]) -> str:
    """Step 2 of sealing: write ``part`` as OUT/index/<shard name without ext>.json
    (temp name, fsync, rename); its videos are published from here on. Returns the path.

    Raises WriteError."""
    path = os.path.join(index_dir(root), shard_name[: -len(shard_ext)] + ".json")
    atomic_write_json(path, part)
    return path


class ShardedFormat(StoreFormat):
    """A format of shards plus index parts: resume, inspect and orphan cleaning shared."""

    sharded = True

    def read_index_parts(self, root: str):
        return read_index_parts(root)

    def published_keys(self, root: str) -> Dict[str, str]:
        return published_keys(root)

    def describe(self, store) -> Dict[str, Any]:
        parts, errors = store.index_parts()
        copies = sum(len(p["videos"]) for p in parts)
        return {"shards": len({p["shard"] for p in parts}), "index_parts": len(parts),
                "unreadable_index_parts": len(errors),
                "superseded": copies - len(merge_index(parts))}

    def describe_line(self, d: Dict[str, Any]) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"
        line = (f"{self.name}{self._payload_text(d)}, {n(d.get('shards', 0), 'shard')}, "
                f"{n(d.get('index_parts', 0), 'index part')}")
        if d.get("superseded"):
            line += f", {d['superseded']} superseded copies (dead bytes; convert to drop them)"
        return line

    def _payload_text(self, d: Dict[str, Any]) -> str:
        return ""


__all__ = ["SHARD_DIR", "INDEX_DIR", "INDEX_VERSION", "index_dir", "shard_dir", "safe_tag",
           "read_index_parts", "shard_sizes", "merge_index", "load_index", "published_keys", "install_shard",
           "write_index_part", "ShardedFormat", "WriteError"]
