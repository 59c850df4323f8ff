"""Extraction on a dask.distributed cluster: ``flowprep extract --scheduler ADDRESS``.

The client (the process running ``flowprep extract``) discovers the inputs,
holds the store's run lock and submits one dask task per video with
``client.submit``; the workers decode, compute the flow and write into the
shared store directly. Requirements: every worker sees OUT and the inputs at
the same paths as the client (a shared filesystem), and runs the same
flowprep version (both are checked).

Per worker process, and per worker thread, flowprep keeps its own store
writer and flow backend, cached for the run (``_STATES``, keyed by the run's
token): they are made by the first task of the run on that thread and
closed, which seals HDF5 shards, by a final ``client.run`` on every worker.
Each state takes the lowest free *slot* on its host (a file lock in the
host's temp directory, released by the kernel when the process dies) and uses
``choice.device_for_worker(slot)``, so the workers of one host spread over
its GPUs round robin, and a restarted worker takes the slot of the one it
replaces.

Failures:

- a task whose worker process dies (crash, OOM kill, SIGKILL, a lost node)
  is rescheduled by dask on another worker; one that kills
  ``distributed.scheduler.allowed-failures`` workers (default 3) fails with
  KilledWorker, and its video is recorded as failed with that reason;
- a video's own error (process_video's status "failed") is a result, never
  retried;
- after a write error (or a bug) while writing a video, that video fails with
  its reason and the worker thread's state is retired, as local.py retires
  a local worker: its writer's open HDF5 shard is dropped, never sealed (after
  a failed write its state is unknown), and the next task on that thread makes
  a new writer;
- a video committed on a worker whose HDF5 shard was never sealed (the worker
  died, was unreachable at the end, or its writer was retired) is submitted
  again once; lost twice, it is recorded as failed;
- a full disk, or a backend that cannot start on a worker, stops the run (a
  full disk with the same "Stopped early" message as a local run; the writer
  that hit it is retired without sealing). As in a local run, videos already
  being processed finish and are reported as they end; the rest are reported
  "not processed": the client sets the run's stop event (tasks that start
  after it do nothing) and cancels the tasks that have not started. (A task
  cancelled while running would still write, but its result would never reach
  the client, so a published video could be reported as not processed.)

dask is an optional extra (``pip install 'flowprep[dask]'``), imported only
inside this module's functions.
"""
from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import BackendUnavailable, ConfigError, DiskFullError, FlowprepError
from ..fsutil import atomic_write_json, read_json, storage_error
from .ledger import (Ledger, VideoResult, disk_full_reason, failed, full_disk_message,
                     not_processed, time_limit, timed_out_reason)

INSTALL_HINT = "pip install 'flowprep[dask]'"
CONNECT_TIMEOUT_S = 30
CLOSE_WAIT_S = 10.0
JOB_FILE = "dask-job.pickle"

_CLIENTS: Dict[str, Any] = {}


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise BackendUnavailable(
            f"--scheduler runs videos on a dask.distributed cluster, but dask.distributed is not "
            f"installed here ({exc}); install it with: {INSTALL_HINT}") from None
    return distributed


def connect(address: str):
    """A connected dask Client for ``address`` (cached per process).

    Raises:
        BackendUnavailable when dask is not installed; ConfigError when no
        scheduler answers at ``address``.
    """
    distributed = _distributed()
    client = _CLIENTS.get(address)
    if client is not None and client.status == "running":
        return client
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"--scheduler {address}: no dask scheduler answered ({type(exc).__name__}: {exc}); "
            f"start one with `dask scheduler` and workers with `dask worker {address}`, "
            f"or check the address (e.g. tcp://HOST:8786)") from None
    _CLIENTS[address] = client
    return client


# --------------------------------------------------------------------------- worker side

def _resolve_here(algo: str, device: str, backend: str):
    from .._version import __version__
    from ..flow import resolve
    return resolve(algo, device, backend), __version__, socket.gethostname()


def resolve_on_cluster(address: str, algo: str, device: str, backend: str):
    """``flow.resolve`` run on one of the cluster's workers (they compute the flow).

    Waits for the first worker to join. Raises BackendUnavailable when the
    workers cannot run the choice, or run another flowprep version.
    """
    from .._version import __version__
    client = connect(address)
    fut = client.submit(_resolve_here, algo, device, backend, pure=False)
    try:
        choice, version, host = fut.result()
    except FlowprepError as exc:
        raise type(exc)(f"on the dask workers: {exc}") from None
    except ImportError as exc:
        raise BackendUnavailable(
            f"the dask workers at {address} cannot import flowprep ({exc}); install flowprep "
            f"{__version__} in the workers' environment") from None
    finally:
        fut.release()
    if version != __version__:
        raise BackendUnavailable(
            f"the dask workers run flowprep {version} (seen on {host}), this client "
            f"flowprep {__version__}; install the same version on both sides")
    return choice


