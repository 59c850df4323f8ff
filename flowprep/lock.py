"""Run locks and leftover cleanup, with flock (released by the kernel when a run dies).

    OUT/.flowprep/locks/extract.lock          shared by sharded runs, exclusive for a whole run
    OUT/.flowprep/locks/part-I-of-N.lock      exclusive: one run per shard part
    OUT/.flowprep/locks/run-<token>.lock      held while run <token> lives; its staging
                                              area OUT/.flowprep/tmp/<token>/ is stale once free
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import uuid
from typing import List, Optional

from .errors import LockedError
from .store.base import META_DIR


def _flock(path: str, exclusive: bool) -> Optional[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class RunLock:
    """Held for the lifetime of one extract run on ``root`` (shard ``index`` of ``count``)."""

    def __init__(self, root: str, index: int = 0, count: int = 1) -> None:
        self.root = root
        self.dir = os.path.join(root, META_DIR, "locks")
        os.makedirs(self.dir, exist_ok=True)
        self.token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._fds: List[int] = []
        whole = count == 1
        fd = _flock(os.path.join(self.dir, "extract.lock"), exclusive=whole)
        if fd is None:
            raise LockedError(
                f"{root}: another flowprep extract is running on this store"
                + ("" if whole else " over all of its inputs")
                + "; wait for it to finish, or split the work into disjoint --shard I/N parts")
        self._fds.append(fd)
        if not whole:
            fd = _flock(os.path.join(self.dir, f"part-{index}-of-{count}.lock"), exclusive=True)
            if fd is None:
                self.release()
                raise LockedError(
                    f"{root}: another flowprep extract is already running shard {index}/{count}")
            self._fds.append(fd)
        fd = _flock(os.path.join(self.dir, f"run-{self.token}.lock"), exclusive=True)
        assert fd is not None
        self._fds.append(fd)
        self.tmp_root = os.path.join(root, META_DIR, "tmp", self.token)
        os.makedirs(self.tmp_root, exist_ok=True)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        shutil.rmtree(getattr(self, "tmp_root", ""), ignore_errors=True) if hasattr(self, "tmp_root") else None
        try:
            os.unlink(os.path.join(self.dir, f"run-{self.token}.lock"))
        except OSError:
            pass

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def clean_stale(root: str) -> List[str]:
    """Remove staging areas of runs that are no longer alive; returns what was removed."""
    tmp = os.path.join(root, META_DIR, "tmp")
    locks = os.path.join(root, META_DIR, "locks")
    removed = []
    if not os.path.isdir(tmp):
        return removed
    for token in os.listdir(tmp):
        lock_path = os.path.join(locks, f"run-{token}.lock")
        fd = _flock(lock_path, exclusive=True)
        if fd is None:
            continue  # that run is alive
        try:
            shutil.rmtree(os.path.join(tmp, token), ignore_errors=True)
            removed.append(token)
            os.unlink(lock_path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed
