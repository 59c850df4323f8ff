"""The HDF5 shard store: many videos per shard file, an index written last.

On disk::

    OUT/flowprep.json                       store config, format "hdf5"
    OUT/shards/<writer>-<n>.h5              sealed shards; immutable once here
    OUT/index/<writer>-<n>.json             one index part per sealed shard
    OUT/.flowprep/tmp/<run>/<writer>-<n>.h5.tmp   a shard being written

Writing. Every worker process writes its own shards (``<writer>`` is its
unique worker tag: host, run, worker, pid), so no two processes ever write
one file. A shard is filled under a temporary name inside the run's staging
area, then *sealed* when it passes ``shard_size`` or its writer closes: the
file is closed and fsynced, renamed into ``OUT/shards/``, and only then is its
index part written (atomically: temp name, fsync, rename). A crash at any
moment therefore leaves either an index part pointing at a complete shard,
or nothing indexed (a temp file the next run removes with the run's staging
area, or at worst a renamed shard that no index part names, which readers
ignore, ``flowprep verify`` reports and the next run deletes once its writer
is gone). Resume redoes exactly the videos no index part names.

Write errors. A video counts as committed only once its data is flushed into
the shard. Any failure while writing (h5py's OSError / RuntimeError, mapped
by ``fsutil.storage_error`` to WriteError, or DiskFullError for a full disk)
leaves the shard in an unknown state: the writer drops it without sealing it
(its committed videos are not published; the caller redoes them) and takes
no further videos. The dropped file is deleted but never closed, since
libhdf5 may crash closing a file or dataset whose write failed.

Index design. Several extract jobs (``--shard I/N`` parts, other machines on
a shared filesystem) may publish into one OUT at once: each sealed shard gets
its own part file, so nobody rewrites anybody else's file and readers merge
the parts. A part records ``sealed_ns`` (wall clock, ns) and its shard name;
when a video appears in several parts (a rerun with ``--force`` or a new
configuration), the entry with the largest ``(sealed_ns, shard)`` wins: the
newest, and deterministic even on a tie. Older copies stay in their shards
as dead bytes (``flowprep inspect`` counts them; ``flowprep convert`` to a new
store drops them). A part::

    {"flowprep_index": 1, "shard": "<name>.h5", "shard_bytes": 123, "sealed_ns": 1700000000000000000,
     "writer": "<tag>", "payload": "jpeg",
     "videos": {"<video_id>": {"group": "videos/0", "config_key": "...", "num_frames": 120,
                                "num_flows": 119, "label": 3}}}

Inside a shard, one group per video (named by commit order, since video ids
contain '/' and arbitrary characters; the id is the group's ``video_id``
attribute)::

    /videos/<k>/meta        uint8 (M,)    the meta dict as UTF-8 JSON (the JPEG store's meta.json)
    /videos/<k>/blob        uint8 (T,)    every encoded frame of the video, concatenated in
                                          write order, chunked (64 KiB)
    /videos/<k>/rgb         int64 (N, 3)  per RGB frame: (offset in blob, length, zlib.crc32)
    /videos/<k>/flow_x      int64 (F, 3)  per flow: grey JPEG of dx        (payload "jpeg")
    /videos/<k>/flow_y      int64 (F, 3)  per flow: grey JPEG of dy        (payload "jpeg")
    /videos/<k>/bflow_x, bflow_y           the backward flow (--backward)  (payload "jpeg")
    /videos/<k>/wflow_x, wflow_y           the warped flow (--warped)      (payload "jpeg")
    /videos/<k>/bwflow_x, bwflow_y         backward warped (--warped --backward)
    /videos/<k>/flow        uint8 (F, 2, H, W) gzip, one chunk per flow    (payload "raw";
                                          [:, 0] = dx plane, [:, 1] = dy plane)
    /videos/<k>/flow_crc32  uint32 (F,)   zlib.crc32 of each stored (2, H, W) flow's bytes (C order)
    /videos/<k>/bflow, bflow_crc32         the backward flow                (payload "raw")
    /videos/<k>/wflow, wflow_crc32, bwflow, bwflow_crc32   the warped flows   (payload "raw")

Why one concatenated byte dataset plus a table, not variable-length uint8:
HDF5 vlen data lives in the global heap, one heap object per element, which
is neither chunked nor compressible, costs a heap lookup per read and is not
readable as plain bytes by other tools; appending is also slow. A 1-D
chunked ``blob`` is appended to with plain resize + write (frames are
buffered up to 1 MiB, so a 10-minute video is never held in memory), a frame
is one contiguous slice, and the frames of one time step (RGB, dx, dy) are
written close together, so a flow's x and y usually share a chunk.
One blob per video (not per stream) wastes at most one partially filled
chunk per video. The tables are small (24 bytes a frame), kept in memory
while writing and stored exactly sized at commit; they carry the checksum
that ``flowprep verify`` checks. Raw flow (``payload="raw"``) is the
quantized uint8 exactly as computed, gzip-compressed (level 4) one chunk per
flow, so it is lossless after quantization; RGB stays JPEG. The planes are
stored apart (dx plane, then dy plane, as the JPEG store keeps them), which
deflates about 12 % smaller than interleaved (H, W, 2); level 4 is within
17 % of level 9's size at over 20x its write speed, and lzf is 1.6x larger
(measured on bikes.mp4 at 602x256, see docs/store.md).

Reading. Handles are opened lazily, read-only, with HDF5 file locking off
(``locking=False``), in the process that reads: the store object notes the
pid that opened them and reopens after a fork; pickling drops them. A store
object can therefore be handed to DataLoader workers under fork, spawn or
forkserver. Sealed shards never change, so no locking is needed.
"""
from __future__ import annotations

