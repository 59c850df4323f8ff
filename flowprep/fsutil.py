"""Checked, atomic file writes and store-relative path safety.

Every byte flowprep writes goes through ``write_bytes``: the count written is
checked (a short write is an error, unlike cv2.imwrite's bare True), and
ENOSPC / EDQUOT become DiskFullError so a run can stop early instead of
failing every remaining video slowly.
"""
from __future__ import annotations

import errno
import json
import os
import uuid
from typing import Any

from .errors import DiskFullError, StoreError, WriteError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_error(path: str, exc: OSError) -> WriteError:
    if exc.errno in _FULL:
        return DiskFullError(f"{path}: no space left on the store's filesystem ({exc.strerror})")
    return WriteError(f"{path}: write failed ({exc.strerror or exc})")


def write_bytes(path: str, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to a new file at ``path``, checking every byte landed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from None
    size = os.path.getsize(path)
    if size != len(data):
        raise WriteError(f"{path}: wrote {size} of {len(data)} bytes")


def atomic_write_bytes(path: str, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` beside ``path`` under a temporary name, then rename over it."""
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write_bytes(tmp, data, fsync=fsync)
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_json(path: str, obj: Any) -> None:
    """JSON-encode ``obj`` (sorted keys, indented) and write it atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: str) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read().decode())


def safe_join(root: str, rel: str) -> str:
    """``root/rel`` after checking rel cannot leave root ('..', absolute, empty parts)."""
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"{rel!r}: not a safe relative path inside the store")
    path = os.path.join(root, *parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise StoreError(f"{rel!r}: resolves outside the store ({real})")
    return path
