"""The wds store: webdataset tar shards, one sample per video, an index part per shard.

On disk::

    OUT/flowprep.json                          store config, format "wds"
    OUT/shards/<writer>-<n>.tar                sealed shards: uncompressed POSIX tar
    OUT/index/<writer>-<n>.json                one index part per sealed shard (its videos)
    OUT/index/members/<writer>-<n>.json        the shard's member table (names, offsets,
                                               sizes, crc32), written before the part
    OUT/.flowprep/tmp/<run>/<writer>-<n>.tar.tmp   a shard being written

A video is one webdataset sample: consecutive members named ``<key>.<field>``
with the JPEG store's file names as fields and the JPEG store's bytes::

    <key>.img_00001.jpg  <key>.flow_x_00001.jpg  <key>.flow_y_00001.jpg  <key>.img_00002.jpg ...
    <key>.bflow_x_00001.jpg ... (--backward)  <key>.wflow_x_00001.jpg ... (--warped)
    <key>.meta.json                            last: the JPEG store's meta.json, same bytes

``<key>`` is the video id made safe for webdataset (keys.py); meta.json holds
the true id. ``webdataset.WebDataset(shard paths)`` yields one dict per video.

Writing and sealing are the HDF5 store's (store/shards.py): each worker
process appends videos to its own shard under a temporary name; an aborted
video is cut off again (the file is truncated to where it began); a shard is
sealed after the commit that makes it pass ``shard_size``, or when its writer
closes: the end-of-archive blocks are written, the file is fsynced and renamed
into OUT/shards, then its member table and its index part are written (each
atomically). Only the index part publishes the videos. Write failures are
WriteError (DiskFullError for a full disk); the open shard is then dropped
unsealed and the writer takes no more videos, as the HDF5 writer does.

Reading. The index part of a shard is small (one entry per video, as HDF5's);
the member table of a shard is read the first time one of its videos is
opened (the 64 most recently used are kept). Members are read by byte range
(``os.pread`` on a per-process descriptor; reopened after fork, dropped when
pickled) and their crc32 checked against the table on every read, so a
corrupt or truncated member raises a StoreError naming the shard and member.
"""
from __future__ import annotations

import json
import os
import time
import zlib
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ...errors import StoreError, WriteError
from ...fsutil import AppendFile, atomic_write_json, one_line, read_json, storage_error
from .. import codec
from ..base import (FLOW_STREAMS, Video, VideoWriter, flow_stream, stored_rgb_frames,
                    stored_streams)
from ..shards import INDEX_DIR, ShardedStore, ShardWriter, index_dir, safe_tag, shard_dir
from .keys import encode_key, split_member
from .tar import END, iter_members, member_header, padding

SHARD_EXT = ".tar"
MEMBERS_DIR = "members"
META_FIELD = "meta.json"
#: the version of a shard's member table
MEMBERS_VERSION = 1
# flow_payloads merges member reads at most SPAN_GAP apart into spans of at most SPAN_MAX
SPAN_GAP = 256 << 10
SPAN_MAX = 16 << 20
WRITE_BUFFER = 1 << 20


def field_name(kind: str, i: int) -> str:
    """The field of 0-based item i: kind "img" or "<stream>_x" / "<stream>_y" (the JPEG
    store's file name)."""
    return f"{kind}_{i + 1:05d}.jpg"


def meta_bytes(meta: Dict[str, Any]) -> bytes:
    """The bytes of meta.json: exactly what the JPEG store writes (fsutil.atomic_write_json)."""
    return (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()


def members_path(root: str, shard: str) -> str:
    return os.path.join(index_dir(root), MEMBERS_DIR, shard[: -len(SHARD_EXT)] + ".json")


def read_members(root: str, shard: str) -> Dict[str, Any]:
    """A shard's member table: {"shard", "videos": {video_id: {"key", "members":
    [[name, offset, size, crc32], ...]}}}. StoreError when missing or unreadable."""
    path = members_path(root, shard)
    try:
        table = read_json(path)
        if table.get("flowprep_members") != MEMBERS_VERSION:
            raise ValueError(f"unknown member table version {table.get('flowprep_members')!r}")
        dict(table["videos"])
    except FileNotFoundError:
        raise StoreError(f"{path}: member table of shard {shard} missing; run flowprep verify") \
            from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path}: unreadable member table of shard {shard} ({exc})") from None
    return table


