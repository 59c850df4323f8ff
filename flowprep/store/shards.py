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
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from ..errors import WriteError
from ..fsutil import atomic_write_json, fsync_dir, read_json
from .base import Store, StoreWriter, clear_failure
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


def missing_shards(root: str) -> List[Tuple[str, str, int]]:
    """(index part, shard, videos) for every index part whose shard is missing although
    it holds the newest copy of some video (those videos are unreadable, or read from an
    older copy); empty for a sound store. Loaders refuse such a store (the index itself
    leaves the part out, so that verify and resume still work)."""
    parts, _ = read_index_parts(root)
    try:
        present = set(os.listdir(shard_dir(root)))
    except FileNotFoundError:
        present = set()
    newest = merge_index(parts)
    out = []
    for p in parts:
        if p["shard"] not in present:
            n = sum(1 for v in p["videos"] if newest[v]["shard"] == p["shard"])
            if n:
                out.append((p["_part"], p["shard"], n))
    return out


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


class ShardWriter(StoreWriter):
    """What the shard writers (HDF5, wds) share: sealing in separate steps.

    :meth:`seal` = :meth:`finish_shard` (the format completes and closes its open
    shard, still in the staging area) -> :meth:`install_shard` (fsync, rename into
    OUT/shards) -> :meth:`write_index` (the format's index files, the index part
    last; only now are the videos published). A remote backend replaces the last
    two. A failure in any step drops the shard unsealed (``_broke``) and raises
    WriteError; its videos are not published and the caller redoes them.

    Subclasses set ``root``, ``tag``, ``shard_ext``, ``_videos`` (video id -> index
    entry of the committed videos of the open shard), ``_published``, and provide
    ``finish_shard``, ``_index_files``, ``_broke``, ``_abandon``; ``label`` names the
    format in messages.
    """

    label = "shard"

    def _usable(self) -> None:
        """WriteError (the first one's type) once a write error put the writer out of use."""
        if self.error is not None:
            raise type(self.error)(
                f"this {self.label} writer ({self.tag}) is out of use after a write error "
                f"({self.error}); its open shard was dropped unsealed: use a new writer")

    @staticmethod
    def _dropped(err: BaseException, lost: List[str]) -> BaseException:
        """``err`` saying how many committed videos the dropped open shard held."""
        if not lost:
            return err
        return type(err)(f"{err}; the open shard was dropped, unsealed, with {len(lost)} "
                         f"committed video{'s' if len(lost) != 1 else ''} not published")

    root: str
    tag: str
    shard_ext = ""
    _videos: Dict[str, Dict[str, Any]]

    def finish_shard(self) -> Optional[Dict[str, Any]]:
        """Step 0: complete and close the open shard; None when it holds no committed
        video. Returns {"name", "tmp_path", "videos", "part": format fields of the part}."""
        raise NotImplementedError

    def install_shard(self, sealed: Dict[str, Any]) -> None:
        """Step 1: fsync the finished shard and rename it into OUT/shards (sets
        sealed["shard_bytes"])."""
        try:
            sealed["shard_bytes"] = install_shard(sealed["tmp_path"], self.root, sealed["name"])
        except OSError as exc:
            raise self._broke(exc) from None

    def index_part(self, sealed: Dict[str, Any]) -> Dict[str, Any]:
        """The index part of an installed shard."""
        part = {"flowprep_index": INDEX_VERSION, "shard": sealed["name"],
                "shard_bytes": sealed["shard_bytes"], "sealed_ns": time.time_ns(),
                "writer": self.tag, "videos": sealed["videos"]}
        part.update(sealed.get("part", {}))
        return part

    def write_index(self, sealed: Dict[str, Any]) -> List[str]:
        """Step 2: the format's index files, its index part last; returns the video ids
        it published (also queued for ``drain_published``)."""
        try:
            self._index_files(sealed)
            write_index_part(self.root, sealed["name"], self.shard_ext, self.index_part(sealed))
        except (WriteError, OSError) as exc:  # a shard no index part names: removed by the next run
            raise self._broke(exc) from None
        self._videos = {}
        ids = sorted(sealed["videos"])
        for vid in ids:
            clear_failure(self.root, vid)
        self._published.extend(ids)
        return ids

    def _index_files(self, sealed: Dict[str, Any]) -> None:
        """Files the format writes before the index part (wds: the member table)."""

    def seal(self) -> List[str]:
        """Finish the open shard, move it into OUT/shards, then write its index.

        Returns the video ids it published (also queued for ``drain_published``).
        Raises WriteError when the writer is out of use after a write error, or when
        sealing fails (the shard is then dropped, its videos not published).
        """
        sealed = self.finish_shard()
        if sealed is None:
            return []
        if getattr(self, "publisher", None) is not None:
            return self._publish_elsewhere(sealed)
        self.install_shard(sealed)
        return self.write_index(sealed)

    def index_objects(self, sealed: Dict[str, Any]) -> Dict[str, bytes]:
        """The format's index files as (path relative to OUT -> bytes), for a publisher
        that writes them elsewhere (wds: the member table)."""
        return {}

    def _publish_elsewhere(self, sealed: Dict[str, Any]) -> List[str]:
        """Steps 1 and 2 through ``self.publisher`` (flowprep.store.remote.RemotePublisher,
        object storage): the finished shard, fsynced, is uploaded whole, then the format's
        index files, then its index part; then the local file is deleted. An upload that
        fails (after its retries) drops the shard unpublished, as a failed install does."""
        tmp = sealed["tmp_path"]
        try:
            fsync_file(tmp)
            sealed["shard_bytes"] = os.path.getsize(tmp)
            self.publisher.publish(tmp, sealed["name"], self.index_part(sealed),
                                   extra=self.index_objects(sealed))
        except (WriteError, OSError) as exc:  # never half-published: the videos are redone
            raise self._broke(exc) from None
        try:
            os.unlink(tmp)
        except OSError:
            pass
        self.tmp_path = ""
        self._videos = {}
        ids = sorted(sealed["videos"])
        self.publisher.clear_failures(ids)
        self._published.extend(ids)
        return ids

    def discard(self) -> List[str]:
        """Drop the open shard without sealing it; the ids of the committed videos it held.

        For a caller that no longer trusts what this writer holds (its process had a
        write error, or a bug, while writing): those videos are not published, and
        the caller redoes them. Unless it had a write error, the writer can go on
        with a new shard.
        """
        return self._abandon()

    def close(self) -> None:
        """Seal the open shard (if it holds committed videos).

        After a write error: drop it unsealed instead, without raising again (the
        error was raised where it happened; its videos are not published).
        """
        if getattr(self, "error", None) is not None:
            self._abandon()
            return
        self.seal()

    def _next_name(self, seq: int) -> Tuple[str, int]:
        """(the next free shard name of this writer, the sequence number after it)."""
        while True:
            name = f"{self.tag}-{seq:04d}{self.shard_ext}"
            seq += 1
            if not os.path.exists(os.path.join(shard_dir(self.root), name)):
                return name, seq

    # provided by the formats
    def _broke(self, exc: BaseException) -> WriteError:
        raise NotImplementedError

    def _abandon(self) -> List[str]:
        raise NotImplementedError


