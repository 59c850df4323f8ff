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
from typing import Any, Callable, Dict, List, Optional

from .errors import ConfigError
from .store import FORMATS, open_store, published_keys, registry
from .store import codec
from .store.base import META_DIR, STORE_FILE, config_key, read_store_file, write_store_file
from .store.copy import copy_video


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


def convert(src: str, dst: str, fmt: str, shard_size: int = 1 << 30,
            progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Convert store ``src`` into a new store ``dst`` of format ``fmt``.

    Args:
        src: an existing store.
        dst: a new or empty directory, or a partial conversion of the same src to resume.
        fmt: a format name: "jpeg", "hdf5" or "wds".
        shard_size: bytes per shard (the sharded formats, "hdf5" and "wds").
        progress: called with each video id as it is copied.
    Returns:
        {"videos": copied, "skipped": already in dst, "failures": records copied,
         "seconds": wall time}.
    Raises:
        ConfigError for a bad format or destination, StoreError when src is unreadable.
    """
    from .lock import RunLock, clean_stale
    from .store.lists import write_lists

    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    dst_format = registry.get(fmt)
    t0 = time.perf_counter()
    store = open_store(src)
    src_root = store.root
    dst_root = os.path.abspath(os.fspath(dst))
    if os.path.realpath(dst_root) == os.path.realpath(src_root) or \
            os.path.realpath(dst_root).startswith(os.path.realpath(src_root) + os.sep):
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
    copied, skipped = 0, 0
    with RunLock(dst_root) as lock:
        clean_stale(dst_root)
        writer = registry.get(fmt).writer(dst_root, lock.tmp_root,
                                          f"convert-{os.getpid()}-{int(time.time())}",
                                          jpeg_quality=quality, shard_size=shard_size,
                                          payload=payload)
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
        n_fail = _copy_failures(src_root, dst_root)
        _copy_top_files(src_root, dst_root)
        write_lists(dst_root, fmt)
    return {"videos": copied, "skipped": skipped, "failures": n_fail,
            "seconds": time.perf_counter() - t0}


def _copy_failures(src: str, dst: str) -> int:
    d = os.path.join(src, META_DIR, "failures")
    if not os.path.isdir(d):
        return 0
    out = os.path.join(dst, META_DIR, "failures")
    os.makedirs(out, exist_ok=True)
    n = 0
    for name in sorted(os.listdir(d)):
        if name.endswith(".json"):
            shutil.copyfile(os.path.join(d, name), os.path.join(out, name))
            n += 1
    return n


GENERATED = {STORE_FILE, "rgb_list.txt", "flow_list.txt", "wflow_list.txt", "classes.txt"}


def _copy_top_files(src: str, dst: str) -> List[str]:
    """Copy the user's top-level files (split lists, notes); the generated ones are rewritten."""
    copied = []
    for e in os.scandir(src):
        if e.is_file(follow_symlinks=False) and e.name not in GENERATED \
                and not e.name.startswith(".") and ".tmp-" not in e.name:
            shutil.copyfile(e.path, os.path.join(dst, e.name))
            copied.append(e.name)
    return copied


__all__ = ["convert"]