import json
import os
import zlib
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...errors import StoreError, WriteError
from ...fsutil import one_line, storage_error
from .. import codec
from ..shards import (INDEX_DIR, INDEX_VERSION, SHARD_DIR, ShardWriter, index_dir,  # noqa: F401
                      load_index, merge_index, published_keys, read_index_parts, safe_tag,
                      shard_dir, shard_sizes, ShardedStore)
from ..base import (FLOW_STREAMS, Video, VideoWriter, stored_rgb_frames,
                    stored_streams)

SHARD_EXT = ".h5"
SHARD_VERSION = 1
BLOB_CHUNK = 64 * 1024
FLUSH_BYTES = 1 << 20
RAW_COMPRESSION = ("gzip", 4)
#: file format bounds: HDF5 1.10 or newer can read the shards.
LIBVER = ("v110", "v110")

# flow_payloads merges payload reads whose byte ranges are at most SPAN_GAP apart, into
# spans of at most SPAN_MAX bytes
SPAN_GAP = 256 << 10
SPAN_MAX = 16 << 20
#: (backward, warped) -> (x table, y table) of the JPEG-payload flow streams, and
#: (backward, warped) -> dataset of the raw ones
JPEG_FLOW_STREAMS: Dict[Tuple[bool, bool], Tuple[str, str]] = {
    key: (name + "_x", name + "_y") for key, name in FLOW_STREAMS.items()}
RAW_FLOW_STREAMS: Dict[Tuple[bool, bool], str] = dict(FLOW_STREAMS)


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise StoreError("the HDF5 store needs h5py: pip install h5py") from None
    return h5py


def open_h5(path: str, mode: str = "r"):
    """Open an HDF5 file without HDF5 file locking (shared filesystems, forked readers)."""
    h5py = _h5py()
    kwargs: Dict[str, Any] = {"locking": False}
    if mode != "r":
        kwargs["libver"] = LIBVER
    try:
        return h5py.File(path, mode, **kwargs)
    except TypeError:  # pragma: no cover - h5py < 3.5 has no locking argument
        os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
        return h5py.File(path, mode)