class ShardedStore(Store):
    """What the readers of shard stores (HDF5, wds) share: the merged index (newest entry
    wins), its sorted ids, and this process's open shard handles.

    Safe to pickle and to use after fork: handles belong to the process that opened them
    and are reopened lazily elsewhere. Subclasses set ``shard_ext`` and define
    ``_open_handle(shard)`` and ``_close_handle(handle)``.
    """

    shard_ext = ""
    max_open_files = 64
    meta_cache_size = 512

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._entries: Optional[Dict[str, Dict[str, Any]]] = None
        self._ids: Optional[List[str]] = None
        self._pid: Optional[int] = os.getpid()
        self._handles: "OrderedDict[str, Any]" = OrderedDict()
        self._metas: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        state["_metas"] = OrderedDict()
        state["_pid"] = None
        return state

    # --- index ----------------------------------------------------------
    def refresh(self) -> None:
        self._entries = None
        self._ids = None
        self._metas = OrderedDict()

    @property
    def entries(self) -> Dict[str, Dict[str, Any]]:
        """video_id -> index entry {"shard", "config_key", "num_frames", ...; "group" in
        HDF5, "key" and "offset" in wds}."""
        if self._entries is None:
            self._entries = load_index(self.root)
        return self._entries

    @property
    def video_ids(self) -> List[str]:
        if self._ids is None:
            self._ids = sorted(self.entries)
        return self._ids

    def __contains__(self, video_id: object) -> bool:
        return self.resolve_id(video_id) in self.entries

    def index_parts(self) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
        """(every index part, oldest first; unreadable parts as (name, reason))."""
        return read_index_parts(self.root)

    def shard_sizes(self) -> Dict[str, int]:
        """shard file name -> bytes, of every shard file in OUT/shards."""
        return shard_sizes(self.root, self.shard_ext)

    # --- handles --------------------------------------------------------
    def _handle(self, shard: str) -> Any:
        """The open handle of ``shard`` in this process (at most ``max_open_files`` stay
        open, least recently used closed first)."""
        pid = os.getpid()
        if self._pid != pid:
            # Inherited through fork: never use the parent's handles; drop them unclosed-by-us
            # (the parent's are untouched).
            self._handles = OrderedDict()
            self._pid = pid
        h = self._handles.get(shard)
        if h is not None:
            self._handles.move_to_end(shard)
            return h
        h = self._handles[shard] = self._open_handle(shard)
        while len(self._handles) > self.max_open_files:
            _, old = self._handles.popitem(last=False)
            self._close_quietly(old)
        return h

    def _close_quietly(self, handle: Any) -> None:
        try:
            self._close_handle(handle)
        except Exception:  # noqa: BLE001 - closing a read-only handle
            pass

    def _open_handle(self, shard: str) -> Any:
        raise NotImplementedError

    def _close_handle(self, handle: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close this process's shard handles (they reopen on the next read)."""
        if self._pid == os.getpid():
            for h in self._handles.values():
                self._close_quietly(h)
        self._handles = OrderedDict()


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
           "read_index_parts", "shard_sizes", "merge_index", "load_index", "missing_shards", "published_keys", "install_shard",
           "write_index_part", "ShardWriter", "ShardedStore", "ShardedFormat"]