# --------------------------------------------------------------------------------------
# reading


class WdsVideo(Video):
    """One video (sample) of a shard, read by byte range through the store's descriptors."""

    def __init__(self, video_id: str, meta: Dict[str, Any], store: "WdsStore", shard: str,
                 members: Dict[str, Tuple[int, int, int]], key: str) -> None:
        super().__init__(video_id, meta)
        self.store = store
        self.shard = shard
        self.key = key
        #: field ("img_00001.jpg", ...) -> (offset, size, crc32) in the shard
        self.members = members

    def member_bytes(self, field: str) -> bytes:
        """The stored bytes of member ``<key>.<field>`` (crc32 checked)."""
        return self.store.read_member(self.shard, self.key, field, self.members)

    def _rgb_bytes(self, i: int) -> bytes:
        return self.member_bytes(field_name("img", i))

    def _flow_payload(self, i: int, backward: bool, warped: bool):
        p = flow_stream(backward, warped)
        return (self.member_bytes(field_name(p + "_x", i)),
                self.member_bytes(field_name(p + "_y", i)))

    def _flow_payloads(self, items: List[Tuple[int, bool, bool]]) -> List[Tuple[Any, Any]]:
        """Many flows' (x, y) in few reads: byte ranges at most SPAN_GAP apart are read
        as one span (a stack's flows lie close together in the shard)."""
        wanted = []  # (offset, size, crc, item, component, field)
        for n, (i, b, w) in enumerate(items):
            p = flow_stream(b, w)
            for c, axis in enumerate("xy"):
                field = field_name(f"{p}_{axis}", i)
                off, size, crc = self.store.member_entry(self.shard, self.key, field, self.members)
                wanted.append((off, size, crc, n, c, field))
        wanted.sort()
        out: List[List[Any]] = [[None, None] for _ in items]
        k = 0
        while k < len(wanted):
            start, end, m = wanted[k][0], wanted[k][0] + wanted[k][1], k + 1
            while m < len(wanted) and wanted[m][0] - end <= SPAN_GAP \
                    and max(end, wanted[m][0] + wanted[m][1]) - start <= SPAN_MAX:
                end = max(end, wanted[m][0] + wanted[m][1])
                m += 1
            span = self.store.read_range(self.shard, start, end - start,
                                         f"{self.key}.{wanted[k][5]}")
            view = memoryview(span)
            for off, size, crc, n, c, field in wanted[k:m]:
                data = view[off - start:off - start + size]
                self.store.check_crc(self.shard, self.key, field, data, crc)
                out[n][c] = data
            k = m
        return [(x, y) for x, y in out]