#: what h5py raises when libhdf5 fails: OSError (errno set, or only in the text), or
#: RuntimeError with the C library's errno only in its text ("Unable to synchronously
#: flush file (file write failed: ... errno = 5, error message = 'Input/output error'...)")
H5_ERRORS = (OSError, RuntimeError, ValueError)


def _io_error(path: str, exc: BaseException) -> WriteError:
    """The project error for an h5py failure while writing ``path``: DiskFullError for a
    full disk or quota (the run stops), else WriteError; the mapping is fsutil.storage_error's."""
    err = storage_error(exc)
    if err is None:
        return WriteError(f"{path}: HDF5 write failed ({one_line(str(exc))})")
    return type(err)(f"{path}: {err}")


_safe_tag = safe_tag  # the name the runners and tests know


# --------------------------------------------------------------------------------------
# reading


class Hdf5Video(Video):
    """One video inside a shard. Payload reads go through the store's per-process handles."""

    def __init__(self, video_id: str, meta: Dict[str, Any], store: "Hdf5Store", shard: str,
                 group: str) -> None:
        super().__init__(video_id, meta)
        self.store = store
        self.shard = shard
        self.group = group
        self._tables: Dict[Any, Any] = {}
        self._handle: Any = None
        self._ds: Dict[str, Any] = {}

    @property
    def payload(self) -> str:
        """"jpeg" or "raw": how this video's flow is stored."""
        return "raw" if self._is_raw(False) else "jpeg"

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_ds"] = {}
        return state

    def _group(self):
        f = self.store._file(self.shard)
        if f is not self._handle:
            self._handle, self._ds = f, {}
        g = self._ds.get("")
        if g is None:
            try:
                g = self._ds[""] = f[self.group]
            except KeyError:
                raise StoreError(f"{self.store.root}: {self.video_id}: shard {self.shard} has no "
                                 f"group {self.group}; run flowprep verify") from None
        return g

    def _is_raw(self, backward: bool, warped: bool = False) -> bool:
        key = ("raw", bool(backward), bool(warped))
        if key not in self._tables:
            self._tables[key] = RAW_FLOW_STREAMS[key[1:]] in self._group()  # type: ignore[index]
        return bool(self._tables[key])  # type: ignore[index]

    def _dataset(self, name: str):
        g = self._group()
        ds = self._ds.get(name)
        if ds is None:
            try:
                ds = self._ds[name] = g[name]
            except KeyError:
                raise StoreError(f"{self.store.root}: {self.video_id}: shard {self.shard} has no "
                                 f"{self.group}/{name}") from None
        return ds

    def table(self, stream: str) -> np.ndarray:
        """int64 (n, 3) of a JPEG stream ("rgb", "flow_x", ...): (offset, length, crc32) per item."""
        t = self._tables.get(stream)
        if t is None:
            t = self._tables[stream] = np.asarray(self._dataset(stream)[()], dtype=np.int64).reshape(-1, 3)
        return t

    def _bytes(self, stream: str, i: int) -> bytes:
        t = self.table(stream)
        off, length = int(t[i, 0]), int(t[i, 1])
        return self._dataset("blob")[off:off + length].tobytes()

    def _rgb_bytes(self, i: int) -> bytes:
        return self._bytes("rgb", i)

    def _flow_payload(self, i: int, backward: bool, warped: bool):
        """(x, y): two JPEG byte strings (payload "jpeg") or two uint8 (H, W) arrays ("raw")."""
        key = (backward, warped)
        if self._is_raw(*key):
            q = self._dataset(RAW_FLOW_STREAMS[key])[i]
            return q[0], q[1]
        sx, sy = JPEG_FLOW_STREAMS[key]
        return self._bytes(sx, i), self._bytes(sy, i)

    def _flow_payloads(self, items: List[Tuple[int, bool, bool]]) -> List[Tuple[Any, Any]]:
        """Many flows' (x, y) payloads in few reads: JPEG payloads as memoryviews.

        The payloads' byte ranges in the video's blob are merged into spans
        wherever the gap between them is at most SPAN_GAP bytes (a stack's
        consecutive flows lie close together, RGB frames between them), and
        each span is one h5py read; a payload is a zero-copy view of its span.
        (About 10 µs of h5py overhead per read, against a span's copy at memory
        speed: 20 planes of a 10-flow stack in one read instead of 20.)
        """
        if not items or any(self._is_raw(b, w) for _, b, w in items):
            return [self._flow_payload(i, b, w) for i, b, w in items]
        wanted = []  # (offset, length, item, component)
        for n, (i, b, w) in enumerate(items):
            for c, stream in enumerate(JPEG_FLOW_STREAMS[(b, w)]):
                off, length = self.table(stream)[i, :2]
                wanted.append((int(off), int(length), n, c))
        wanted.sort()
        blob = self._dataset("blob")
        out: List[List[Any]] = [[None, None] for _ in items]
        k = 0
        while k < len(wanted):
            start, end, m = wanted[k][0], wanted[k][0] + wanted[k][1], k + 1
            while m < len(wanted) and wanted[m][0] - end <= SPAN_GAP \
                    and max(end, wanted[m][0] + wanted[m][1]) - start <= SPAN_MAX:
                end = max(end, wanted[m][0] + wanted[m][1])
                m += 1
            span = memoryview(blob[start:end])
            for off, length, n, c in wanted[k:m]:
                out[n][c] = span[off - start:off - start + length]
            k = m
        return [(x, y) for x, y in out]

    def _flow_quantized(self, i: int, backward: bool, warped: bool) -> np.ndarray:
        key = (backward, warped)
        if self._is_raw(*key):  # one read, no stacking
            q = self._dataset(RAW_FLOW_STREAMS[key])[i]
            return np.ascontiguousarray(np.moveaxis(q, 0, -1))
        return super()._flow_quantized(i, backward, warped)


