"""Local parallel extraction: N supervised worker processes.

Each worker is a separate process (multiprocessing "spawn": no state shared
with the parent, OpenCV threads start clean). The parent hands one video at a
time to each idle worker and watches them:

- a worker that dies (segfault, OOM kill) fails only the video it was on,
  with the signal in the reason, and is replaced;
- a video that exceeds ``timeout + timeout_per_frame x frames decoded`` seconds
  has its worker killed and is recorded as failed ("timed out"); the clock starts
  when the worker has started (imports, writer: it says "ready"), so a loaded
  machine's slow process start is not charged to the first video;
- videos a worker committed but had not yet published (an HDF5 shard still
  open) when it died are queued again once;
- a worker told to finish that dies, or does not finish within ``timeout``
  seconds, has its unsealed videos queued again for a fresh worker;
- a full disk stops the dispatching of new videos; the run ends early with
  every remaining input reported, not failed one by one;
- workers die with the parent (Linux: PR_SET_PDEATHSIG), so a parent killed
  with SIGKILL leaves no worker writing into a store another run may own.

Every video handed to ``run_local`` comes back in exactly one result dict.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from typing import Any, Dict, List, Optional

from ..errors import DiskFullError, FlowprepError
from .pipeline import failed_result, not_processed, timed_out_reason
from ..progress import Progress


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; else a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _close_hook(done_ids) -> None:
    """FLOWPREP_TEST_HOOK=segfault_at_close:substring: die when told to finish (tests)."""
    action, _, pattern = os.environ.get("FLOWPREP_TEST_HOOK", "").partition(":")
    if action == "segfault_at_close" and pattern and any(pattern in v for v in done_ids):
        os.kill(os.getpid(), signal.SIGSEGV)


def _worker_main(conn, index: int, job, parent: int = 0) -> None:
    """Body of a worker process: receive videos, process, report."""
    if parent:
        _die_with_parent(parent)
    import cv2
    from .pipeline import NO_FLOW, make_job_backend, process_video, warm_up
    warm_up(job)  # import the decoder now: the first video's time limit is for the video

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    cv2.setNumThreads(job.threads)
    try:  # "can't open ..." warnings for damaged inputs: the failure reason says it better
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - older OpenCV
        pass
    from ..fsutil import storage_error as _storage_error
    _quiet_h5py_unraisable()
    backend = None
    writer = None
    done_ids = []

    def leave(kind: str, payload) -> None:
        """Report, then exit without closing the writer: after a write error its state is
        unknown (an HDF5 shard may hold half-written data), so nothing of it is sealed."""
        conn.send((kind, payload))
        conn.close()
        os._exit(0)

    try:
        try:
            writer = job.writer(f"{job.tmp_root.rsplit(os.sep, 1)[-1]}-w{index}-{os.getpid()}")
        except Exception as exc:
            err = _storage_error(exc) or exc
            conn.send(("fatal", f"cannot write into the store {job.root}: {err}"))
            return
        conn.send(("ready",))  # started: the clock of the video it was given starts now
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                _close_hook(done_ids)
                err = None
                try:
                    writer.close()  # seals the open HDF5 shard
                except Exception as exc:
                    st = _storage_error(exc)
                    err = (str(st or f"{type(exc).__name__}: {exc}"), isinstance(st, DiskFullError))
                conn.send(("closed", writer.drain_published(), err))
                return
            vin = msg[1]
            if backend is None and job.choice.implementation != NO_FLOW:
                try:
                    backend = make_job_backend(job, job.choice.device_for_worker(index), job.threads)
                except FlowprepError as exc:
                    conn.send(("fatal", str(exc)))
                    return

            def progress(frames: int, _vid=vin.video_id) -> None:
                conn.send(("progress", frames))

            try:
                result = process_video(vin, job, backend, writer, progress)
            except DiskFullError as exc:
                leave("diskfull", failed_result(vin, f"{vin.path}: not stored: {exc}"))
            result["published_ids"] = writer.drain_published()
            done_ids.append(vin.video_id)
            if result.pop("writer_error", False):
                result["retiring"] = True
                leave("done", result)
            conn.send(("done", result))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return


def _quiet_h5py_unraisable() -> None:
    """Silence h5py's tracebacks for objects freed after a failed write.

    h5py prints each one twice (Cython prints it through sys.excepthook, then
    reports it as 'Exception ignored in ...__dealloc__' through sys.unraisablehook);
    the write error itself is already reported as the video's failure reason.
    Tracebacks with any frame outside h5py are printed as before.
    """
    import traceback
    default_unraisable, default_except = sys.unraisablehook, sys.excepthook

    def unraisable(u) -> None:
        if "h5py" not in repr(getattr(u, "object", "")):
            default_unraisable(u)

    def excepthook(kind, value, tb) -> None:
        files = [f.filename for f in traceback.extract_tb(tb)]
        if not (files and all("h5py" in f for f in files)):
            default_except(kind, value, tb)

    sys.unraisablehook, sys.excepthook = unraisable, excepthook


def _signal_name(code: Optional[int]) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class _Worker:
    def __init__(self, ctx, index: int, job) -> None:
        self.index = index
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, index, job, os.getpid()),
                                daemon=True, name=f"flowprep-worker-{index}")
        self.proc.start()
        child.close()
        self.task = None
        self.started = 0.0
        self.ready_at = 0.0  # when it finished starting (imports, writer), 0 until then
        self.frames = 0
        self.unsealed: List[Any] = []  # committed, not yet published (HDF5)
        self.stop_sent = 0.0  # when it was told to finish, or said it will exit (0: not yet)
        self.close_error = ""
        self.retired = ""  # why it exits on its own (a write error, a full disk)

    def assign(self, vin) -> bool:
        """Hand ``vin`` over; False when the worker is gone (the caller keeps the video)."""
        try:
            self.conn.send(("task", vin))
        except (BrokenPipeError, ConnectionError, OSError):
            return False
        self.task, self.started, self.frames = vin, time.monotonic(), 0
        return True

    def stop(self) -> None:
        if self.stop_sent or not self.proc.is_alive() or self.conn.closed:
            return
        self.stop_sent = time.monotonic()
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, ConnectionError, OSError):
            pass

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)


def run_local(videos: List[Any], job, jobs: int, report) -> List[Dict[str, Any]]:
    """Process ``videos`` with ``jobs`` workers; returns one result dict per video."""
    if not videos:
        return []
    ctx = mp.get_context("spawn")
    n = max(1, min(jobs, len(videos)))
    queue = list(reversed(videos))
    retried = set()
    results: Dict[str, Dict[str, Any]] = {}
    workers = [_Worker(ctx, i, job) for i in range(n)]
    progress = Progress(len(videos), enabled=job.opts.progress)
    stopping: Optional[str] = None
    closing = False

    def fail(vin, reason: str) -> None:
        results[vin.video_id] = failed_result(vin, reason)
        progress.video_done(False)

    def requeue_unsealed(w: _Worker, why: str) -> bool:
        """Queue again the videos ``w`` committed but had not published; True if any."""
        again = False
        for vin in w.unsealed:
            results.pop(vin.video_id, None)
            if vin.video_id in retried:
                fail(vin, f"{vin.path}: computed twice, and lost twice when its worker {why} "
                          f"before its HDF5 shard was sealed")
            else:
                retried.add(vin.video_id)
                queue.append(vin)
                again = True
        w.unsealed = []
        return again

    def replace(w: _Worker) -> None:
        w.kill()
        workers[workers.index(w)] = _Worker(ctx, w.index, job)

    full_disk = (f"no space left on the store's filesystem ({job.root}); free some space and "
                 f"rerun the same command: published videos are kept and skipped")

    def drain(w: _Worker) -> None:
        nonlocal stopping
        try:
            while not w.conn.closed and w.conn.poll():
                msg = w.conn.recv()
                _handle(msg, w, results, progress, report)
                if msg[0] == "fatal":
                    stopping = stopping or msg[1]
                    if w.task is not None:  # reported "not processed" with the reason
                        queue.append(w.task)
                        w.task = None
                elif msg[0] == "diskfull":
                    stopping = stopping or full_disk
                    results[w.task.video_id] = msg[1]
                    w.task = None
                    w.stop_sent = time.monotonic()  # it exits: assign nothing more
                    w.retired = "stopped on a full disk"
                elif msg[0] == "done" and msg[1].pop("retiring", False):
                    w.stop_sent = time.monotonic()  # it exits after a write error
                    w.retired = "was replaced after a write error"
                elif msg[0] == "closed":
                    w.conn.close()
                    w.proc.join(10)
                    err = msg[2] if len(msg) > 2 else None
                    if err and err[1]:
                        stopping = stopping or full_disk
                    w.close_error = err[0] if err else "dropped videos it had committed"
        except (EOFError, OSError):
            pass

    try:
        while True:
            for w in workers:
                if (w.task is None and queue and not stopping and not closing and not w.stop_sent
                        and w.proc.is_alive() and not w.conn.closed):
                    vin = queue.pop()
                    if not w.assign(vin):
                        queue.append(vin)  # the worker is dead: found and replaced below
            if not any(w.task is not None for w in workers) and not (queue and not stopping):
                if closing or not workers:
                    # done when every worker is gone AND has been accounted for (a worker
                    # that died since the last pass still has its unsealed videos to hand back)
                    if not any(w.proc.is_alive() or not w.conn.closed for w in workers):
                        break
                else:
                    closing = True
                    for w in workers:
                        w.stop()
                    continue
            ready = wait([w.conn for w in workers if w.proc.is_alive()]
                         + [w.proc.sentinel for w in workers if w.proc.is_alive()], timeout=0.5)
            for w in list(workers):
                if w.conn in ready or w.proc.sentinel in ready:
                    drain(w)
                if not w.conn.closed and not w.proc.is_alive():
                    # it may have exited after wait() returned: read what it said first
                    drain(w)
                if w.conn.closed and w.unsealed:
                    # finished, but could not seal (publish) videos it had committed
                    again = requeue_unsealed(w, f"could not seal its shard ({w.close_error})")
                    if again and not stopping:
                        closing = False
                        replace(w)
                    continue
                if not w.proc.is_alive() and w.proc.exitcode is not None and not w.conn.closed:
                    # died without saying goodbye
                    why = w.retired or f"crashed ({_signal_name(w.proc.exitcode)})"
                    if w.task is not None:
                        fail(w.task, f"{w.task.path}: the worker processing it {why} "
                                     f"(decoding, flow or writing); the rest of the run continued")
                        w.task = None
                    again = requeue_unsealed(w, why)
                    if not stopping and (not closing or again):
                        # a worker lost while finishing: its videos need a fresh one
                        closing = False
                        replace(w)
                    else:
                        w.conn.close()
                elif w.task is None and w.stop_sent and w.proc.is_alive() \
                        and time.monotonic() - w.stop_sent > job.opts.timeout:
                    w.kill()  # stuck sealing its shard: handled as a crash on the next pass
                elif w.task is not None:
                    limit = job.opts.timeout + job.opts.timeout_per_frame * w.frames
                    if not w.ready_at:  # still starting: one more limit's grace, then killed
                        limit += job.opts.timeout
                    elapsed = time.monotonic() - w.started
                    if elapsed > limit:
                        vin = w.task
                        fail(vin, timed_out_reason(vin, elapsed, w.frames, job.opts))
                        w.task = None
                        requeue_unsealed(w, "was killed after a timeout")
                        if not closing and not stopping:
                            replace(w)
                        else:
                            w.kill()
                            w.conn.close()
            if stopping and not any(w.task for w in workers) and not closing:
                closing = True
                for w in workers:
                    w.stop()
            progress.tick()
    except KeyboardInterrupt:
        for w in workers:
            w.kill()
        raise
    finally:
        for w in workers:
            if w.proc.is_alive():
                w.proc.join(30)
            w.kill()
        progress.close()
    for w in workers:  # safety net: never report a video published that is not
        for vin in w.unsealed:
            results[vin.video_id] = failed_result(
                vin, f"{vin.path}: computed, but its worker ended before its HDF5 shard "
                     f"was sealed ({w.close_error or 'unknown reason'})")
    if stopping:
        report.stopped = stopping
        for vin in queue:
            results.setdefault(vin.video_id, not_processed(vin, stopping))
    return list(results.values())


def _handle(msg, w: _Worker, results, progress, report) -> None:
    kind = msg[0]
    if kind == "ready":  # a video handed over while it was starting is timed from now
        w.ready_at = time.monotonic()
        if w.task is not None:
            w.started = max(w.started, w.ready_at)
    elif kind == "progress":
        w.frames += msg[1]
        progress.frames(msg[1])
    elif kind == "done":
        res = msg[1]
        published = set(res.pop("published_ids", []))
        vin = w.task
        w.task = None
        results[res["video_id"]] = res
        if res["status"] == "published" and res["video_id"] not in published:
            w.unsealed.append(vin)
        _seal(w, published)
        progress.video_done(res["status"] == "published")
    elif kind == "closed":
        _seal(w, set(msg[1]))
    elif kind == "fatal":
        pass  # handled by the caller (the task goes back to the queue)


def _seal(w: _Worker, published) -> None:
    if published:
        w.unsealed = [v for v in w.unsealed if v.video_id not in published]
