"""Local parallel extraction: N supervised worker processes.

Each worker is a separate process, forked from a fork server that imported
flowprep, OpenCV, NumPy and PyAV once, or spawned (starter.py:
FLOWPREP_START_METHOD): no state shared with the parent, OpenCV threads start
clean. The parent hands one video at a time to each idle worker and watches them:

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
- workers die with the parent (Linux: PR_SET_PDEATHSIG, through the fork server:
  starter.py), so a parent killed with SIGKILL leaves no worker writing into a
  store another run may own.

Every video handed to ``run_local`` comes back in exactly one result dict.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import DiskFullError, FlowprepError
from .ledger import Ledger, VideoResult, disk_full_reason, time_limit, timed_out_reason, \
    worker_died_reason
from .starter import context as start_context, start_method, worker_server


def _worker_main(conn, index: int, job, parent: int = 0, server: int = 0) -> None:
    """Body of a worker process: receive videos, process, report.

    Messages to the parent: ("ready",), ("progress", frames), ("done", result dict,
    ids published since the last report), ("diskfull", result dict), ("fatal", reason),
    ("closed", ids published, None or (error, disk full?)). After a writer error or a full
    disk it reports and exits without closing its writer (nothing of it is sealed).
    ``parent``: the run's pid (0: run in-process, by a test), ``server``: the fork
    server's (0: spawned).
    """
    if parent:
        from .starter import in_worker
        in_worker(parent, server)
    import cv2
    from . import faults
    from .chunks import ChunkAnswer, run_item
    from .pipeline import NO_FLOW, make_job_backend, process_video, warm_up
    warm_up(job)  # import the decoder now: the first video's time limit is for the video
    process = faults.wrap(process_video)  # process_video itself, unless a test asks
    at_close = faults.close_hook()

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

    def leave(kind: str, *payload) -> None:
        """Report, then exit without closing the writer: after a write error its state is
        unknown (an HDF5 shard may hold half-written data), so nothing of it is sealed."""
        conn.send((kind,) + payload)
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
                if at_close is not None:
                    at_close(done_ids)
                err = None
                try:
                    writer.close()  # seals the open HDF5 shard
                except Exception as exc:
                    st = _storage_error(exc)
                    err = (str(st or f"{type(exc).__name__}: {exc}"), isinstance(st, DiskFullError))
                conn.send(("closed", writer.drain_published(), err))
                return
            vin = msg[1]  # a video, or a time chunk of one, or their join (chunks.py)
            if backend is None and job.choice.implementation != NO_FLOW:
                try:
                    backend = make_job_backend(job, job.choice.device_for_worker(index), job.threads)
                except FlowprepError as exc:
                    conn.send(("fatal", str(exc)))
                    return

            def progress(frames: int) -> None:
                conn.send(("progress", frames))

            try:
                result = run_item(vin, job, backend, writer, progress, process)
            except DiskFullError as exc:
                from .ledger import failed
                leave("diskfull", failed(vin, disk_full_reason(vin, exc)).to_dict())
            done_ids.append(vin.video_id)
            if isinstance(result, ChunkAnswer):  # split, a chunk staged, or a chunk failed
                conn.send(("chunk", result, writer.drain_published()))
                continue
            if result.writer_error:  # the ledger retires this writer: the worker exits
                leave("done", result.to_dict(), writer.drain_published())
            conn.send(("done", result.to_dict(), writer.drain_published()))
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
    """The parent's handle on one worker process (``tag``: its writer's name in the ledger)."""

    _serial = 0

    def __init__(self, ctx, index: int, job) -> None:
        _Worker._serial += 1
        self.index = index
        self.tag = f"local-w{index}-{_Worker._serial}"
        self.conn, child = ctx.Pipe()
        server = worker_server(ctx.get_start_method())
        self.proc = ctx.Process(target=_worker_main, args=(child, index, job, os.getpid(), server),
                                daemon=True, name=f"flowprep-worker-{index}")
        self.proc.start()
        child.close()
        self.task = None
        self.started = 0.0
        self.ready_at = 0.0  # when it finished starting (imports, writer), 0 until then
        self.frames = 0
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


def plan_local(mine: Sequence[Any], done: Dict[str, str], key: str, skipped: List[str],
               jobs: Optional[int]) -> Tuple[List[Any], int, int]:
    """(the videos of ``mine`` still to extract, worker processes, threads per worker).

    A video whose published version has config ``key`` (``done``: video_id -> config
    key) is appended to ``skipped`` instead. ``jobs``: the workers asked for (None or 0:
    one per core); each worker gets an equal share of the cores (at least one thread).
    """
    todo = []
    for v in mine:
        if done.get(v.video_id) == key:
            skipped.append(v.video_id)
        else:
            todo.append(v)
    jobs = int(jobs or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(todo) or 1)))
    return todo, jobs, threads


def run_local(videos: List[Any], job, jobs: int, ledger: Ledger) -> None:
    """Process ``videos`` with ``jobs`` worker processes; every result goes to ``ledger``
    (``ledger.finish(videos)`` then has one per video)."""
    from .chunks import ChunkBook, ChunkTask, describe_chunk, video_of
    if not videos:
        return
    ctx = start_context(start_method())  # the fork server: started by extract() already
    n = max(1, min(jobs, len(videos)))
    queue = list(reversed(videos))
    workers = [_Worker(ctx, i, job) for i in range(n)]
    progress = ledger.progress
    closing = False
    book = ChunkBook(job)  # long videos split into time chunks (chunks.py)

    def fail(item, reason: str) -> None:
        """``item`` failed; a failed chunk fails its video, once (its siblings are dropped)."""
        if isinstance(item, ChunkTask):
            if not book.chunk_failed(item, reason):
                return
            queue[:] = [q for q in queue if not book.is_sibling(q, item.video_id)]
            if "time chunk" not in reason:
                reason = f"{reason} (in {describe_chunk(item.spec)})"
        ledger.fail(video_of(item), reason)

    def chunk_answer(w: _Worker, answer, published) -> None:
        """A worker's answer about a long video: split, a chunk staged, a chunk failed."""
        item, w.task = w.task, None
        ledger.sealed(w.tag, published)
        if answer.status == "split":
            queue.extend(reversed(book.split(item, answer.chunks)))
            # one long video on every core: up to --jobs workers, each with its share
            # of the cores for decoding and OpenCV
            extra = dataclasses.replace(job, threads=max(1, (os.cpu_count() or 1) // jobs))
            while len(workers) < jobs and not ledger.stopped:
                workers.append(_Worker(ctx, len(workers), extra))
        elif answer.status == "chunk":
            join = book.chunk_done(item)
            if join is not None:
                queue.append(join)  # next: its parts are staged
        else:
            fail(item, answer.reason)

    def requeue_unsealed(w: _Worker, why: str) -> bool:
        """Queue again what ``w`` committed but had not published (the ledger's rule)."""
        redo = ledger.requeue_unsealed(w.tag, why)
        queue.extend(redo)
        return bool(redo)

    def replace(w: _Worker) -> None:
        w.kill()
        workers[workers.index(w)] = _Worker(ctx, w.index, job)

    def read_messages(w: _Worker) -> None:
        """Handle everything ``w`` has sent so far."""
        try:
            while not w.conn.closed and w.conn.poll():
                msg = w.conn.recv()
                kind = msg[0]
                if kind == "ready":  # a video handed over while it was starting is timed from now
                    w.ready_at = time.monotonic()
                    if w.task is not None:
                        w.started = max(w.started, w.ready_at)
                elif kind == "progress":
                    w.frames += msg[1]
                    progress.frames(msg[1])
                elif kind == "chunk":
                    chunk_answer(w, msg[1], msg[2])
                elif kind == "done":
                    res = VideoResult.from_dict(msg[1])
                    vin, w.task = video_of(w.task), None  # a joined video: its VideoInput
                    ledger.record(vin, res, w.tag, msg[2])
                    if res.writer_error:
                        w.stop_sent = time.monotonic()  # it exits after a write error
                        w.retired = "was replaced after a write error"
                elif kind == "fatal":
                    ledger.stop(msg[1])
                    if w.task is not None:  # reported "not processed" with the reason
                        queue.append(w.task)
                        w.task = None
                elif kind == "diskfull":
                    ledger.stop_full_disk()
                    vin, w.task = video_of(w.task), None
                    ledger.record(vin, VideoResult.from_dict(msg[1]))
                    w.stop_sent = time.monotonic()  # it exits: assign nothing more
                    w.retired = "stopped on a full disk"
                elif kind == "closed":
                    ledger.sealed(w.tag, msg[1])
                    w.conn.close()
                    w.proc.join(10)
                    err = msg[2]
                    if err and err[1]:
                        ledger.stop_full_disk()
                    w.close_error = err[0] if err else "dropped videos it had committed"
        except (EOFError, OSError):
            pass

    try:
        while True:
            for w in workers:
                if (w.task is None and queue and not ledger.stopped and not closing
                        and not w.stop_sent and w.proc.is_alive() and not w.conn.closed):
                    vin = queue.pop()
                    if not w.assign(vin):
                        queue.append(vin)  # the worker is dead: found and replaced below
            if not any(w.task is not None for w in workers) and not (queue and not ledger.stopped):
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
                    read_messages(w)
                if not w.conn.closed and not w.proc.is_alive():
                    # it may have exited after wait() returned: read what it said first
                    read_messages(w)
                if w.conn.closed and ledger.has_unsealed(w.tag):
                    # finished, but could not seal (publish) videos it had committed
                    again = requeue_unsealed(w, f"could not seal its shard ({w.close_error})")
                    if again and not ledger.stopped:
                        closing = False
                        replace(w)
                    continue
                if not w.proc.is_alive() and w.proc.exitcode is not None and not w.conn.closed:
                    # died without saying goodbye
                    why = w.retired or f"crashed ({_signal_name(w.proc.exitcode)})"
                    if w.task is not None:
                        fail(w.task, worker_died_reason(w.task, why))
                        w.task = None
                    again = requeue_unsealed(w, why)
                    if not ledger.stopped and (not closing or again):
                        # a worker lost while finishing: its videos need a fresh one
                        closing = False
                        replace(w)
                    else:
                        w.conn.close()
                elif w.task is None and w.stop_sent and w.proc.is_alive() \
                        and time.monotonic() - w.stop_sent > job.opts.timeout:
                    w.kill()  # stuck sealing its shard: handled as a crash on the next pass
                elif w.task is not None:
                    limit = time_limit(job.opts, w.frames)
                    if not w.ready_at:  # still starting: one more limit's grace, then killed
                        limit += job.opts.timeout
                    elapsed = time.monotonic() - w.started
                    if elapsed > limit:
                        vin = w.task
                        fail(vin, timed_out_reason(vin, elapsed, w.frames, job.opts))
                        w.task = None
                        requeue_unsealed(w, "was killed after a timeout")
                        if not closing and not ledger.stopped:
                            replace(w)
                        else:
                            w.kill()
                            w.conn.close()
            if ledger.stopped and not any(w.task for w in workers) and not closing:
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
    # safety net: never report a video published that is not (ledger.finish fails it)
    ledger.unsealed_why.update({w.tag: w.close_error for w in workers if w.close_error})