class WdsStore(ShardedStore):
    """Reader of a wds store (merges the index parts; newest entry wins).

    Safe to pickle and to use after fork: descriptors belong to the process that
    opened them and are reopened lazily elsewhere.
    """

    format = "wds"
    shard_ext = SHARD_EXT
    tables_cache_size = 64

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._tables: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        state["_tables"] = OrderedDict()
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def shard_path(self, shard: str) -> str:
        return os.path.join(shard_dir(self.root), shard)

    def read_members(self, shard: str) -> Dict[str, Any]:
        """The member table of ``shard``, read now (see :func:`read_members`)."""
        return read_members(self.root, shard)

    def open_shard_stream(self, shard: str):
        """A binary file object reading ``shard`` front to back."""
        path = self.shard_path(shard)
        try:
            return open(path, "rb", buffering=WRITE_BUFFER)
        except OSError as exc:
            raise StoreError(f"{path}: cannot open shard ({exc.strerror}); run flowprep verify") \
                from None

    # --- member tables and byte ranges -------------------------------------
    def members_of(self, shard: str) -> Dict[str, Any]:
        """The member table of ``shard`` (cached)."""
        t = self._tables.get(shard)
        if t is None:
            t = self._tables[shard] = self.read_members(shard)
            while len(self._tables) > self.tables_cache_size:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(shard)
        return t

    def _open_handle(self, shard: str) -> int:
        path = self.shard_path(shard)
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise StoreError(f"{path}: shard missing (named by the index); run flowprep verify") \
                from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot open shard ({exc.strerror})") from None

    def _close_handle(self, fd: int) -> None:
        os.close(fd)

    def read_range(self, shard: str, offset: int, size: int, member: str) -> bytes:
        """``size`` bytes at ``offset`` of ``shard``; StoreError naming the member if short."""
        try:
            data = os.pread(self._handle(shard), size, offset)
            while 0 < len(data) < size:  # short reads on network filesystems
                more = os.pread(self._handle(shard), size - len(data), offset + len(data))
                if not more:
                    break
                data += more
        except OSError as exc:
            raise StoreError(f"{self.shard_path(shard)}: member {member}: cannot read "
                             f"({exc.strerror})") from None
        if len(data) != size:
            raise StoreError(f"{self.shard_path(shard)}: member {member}: truncated (the shard "
                             f"ends {size - len(data)} bytes short); run flowprep verify")
        return data

    def member_entry(self, shard: str, key: str, field: str,
                     members: Dict[str, Tuple[int, int, int]]) -> Tuple[int, int, int]:
        e = members.get(field)
        if e is None:
            raise StoreError(f"{self.shard_path(shard)}: member {key}.{field} is not in the "
                             f"shard's member table; run flowprep verify")
        return e

    def check_crc(self, shard: str, key: str, field: str, data, crc: int) -> None:
        got = zlib.crc32(data)
        if got != crc:
            raise StoreError(f"{self.shard_path(shard)}: member {key}.{field}: checksum mismatch "
                             f"(stored crc32 {crc:08x}, data {got:08x}); run flowprep verify")

    def read_member(self, shard: str, key: str, field: str,
                    members: Dict[str, Tuple[int, int, int]]) -> bytes:
        off, size, crc = self.member_entry(shard, key, field, members)
        data = self.read_range(shard, off, size, f"{key}.{field}")
        self.check_crc(shard, key, field, data, crc)
        return data

    # --- videos ---------------------------------------------------------
    def _video_members(self, video_id: str) -> Tuple[Dict[str, Any], str, Dict[str, Tuple[int, int, int]]]:
        try:
            e = self.entries[video_id]
        except KeyError:
            raise KeyError(video_id) from None
        table = self.members_of(e["shard"]).get("videos", {}).get(video_id)
        if table is None:
            raise StoreError(f"{members_path(self.root, e['shard'])}: no members of {video_id!r}; "
                             f"run flowprep verify")
        members = table.get("_fields")
        if members is None:
            key = table["key"]
            n = len(key) + 1
            members = {name[n:]: (int(off), int(size), int(crc))
                       for name, off, size, crc in table["members"]}
            table["_fields"] = members
        return e, table["key"], members

    def meta(self, video_id: str) -> Dict[str, Any]:
        m = self._metas.get(video_id)
        if m is not None:
            self._metas.move_to_end(video_id)
            return m
        e, key, members = self._video_members(video_id)
        data = self.read_member(e["shard"], key, META_FIELD, members)
        try:
            m = json.loads(data.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"{self.shard_path(e['shard'])}: member {key}.{META_FIELD}: "
                             f"unreadable metadata ({exc})") from None
        self._metas[video_id] = m
        while len(self._metas) > self.meta_cache_size:
            self._metas.popitem(last=False)
        return m

    def __getitem__(self, video_id: str) -> WdsVideo:
        e, key, members = self._video_members(video_id)
        return WdsVideo(video_id, self.meta(video_id), self, e["shard"], members, key)

    def stream_units(self) -> List[Tuple[str, List[str]]]:
        """(shard, its published video ids in shard order) for every shard holding a
        published video, in shard name order: what the streaming loader reads in sequence."""
        by_shard: Dict[str, List[Tuple[int, str]]] = {}
        for vid in self.video_ids:
            e = self.entries[vid]
            by_shard.setdefault(e["shard"], []).append((int(e.get("offset", 0)), vid))
        return [(s, [v for _, v in sorted(by_shard[s])]) for s in sorted(by_shard)]


    def iter_unit(self, unit: str, video_ids: Sequence[str],
                  sequential: bool = True) -> Iterator[Video]:
        """Read shard ``unit`` front to back (one sequential pass, as from object storage);
        yield the videos of ``video_ids`` as :class:`MemberVideo` objects, in shard order.
        ``sequential=False``: yield them as :class:`WdsVideo` objects instead, which read
        only the members asked for, by byte range (crc32 checked), still in shard order.

        Every member is checked against the shard's member table (crc32); a member the
        table does not list (foreign), a truncated or corrupt member, or a listed video
        the tar lacks raises StoreError naming the shard and the member.
        """
        if not sequential:
            yield from super().iter_unit(unit, video_ids, sequential)
            return
        want = set(video_ids)
        table = self.members_of(unit)
        path = self.shard_path(unit)
        key_vid = {v["key"]: vid for vid, v in table["videos"].items()}
        crcs = {m[0]: int(m[3]) for v in table["videos"].values() for m in v["members"]}
        seen = set()
        fh = self.open_shard_stream(unit)
        with fh:
            key: Optional[str] = None
            fields: Dict[str, Tuple[Any, int]] = {}
            for name, data in iter_members(fh, path):
                crc = crcs.get(name)
                if crc is None or data is None:
                    raise StoreError(f"{path}: member {name}: foreign (not in the shard's "
                                     f"member table, not written by flowprep); run flowprep verify")
                k, field = split_member(name)
                if k != key:
                    if key is not None and key_vid[key] in want:
                        seen.add(key_vid[key])
                        yield self._member_video(key_vid[key], key, fields, path)
                    key, fields = k, {}
                if key_vid.get(k) in want:
                    fields[field] = (data, crc)  # checked when the sample reads it
            if key is not None and key_vid[key] in want:
                seen.add(key_vid[key])
                yield self._member_video(key_vid[key], key, fields, path)
        missing = sorted(want - seen)
        if missing:
            raise StoreError(f"{path}: {len(missing)} indexed video(s) not in the shard, e.g. "
                             f"{missing[0]!r} (key {table['videos'][missing[0]]['key']}); "
                             f"run flowprep verify")

    @staticmethod
    def _member_video(vid: str, key: str, fields: Dict[str, Tuple[Any, int]],
                      path: str) -> "MemberVideo":
        video = MemberVideo(vid, {}, fields, path, key)
        data = video.member_bytes(META_FIELD)
        try:
            video.meta = json.loads(bytes(data).decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"{path}: member {key}.{META_FIELD}: unreadable metadata ({exc})") \
                from None
        return video


