"""Stores by format: ``open_store`` reads the format from the store itself."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from ..errors import ConfigError, StoreError
from .base import STORE_FILE, Store, StoreWriter, Video, read_failures, read_store_file

FORMATS = ("jpeg", "hdf5")


def open_store(path: str, storage_options: Optional[Dict[str, Any]] = None) -> Store:
    """Open a store for reading; the reader is chosen by the store's flowprep.json.

    ``path`` may be an fsspec URL (s3://, gs://, ...): ``storage_options`` then go to
    fsspec (see flowprep.remote); they are ignored for a local path.
    """
    from ..remote import is_url, local_path
    if is_url(path):
        from .remote import RemoteHdf5Store, read_store_info
        from ..remote import Remote
        fmt = read_store_info(Remote(path, storage_options)).get("format")
        if fmt == "hdf5":
            return RemoteHdf5Store(path, storage_options)
        raise StoreError(f"{Remote(path).display}: {fmt!r} stores cannot be read from object "
                         f"storage")
    path = local_path(os.fspath(path))
    info = read_store_file(os.fspath(path))
    fmt = info.get("format")
    if fmt == "jpeg":
        from .jpeg import JpegStore
        return JpegStore(path)
    if fmt == "hdf5":
        from .hdf5 import Hdf5Store
        return Hdf5Store(path)
    raise StoreError(f"{path}: unknown store format {fmt!r} in {STORE_FILE}")


def open_writer(fmt: str, root: str, tmp_root: str, worker_tag: str, **options: Any) -> StoreWriter:
    """A worker's writer into ``root``.

    Args:
        fmt: "jpeg" or "hdf5".
        root: the store directory (OUT).
        tmp_root: a directory of this run's inside OUT/.flowprep/tmp for staging.
        worker_tag: unique name of the writing worker (names its HDF5 shards).
        options: jpeg_quality; for hdf5 also shard_size and payload.
    """
    if fmt == "jpeg":
        from .jpeg import JpegStoreWriter
        return JpegStoreWriter(root, tmp_root, jpeg_quality=options.get("jpeg_quality", 95))
    if fmt == "hdf5":
        from .hdf5 import Hdf5StoreWriter
        return Hdf5StoreWriter(root, tmp_root, worker_tag, **options)
    raise ConfigError(f"unknown store format {fmt!r}; choose one of {', '.join(FORMATS)}")


def published_keys(fmt: str, root: str) -> dict:
    """video_id -> config_key of every complete published video (for resume)."""
    if not os.path.isfile(os.path.join(root, STORE_FILE)):
        return {}
    if fmt == "jpeg":
        from .jpeg import list_video_dirs, is_published
        from ..fsutil import read_json
        out = {}
        for vid in list_video_dirs(root):
            try:
                meta = read_json(os.path.join(root, vid, "meta.json"))
            except (OSError, ValueError):
                continue
            key = meta.get("config_key")
            if is_published(root, vid, key):
                out[vid] = key
        return out
    from .hdf5 import published_keys as h5_keys
    return h5_keys(root)


__all__ = ["open_store", "open_writer", "published_keys", "Store", "Video", "StoreWriter",
           "read_failures", "FORMATS"]
