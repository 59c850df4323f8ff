"""Sharded stores on object storage: the HDF5 store at an fsspec URL.

Layout: the local HDF5 store's, under the URL::

    URL/flowprep.json                   store config (written when a run starts, as locally)
    URL/shards/<writer>-<n>.h5          sealed shards, uploaded whole
    URL/index/<writer>-<n>.json         one index part per shard, uploaded after its shard
    URL/rgb_list.txt, flow_list.txt, classes.txt   lists, rewritten when a run ends
    URL/.flowprep/failures/<hash>.json  failure records, written when a run ends
    URL/.flowprep/locks/<token>.json    run locks: owner, part, expiry (renewed while alive)

Writing (extract, convert). Shards are built in a local staging folder
(``--staging DIR``, default a temporary folder: about one shard per worker
process, ``--shard-size`` each), sealed there (closed and fsynced), then
published by :class:`RemotePublisher`: the shard is uploaded as one whole
object (a PUT is atomic on object stores: readers see all of it or nothing),
then its index part, and only then are its videos published (failure records
cleared, reported to the run). A failed upload is retried, then fails the
shard: it is never half-published, and its videos are redone by the run (as
for a local write error). A crash between the two uploads leaves a shard no
index part names: readers and resume ignore it, ``verify`` reports it, and the
next run deletes it once its writer's lock is gone. Resume reads what is
published from the index parts.

Locks (:class:`RemoteRunLock`). Object stores have no flock: a run writes a
lock object naming its owner (host, pid), its ``--shard`` part and an expiry
``LOCK_TTL`` seconds ahead, renewed every third of that by a thread while the
run lives. Another run refuses to start while an unexpired lock conflicts with
it (a whole run conflicts with any run; parts with another part count or the
same part); two runs that start at the same moment both write then re-list,
and the younger withdraws. A crashed run's lock expires: it blocks others for
at most ``LOCK_TTL`` seconds (``FLOWPREP_REMOTE_LOCK_TTL``). Clocks of the
machines must agree to within a fraction of the TTL (NTP).

Reading (:class:`RemoteHdf5Store`): the index parts and shard listing are read
once (``refresh()`` re-reads them); shards are opened by h5py through fsspec
file objects reading byte ranges through a bounded block cache
(``flowprep.remote.READ_BLOCK`` x ``READ_BLOCKS`` per open shard, at most
``max_open_files`` shards open per process).
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError, LockedError, StoreError, WriteError
from ..remote import Remote
from .base import META_DIR, STORE_FILE
from .shards import INDEX_DIR, INDEX_VERSION, SHARD_DIR, merge_index, safe_tag

LOCK_DIR = META_DIR + "/locks"
FAILURE_DIR = META_DIR + "/failures"
LOCK_TTL = float(os.environ.get("FLOWPREP_REMOTE_LOCK_TTL", "120"))
#: formats a store on object storage can have (JPEG: one object per frame and no atomic
#: folder rename, see ``check_format``)
REMOTE_FORMATS = ("hdf5", "wds")


def check_format(fmt: str, url: str) -> None:
    """StoreError before anything is written when ``fmt`` cannot live at ``url``."""
    if fmt not in REMOTE_FORMATS:
        raise StoreError(
            f"{url}: a {fmt} store cannot be written to object storage (a JPEG store is one "
            f"object per frame, and a video could not be published whole without an atomic "
            f"folder rename); use --format {' or --format '.join(REMOTE_FORMATS)}, or write "
            f"the JPEG store to a local path")


# --------------------------------------------------------------------------------------
# index and small files


def _parse_part(name: str, data: Any) -> Dict[str, Any]:
    if isinstance(data, BaseException):
        raise ValueError(f"{type(data).__name__}: {data}")
    part = json.loads(bytes(data).decode("utf-8"))
    if part.get("flowprep_index") != INDEX_VERSION:
        raise ValueError(f"unknown index version {part.get('flowprep_index')!r}")
    int(part["sealed_ns"])
    str(part["shard"])
    dict(part["videos"])
    part["_part"] = name
    return part


def shard_ext(fmt: str) -> str:
    """".h5" (hdf5) or ".tar" (wds): the shard files' extension of a sharded format."""
    from . import registry
    return registry.get(fmt).shard_ext


