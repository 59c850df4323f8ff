"""Run locks and leftover cleanup, with flock (released by the kernel when a run dies).

    OUT/.flowprep/locks/extract.lock          shared by sharded runs, exclusive for a whole run
    OUT/.flowprep/locks/part-I-of-N.lock      exclusive: one run per shard part
    OUT/.flowprep/locks/count-N.lock          shared by the runs of an I/N split: a run with
                                              another N (whose parts overlap) is refused
    OUT/.flowprep/locks/run-<token>.lock      held while run <token> lives; its staging
                                              area OUT/.flowprep/tmp/<token>/ is stale once free
    OUT/.flowprep/locks/workers-<token>.lock  shared by the worker processes of run <token>
                                              while they may write into its staging area (a
                                              worker of a killed run dies moments after it)
    OUT/.flowprep/locks/store.lock            exclusive, held for moments: read-modify-write
                                              of store-level files (flowprep.json, the lists)

flock works across the nodes of a cluster on NFSv4 and on Lustre/GPFS mounted
with flock support (Lustre: the ``flock`` mount option); see docs/cluster.md.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import time
import uuid
from typing import Iterator, List, Optional

from .errors import LockedError, StoreError
from .fsutil import stale_temp_files
from .store.base import META_DIR


_BUSY = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}


def _flock(path: str, exclusive: bool, block: bool = False) -> Optional[int]:
    """An fd holding a flock on ``path``; None when another process holds a conflicting one.

    Raises StoreError when the filesystem does not support flock (e.g. Lustre
    mounted without ``-o flock``): running without locks would not be safe.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                    | (0 if block else fcntl.LOCK_NB))
    except OSError as exc:
        os.close(fd)
        if exc.errno in _BUSY:
            return None
        raise StoreError(
            f"{path}: cannot take a file lock ({exc.strerror or exc}); flowprep needs flock "
            f"on the store's filesystem to run several jobs into one store safely (NFSv4 has "
            f"it; Lustre needs the 'flock' mount option; see docs/cluster.md)") from None
    return fd