def slot_dir() -> str:
    """This host's directory of GPU slot locks (shared by the flowprep workers of a user)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"flowprep-slots-{uid}")


def acquire_slot(directory: Optional[str] = None) -> Tuple[int, int]:
    """The lowest free slot index on this host, and the fd whose lock holds it.

    The lock is released when the fd is closed or the process dies. Slot files
    are never removed (removing a lock file races with its next user).
    """
    d = directory or slot_dir()
    os.makedirs(d, exist_ok=True)
    for i in itertools.count():
        fd = os.open(os.path.join(d, f"slot-{i}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return i, fd
    raise AssertionError("unreachable")


def _worker_threads() -> int:
    """Task threads of this dask worker process (1 outside a worker)."""
    try:
        from distributed import get_worker
        w = get_worker()
    except (ImportError, ValueError):
        return 1
    n = getattr(getattr(w, "state", None), "nthreads", None) or getattr(w, "nthreads", None)
    return max(1, int(n or 1))


class _WorkerState:
    """One worker thread's writer and backend for one run."""

    _serial = itertools.count()

    def __init__(self, job, token: str) -> None:
        import cv2
        from .pipeline import make_job_backend, warm_up
        warm_up(job)
        self.lock = threading.Lock()
        host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())
        self.tag = f"{token}-dask-{host}-{os.getpid()}-{next(self._serial)}"
        self.slot, self.slot_fd = (acquire_slot() if job.choice.device_kind == "cuda"
                                   else (0, None))
        self.device = job.choice.device_for_worker(self.slot)
        self.retired = False
        try:
            threads = max(1, (os.cpu_count() or 1) // _worker_threads())
            cv2.setNumThreads(threads)
            self.backend = make_job_backend(job, self.device, threads)
            self.writer = job.writer(self.tag)
        except BaseException:
            self.release_slot()
            raise

    def release_slot(self) -> None:
        if self.slot_fd is not None:
            os.close(self.slot_fd)
            self.slot_fd = None

    def close(self) -> List[str]:
        """Seal and close the writer; the ids it published since it was last asked."""
        if self.retired:
            return []
        try:
            self.writer.close()
            return self.writer.drain_published()
        finally:
            self.release_slot()

    def retire(self) -> None:
        """Out of use after a write error or a full disk: drop the writer's open shard
        unsealed (what it committed there is redone by the client), never seal it."""
        self.retired = True
        with _STATES_LOCK:
            for key in [k for k, v in _STATES.items() if v is self]:
                del _STATES[key]
        try:
            discard = getattr(self.writer, "discard", None)  # the JPEG writer holds nothing
            if discard is not None:
                discard()
        except Exception:  # noqa: BLE001 - it is dropped either way
            pass
        finally:
            self.release_slot()


_STATES: Dict[Tuple[str, int], _WorkerState] = {}
_STATES_LOCK = threading.Lock()


_JOBS: Dict[str, Any] = {}


def _load_job(path: str):
    """The run's Job, which the client wrote into the run's staging area (cached per process).

    Passing a path, not the Job, keeps every task small (300k tasks are 300k
    specs in the scheduler's memory) and checks that this worker sees the store.
    """
    with _STATES_LOCK:
        job = _JOBS.get(path)
    if job is None:
        import pickle
        try:
            with open(path, "rb") as fh:
                job = pickle.load(fh)
        except FileNotFoundError:
            raise BackendUnavailable(
                f"the dask worker on {socket.gethostname()} does not see the store being written "
                f"(no {path}): the workers must share a filesystem with the client and see OUT "
                f"at the same path") from None
        with _STATES_LOCK:
            _JOBS[path] = job
    return job


def _state_for(job, token: str) -> _WorkerState:
    key = (token, threading.get_ident())
    with _STATES_LOCK:
        st = _STATES.get(key)
    if st is None:
        st = _WorkerState(job, token)
        with _STATES_LOCK:
            _STATES[key] = st
    return st


def _stop_event_name(token: str) -> str:
    return f"flowprep-stop-{token}"


def _run_stopped(token: str) -> bool:
    """Whether the client has stopped run ``token`` (its stop event is set)."""
    try:
        from distributed import Event
        return Event(_stop_event_name(token)).is_set()
    except Exception:  # noqa: BLE001 - outside a worker, or no scheduler: carry on
        return False


class _Watchdog:
    """Kills this worker process when a video overruns timeout + timeout_per_frame x frames.

    A hung video (a decoder or flow call that never returns) cannot be stopped in
    its thread, and dask cannot cancel a running task, so the process goes, as a
    local worker would: before the SIGKILL the watchdog leaves a marker with the
    reason in the run's staging area (on the shared filesystem). The nanny starts
    a fresh worker process, dask runs the task again, and the task finds the
    marker and reports the video failed with that reason at once. Other tasks
    that were running in the killed process are run again by dask, and the
    videos its writers had committed into unsealed shards are redone by the
    client, as after any worker crash (see docs/cluster.md).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: Dict[int, Dict[str, Any]] = {}
        self.thread: Optional[threading.Thread] = None

    def begin(self, vin, opts, marker: str):
        """Watch the calling thread's video from now; returns its frames-decoded callback."""
        entry = {"t0": time.monotonic(), "frames": 0, "vin": vin, "opts": opts, "marker": marker}
        with self.lock:
            self.running[threading.get_ident()] = entry
            if self.thread is None:
                self.thread = threading.Thread(target=self._watch, name="flowprep-watchdog",
                                               daemon=True)
                self.thread.start()

        def frames(n: int) -> None:
            entry["frames"] += n
        return frames

    def end(self) -> None:
        with self.lock:
            self.running.pop(threading.get_ident(), None)

    def _watch(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self.lock:
                entries = list(self.running.values())
            for e in entries:
                opts, elapsed = e["opts"], now - e["t0"]
                if elapsed > time_limit(opts, e["frames"]):
                    try:
                        os.makedirs(os.path.dirname(e["marker"]), exist_ok=True)
                        atomic_write_json(e["marker"], {"reason": timed_out_reason(
                            e["vin"], elapsed, e["frames"], opts)})
                    finally:
                        os.kill(os.getpid(), signal.SIGKILL)


_WATCHDOG = _Watchdog()


def _timeout_marker(job_path: str, video_id: str) -> str:
    """Where a worker records that ``video_id`` timed out (the run's staging area)."""
    name = hashlib.sha1(video_id.encode()).hexdigest() + ".json"
    return os.path.join(os.path.dirname(job_path), "timed-out", name)


def _timed_out(job_path: str, video_id: str) -> Optional[str]:
    """The reason recorded by a watchdog that killed a worker over ``video_id``, or None."""
    try:
        return str(read_json(_timeout_marker(job_path, video_id))["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class TaskOutcome:
    """What the dask task of one video returns to the client.

    kind: "done" (``result`` holds the video's VideoResult), "chunk" (``answer``: a long
    video's chunks.ChunkAnswer: split, a chunk staged or failed), "fatal" (the worker could not
    start its backend or writer: ``reason``; the run stops) or "stopped" (the task started
    after the run was stopped and did nothing). ``writer``: the tag of the worker thread's
    writer; ``published``: the ids it published since its last report; ``disk_full``: the
    video's write hit a full disk (the run stops).
    """

    kind: str
    result: Optional[VideoResult] = None
    reason: str = ""
    writer: Optional[str] = None
    published: List[str] = field(default_factory=list)
    disk_full: bool = False
    device: str = ""
    host: str = ""
    answer: Any = None


_PROCESS = None


def _process_function():
    """process_video, or behind a test's fault (faults.wrap; the variable is read once)."""
    global _PROCESS
    if _PROCESS is None:
        from . import faults
        from .pipeline import process_video
        _PROCESS = faults.wrap(process_video)
    return _PROCESS


def _process_task(vin, job_path: str) -> TaskOutcome:
    """The dask task of one video, or of a time chunk of one or their join (chunks.py;
    runs on a worker). Never raises for a video's own error."""
    from .chunks import ChunkAnswer, run_item
    if _run_stopped(os.path.basename(os.path.dirname(job_path))):
        return TaskOutcome("stopped")  # touch nothing: the client reports it
    reason = _timed_out(job_path, vin.video_id)
    if reason is not None:  # it hung a worker before, which was killed: it fails now
        return TaskOutcome("done", failed(vin, reason))
    try:
        job = _load_job(job_path)
        st = _state_for(job, os.path.basename(os.path.dirname(job_path)))
    except FlowprepError as exc:
        return TaskOutcome("fatal", reason=f"{socket.gethostname()}: {exc}")
    process = _process_function()
    disk_full = False
    with st.lock:
        frames = _WATCHDOG.begin(vin, job.opts, _timeout_marker(job_path, vin.video_id))
        try:
            res = run_item(vin, job, st.backend, st.writer, frames, process)
        except DiskFullError as exc:  # the run stops (the client says so)
            res = failed(vin, disk_full_reason(vin, exc))
            res.writer_error = disk_full = True
        except Exception as exc:  # noqa: BLE001 - process_video returns errors; never lose one
            err = storage_error(exc)
            res = failed(vin, f"writing the store failed: {err}" if err is not None
                         else f"internal error {type(exc).__name__}: {exc}")
            res.writer_error = True
        finally:
            _WATCHDOG.end()
        published = st.writer.drain_published()
        if isinstance(res, ChunkAnswer):  # split, a chunk staged, or a chunk failed
            return TaskOutcome("chunk", writer=st.tag, published=published, answer=res,
                               device=st.device, host=socket.gethostname())
        if res.writer_error:
            # the ledger retires the writer: its state is unknown, so its open shard is
            # never sealed; the videos committed there are redone
            st.retire()
    return TaskOutcome("done", res, writer=st.tag, published=published, disk_full=disk_full,
                       device=st.device, host=socket.gethostname())


def _close_run(token: str) -> Dict[str, Optional[List[str]]]:
    """Close this process's states of run ``token`` (via client.run): tag -> published ids.

    None for a state still busy after CLOSE_WAIT_S (its unsealed videos count as lost).
    """
    with _STATES_LOCK:
        keys = [k for k in _STATES if k[0] == token]
        states = [_STATES.pop(k) for k in keys]
        for path in [p for p in _JOBS if os.path.basename(os.path.dirname(p)) == token]:
            del _JOBS[path]
    out: Dict[str, Optional[List[str]]] = {}
    for st in states:
        if not st.lock.acquire(timeout=CLOSE_WAIT_S):
            out[st.tag] = None
            continue
        try:
            out[st.tag] = st.close()
        except Exception:  # noqa: BLE001 - a failed seal loses that shard's videos: redo them
            out[st.tag] = None
        finally:
            st.lock.release()
    if all(v is not None for v in out.values()):  # none still busy: no more writes here
        from ..lock import release_worker_holds
        release_worker_holds(token)
    return out


# --------------------------------------------------------------------------- client side

def run_dask(videos: List[Any], job, address: str, ledger: Ledger) -> None:
    """Process ``videos`` on the dask cluster at ``address``; every result goes to
    ``ledger`` (which stops the run on a full disk, a backend that cannot start on a
    worker, or the scheduler lost)."""
    if not videos:
        return
    import pickle
    distributed = _distributed()
    from .chunks import ChunkBook, ChunkTask, JoinTask, describe_chunk, video_of
    from distributed.scheduler import KilledWorker
    from ..fsutil import atomic_write_bytes

    client = connect(address)
    token = os.path.basename(job.tmp_root)
    job_path = os.path.join(job.tmp_root, JOB_FILE)
    atomic_write_bytes(job_path, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    progress = ledger.progress
    attempts: Dict[str, int] = {}
    pending: Dict[Any, Any] = {}  # future -> VideoInput (or ChunkTask, JoinTask)
    book = ChunkBook(job)  # long videos split into time chunks (chunks.py)

    def submit(vins) -> list:
        keys = []
        for vin in vins:  # a video, or a time chunk of one, or their join
            name = (f"chunk{vin.spec.index}" if isinstance(vin, ChunkTask)
                    else "join" if isinstance(vin, JoinTask) else "video")
            n = attempts.get(f"{name}/{vin.video_id}", 0)
            attempts[f"{name}/{vin.video_id}"] = n + 1
            keys.append(f"flowprep-{name}-{token}-{n}-{vin.video_id}")
        futs = client.map(_process_task, vins, job_path=job_path, key=keys)
        pending.update(zip(futs, vins))
        return futs

    def stop(why: str) -> None:
        """Stop the run: tasks not started are cancelled, running ones end normally."""
        if not ledger.stop(why):
            return
        futs = list(pending)
        try:
            # first the event: a task that starts from now on does nothing ...
            distributed.Event(_stop_event_name(token), client=client).set()
            # ... then every task not running or done by now can be cancelled safely
            busy = {str(k) for keys in client.processing().values() for k in keys}
            done = {str(k) for k, where in client.who_has(futs).items() if where}
            futs = [f for f in futs if f.status == "pending" and str(f.key) not in busy | done]
        except Exception:  # noqa: BLE001 - the scheduler may be gone: cancel everything
            pass
        try:
            client.cancel(futs)
        except Exception:  # noqa: BLE001 - the scheduler may be gone already
            pass

    def fail(item, reason: str) -> None:
        """``item`` failed; a failed chunk fails its video, once (the others are ignored)."""
        if isinstance(item, ChunkTask):
            if not book.chunk_failed(item, reason):
                return
            if "time chunk" not in reason:
                reason = f"{reason} (in {describe_chunk(item.spec)})"
        ledger.fail(video_of(item), reason)

    def handle(vin, out: TaskOutcome) -> None:
        if out.kind == "chunk":
            ledger.sealed(out.writer, out.published)
            ans = out.answer
            if ans.status == "split":
                ac.update(submit(book.split(vin, ans.chunks)))
            elif ans.status == "chunk":
                join = book.chunk_done(vin)
                if join is not None:
                    ac.update(submit([join]))
            else:
                fail(vin, ans.reason)
            return
        if out.kind == "done" and isinstance(vin, ChunkTask):  # a chunk that did not run
            if out.disk_full:
                stop(full_disk_message(job.root))
            fail(vin, out.result.reason)
            if out.writer is not None:
                ledger.sealed(out.writer, out.published)
                if out.result.writer_error:  # its writer was retired: redo what it held
                    ledger.retire(out.writer)
                    redo = ledger.requeue_unsealed(out.writer, "was retired after an error")
                    if redo:
                        ac.update(submit(redo))
            return
        vin = video_of(vin)
        if out.kind == "fatal":  # the worker could not start its backend or writer
            stop(out.reason)
            ledger.record(vin, not_processed(vin, ledger.stopped))
            return
        if out.kind == "stopped":  # it started after the run was stopped: it did nothing
            ledger.record(vin, not_processed(vin, ledger.stopped or "the run was stopped"))
            return
        if out.disk_full:
            stop(full_disk_message(job.root))
        progress.frames(int(out.result.frames or 0))
        ledger.record(vin, out.result, out.writer, out.published)
        if ledger.is_retired(out.writer):
            # its writer dropped its open shard: what it had committed there is redone now
            redo = ledger.requeue_unsealed(out.writer, "was retired after a write error")
            if redo:
                ac.update(submit(redo))

    closed_all = False
    ac = distributed.as_completed(submit(videos), loop=client.loop,
                                  with_results=True, raise_errors=False)
    try:
        while True:
            for fut, value in ac:
                vin = pending.pop(fut, None)
                fut.release()
                if vin is None:
                    continue
                if isinstance(value, tuple) and len(value) == 3 \
                        and isinstance(value[1], BaseException):
                    value = value[1]  # an erred task: as_completed gives (type, exception, tb)
                if isinstance(value, KilledWorker):
                    fail(vin, _timed_out(job_path, vin.video_id)
                         or f"{vin.path}: every dask worker that processed it died "
                            f"(crash, or killed for memory); dask gave up on it ({value})")
                elif isinstance(value, BaseException):
                    if ledger.stopped is None and isinstance(value, ImportError):
                        stop(f"the dask workers cannot import flowprep ({value})")
                    if ledger.stopped is not None:
                        ledger.record(video_of(vin), not_processed(vin, ledger.stopped))
                    else:
                        fail(vin, f"internal error on a dask worker "
                                  f"{type(value).__name__}: {value}")
                else:
                    handle(vin, value)
                progress.tick()
            # every task is done: seal the workers' writers, then redo what was lost
            closed = client.run(_close_run, token, on_error="return")
            for out in closed.values():
                if isinstance(out, BaseException):
                    continue
                for tag, ids in out.items():
                    if ids is not None:
                        ledger.sealed(tag, ids)
            redo = [vin for tag in ledger.writers_unsealed()
                    for vin in ledger.requeue_unsealed(tag, "was lost, or could not seal its shard")]
            if not redo:
                break
            ac.update(submit(redo))
        closed_all = True
    except KeyboardInterrupt:
        try:
            client.cancel(list(pending))
        except Exception:  # noqa: BLE001
            pass
        raise
    except (OSError, TimeoutError) as exc:  # the scheduler went away
        stop(f"lost the dask scheduler at {address}: {type(exc).__name__}: {exc}")
    finally:
        if ledger.stopped is not None:
            try:  # the event lives on the scheduler
                distributed.Event(_stop_event_name(token), client=client).clear()
            except Exception:  # noqa: BLE001
                pass
        if not closed_all:  # free the workers' writers and backends of this run (best effort)
            try:
                client.run(_close_run, token, on_error="ignore", wait=False)
            except Exception:  # noqa: BLE001
                pass
    for vin in pending.values():  # cancelled: ledger.finish reports the rest
        if vin.video_id not in ledger.results:
            ledger.results[vin.video_id] = not_processed(vin, ledger.stopped or "cancelled")