def read_index(remote: Remote, ext: str = ".h5"
               ) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]], Dict[str, int]]:
    """(parts oldest first, unreadable parts [(name, reason)], shard name -> bytes) of the
    store at ``remote`` whose shards end in ``ext``.

    The shard listing is taken before the index parts are read: a part whose shard
    is not listed was uploaded after it (or lost it), and is left to the caller.
    """
    shards = {n: s for n, s in remote.listdir(SHARD_DIR).items() if n.endswith(ext)}
    names = sorted(n for n in remote.listdir(INDEX_DIR)
                   if n.endswith(".json") and not n.startswith("."))
    got = remote.read_many([f"{INDEX_DIR}/{n}" for n in names])
    parts, errors = [], []
    for n in names:
        try:
            parts.append(_parse_part(n, got[f"{INDEX_DIR}/{n}"]))
        except (ValueError, KeyError, TypeError) as exc:
            errors.append((n, f"unreadable index part ({remote.error('', exc).strip(' ()')})"))
    parts.sort(key=lambda p: (int(p["sealed_ns"]), str(p["shard"])))
    return parts, errors, shards


def load_index(remote: Remote, ext: str = ".h5") -> Dict[str, Dict[str, Any]]:
    """The merged index (newest entry wins) of the parts whose shard is present."""
    parts, _, shards = read_index(remote, ext)
    return merge_index([p for p in parts if p["shard"] in shards])


def published_keys(remote: Remote, fmt: str = "hdf5") -> Dict[str, str]:
    """video_id -> config_key of every video a remote index part names (for resume)."""
    return {vid: e.get("config_key") for vid, e in load_index(remote, shard_ext(fmt)).items()}


def read_json(remote: Remote, rel: str) -> Optional[Dict[str, Any]]:
    """A small JSON object, or None when it does not exist; StoreError when unreadable."""
    try:
        return json.loads(remote.read_bytes(rel).decode("utf-8"))
    except FileNotFoundError:
        return None
    except ConfigError:  # the protocol's package is missing
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{remote.where(rel)}: unreadable ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise StoreError(remote.error(f"{remote.where(rel)}: cannot be read", exc)) from None


def read_store_info(remote: Remote) -> Dict[str, Any]:
    info = read_json(remote, STORE_FILE)
    if info is None:
        raise StoreError(f"{remote.display}: not a flowprep store (no {STORE_FILE})")
    return info


def failure_rel(video_id: str) -> str:
    h = hashlib.sha1(video_id.encode()).hexdigest()[:20]
    return f"{FAILURE_DIR}/{h}.json"


def record_failure(remote: Remote, input_path: str, video_id: str, reason: str) -> None:
    """Write the failure record of ``video_id`` (the same JSON as the local store's)."""
    rec = {"input": input_path, "video_id": video_id, "reason": reason}
    remote.write_bytes(failure_rel(video_id), json.dumps(rec, sort_keys=True).encode())


def read_failures(remote: Remote) -> Dict[str, Dict[str, str]]:
    """input path -> {"video_id", "reason"} of every failure record."""
    names = sorted(n for n in remote.listdir(FAILURE_DIR) if n.endswith(".json"))
    out: Dict[str, Dict[str, str]] = {}
    got = remote.read_many([f"{FAILURE_DIR}/{n}" for n in names])
    for data in got.values():
        try:
            rec = json.loads(bytes(data).decode())
            out[rec["input"]] = {"video_id": rec["video_id"], "reason": rec["reason"]}
        except (TypeError, ValueError, KeyError):
            continue
    return out