class Hdf5Store(ShardedStore):
    """Reader of an HDF5 shard store (merges the index parts; newest entry wins).

    Safe to pickle and to use after fork: shard handles belong to the process
    that opened them and are reopened lazily elsewhere.
    """

    format = "hdf5"
    shard_ext = SHARD_EXT

    # --- handles --------------------------------------------------------
    #: The open read-only h5py.File of a shard in this process.
    _file = ShardedStore._handle

    def _open_handle(self, shard: str):
        """A new read-only h5py.File of ``shard`` (the remote store opens it by URL)."""
        path = os.path.join(shard_dir(self.root), shard)
        try:
            return open_h5(path, "r")
        except FileNotFoundError:
            raise StoreError(f"{path}: shard missing (named by the index); run flowprep verify") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot open shard ({exc}); run flowprep verify") from None

    def _close_handle(self, f) -> None:
        f.close()

    # --- videos ---------------------------------------------------------
    def _entry(self, video_id: str) -> Dict[str, Any]:
        try:
            return self.entries[video_id]
        except KeyError:
            raise KeyError(video_id) from None

    def meta(self, video_id: str) -> Dict[str, Any]:
        m = self._metas.get(video_id)
        if m is not None:
            self._metas.move_to_end(video_id)
            return m
        e = self._entry(video_id)
        f = self._file(e["shard"])
        try:
            raw = f[e["group"]]["meta"][()]
            m = json.loads(np.asarray(raw, dtype=np.uint8).tobytes().decode())
        except (KeyError, OSError, ValueError) as exc:
            raise StoreError(f"{self.root}: {video_id}: unreadable metadata in shard {e['shard']} "
                             f"{e['group']} ({exc})") from None
        self._metas[video_id] = m
        while len(self._metas) > self.meta_cache_size:
            self._metas.popitem(last=False)
        return m

    def __getitem__(self, video_id: str) -> Hdf5Video:
        e = self._entry(video_id)
        return Hdf5Video(video_id, self.meta(video_id), self, e["shard"], e["group"])

    def stream_units(self) -> List[Tuple[str, List[str]]]:
        """One unit per shard (its published videos in group order), shards by name."""
        by_shard: Dict[str, List[Tuple[int, str]]] = {}
        for vid in self.video_ids:
            e = self.entries[vid]
            k = e["group"].rpartition("/")[2]
            by_shard.setdefault(e["shard"], []).append((int(k) if k.isdigit() else 0, vid))
        return [(s, [v for _, v in sorted(by_shard[s])]) for s in sorted(by_shard)]