class MemberVideo(Video):
    """A video whose members were read from a tar stream and are held in memory.

    Args:
        video_id: the true id.
        meta: its metadata.
        fields: field ("img_00001.jpg", ...) -> (the member's bytes-like data, its crc32
            from the member table); the crc32 is checked when a member is read, so only
            the members a sample uses cost a checksum.
        path: the shard file; key: the sample key (both named by errors).
    """

    def __init__(self, video_id: str, meta: Dict[str, Any], fields: Dict[str, Tuple[Any, int]],
                 path: str, key: str) -> None:
        super().__init__(video_id, meta)
        self.fields = fields
        self.path = path
        self.key = key

    def member_bytes(self, field: str):
        """The member's bytes (a read-only bytes-like view), crc32 checked."""
        got = self.fields.get(field)
        if got is None:
            raise StoreError(f"{self.path}: member {self.key}.{field} missing from the sample")
        data, crc = got
        c = zlib.crc32(data)
        if c != crc:
            raise StoreError(f"{self.path}: member {self.key}.{field}: checksum mismatch (stored "
                             f"crc32 {crc:08x}, data {c:08x}); run flowprep verify")
        return data

    def _rgb_bytes(self, i: int) -> bytes:
        return bytes(self.member_bytes(field_name("img", i)))

    def _flow_payload(self, i: int, backward: bool, warped: bool):
        """(x, y) as read-only bytes-like views (as HDF5's flow_payloads gives them)."""
        p = flow_stream(backward, warped)
        return (self.member_bytes(field_name(p + "_x", i)),
                self.member_bytes(field_name(p + "_y", i)))


# --------------------------------------------------------------------------------------
# writing


def _io_error(path: str, exc: BaseException) -> WriteError:
    err = storage_error(exc)
    if err is None:
        return WriteError(f"{path}: write failed ({one_line(str(exc))})")
    return type(err)(f"{path}: {err}")