def write_store_info(remote: Remote, info: Dict[str, Any], others_alive: Callable[[], bool]) -> None:
    """Create or check URL/flowprep.json, as the local extract does (see extract.py).

    ``info``: the new content. A store of another format is refused; one whose other
    parts are running (``others_alive()``) keeps its configuration, and a part with
    another configuration or classes is refused (LockedError).
    """
    old = read_json(remote, STORE_FILE)
    if old is not None:
        if old.get("format") != info["format"]:
            raise ConfigError(f"{remote.display} is a {old.get('format')} store; extract into it "
                              f"with --format {old.get('format')}, or convert it (flowprep convert)")
        if old.get("config_key") == info["config_key"] and old.get("classes") == info["classes"]:
            return
        if others_alive():
            what = ("configuration" if old.get("config_key") != info["config_key"]
                    else "list of classes")
            raise LockedError(f"{remote.display}: other parts of this store are being extracted "
                              f"right now with another {what}; give every --shard part the same "
                              f"inputs and options, or wait for them to finish")
    remote.write_bytes(STORE_FILE, json.dumps(info, indent=1, sort_keys=True).encode())


def write_lists(remote: Remote) -> int:
    """Rewrite the annotation lists from the published videos; returns how many they list.

    Parts of one split end at different times: a writer re-reads the index after
    writing and writes again if it changed since its scan, so the lists written last
    name every video published by every part that has finished.
    """
    from .listing import list_texts
    for _ in range(10):
        store = open_remote_store(remote.url, remote.storage_options)
        before = sorted(store.index_part_names())
        texts = list_texts(store, store.info)
        for name, text in texts.items():
            if text is None:
                remote.remove(name)
            elif name == "wflow_list.txt" and not text and not remote.exists(name):
                continue  # no --warped video: no warped list
            else:
                remote.write_bytes(name, text.encode())
        store.refresh()
        if sorted(store.index_part_names()) == before:
            return len(store.video_ids)
    return len(store.video_ids)


def clean_orphans(remote: Remote, live_tokens: List[str], fmt: str = "hdf5") -> List[str]:
    """Delete shards no index part names whose run holds no live lock; returns them.

    (A run killed between a shard's upload and its index part's; the shard's videos
    were never published.) Nothing is deleted while an index part is unreadable.
    """
    parts, errors, shards = read_index(remote, shard_ext(fmt))
    if errors:
        return []
    named = {p["shard"] for p in parts}
    live = [safe_tag(t) + "-" for t in live_tokens]
    removed = []
    for name in sorted(shards):
        if name in named or any(name.startswith(p) for p in live):
            continue
        try:
            if remote.remove(f"{SHARD_DIR}/{name}"):
                removed.append(f"{SHARD_DIR}/{name}")
        except WriteError:
            pass
    return removed


# --------------------------------------------------------------------------------------
# publishing sealed shards


class RemotePublisher:
    """Publishes a writer's sealed shards to the store at ``remote`` (picklable).

    Passed to Hdf5StoreWriter as ``publisher``: the shard is uploaded whole, then its
    index part; the local file is deleted once both are there.
    """

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def publish(self, local_path: str, name: str, part: Dict[str, Any],
                extra: Optional[Dict[str, bytes]] = None) -> None:
        """Upload the sealed shard ``local_path`` as shards/``name``, then the ``extra``
        objects (rel -> bytes: a wds shard's member table), then its index part.

        Raises WriteError when an upload fails after its retries (the index part is
        then not written: the shard, if its upload went through, is an orphan the next
        run deletes; its videos are not published).
        """
        _test_pause("FLOWPREP_TEST_PAUSE_BEFORE_SHARD", name)
        self.remote.put_file(local_path, f"{SHARD_DIR}/{name}")
        for rel, data in (extra or {}).items():
            self.remote.write_bytes(rel, data)
        _test_pause("FLOWPREP_TEST_PAUSE_BEFORE_INDEX", name)
        stem = os.path.splitext(name)[0]
        self.remote.write_bytes(f"{INDEX_DIR}/{stem}.json",
                                json.dumps(part, sort_keys=True).encode())

    def clear_failures(self, video_ids: List[str]) -> None:
        """Delete the failure records of newly published videos (best effort)."""
        for vid in video_ids:
            try:
                self.remote.remove(failure_rel(vid))
            except WriteError:
                pass

    def where(self, name: str) -> str:
        return self.remote.where(f"{SHARD_DIR}/{name}")