# --------------------------------------------------------------------------------------
# writing


class Hdf5VideoWriter(VideoWriter):
    """Appends one video's frames into the writer's open shard; a group per video.

    Besides the array API (``add_rgb``, ``add_flow``), ``add_rgb_bytes`` /
    ``add_flow_bytes`` / ``add_flow_raw`` take stored payloads as they are, so
    ``flowprep convert`` copies JPEG bytes without re-encoding.
    """

    def __init__(self, owner: "Hdf5StoreWriter", video_id: str, group) -> None:
        self.owner = owner
        self.video_id = video_id
        self.group = group
        self.name = group.name.lstrip("/")
        try:
            self.blob = group.create_dataset("blob", shape=(0,), maxshape=(None,), dtype=np.uint8,
                                             chunks=(BLOB_CHUNK,))
        except H5_ERRORS as exc:
            raise owner._broke(exc, group) from None
        self.blob_len = 0
        self.buf: List[bytes] = []
        self.buf_len = 0
        self.tables: Dict[str, List[Tuple[int, int, int]]] = {"rgb": []}
        #: (backward, warped) -> the raw flow dataset / the crc32 of each flow written to it
        self.raw: Dict[Tuple[bool, bool], Any] = {}
        self.raw_crc: Dict[Tuple[bool, bool], List[int]] = {k: [] for k in FLOW_STREAMS}
        self.done = False

    # --- payload-level appends -----------------------------------------
    def _append(self, stream: str, data: bytes) -> None:
        off = self.blob_len + self.buf_len
        self.tables.setdefault(stream, []).append((off, len(data), zlib.crc32(data)))
        self.buf.append(data)
        self.buf_len += len(data)
        if self.buf_len >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.buf_len:
            return
        self.owner._usable()
        data = np.frombuffer(b"".join(self.buf), dtype=np.uint8)
        try:
            self.blob.resize((self.blob_len + data.size,))
            self.blob[self.blob_len:] = data
        except H5_ERRORS as exc:
            raise self.owner._broke(exc, *self._objects()) from None
        self.blob_len += data.size
        self.buf, self.buf_len = [], 0

    def add_rgb_bytes(self, data: bytes) -> None:
        """Append frame: its JPEG bytes as stored."""
        self._append("rgb", bytes(data))

    def add_flow_bytes(self, x: bytes, y: bytes, backward: bool = False,
                       warped: bool = False) -> None:
        """Append flow: grey JPEG bytes of dx and dy (payload "jpeg")."""
        if self.owner.payload != "jpeg":
            raise StoreError("add_flow_bytes needs a writer with payload 'jpeg'")
        sx, sy = JPEG_FLOW_STREAMS[(bool(backward), bool(warped))]
        self._append(sx, bytes(x))
        self._append(sy, bytes(y))

    def add_flow_raw(self, q: np.ndarray, backward: bool = False, warped: bool = False) -> None:
        """Append flow: uint8 (H, W, 2) quantized flow, stored losslessly as (2, H, W) (payload "raw")."""
        if self.owner.payload != "raw":
            raise StoreError("add_flow_raw needs a writer with payload 'raw'")
        q = np.asarray(q, dtype=np.uint8)
        if q.ndim != 3 or q.shape[2] != 2:
            raise StoreError(f"flow must be uint8 (H, W, 2), got shape {q.shape}")
        q = np.ascontiguousarray(np.moveaxis(q, -1, 0))  # planar (2, H, W)
        key = (bool(backward), bool(warped))
        ds = self.raw.get(key)
        if ds is not None and q.shape != ds.shape[1:]:
            raise StoreError(f"{self.video_id}: flow shape {q.shape} differs from the "
                             f"video's {ds.shape[1:]}")
        self.owner._usable()
        try:
            if ds is None:
                h, w = q.shape[1:]
                ds = self.raw[key] = self.group.create_dataset(
                    RAW_FLOW_STREAMS[key], shape=(0, 2, h, w), maxshape=(None, 2, h, w),
                    dtype=np.uint8, chunks=(1, 2, h, w), compression=RAW_COMPRESSION[0],
                    compression_opts=RAW_COMPRESSION[1])
            n = ds.shape[0]
            ds.resize((n + 1,) + ds.shape[1:])
            ds[n] = q
        except H5_ERRORS as exc:
            raise self.owner._broke(exc, *self._objects()) from None
        self.raw_crc[key].append(zlib.crc32(q.tobytes()))

    # --- the VideoWriter API (add_rgb encodes with the store's codec) ------
    @property
    def quality(self) -> int:  # type: ignore[override]
        return self.owner.quality

    @property
    def payload(self) -> str:  # type: ignore[override]
        return self.owner.payload

    def add_flow(self, q: np.ndarray, backward: bool = False, warped: bool = False) -> None:
        if self.owner.payload == "raw":
            self.add_flow_raw(q, backward, warped)
            return
        super().add_flow(q, backward, warped)

    def _counts_match(self, meta: Dict[str, Any]) -> None:
        nf, nfl = int(meta["num_frames"]), int(meta["num_flows"])
        got = {"rgb": len(self.tables["rgb"])}
        want = {"rgb": stored_rgb_frames(meta)}
        for b in stored_streams(meta):
            if self.owner.payload == "raw":
                got[RAW_FLOW_STREAMS[b]] = len(self.raw_crc[b])
                want[RAW_FLOW_STREAMS[b]] = nfl
            else:
                for s in JPEG_FLOW_STREAMS[b]:
                    got[s] = len(self.tables.get(s, []))
                    want[s] = nfl
        if got != want:
            raise StoreError(f"{self.video_id}: written counts {got} differ from the metadata's {want}")

    def commit(self, meta: Dict[str, Any]) -> None:
        """Finish the video in the shard; it is published when the shard is sealed.

        The video counts as committed (it is sealed with the shard) only once its
        bytes are flushed into the shard file. Raises WriteError (DiskFullError for
        a full disk) when writing fails: then nothing of it is registered, and the
        writer drops its open shard unsealed (see Hdf5StoreWriter).
        """
        self._counts_match(meta)
        self._flush()
        self.owner._usable()
        g = self.group
        made = [self.blob, *self.raw.values()]
        try:
            for stream, rows in self.tables.items():
                made.append(g.create_dataset(
                    stream, data=np.asarray(rows, dtype=np.int64).reshape(-1, 3)))
            for b, crcs in self.raw_crc.items():  # b: (backward, warped)
                if b in self.raw or crcs:
                    made.append(g.create_dataset(RAW_FLOW_STREAMS[b] + "_crc32",
                                                 data=np.asarray(crcs, np.uint32)))
            if self.owner.payload == "raw" and (False, False) not in self.raw:
                # no flow at all (cannot happen through extract): keep the layout complete
                h, w = int(meta["height"]), int(meta["width"])
                made.append(g.create_dataset("flow", shape=(0, 2, h, w), maxshape=(None, 2, h, w),
                                             dtype=np.uint8, chunks=(1, 2, h, w)))
                made.append(g.create_dataset("flow_crc32", data=np.zeros(0, np.uint32)))
            blob = json.dumps(meta, sort_keys=True).encode()
            made.append(g.create_dataset("meta", data=np.frombuffer(blob, dtype=np.uint8)))
            g.attrs["video_id"] = self.video_id
            g.attrs["config_key"] = str(meta.get("config_key", ""))
            # Write this video's cached data now (chunk caches, sieve buffers), then close
            # its datasets and group, so that a write failing here is raised: h5py only
            # prints errors raised while it frees an object, and the shard would then
            # look fine. Flushing first leaves nothing for close to write: libhdf5
            # leaves a dataset whose close failed half-closed, and crashes on it later.
            for ds in made:
                ds.id.flush()
            for obj in made + [g]:
                obj.id.close()
        except H5_ERRORS as exc:
            self.done = True
            raise self.owner._broke(exc, *made, *self._objects()) from None
        self.done = True
        self.owner._committed(self, meta)

    def _objects(self) -> List[Any]:
        """The h5py objects this video holds open in the shard."""
        return [self.group, self.blob, *self.raw.values()]

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.owner._aborted(self)


