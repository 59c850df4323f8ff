"""Stores by format: ``open_store`` reads the format from the store itself.

The formats are registered by name in :mod:`flowprep.store.registry` (one
subpackage each: jpeg, hdf5, wds); everything here dispatches through it.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from ..errors import ConfigError, StoreError
from . import registry
from .base import STORE_FILE, Store, StoreWriter, Video, read_failures, read_store_file

FORMATS = registry.names()


def open_store(path: str, storage_options: Optional[Dict[str, Any]] = None) -> Store:
    """Open a store for reading; the reader is chosen by the store's flowprep.json.

    ``path`` may be an fsspec URL (s3://, gs://, ...): ``storage_options`` then go to
    fsspec (see flowprep.remote); they are ignored for a local path.
    """
    from ..remote import is_url, local_path
    if is_url(path):
        from .remote import open_remote_store
        return open_remote_store(path, storage_options)
    path = local_path(os.fspath(path))
    info = read_store_file(os.fspath(path))
    fmt = info.get("format")
    try:
        return registry.get(fmt).open(path)
    except ConfigError:
        raise StoreError(f"{path}: unknown store format {fmt!r} in {STORE_FILE}") from None


def open_writer(fmt: str, root: str, tmp_root: str, worker_tag: str, **options: Any) -> StoreWriter:
    """A worker's writer into ``root``.

    Args:
        fmt: a registered format name ("jpeg", "hdf5", "wds").
        root: the store directory (OUT).
        tmp_root: a directory of this run's inside OUT/.flowprep/tmp for staging.
        worker_tag: unique name of the writing worker (names its shards).
        options: jpeg_quality; for the sharded formats also shard_size (and payload, HDF5).
    """
    return registry.get(fmt).writer(root, tmp_root, worker_tag, **options)


def published_keys(fmt: str, root: str) -> Dict[str, str]:
    """video_id -> config_key of every complete published video (for resume)."""
    if not os.path.isfile(os.path.join(root, STORE_FILE)):
        return {}
    return registry.get(fmt).published_keys(root)


__all__ = ["open_store", "open_writer", "published_keys", "Store", "Video", "StoreWriter",
           "read_failures", "FORMATS", "registry"]
