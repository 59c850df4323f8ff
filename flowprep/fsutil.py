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
import re
import socket
import time
import uuid
from typing import Any, List, Optional

from .errors import DiskFullError, StoreError, WriteError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def storage_error(exc: BaseException) -> Optional[WriteError]:
    """The WriteError an exception stands for, or None when it is not about storage.

    Besides flowprep's own WriteError: an OSError with ENOSPC / EDQUOT / EIO, and
    errors of libraries that report the C library's errno only in their text
    (h5py raises RuntimeError("... file write failed ... errno = 28, error message =
    'No space left on device' ...")), so that a full disk stops the run whichever
    layer noticed it. Returns a DiskFullError for a full disk (or quota), a
    WriteError for an I/O error; the message is on one line.
    """
    text = str(exc)
    if isinstance(exc, WriteError):
        return type(exc)(one_line(text)) if "\n" in text else exc
    eno = getattr(exc, "errno", None)
    if eno in _FULL or "errno = 28," in text or "No space left on device" in text \
            or "Disk quota exceeded" in text:
        return DiskFullError(f"no space left on the store's filesystem ({one_line(text)})")
    if eno == errno.EIO or "errno = 5," in text or "Input/output error" in text:
        return WriteError(f"I/O error ({one_line(text)})")
    return None


def one_line(text: str) -> str:
    """h5py's multi-line "what (file write failed: time = ..., error message = 'why', ...)"
    as "what: why"; other text with its lines joined."""
    m = re.search(r"error message = '([^']*)'", text)
    if m:
        head = re.split(r"\s*\((?:file )?write failed", text, maxsplit=1, flags=re.I)[0].strip()
        out = f"{head}: {m.group(1)}" if head else m.group(1)
        return out + ")" * max(0, out.count("(") - out.count(")"))
    return " ".join(text.split())


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


class AppendFile:
    """A new file filled by appending (a shard being written), every write checked.

    Writes are buffered up to ``buffer`` bytes; ``flush`` writes them out with
    ``os.write`` until every byte landed; ``truncate(size)`` cuts the file back
    (an aborted record); ``fsync`` and ``close`` as usual. Any failure raises
    WriteError (DiskFullError for a full disk) naming the file.
    """

    def __init__(self, path: str, buffer: int = 1 << 20) -> None:
        self.path = path
        self.size = 0  # bytes written, buffered ones included
        self._buf: List[bytes] = []
        self._buffered = 0
        self._limit = int(buffer)
        try:
            self._fd: Optional[int] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise _write_error(path, exc) from None

    def write(self, data: bytes) -> None:
        self._buf.append(bytes(data))
        self._buffered += len(data)
        self.size += len(data)
        if self._buffered >= self._limit:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        view = memoryview(b"".join(self._buf))
        self._buf, self._buffered = [], 0
        try:
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes (at most what was written)."""
        self.flush()
        try:
            os.ftruncate(self._fd, int(size))
            os.lseek(self._fd, int(size), os.SEEK_SET)
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        self.size = int(size)

    def fsync(self) -> None:
        self.flush()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def close(self) -> None:
        """Flush and close; after a failure the descriptor is closed all the same."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)

    def discard(self) -> None:
        """Close without writing what is buffered."""
        self._buf, self._buffered = [], 0
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


_HOST = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
#: ".<name>.tmp-<host>-<pid>-<8 hex>": hidden (never listed as a video or an index part)
_TMP_RE = re.compile(r"^\..+\.tmp-(?P<host>[A-Za-z0-9._-]+)-(?P<pid>\d+)-[0-9a-f]{8}$")
#: a temporary file this old is left over whoever wrote it (a write takes milliseconds)
STALE_TMP_SECONDS = 3600.0


def temp_name(path: str) -> str:
    """The hidden temporary name ``atomic_write_bytes`` writes ``path`` under first."""
    d, base = os.path.split(path)
    return os.path.join(d, f".{base}.tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    """True while process ``pid`` of this host runs; a zombie (dead, not yet reaped: e.g. a
    worker killed with its run, reparented to an init that reaps late) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[:1]
    except OSError:  # no procfs (macOS): alive as far as can be told; else it just exited
        return not os.path.isdir("/proc/self")
    return state not in ([b"Z"], [b"X"])


def stale_temp_files(directory: str, now: float = 0.0) -> List[str]:
    """Leftover temporary files of ``atomic_write_bytes`` in ``directory`` (paths).

    Left over: written by a process of this host that is gone, or older than
    STALE_TMP_SECONDS (another host's writer cannot be asked).
    """
    out: List[str] = []
    now = now or time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return out
    for e in entries:
        m = _TMP_RE.match(e.name)
        if not m or not e.is_file(follow_symlinks=False):
            continue
        try:
            old = now - e.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS
        except OSError:
            continue
        if old or (m.group("host") == _HOST and not _pid_alive(int(m.group("pid")))):
            out.append(e.path)
    return out


def atomic_write_bytes(path: str, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` beside ``path`` under a hidden temporary name, then rename over it.

    A crash leaves either the old file or the new one at ``path``, plus at worst
    the hidden temporary (``stale_temp_files`` finds it; each run removes them).
    """
    tmp = temp_name(path)
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


def _libc_function(name: str, argtypes: list):
    """A libc function through ctypes, or None where this C library lacks it."""
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


_syncfs = None


def open_dir(path: str) -> int:
    """A read-only descriptor of the directory ``path`` (for sync_filesystem / fsync_dir)."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def sync_filesystem(fd: int, what: str) -> None:
    """Write back every dirty page and inode of the filesystem holding ``fd`` (syncfs(2)).

    One call instead of an fsync per file: a JPEG video is hundreds of files.
    Linux (5.8+) reports the write-back errors of that filesystem that happened
    since ``fd`` was opened, so a descriptor opened before the files were
    written turns a failed write-back of any of them into a WriteError
    (DiskFullError for ENOSPC) naming ``what``, instead of a published video
    whose frames never reached the disk. Where syncfs is missing, os.sync().
    """
    global _syncfs
    if _syncfs is None:
        import ctypes
        _syncfs = _libc_function("syncfs", [ctypes.c_int]) or False
    if not _syncfs:
        os.sync()
        return
    if _syncfs(fd) != 0:
        import ctypes
        err = ctypes.get_errno()
        raise _write_error(what, OSError(err, os.strerror(err)))


def fsync_dir(path: str) -> None:
    """fsync a directory, so that renames into it survive a power loss (best effort)."""
    try:
        fd = open_dir(path)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_renameat2 = None


def exchange(a: str, b: str) -> bool:
    """Atomically swap the paths ``a`` and ``b`` (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the system or filesystem cannot (not Linux, an old
    kernel or C library, NFS): the caller falls back to two renames.
    """
    global _renameat2
    if _renameat2 is None:
        import ctypes
        _renameat2 = _libc_function("renameat2", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                                  ctypes.c_char_p, ctypes.c_uint]) or False
    if not _renameat2:
        return False
    at_fdcwd = -100
    if _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", 95)):
        return False
    raise OSError(err, os.strerror(err), b)


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