def _test_pause(var: str, name: str) -> None:
    """Tests widen a window with this (e.g. between a shard's upload and its index's);
    with FLOWPREP_TEST_MARK_DIR set, a file named after the shard and the window
    tells the test where the run is."""
    t = os.environ.get(var)
    if t:
        mark = os.environ.get("FLOWPREP_TEST_MARK_DIR")
        if mark:
            with open(os.path.join(mark, f"{var[len('FLOWPREP_TEST_PAUSE_'):].lower()}-{name}"),
                      "w"):
                pass
        time.sleep(float(t))


# --------------------------------------------------------------------------------------
# locks


def _conflicts(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    """True when runs on parts a = (I, N) and b overlap: a whole run, another N, same part."""
    return a[1] == 1 or b[1] == 1 or a[1] != b[1] or a[0] == b[0]


class RemoteRunLock:
    """A run's lock on a remote store (see the module docstring); a context manager.

    Args:
        remote: the store.
        token: the run's token (its local RunLock's; its writers' shard names start with it).
        index, count: the run's --shard part.
        ttl: seconds a lock lives without renewal.
    Raises:
        LockedError when a live run holds a conflicting lock.
    """

    def __init__(self, remote: Remote, token: str, index: int = 0, count: int = 1,
                 ttl: float = 0.0) -> None:
        self.remote = remote
        self.token = token
        self.part = (int(index), int(count))
        self.ttl = float(ttl or LOCK_TTL)
        self.rel = f"{LOCK_DIR}/{safe_tag(token)}.json"
        self.created_ns = time.time_ns()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._acquire()

    def _record(self) -> Dict[str, Any]:
        return {"flowprep_lock": 1, "token": self.token,
                "owner": f"{socket.gethostname()}:{os.getpid()}", "part": list(self.part),
                "created_ns": self.created_ns, "expires_at": time.time() + self.ttl}

    def others(self) -> List[Dict[str, Any]]:
        """The unexpired locks of other runs (expired ones are deleted on the way)."""
        names = [n for n in self.remote.listdir(LOCK_DIR) if n.endswith(".json")]
        got = self.remote.read_many([f"{LOCK_DIR}/{n}" for n in names])
        now = time.time()
        out = []
        for n in names:
            rel = f"{LOCK_DIR}/{n}"
            if rel == self.rel:
                continue
            try:
                rec = json.loads(bytes(got[rel]).decode())
                expires = float(rec["expires_at"])
                part = (int(rec["part"][0]), int(rec["part"][1]))
            except (TypeError, ValueError, KeyError, IndexError):
                continue  # deleted meanwhile, or not ours
            if expires < now:
                try:
                    self.remote.remove(rel)  # a crashed run's: it no longer blocks anyone
                except WriteError:
                    pass
                continue
            rec["part"] = part
            out.append(rec)
        return out

    def _refuse(self, rec: Dict[str, Any]) -> LockedError:
        i, n = rec["part"]
        what = "over all of its inputs" if n == 1 else f"on --shard {i}/{n}"
        left = max(0.0, float(rec["expires_at"]) - time.time())
        return LockedError(
            f"{self.remote.display}: another flowprep extract ({rec.get('owner')}) is running "
            f"{what}; wait for it to finish, or split the work into disjoint --shard I/N parts "
            f"(a crashed run's lock expires {left:.0f} s from now)")

    def _acquire(self) -> None:
        for rec in self.others():
            if _conflicts(self.part, rec["part"]):
                raise self._refuse(rec)
        self.remote.write_bytes(self.rel, json.dumps(self._record()).encode())
        mine = (self.created_ns, self.token)
        for rec in self.others():  # started at the same moment: the younger withdraws
            if _conflicts(self.part, rec["part"]) and \
                    (int(rec.get("created_ns", 0)), str(rec.get("token"))) < mine:
                self.release()
                raise self._refuse(rec)
        self._thread = threading.Thread(target=self._renew, name="flowprep-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.remote.write_bytes(self.rel, json.dumps(self._record()).encode())
            except WriteError:
                pass  # tried again in ttl/3; the lock lives ttl

    def others_alive(self) -> bool:
        return bool(self.others())

    def live_tokens(self) -> List[str]:
        return [self.token] + [str(r.get("token")) for r in self.others()]

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            self.remote.remove(self.rel)
        except WriteError:
            pass  # it expires

    def __enter__(self) -> "RemoteRunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------------------
# reading


def open_remote_store(url: str, storage_options: Optional[Mapping[str, Any]] = None):
    """The reader of the store at ``url``: its format read from its flowprep.json."""
    remote = Remote(url, storage_options)
    info = read_store_info(remote)
    fmt = info.get("format")
    if fmt == "hdf5":
        return RemoteHdf5Store(url, storage_options, info)
    if fmt == "wds":
        return RemoteWdsStore(url, storage_options, info)
    raise StoreError(f"{remote.display}: a {fmt!r} store cannot be read from object storage "
                     f"(hdf5 and wds stores can)")


class _RemoteShards:
    """What the readers of sharded stores on object storage share (a mixin before the
    local reader class): the index and shard listing from the URL, failures, disk use."""

    max_open_files = 16
    shard_ext = ".h5"

    def _init_remote(self, url: str, storage_options: Optional[Mapping[str, Any]],
                     info: Optional[Dict[str, Any]]) -> None:
        from collections import OrderedDict
        self.remote = Remote(url, storage_options)
        self.root = self.remote.display
        self.info = info if info is not None else read_store_info(self.remote)
        self._parts: Optional[Tuple[List[Dict[str, Any]], List[Tuple[str, str]],
                                    Dict[str, int]]] = None
        self._entries = None
        self._ids = None
        self._pid = os.getpid()
        self._handles = OrderedDict()
        self._metas = OrderedDict()

    def refresh(self) -> None:
        super().refresh()  # type: ignore[misc]
        self._parts = None
        self.remote.invalidate()

    @property
    def url(self) -> str:
        return self.remote.display

    def _index(self):
        if self._parts is None:
            self._parts = read_index(self.remote, self.shard_ext)
        return self._parts

    def index_part_names(self) -> List[str]:
        parts, errors, _ = self._index()
        return [p["_part"] for p in parts] + [n for n, _ in errors]

    @property
    def entries(self) -> Dict[str, Dict[str, Any]]:
        if self._entries is None:
            parts, _, shards = self._index()
            self._entries = merge_index([p for p in parts if p["shard"] in shards])
        return self._entries

    def index_parts(self):
        parts, errors, _ = self._index()
        return parts, errors

    def shard_sizes(self) -> Dict[str, int]:
        return dict(self._index()[2])

    def shard_path(self, shard: str) -> str:
        """The shard's URL (what messages name)."""
        return self.remote.where(f"{SHARD_DIR}/{shard}")

    def _open_remote(self, shard: str, **kw):
        try:
            return self.remote.open_read(f"{SHARD_DIR}/{shard}", **kw)
        except FileNotFoundError:
            raise StoreError(f"{self.shard_path(shard)}: shard missing (named by the index); "
                             f"run flowprep verify") from None
        except Exception as exc:  # noqa: BLE001 - network errors
            raise StoreError(self.remote.error(f"{self.shard_path(shard)}: cannot open shard",
                                               exc)) from None

    @property
    def failures(self) -> Dict[str, str]:
        published = set(self.video_ids)
        return {inp: rec["reason"] for inp, rec in read_failures(self.remote).items()
                if rec["video_id"] not in published}

    def top_file(self, name: str) -> Optional[bytes]:
        """A store-level file (an annotation list), or None when there is none."""
        try:
            return self.remote.read_bytes(name)
        except FileNotFoundError:
            return None

    def disk_usage(self) -> Dict[str, int]:
        """bytes and objects under the URL (lock objects left out)."""
        found = {k: v for k, v in self.remote.find("").items()
                 if not k.startswith(LOCK_DIR + "/")}
        return {"bytes": sum(found.values()), "allocated": sum(found.values()),
                "files": len(found)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.remote.display!r} videos={len(self)}>"


def _hdf5_store_class():
    from .hdf5 import Hdf5Store
    return Hdf5Store


def _wds_store_class():
    from .wds.store import WdsStore
    return WdsStore


class _GcPausedReads:
    """A remote file object for h5py whose reads run with Python's garbage collector paused.

    h5py holds its global lock while it reads through a Python file object, and an
    fsspec read waits on fsspec's IO thread. If that thread ran a garbage collection
    that freed an h5py object (an unreachable shard handle, say), the free would wait
    for h5py's lock: a deadlock (seen: a convert from an s3:// HDF5 store hanging for
    good). With collection paused for the length of a read, the IO thread cannot start
    one while the reader holds the lock; collection resumes when the read returns.
    """

    def __init__(self, fobj) -> None:
        self._f = fobj

    def _paused(self, fn, *args):
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args)
        finally:
            if was:
                gc.enable()

    def read(self, size: int = -1) -> bytes:
        return self._paused(self._f.read, size)

    def readinto(self, buf) -> int:
        return self._paused(self._f.readinto, buf)

    def __getattr__(self, name: str):  # seek, tell, close, size, ...
        return getattr(self._f, name)


class RemoteHdf5Store(_RemoteShards, _hdf5_store_class()):
    """An HDF5 store at an fsspec URL, read by byte ranges (see the module docstring).

    Args:
        url: the store's URL.
        storage_options: passed to fsspec; kept in memory (and in pickles sent to
            DataLoader workers), never written.
    """

    shard_ext = ".h5"

    def __init__(self, url: str, storage_options: Optional[Mapping[str, Any]] = None,
                 info: Optional[Dict[str, Any]] = None) -> None:
        self._init_remote(url, storage_options, info)

    def _open_handle(self, shard: str):
        from .hdf5 import open_h5
        fobj = _GcPausedReads(self._open_remote(shard))
        try:
            return open_h5(fobj, "r")
        except Exception as exc:  # noqa: BLE001 - h5py's OSError and the network's
            raise StoreError(self.remote.error(
                f"{self.shard_path(shard)}: cannot open shard (run flowprep verify)", exc)) \
                from None


class RemoteWdsStore(_RemoteShards, _wds_store_class()):
    """A wds store at an fsspec URL: members read by byte range through a bounded block
    cache (map-style), or each shard front to back (streaming, :meth:`iter_unit`)."""

    shard_ext = ".tar"
    #: sequential reads (streaming loader, verify): large blocks, two of them
    STREAM_BLOCK = 8 << 20

    def __init__(self, url: str, storage_options: Optional[Mapping[str, Any]] = None,
                 info: Optional[Dict[str, Any]] = None) -> None:
        from collections import OrderedDict
        self._init_remote(url, storage_options, info)
        self._tables = OrderedDict()

    def read_members(self, shard: str) -> Dict[str, Any]:
        from .wds.store import MEMBERS_DIR, MEMBERS_VERSION
        rel = f"{INDEX_DIR}/{MEMBERS_DIR}/{os.path.splitext(shard)[0]}.json"
        table = read_json(self.remote, rel)
        if table is None:
            raise StoreError(f"{self.remote.where(rel)}: member table of shard {shard} missing; "
                             f"run flowprep verify")
        if table.get("flowprep_members") != MEMBERS_VERSION or not isinstance(
                table.get("videos"), dict):
            raise StoreError(f"{self.remote.where(rel)}: unreadable member table of shard "
                             f"{shard}")
        return table

    def _open_handle(self, shard: str):
        """An open fsspec file object of ``shard`` (range reads)."""
        return self._open_remote(shard)

    def _close_handle(self, f) -> None:
        f.close()

    def read_range(self, shard: str, offset: int, size: int, member: str) -> bytes:
        try:
            f = self._handle(shard)
            f.seek(offset)
            data = f.read(size)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - network errors
            raise StoreError(self.remote.error(f"{self.shard_path(shard)}: member {member}: "
                                               f"cannot read", exc)) from None
        if len(data) != size:
            raise StoreError(f"{self.shard_path(shard)}: member {member}: truncated (the shard "
                             f"ends {size - len(data)} bytes short); run flowprep verify")
        return data

    def open_shard_stream(self, shard: str):
        """The shard read front to back: large sequential range requests."""
        return self._open_remote(shard, block=self.STREAM_BLOCK, blocks=2)
