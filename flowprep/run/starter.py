"""How the local runner starts its worker processes: from a fork server, or spawned.

spawn (the only way before issue 21): every worker is a fresh interpreter that imports
flowprep, OpenCV, NumPy and PyAV before its first video, ~0.3-0.45 CPU-s a process, paid
again by every replacement worker.

forkserver (the default where the platform has it, Linux and macOS): one fresh
interpreter, the fork server, imports those modules once and forks every worker from
itself. It is started as the run begins, so its imports overlap the parent's: by
`flowprep extract` before the CLI imports the run modules (``begin_early``: cli/main.py
imports commands on first use and flowprep/__init__.py imports nothing heavy), and by
``flowprep.extract`` before inputs are discovered and the store is locked (``begin``).
It is stopped when the run ends (``end``), so:

- workers see the environment of the run that started them, as spawn workers do
  (FLOWPREP_TEST_HOOK, an LD_PRELOAD fault shim, CUDA_VISIBLE_DEVICES...);
- nothing of flowprep stays running in a program that called ``flowprep.extract``;
- a fork server the program started itself (a "forkserver" pool of its own) is left
  alone and the run spawns its workers: that server's environment and imports are
  not the run's (its workers would miss e.g. the run's credentials).

Fork safety: the fork server is a fresh process that only imports modules (``PRELOAD``);
no video is opened, no flow computed, no store touched there. It is started with
OPENBLAS_NUM_THREADS=1 (whatever the run's environment says) so that importing NumPy
and OpenCV, each with its own OpenBLAS, starts no thread pool in it: the server is
single-threaded when it forks (tests/test_startup.py checks it). The workers' use of BLAS is 2x2 and 3x3 matrices
(--warped), which OpenBLAS computes on the calling thread anyway: the stored bytes are
those of a spawn worker (tests/compare_with_base.py).

A worker's parent is then the fork server, not the run's process: the worker asks the
kernel for SIGKILL when the server dies (PR_SET_PDEATHSIG) and closes its copy of the
server's "alive" pipe, whose last writer is then the run's process, so a run killed
with SIGKILL takes the server (end of file on that pipe) and so every worker with it.
A fork server killed on its own takes its workers too: their videos fail as crashed
("exit code 255"), the rest of the run goes on from a fresh server (tests/test_isolation.py).

FLOWPREP_START_METHOD=spawn|forkserver chooses (default forkserver where available).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from typing import List, Optional

from ..errors import ConfigError

#: environment variable choosing how workers start
START_ENV = "FLOWPREP_START_METHOD"
METHODS = ("forkserver", "spawn")

#: imported once in the fork server (an ImportError is ignored: PyAV, h5py are optional);
#: "__main__": the program's main script, which spawn and fork-server children import.
#: No torch: a torch worker imports it itself (its thread pools and CUDA stay per worker).
PRELOAD: List[str] = ["__main__", "flowprep.run.local", "flowprep.run.pipeline", "flowprep.run.chunks",
                      "flowprep.run.faults", "flowprep.flow.native_tvl1",
                      "flowprep.flow.opencv_cpu", "av", "av.video.reformatter"]

#: the fork server's environment (whatever the run's says: it must fork single-threaded)
_SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1"}

def preload_for(fmt: str) -> List[str]:
    """What the fork server imports besides PRELOAD for a store of format ``fmt``."""
    return [f"flowprep.store.{fmt}"] + (["h5py"] if fmt == "hdf5" else [])


_owned = False  # this module started the running fork server (and stops it)
_holds = 0  # runs of this process using it now (threads may run several): stopped at 0
_lock = threading.Lock()


def start_method(value: Optional[str] = None) -> str:
    """"forkserver" or "spawn": FLOWPREP_START_METHOD (or ``value``), else forkserver where
    the platform has it. ConfigError naming the variable for anything else."""
    text = (os.environ.get(START_ENV, "") if value is None else value).strip().lower()
    available = mp.get_all_start_methods()
    if not text or text == "auto":
        return "forkserver" if "forkserver" in available else "spawn"
    if text not in METHODS:
        raise ConfigError(f"{START_ENV} must be forkserver, spawn or auto, got {text!r}")
    if text not in available:
        raise ConfigError(f"{START_ENV}={text}: this platform starts processes with "
                          f"{', '.join(available)} only")
    return text


def _server():
    """multiprocessing's fork server object (one a process), or None."""
    try:
        from multiprocessing import forkserver
    except ImportError:  # pragma: no cover - no fork server on this platform
        return None
    return getattr(forkserver, "_forkserver", None)