class WdsVideoWriter(VideoWriter):
    """Appends one video's members to the writer's open shard, in the order they come."""

    def __init__(self, owner: "WdsStoreWriter", video_id: str) -> None:
        self.owner = owner
        self.video_id = video_id
        self.key = encode_key(video_id)
        self.start = owner.pos
        self.members: List[List[Any]] = []  # [name, offset, size, crc32]
        self.counts = dict.fromkeys(("img",) + tuple(FLOW_STREAMS.values()), 0)
        self.done = False

    @property
    def quality(self) -> int:  # type: ignore[override]
        return self.owner.quality

    def _add(self, field: str, data: bytes) -> None:
        if self.done:
            raise StoreError(f"{self.video_id}: this video was already committed or aborted")
        name = f"{self.key}.{field}"
        off, size = self.owner._write_member(name, data)
        self.members.append([name, off, size, zlib.crc32(data)])

    def add_rgb_bytes(self, data: bytes) -> None:
        self._add(field_name("img", self.counts["img"]), bytes(data))
        self.counts["img"] += 1

    def add_flow_bytes(self, x: bytes, y: bytes, backward: bool = False,
                       warped: bool = False) -> None:
        p = flow_stream(backward, warped)
        i = self.counts[p]
        self._add(field_name(p + "_x", i), bytes(x))
        self._add(field_name(p + "_y", i), bytes(y))
        self.counts[p] += 1

    def commit(self, meta: Dict[str, Any]) -> None:
        """Write meta.json (the video's last member); published when the shard is sealed."""
        want = {"img": stored_rgb_frames(meta)}
        for b, w in stored_streams(meta):
            want[flow_stream(b, w)] = int(meta["num_flows"])
        got = {k: v for k, v in self.counts.items() if v or k in want}
        if got != want:
            raise StoreError(f"{self.video_id}: written counts {got} differ from the "
                             f"metadata's {want}")
        self._add(META_FIELD, meta_bytes(meta))
        self.done = True
        self.owner._committed(self, meta)

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.owner._aborted(self)


