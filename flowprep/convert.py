"""``flowprep convert``: copy a store into another format without re-encoding.

JPEG bytes are copied as stored (RGB frames and, with the JPEG payload, the
flow planes; flowprep.store.copy), so any chain of formats (jpeg, hdf5, wds)
gives back identical bytes. The
metadata of every video, the store's configuration, its failure records,
class names and any extra top-level files (split lists) are carried over;
the annotation lists are rewritten for DST at the end.

Payloads: a JPEG or wds store becomes an HDF5 store with the JPEG payload. An
HDF5 store keeps its payload when converted to HDF5 (a way to re-shard, and to
drop the dead copies of republished videos; the same for wds -> wds). Raw uint8
flow converted to the JPEG or wds store is JPEG-encoded at the store's quality (the one lossy step), and
the configuration then drops ``payload`` (its key changes accordingly).
Going from JPEG flow to the raw payload is refused: it would store JPEG
artefacts losslessly and claim a precision the data does not have.

An interrupted conversion can be resumed by running the same command: the
videos DST already holds with the expected configuration are skipped.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ConfigError
from .store import FORMATS, open_store, published_keys, registry
from .store import codec
from .store.base import META_DIR, STORE_FILE, config_key, read_store_file, write_store_file
from .store.copy import copy_video
from .fsutil import atomic_write_bytes


def _dst_info(src_info: Dict[str, Any], fmt: str, src_root: str) -> Dict[str, Any]:
    info = {k: v for k, v in src_info.items() if k != "converted_from"}
    config = dict(info["config"])
    config.pop("format", None)  # stores written before the format left the hashed config
    if config.get("payload", "jpeg") not in registry.get(fmt).payloads:
        config.pop("payload")
    info["config"] = config
    info["format"] = fmt
    info["config_key"] = (src_info["config_key"] if config == src_info["config"]
                          else config_key(config))
    info["converted_from"] = {"path": src_root, "format": src_info.get("format"),
                              "config_key": src_info.get("config_key")}
    return info


class _Place:
    """A store's root for the store-level files convert copies: a local folder, or a URL
    (flowprep.remote.Remote)."""

    def __init__(self, root: str, storage_options: Optional[Dict[str, Any]] = None) -> None:
        from .remote import Remote, is_url
        self.remote = Remote(root, storage_options) if is_url(root) else None
        self.root = root if self.remote is not None else os.path.abspath(os.fspath(root))

    def names(self, rel: str = "") -> List[str]:
        """Files (objects) directly in ``rel``, hidden ones and temporaries left out."""
        if self.remote is not None:
            names = list(self.remote.listdir(rel))
        else:
            d = os.path.join(self.root, rel)
            names = [e.name for e in os.scandir(d) if e.is_file(follow_symlinks=False)] \
                if os.path.isdir(d) else []
        return sorted(n for n in names if not n.startswith(".") and ".tmp-" not in n)

    def read(self, rel: str) -> bytes:
        if self.remote is not None:
            return self.remote.read_bytes(rel)
        with open(os.path.join(self.root, rel), "rb") as fh:
            return fh.read()

    def write(self, rel: str, data: bytes) -> None:
        if self.remote is not None:
            self.remote.write_bytes(rel, data)
            return
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_bytes(path, data)


def convert(src: str, dst: str, fmt: str, shard_size: int = 1 << 30,
            progress: Optional[Callable[[str], None]] = None,
            storage_options: Optional[Dict[str, Any]] = None,
            staging: Optional[str] = None) -> Dict[str, Any]:
    """Convert store ``src`` into a new store ``dst`` of format ``fmt``.

    Args:
        src: an existing store (a path, or an fsspec URL).
        dst: a new or empty directory, or a partial conversion of the same src to resume;
            or an fsspec URL (formats hdf5 and wds: shards built in ``staging``, default
            a temporary folder, and uploaded whole, index parts after their shards).
        fmt: a format name: "jpeg", "hdf5" or "wds".
        shard_size: bytes per shard (the sharded formats, "hdf5" and "wds").
        progress: called with each video id as it is copied.
        storage_options: for fsspec, for both URLs (in memory only).
        staging: local folder for shards on their way to a ``dst`` URL.
    Returns:
        {"videos": copied, "skipped": already in dst, "failures": records copied,
         "seconds": wall time}.
    Raises:
        ConfigError for a bad format or destination, StoreError when src is unreadable.
    """
    from .remote import is_url
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if is_url(dst):
        return _convert_to_url(src, dst, fmt, shard_size, progress, storage_options, staging)
    from .lock import RunLock, clean_stale
    from .store.lists import write_lists

    dst_format = registry.get(fmt)
    t0 = time.perf_counter()
    store = open_store(src if is_url(src) else os.fspath(src), storage_options)
    src_root = store.root
    dst_root = os.path.abspath(os.fspath(dst))
    if not is_url(src) and (
            os.path.realpath(dst_root) == os.path.realpath(src_root)
            or os.path.realpath(dst_root).startswith(os.path.realpath(src_root) + os.sep)):
        raise ConfigError(f"{dst}: the destination must be outside the source store {src_root}")
    src_payload = store.config.get("payload", "jpeg")
    info = _dst_info(store.info, fmt, src_root)
    payload = src_payload if src_payload in dst_format.payloads else "jpeg"
    key = info["config_key"]
    resume = False
    if os.path.exists(os.path.join(dst_root, STORE_FILE)):
        old = read_store_file(dst_root)
        if old.get("format") != fmt or old.get("config_key") != key:
            raise ConfigError(f"{dst}: already a {old.get('format')} store with another "
                              f"configuration; convert into a new directory")
        resume = True
    elif os.path.isdir(dst_root) and os.listdir(dst_root):
        raise ConfigError(f"{dst}: exists and is not empty; convert into a new directory")
    os.makedirs(dst_root, exist_ok=True)
    write_store_file(dst_root, info)
    done = published_keys(fmt, dst_root) if resume else {}
    quality = int(store.config.get("jpeg_quality", codec.DEFAULT_JPEG_QUALITY))
    with RunLock(dst_root) as lock:
        clean_stale(dst_root)
        writer = registry.get(fmt).writer(dst_root, lock.tmp_root,
                                          f"convert-{os.getpid()}-{int(time.time())}",
                                          jpeg_quality=quality, shard_size=shard_size,
                                          payload=payload)
        copied, skipped = _copy_videos(store, key, done, writer, quality, progress)
        src_place = _Place(src if is_url(src) else src_root, storage_options)
        n_fail = _copy_failures(src_place, _Place(dst_root))
        _copy_top_files(src_place, _Place(dst_root))
        write_lists(dst_root, fmt)
    return {"videos": copied, "skipped": skipped, "failures": n_fail,
            "seconds": time.perf_counter() - t0}


def _copy_videos(store, key: str, done: Dict[str, str], writer, quality: int,
                 progress: Optional[Callable[[str], None]]) -> Tuple[int, int]:
    """Copy every video of ``store`` not in ``done`` through ``writer``; (copied, skipped)."""
    copied = skipped = 0
    try:
        for vid in store.video_ids:
            meta = dict(store.meta(vid))
            if meta.get("config_key") == store.info.get("config_key"):
                meta["config_key"] = key
            if done.get(vid) == meta.get("config_key"):
                skipped += 1
                continue
            if progress:
                progress(vid)
            copy_video(store[vid], meta, writer, quality)
            copied += 1
    finally:
        writer.close()
    return copied, skipped


def _convert_to_url(src: str, dst: str, fmt: str, shard_size: int,
                    progress: Optional[Callable[[str], None]],
                    storage_options: Optional[Dict[str, Any]],
                    staging: Optional[str]) -> Dict[str, Any]:
    """convert() into a store on object storage (see flowprep.store.remote)."""
    import json
    import tempfile
    from .lock import RunLock
    from .remote import Remote, is_url
    from .store import remote as rs
    try:
        rs.check_format(fmt, Remote(dst).display)
    except Exception as exc:  # noqa: BLE001 - a StoreError, reported as bad usage
        raise ConfigError(str(exc)) from None
    t0 = time.perf_counter()
    store = open_store(src if is_url(src) else os.fspath(src), storage_options)
    remote = Remote(dst, storage_options)
    src_payload = store.config.get("payload", "jpeg")
    info = _dst_info(store.info, fmt, store.root)
    payload = src_payload if src_payload in registry.get(fmt).payloads else "jpeg"
    key = info["config_key"]
    old = rs.read_json(remote, STORE_FILE)
    if old is not None and (old.get("format") != fmt or old.get("config_key") != key):
        raise ConfigError(f"{remote.display}: already a {old.get('format')} store with another "
                          f"configuration; convert into a new prefix")
    if old is None and remote.find(""):
        raise ConfigError(f"{remote.display}: holds objects and is not a store; convert into "
                          f"a new prefix")
    root = tempfile.mkdtemp(prefix="flowprep-staging-", dir=staging)
    try:
        with RunLock(root) as lock, rs.RemoteRunLock(remote, lock.token) as rlock:
            if old is None:
                remote.write_bytes(STORE_FILE, json.dumps(info, indent=1, sort_keys=True).encode())
            rs.clean_orphans(remote, rlock.live_tokens(), fmt)
            done = rs.published_keys(remote, fmt) if old is not None else {}
            quality = int(store.config.get("jpeg_quality", codec.DEFAULT_JPEG_QUALITY))
            writer = registry.get(fmt).writer(root, lock.tmp_root, f"convert-{lock.token}",
                                              jpeg_quality=quality, shard_size=shard_size,
                                              payload=payload,
                                              publisher=rs.RemotePublisher(remote))
            copied, skipped = _copy_videos(store, key, done, writer, quality, progress)
            src_place = _Place(src if is_url(src) else store.root, storage_options)
            n_fail = _copy_failures(src_place, _Place(dst, storage_options))
            _copy_top_files(src_place, _Place(dst, storage_options))
            rs.write_lists(remote)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"videos": copied, "skipped": skipped, "failures": n_fail,
            "seconds": time.perf_counter() - t0}


def _copy_failures(src: "_Place", dst: "_Place") -> int:
    rel = f"{META_DIR}/failures"
    n = 0
    for name in src.names(rel):
        if name.endswith(".json"):
            dst.write(f"{rel}/{name}", src.read(f"{rel}/{name}"))
            n += 1
    return n


GENERATED = {STORE_FILE, "rgb_list.txt", "flow_list.txt", "wflow_list.txt", "classes.txt"}


def _copy_top_files(src: "_Place", dst: "_Place") -> List[str]:
    """Copy the user's top-level files (split lists, notes); the generated ones are rewritten."""
    copied = []
    for name in src.names(""):
        if name not in GENERATED:
            dst.write(name, src.read(name))
            copied.append(name)
    return copied


__all__ = ["convert"]