class Hdf5StoreWriter(ShardWriter):
    """One worker's writer: fills its own shard files, seals them, writes their index parts.

    A committed video is published when its shard is sealed (``drain_published``
    lists it then). After a write error (any failure of h5py or the filesystem
    while writing, raised as WriteError, or DiskFullError for a full disk) the
    shard's state is unknown, so the writer drops its open shard without sealing
    it: the videos committed into it since the last seal are not published (the
    caller redoes them; ``drain_published`` never names them). The writer then
    refuses new videos (``begin`` raises; make a new writer), and ``close`` only
    releases it.

    Args:
        root: the store (OUT).
        tmp_root: this run's staging directory inside OUT/.flowprep/tmp (same filesystem).
        worker_tag: unique per writing process; names its shards.
        jpeg_quality: JPEG quality of RGB frames and (payload "jpeg") flow planes.
        shard_size: bytes; a shard is sealed after the commit that makes it pass this size.
        payload: "jpeg" (the JPEG store's bytes) or "raw" (uint8 flow, gzip, lossless).
    """

    label = "HDF5"

    shard_ext = SHARD_EXT

    def __init__(self, root: str, tmp_root: str, worker_tag: str,
                 jpeg_quality: int = codec.DEFAULT_JPEG_QUALITY, shard_size: int = 1 << 30,
                 payload: str = "jpeg", publisher: Any = None) -> None:
        if payload not in ("jpeg", "raw"):
            raise StoreError(f"payload must be 'jpeg' or 'raw', got {payload!r}")
        if int(shard_size) <= 0:
            raise StoreError(f"shard_size must be a positive number of bytes, got {shard_size!r}")
        self.root = os.path.abspath(root)
        self.tmp_root = tmp_root
        self.tag = _safe_tag(worker_tag)
        self.quality = int(jpeg_quality)
        self.shard_size = int(shard_size)
        self.payload = payload
        #: publishes sealed shards elsewhere (flowprep.store.remote.RemotePublisher: object
        #: storage); None: renamed into root/shards
        self.publisher = publisher
        self._published = []
        self._seq = 0
        self._file = None
        self._name = ""
        self.tmp_path = ""
        self._videos: Dict[str, Dict[str, Any]] = {}
        self._groups = 0
        self._open: Optional[Hdf5VideoWriter] = None
        #: the first write error; once set, the writer is out of use
        self.error: Optional[WriteError] = None
        os.makedirs(tmp_root, exist_ok=True)

    # --- write errors -----------------------------------------------------
    def _broke(self, exc: BaseException, *objects: Any) -> WriteError:
        """Take this writer out of use after ``exc``; the project error to raise.

        ``objects``: h5py objects of the shard the failing operation held. The open
        shard is dropped unsealed (its committed videos are lost, never published)
        and ``self.error`` is set.
        """
        err = exc if isinstance(exc, WriteError) else _io_error(self.tmp_path, exc)
        if self.error is None:
            self.error = err
        if self._file is not None:
            # After a failed write libhdf5 may crash on any later use of the file's
            # objects: closing them, or the file (which flushes). h5py closes an object
            # when it is freed unless its id is "locked"; so every object of this shard
            # that is still open is locked and the file is left open (deleted below),
            # to be released by the C library when the process ends.
            held = [self._file, *objects]
            if self._open is not None:
                held += self._open._objects()
            for obj in held:
                try:
                    obj.id.locked = True
                except (AttributeError, TypeError, ValueError):
                    pass
        return self._dropped(err, self._abandon())

    def _abandon(self) -> List[str]:
        """Drop the open shard without sealing it; the ids of the committed videos it held.

        After a write error the file is not closed (see _broke), only deleted.
        """
        lost = sorted(self._videos)
        f, self._file = self._file, None
        self._videos, self._open = {}, None
        if f is not None and self.error is None:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - it is deleted below anyway
                pass
        if self.tmp_path:  # gone already when it was renamed into OUT/shards
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
            self._file = open_h5(self.tmp_path, "w")
            self._file.attrs["flowprep_shard"] = SHARD_VERSION
            self._file.attrs["writer"] = self.tag
            self._file.attrs["payload"] = self.payload
            self._file.create_group("videos")
        except H5_ERRORS as exc:
            raise self._broke(exc) from None
        self._videos = {}
        self._groups = 0

    def begin(self, video_id: str) -> Hdf5VideoWriter:
        self._usable()
        if self._open is not None and not self._open.done:
            self._open.abort()
        if self._file is None:
            self._open_shard()
        gname = f"videos/{self._groups}"
        self._groups += 1
        try:
            g = self._file.create_group(gname)
        except H5_ERRORS as exc:
            raise self._broke(exc) from None
        self._open = Hdf5VideoWriter(self, video_id, g)
        return self._open

    def _committed(self, vw: Hdf5VideoWriter, meta: Dict[str, Any]) -> None:
        self._open = None
        try:
            self._file.flush()
        except H5_ERRORS as exc:
            raise self._broke(exc, *vw._objects()) from None
        # registered only now, with its bytes in the file: a video whose flush failed is
        # never sealed into a shard (and the shard is dropped with it, see _broke)
        self._videos[vw.video_id] = {
            "group": vw.name, "config_key": meta.get("config_key"),
            "num_frames": int(meta["num_frames"]), "num_flows": int(meta["num_flows"]),
            "label": meta.get("label")}
        if os.path.getsize(self.tmp_path) >= self.shard_size:
            self.seal()

    def _aborted(self, vw: Hdf5VideoWriter) -> None:
        if vw is not self._open or self._file is None:
            return  # its shard was dropped already (after a write error, or discard)
        self._open = None
        try:
            del self._file[vw.name]  # its space is reused by the next video of this session
        except H5_ERRORS as exc:
            raise self._broke(exc, *vw._objects()) from None

    def finish_shard(self) -> Optional[Dict[str, Any]]:
        """Sealing step 0 (ShardWriter.seal runs them all): close the open shard's HDF5
        file; None when it holds no committed video (it is deleted)."""
        self._usable()
        if self._file is None:
            return None
        if self._open is not None and not self._open.done:
            self._open.abort()
        if not self._videos:
            self._abandon()
            return None
        try:
            self._file.close()
        except H5_ERRORS as exc:
            raise self._broke(exc) from None
        self._file = None
        return {"name": self._name, "tmp_path": self.tmp_path, "videos": self._videos,
                "part": {"payload": self.payload}}