def _held(path: str) -> bool:
    """True when some live process holds a lock on ``path`` (probed, not kept)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe lock, if it was taken
    return False


@contextlib.contextmanager
def store_lock(root: str) -> Iterator[None]:
    """Exclusive lock for a short read-modify-write of store-level files (blocks until free).

    Concurrent shard runs and ``flowprep index`` serialize through it; when the
    lock directory cannot be created (a read-only store) it is a no-op.
    """
    d = os.path.join(root, META_DIR, "locks")
    try:
        os.makedirs(d, exist_ok=True)
        fd = _flock(os.path.join(d, "store.lock"), exclusive=True, block=True)
    except OSError:
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def setup_error(root: str, exc: OSError) -> StoreError:
    """The error for a store whose run files (locks, staging area) cannot be created."""
    what = f"cannot create the run's lock and staging files in {root}"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        from .errors import DiskFullError
        return DiskFullError(f"no space left on the store's filesystem: {what} "
                             f"({exc.strerror}); free some space and rerun the same command")
    return StoreError(f"{what} ({exc.strerror or exc})")


class RunLock:
    """Held for the lifetime of one extract run on ``root`` (shard ``index`` of ``count``)."""

    def __init__(self, root: str, index: int = 0, count: int = 1) -> None:
        try:
            self._acquire(root, index, count)
        except OSError as exc:  # a full disk (no inodes for the lock files), a read-only store
            for fd in getattr(self, "_fds", []):
                os.close(fd)
            self._fds = []
            raise setup_error(root, exc) from None

    def _acquire(self, root: str, index: int, count: int) -> None:
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
            # Parts of different splits overlap: take ours (shared, blocking: others only
            # probe it for a moment), then refuse if a split with another N is running.
            fd = _flock(os.path.join(self.dir, f"count-{count}.lock"), exclusive=False, block=True)
            assert fd is not None
            self._fds.append(fd)
            for name in sorted(os.listdir(self.dir)):
                m = re.fullmatch(r"count-(\d+)\.lock", name)
                if m and int(m.group(1)) != count and _held(os.path.join(self.dir, name)):
                    self.release()
                    raise LockedError(
                        f"{root}: another flowprep extract is running this store split into "
                        f"{m.group(1)} parts; parts of an I/{count} split would overlap with "
                        f"it: use --shard I/{m.group(1)}, or wait for it to finish")
            fd = _flock(os.path.join(self.dir, f"part-{index}-of-{count}.lock"), exclusive=True)
            if fd is None:
                self.release()
                raise LockedError(
                    f"{root}: another flowprep extract is already running shard {index}/{count}")
            self._fds.append(fd)
        # blocking: others_alive() and clean_stale() may be probing it for a moment
        fd = _flock(os.path.join(self.dir, f"run-{self.token}.lock"), exclusive=True, block=True)
        assert fd is not None
        self._fds.append(fd)
        self.tmp_root = os.path.join(root, META_DIR, "tmp", self.token)
        os.makedirs(self.tmp_root, exist_ok=True)

    def others_alive(self) -> bool:
        """True when another extract run on this store (another shard part) is alive."""
        own = f"run-{self.token}.lock"
        try:
            names = os.listdir(self.dir)
        except OSError:
            return False
        return any(n.startswith("run-") and n.endswith(".lock") and n != own
                   and _held(os.path.join(self.dir, n)) for n in names)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        shutil.rmtree(getattr(self, "tmp_root", ""), ignore_errors=True) if hasattr(self, "tmp_root") else None
        release_worker_holds(self.token)  # a writer in the run's own process
        for name in (f"run-{self.token}.lock", f"workers-{self.token}.lock"):
            try:
                os.unlink(os.path.join(self.dir, name))
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def clean_stale(root: str) -> List[str]:
    """Remove what runs that are no longer alive left behind; returns what was removed.

    - their staging areas OUT/.flowprep/tmp/<token>/ (videos being written);
    - shards (HDF5, wds) no index part names (a run killed between sealing a shard and
      writing its index part: the shard's videos were never published);
    - hidden temporary files of atomic writes (``fsutil.stale_temp_files``) in
      OUT, OUT/index and OUT/.flowprep/failures.
    """
    tmp = os.path.join(root, META_DIR, "tmp")
    locks = os.path.join(root, META_DIR, "locks")
    removed = []
    for d in (root, os.path.join(root, "index"), os.path.join(root, "index", "members"),
              os.path.join(root, META_DIR, "failures")):
        for path in stale_temp_files(d):
            try:
                os.unlink(path)
                removed.append(os.path.relpath(path, root))
            except OSError:
                pass
    # staging areas first: a worker of a dead run still dying (SIGKILL on its way) can then
    # seal nothing more into OUT/shards, whose orphans are looked for next
    removed.extend(_clean_staging(tmp, locks))
    removed.extend(_clean_orphan_shards(root, locks))
    return removed


def _clean_staging(tmp: str, locks: str) -> List[str]:
    """Delete the staging areas OUT/.flowprep/tmp/<token>/ of runs no longer alive, once
    no worker of theirs is left (waited for up to DYING_WORKER_SECONDS; a worker still
    there after that keeps its run's staging area for a later run to remove)."""
    if not os.path.isdir(tmp):
        return []
    removed = []
    for token in os.listdir(tmp):
        lock_path = os.path.join(locks, f"run-{token}.lock")
        run_fd = _flock(lock_path, exclusive=True)
        if run_fd is None:
            continue  # that run is alive
        workers_path = _workers_lock(locks, token)
        workers_fd = _poll(lambda: _flock(workers_path, exclusive=True))
        try:
            if workers_fd is None:
                continue  # a worker of it still writes (a dask worker, a hung process)
            shutil.rmtree(os.path.join(tmp, token), ignore_errors=True)
            removed.append(token)
            for path in (lock_path, workers_path):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        finally:
            for fd in (run_fd, workers_fd):
                if fd is not None:
                    os.close(fd)
    return removed


def _workers_lock(locks: str, token: str) -> str:
    return os.path.join(locks, f"workers-{token}.lock")


def _poll(ready, wait: Optional[float] = None):
    """``ready()``'s first answer other than None or False (an fd may be 0), asked every
    50 ms for up to ``wait`` seconds (DYING_WORKER_SECONDS by default: what a killed
    run's workers get to exit); its last answer when none was."""
    deadline = time.monotonic() + (DYING_WORKER_SECONDS if wait is None else wait)
    while True:
        got = ready()
        if (got is not None and got is not False) or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


_worker_holds: dict = {}  # staging area -> fd of this process's shared workers lock


def hold_as_worker(root: str, tmp_root: str) -> None:
    """Mark this process as a worker of the run whose staging area is ``tmp_root``
    (OUT/.flowprep/tmp/<token>): a shared lock on OUT/.flowprep/locks/workers-<token>.lock,
    which the kernel releases when the process dies. The next run removes that staging
    area only once no worker holds it (``clean_stale``): a worker of a run killed with
    SIGKILL may still be finishing a write for a moment. Idempotent; a no-op where the
    lock cannot be taken (then only the run's own lock protects the area)."""
    if tmp_root in _worker_holds:
        return
    locks = os.path.join(root, META_DIR, "locks")
    try:
        fd = _flock(_workers_lock(locks, os.path.basename(tmp_root)), exclusive=False)
    except (OSError, StoreError):
        return
    if fd is not None:
        _worker_holds[tmp_root] = fd


def release_worker_holds(token: str) -> None:
    """This process writes no more into the staging areas of run ``token`` (a dask worker
    whose run ended, the run's own process): let a later run remove them."""
    for tmp_root in [t for t in _worker_holds if os.path.basename(t) == token]:
        os.close(_worker_holds.pop(tmp_root))


#: an unindexed shard this old, of a run no longer alive, is left over whoever wrote it
ORPHAN_SHARD_SECONDS = 3600.0
#: how long a local worker of a run no longer alive is waited for (it dies with its run:
#: the kernel's SIGKILL reaches it moments later); alive after that, its shard is kept
DYING_WORKER_SECONDS = 5.0
#: a shard written by a local worker: <token>-w<index>-<pid>-<seq>.h5 (token starts with the host)
_LOCAL_SHARD = re.compile(r"-w\d+-(?P<pid>\d+)-\d+\.(h5|tar)$")


def _live_tokens(locks: str) -> List[str]:
    try:
        names = os.listdir(locks)
    except OSError:
        return []
    return [n[len("run-"):-len(".lock")] for n in names
            if n.startswith("run-") and n.endswith(".lock") and _held(os.path.join(locks, n))]


def _gone(pid: int) -> bool:
    """True once local process ``pid`` (a worker of a run no longer alive) has exited,
    polled up to DYING_WORKER_SECONDS: killed with its run, it may still be exiting (a
    run killed with SIGKILL takes its fork server, then the server its workers)."""
    from .fsutil import _pid_alive
    return _poll(lambda: not _pid_alive(pid))


def _clean_orphan_shards(root: str, locks: str) -> List[str]:
    """Delete shards (OUT/shards/*.h5, *.tar) that no index part names and nobody will.

    A shard is renamed into OUT/shards when sealed and named by its index part
    a moment later; a run killed in between leaves it unnamed (its videos were
    never published, so resume redoes them). It is deleted when its run is not
    alive and either its writer was a local worker process of this host that is
    gone (workers die with their run: one still exiting is waited for, up to
    DYING_WORKER_SECONDS; a zombie counts as gone) or it is ORPHAN_SHARD_SECONDS old (writers
    elsewhere, e.g. dask workers, cannot be asked). Shards of live runs are kept.
    The index is read after those checks: a writer that was gone when checked
    cannot add an index part later. Nothing is deleted while any index part is
    unreadable (it might name the shard).
    """
    from .fsutil import _HOST
    shard_dir = os.path.join(root, "shards")
    from .store import registry, shards
    exts = tuple(f.shard_ext for f in map(registry.get, registry.names()) if f.sharded)
    try:
        names = [n for n in os.listdir(shard_dir) if n.endswith(exts)]
    except OSError:
        return []
    if not names:
        return []
    live = [shards.safe_tag(t) + "-" for t in _live_tokens(locks)]
    now = time.time()
    candidates = []
    for name in names:
        if any(name.startswith(prefix) for prefix in live):
            continue
        m = _LOCAL_SHARD.search(name)
        if m and name.startswith(_HOST + "-") and _gone(int(m.group("pid"))):
            candidates.append(name)
            continue
        try:
            if now - os.stat(os.path.join(shard_dir, name)).st_mtime > ORPHAN_SHARD_SECONDS:
                candidates.append(name)
        except OSError:
            continue
    if not candidates:
        return []
    parts, errors = shards.read_index_parts(root)
    if errors:
        return []
    named = {str(p["shard"]) for p in parts}
    removed = []
    for name in candidates:
        if name in named:
            continue
        try:
            os.unlink(os.path.join(shard_dir, name))
            removed.append(f"shards/{name}")
        except OSError:
            continue
        # a wds shard's member table, written between the shard and its index part
        table = os.path.join(root, "index", "members", os.path.splitext(name)[0] + ".json")
        try:
            os.unlink(table)
            removed.append(os.path.relpath(table, root))
        except OSError:
            pass
    return removed