def server_pid() -> int:
    """The running fork server's pid, 0 when none runs."""
    srv = _server()
    return int(getattr(srv, "_forkserver_pid", None) or 0)


def begin(method: str, extra: Optional[List[str]] = None, hold: bool = False) -> None:
    """Start the fork server now (``method`` forkserver and none running), so that its
    imports overlap what the parent does before it starts workers. ``extra``: more
    modules to import there (the store format's writer); ``hold``: a run starts, which
    ``end`` ends (the server is stopped when no run holds it). Idempotent."""
    global _holds
    srv = _server()
    if method != "forkserver" or srv is None:
        return
    with _lock:
        _start(srv, extra)
        _holds += bool(hold)


def _foreign() -> bool:
    """A fork server runs that this module did not start (the program's own)."""
    return bool(server_pid()) and not _owned


def _start(srv, extra: Optional[List[str]]) -> None:
    global _owned
    if _foreign():
        return  # the program's own fork server: left alone, the run spawns
    was = server_pid()  # running, or dead (then started again here, the same way)
    previous = list(getattr(srv, "_preload_modules", ["__main__"]))
    srv.set_forkserver_preload(PRELOAD + list(extra or []))
    saved = {k: os.environ.get(k) for k in _SERVER_ENV}
    try:
        os.environ.update(_SERVER_ENV)
        srv.ensure_running()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        srv.set_forkserver_preload(previous)
    if not was:
        _owned = bool(server_pid())


def begin_early() -> None:
    """``begin`` for `flowprep extract`, called before the CLI imports flowprep's run
    modules (cli/main.py): where FLOWPREP_START_METHOD is not usable, nothing (extract()
    reports it). The server is stopped at exit if no run stopped it (a usage error)."""
    import atexit
    try:
        method = start_method()
    except ConfigError:
        return
    begin(method)
    atexit.register(end, True)


def worker_server(method: str) -> int:
    """The pid of the fork server the next worker comes from (started again if it died),
    0 for a spawned worker."""
    if method != "forkserver":
        return 0
    begin(method)
    return 0 if _foreign() else server_pid()


def context(method: str):
    """The multiprocessing context workers start from (the fork server started if needed;
    spawn where the program runs a fork server of its own)."""
    begin(method)
    return mp.get_context("spawn" if method == "forkserver" and _foreign() else method)


def end(force: bool = False) -> None:
    """A run that ``begin(hold=True)`` started ends: stop the fork server ``begin`` started
    once no run holds it (a no-op for a server this module did not start). ``force``: at
    exit, whatever holds it."""
    global _owned, _holds
    with _lock:
        _holds = 0 if force else max(0, _holds - 1)
        srv = _server()
        if not _owned or srv is None or _holds:
            return
        _owned = False
        _stop(srv)


def _stop(srv) -> None:
    pid, stop = server_pid(), getattr(srv, "_stop", None)
    if not pid or stop is None:  # pragma: no cover - gone, or another Python
        return
    try:
        # SIGKILL: it may still be importing (a run with nothing to do), and it would
        # read its "alive" pipe only when done; no worker of the run is left
        os.kill(pid, signal.SIGKILL)
    except OSError:  # pragma: no cover - already gone
        pass
    try:
        stop()  # closes the pipe, reaps it
    except (OSError, ChildProcessError):  # pragma: no cover - already reaped
        pass


def in_worker(parent: int, server: int) -> None:
    """First thing a worker does: die with whoever started it (Linux), see the module doc.

    ``parent``: the run's pid; ``server``: the fork server's pid (0: a spawn worker, whose
    parent is the run's process). Exits at once when that parent is already gone.
    """
    import ctypes
    import ctypes.util
    import sys
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover
        return
    if server:
        srv = _server()
        fd = getattr(srv, "_forkserver_alive_fd", None)
        if fd is not None:  # the run's process keeps the server alive, not its workers
            srv._forkserver_alive_fd = None
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass
    if os.getppid() != (server or parent):  # it died before the request took effect
        os._exit(1)