class WdsStoreWriter(ShardWriter):
    """One worker's writer: appends videos to its own tar shard, seals it, indexes it.

    Sealing is ShardWriter's three steps, which a remote backend can replace:
    :meth:`finish_shard` (end-of-archive, close: a complete tar aside),
    ``install_shard`` (fsync, rename into OUT/shards), ``write_index`` (the member
    table, then the index part: from here on the videos are published).

    Args:
        root: the store (OUT).
        tmp_root: this run's staging directory inside OUT/.flowprep/tmp (same filesystem).
        worker_tag: unique per writing process; names its shards.
        jpeg_quality: JPEG quality of RGB frames and flow planes.
        shard_size: bytes; a shard is sealed after the commit that makes it pass this size.
    """

    label = "wds"

    shard_ext = SHARD_EXT

    def __init__(self, root: str, tmp_root: str, worker_tag: str,
                 jpeg_quality: int = codec.DEFAULT_JPEG_QUALITY,
                 shard_size: int = 1 << 30, publisher: Any = None) -> None:
        if int(shard_size) <= 0:
            raise StoreError(f"shard_size must be a positive number of bytes, got {shard_size!r}")
        self.root = os.path.abspath(root)
        self.tmp_root = tmp_root
        self.tag = safe_tag(worker_tag)
        self.quality = int(jpeg_quality)
        self.shard_size = int(shard_size)
        #: publishes sealed shards elsewhere (flowprep.store.remote.RemotePublisher: object
        #: storage); None: installed into root/shards
        self.publisher = publisher
        self._published = []
        self._seq = 0
        self._fh: Any = None
        self._name = ""
        self.tmp_path = ""
        self.pos = 0
        self.mtime = int(time.time())
        self._videos: Dict[str, Dict[str, Any]] = {}
        self._members: Dict[str, Dict[str, Any]] = {}
        self._open: Optional[WdsVideoWriter] = None
        #: the first write error; once set, the writer is out of use
        self.error: Optional[WriteError] = None
        os.makedirs(tmp_root, exist_ok=True)

    # --- errors -----------------------------------------------------------
    def _broke(self, exc: BaseException) -> WriteError:
        err = exc if isinstance(exc, WriteError) else _io_error(self.tmp_path, exc)
        if self.error is None:
            self.error = err
        return self._dropped(err, self._abandon())

    def _abandon(self) -> List[str]:
        lost = sorted(self._videos)
        fh, self._fh = self._fh, None
        self._videos, self._members, self._open = {}, {}, None
        if fh is not None:
            fh.discard()
        if self.tmp_path:
            try:
                os.unlink(self.tmp_path)
            except OSError:
                pass
        return lost

    # --- shard lifecycle --------------------------------------------------
    def _open_shard(self) -> None:
        name, self._seq = self._next_name(self._seq)
        self._name = name
        self.tmp_path = os.path.join(self.tmp_root, name + ".tmp")
        try:
            self._fh = AppendFile(self.tmp_path, WRITE_BUFFER)
        except (WriteError, OSError) as exc:
            raise self._broke(exc) from None
        self.pos = 0
        self._videos, self._members = {}, {}

    def _write_member(self, name: str, data: bytes) -> Tuple[int, int]:
        """Append one member; (offset of its data in the shard, size)."""
        self._usable()
        header = member_header(name, len(data), self.mtime)
        off = self.pos + len(header)
        try:
            self._fh.write(header)
            self._fh.write(data)
            self._fh.write(padding(len(data)))
        except (WriteError, OSError) as exc:
            raise self._broke(exc) from None
        self.pos = off + len(data) + (-len(data) % 512)
        return off, len(data)

    def begin(self, video_id: str) -> WdsVideoWriter:
        self._usable()
        if self._open is not None and not self._open.done:
            self._open.abort()
        if video_id in self._videos:  # in this shard already: a shard holds a video once
            self.seal()
        if self._fh is None:
            self._open_shard()
        self._open = WdsVideoWriter(self, video_id)
        return self._open

    def _committed(self, vw: WdsVideoWriter, meta: Dict[str, Any]) -> None:
        self._open = None
        try:
            self._fh.flush()
        except (WriteError, OSError) as exc:
            raise self._broke(exc) from None
        self._videos[vw.video_id] = {
            "key": vw.key, "offset": vw.start, "config_key": meta.get("config_key"),
            "num_frames": int(meta["num_frames"]), "num_flows": int(meta["num_flows"]),
            "label": meta.get("label")}
        self._members[vw.video_id] = {"key": vw.key, "members": vw.members}
        if self.pos >= self.shard_size:
            self.seal()

    def _aborted(self, vw: WdsVideoWriter) -> None:
        if vw is not self._open or self._fh is None:
            return
        self._open = None
        try:  # cut the video off: the shard ends where it began
            self._fh.truncate(vw.start)
        except (WriteError, OSError) as exc:
            raise self._broke(exc) from None
        self.pos = vw.start

    def finish_shard(self) -> Optional[Dict[str, Any]]:
        """Sealing step 0 (ShardWriter.seal runs them all): write the end-of-archive
        blocks and close the open shard; None when it holds no committed video."""
        self._usable()
        if self._fh is None:
            return None
        if self._open is not None and not self._open.done:
            self._open.abort()
        if not self._videos:
            self._abandon()
            return None
        try:
            self._fh.write(END)
            self._fh.close()
        except (WriteError, OSError) as exc:
            raise self._broke(exc) from None
        self._fh = None
        members, self._members = self._members, {}
        name = self._name
        return {"name": name, "tmp_path": self.tmp_path, "videos": self._videos,
                "members": members,
                "part": {"format": "wds",
                         "members": f"{MEMBERS_DIR}/{name[: -len(SHARD_EXT)]}.json"}}

    def index_objects(self, sealed: Dict[str, Any]) -> Dict[str, bytes]:
        """The shard's member table, for a publisher (object storage)."""
        table = {"flowprep_members": MEMBERS_VERSION, "shard": sealed["name"],
                 "videos": sealed["members"]}
        rel = f"{INDEX_DIR}/{MEMBERS_DIR}/{sealed['name'][: -len(SHARD_EXT)]}.json"
        return {rel: json.dumps(table).encode()}

    def _index_files(self, sealed: Dict[str, Any]) -> None:
        """The shard's member table, written before its index part."""
        path = members_path(self.root, sealed["name"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_json(path, {"flowprep_members": MEMBERS_VERSION, "shard": sealed["name"],
                                 "videos": sealed["members"]})
