"""One video through the stages (the module below the runners).

    decode [-> select: --start/--end, --fps] -> RGB (--task both|rgb)
                                             -> grey -> flow (t -> t+step[, and back])
                                                -> quantize + mean (--task both|flow) -> store
                                             [-> homography, warp, second flow: --warped
                                                 (flow/warp.py's WarpStage) -> store]

``process_video`` runs one input and commits it or fails it with a reason; the
runners (local.py: local worker processes, dask.py: dask) import it,
and extract.py imports the runners, so nothing imports in a circle.
"""
from __future__ import annotations

import os
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from .._version import __version__
from .. import quantize as qz
from ..decode import open_reader, rgb_to_grey
from ..decode.select import select
from ..errors import DecodeError, DiskFullError, FlowprepError, StoreError
from ..flow import FlowChoice
from ..flow.base import FlowBackend
from ..flow.warp import WarpStage
from ..fsutil import storage_error as _storage_error
from ..inputs import VideoInput
from ..store import open_writer
from ..store.base import StoreWriter, stat_suffix
from .ledger import FAILED, PUBLISHED, VideoResult

if TYPE_CHECKING:  # pragma: no cover
    from .extract import ExtractOptions

#: the FlowChoice of a --task rgb run: no flow is computed, no device is probed
NO_FLOW = "none"


def rgb_only_choice(algo: str) -> FlowChoice:
    """The FlowChoice of a --task rgb run (nothing resolved: no torch import, no GPU probe)."""
    return FlowChoice(algo, NO_FLOW, "cpu")


def warm_up(job: "Job") -> None:
    """Import what decoding needs (PyAV takes a good part of a second) before any video starts."""
    if job.decoder == "pyav":
        import av  # noqa: F401
        import av.video.reformatter  # noqa: F401


def make_job_backend(job: "Job", device: str, threads: int) -> Optional[FlowBackend]:
    """The flow backend a worker uses for ``job``; None for a --task rgb run."""
    if job.choice.implementation == NO_FLOW:
        return None
    from ..flow import make_backend
    return make_backend(job.choice, job.params, device, job.opts.batch_size, threads)


@dataclass
class Job:
    """What a worker needs to process videos (picklable)."""

    opts: "ExtractOptions"
    choice: FlowChoice
    params: Dict[str, Any]
    config: Dict[str, Any]
    key: str
    root: str
    tmp_root: str
    threads: int = 1
    #: frames a time chunk of a long video (chunks.py): None automatic, 0 never split
    chunk_frames: Optional[int] = None
    #: the run's workers (automatic chunks come in multiples of it)
    workers: int = 1
    #: object storage: publishes sealed shards to the store's URL (root is then the local
    #: staging folder); storage_options open input URLs. Both in memory only.
    publisher: Any = None
    storage_options: Optional[Dict[str, Any]] = None

    @property
    def decoder(self) -> str:
        """The decoder the run resolved ("auto" -> pyav or opencv, once in the parent, so
        every worker decodes alike)."""
        return (self.config.get("decoder") or {}).get("name") or self.opts.decoder

    def writer(self, tag: str) -> StoreWriter:
        """A writer into the run's staging area; this process is marked as one of the run's
        workers for as long as it lives (``lock.hold_as_worker``: a later run does not
        remove the staging area under it)."""
        from ..lock import hold_as_worker
        hold_as_worker(self.root, self.tmp_root)
        return open_writer(self.opts.format, self.root, self.tmp_root, tag,
                           jpeg_quality=self.opts.jpeg_quality, shard_size=self.opts.shard_size,
                           payload=self.opts.payload,
                           **({"publisher": self.publisher} if self.publisher is not None else {}))


class _OrderedWriter:
    """Runs a VideoWriter's calls (JPEG encoding, file or HDF5 writes) in one background
    thread, in submission order, so they overlap the next frame's decoding and flow.

    At most ``depth`` calls wait, which bounds memory. An error raised by a call comes
    back, unchanged, from a later ``submit`` or from ``wait``; ``stop`` discards what
    has not started and waits for what has, so the writer is idle before it is aborted.
    """

    def __init__(self, depth: int = 8) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self._ex = ThreadPoolExecutor(1, thread_name_prefix="flowprep-write")
        self._pending: deque = deque()
        self._depth = depth

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        while self._pending and (len(self._pending) >= self._depth or self._pending[0].done()):
            self._pending.popleft().result()
        self._pending.append(self._ex.submit(fn, *args, **kwargs))

    def wait(self) -> None:
        """Wait for every submitted call; raises the first error."""
        while self._pending:
            self._pending.popleft().result()

    def stop(self) -> None:
        for f in self._pending:
            f.cancel()
        self._ex.shutdown(wait=True)
        self._pending.clear()


class _FlowSink:
    """Quantizes flows, keeps per-flow statistics, hands uint8 flow to the writer."""

    def __init__(self, opts: "ExtractOptions", vw, out: "_OrderedWriter") -> None:
        self.opts, self.vw, self.out = opts, vw, out
        #: meta key (mean_flow, motion, motion_p95, clipped_fraction, ranges + the stream's
        #: stat_suffix) -> per-flow values
        self.stats: Dict[str, List[Any]] = {}

    def _stat(self, key: str, sfx: str, value: Any) -> None:
        self.stats.setdefault(key + sfx, []).append(value)

    def add(self, flow: np.ndarray, backward: bool, warped: bool = False) -> None:
        sfx = stat_suffix(backward, warped)
        self._stat("mean_flow", sfx, [float(v) for v in qz.mean_flow(flow)])
        motion, p95 = qz.motion_stats(flow)  # mean and 95th percentile of |d|, float flow
        self._stat("motion", sfx, round(motion, 4))
        self._stat("motion_p95", sfx, round(p95, 4))
        if self.opts.quant == "fixed":
            q = qz.quantize_fixed(flow, self.opts.bound)
            self._stat("clipped_fraction", sfx, qz.clipped_fraction(flow, self.opts.bound))
        else:
            q, ranges = qz.quantize_adaptive(flow)
            self._stat("ranges", sfx, ranges.tolist())
            self._stat("clipped_fraction", sfx, 0.0)
        self.out.submit(self.vw.add_flow, q, backward=backward, warped=warped)


class FrameRun:
    """Selected frames through grey -> flow (pairs t, t+step) -> quantize -> a VideoWriter.

    ``add(t, rgb)`` each selected frame in order, then ``finish()``. Frames added with
    ``store=False`` (a chunk's overlap: the first frames of the next chunk) only end
    flow pairs: their RGB is not written and no pair starts at them. The writer's calls
    go through ``out`` in a fixed order: RGB frame k when it arrives, and the flows of
    ``batch`` pairs (forward, backward, then the warped ones) once that many are pending.

    Attributes:
        times: float seconds of the stored frames.
        n_flows: flows computed (pairs).
        sink: the _FlowSink (per-flow statistics in ``sink.stats``).
        warp: the WarpStage (--warped) or None.
        batch: pairs per flow call.
    """

    def __init__(self, job: "Job", backend: Optional[FlowBackend], vw, out: "_OrderedWriter") -> None:
        opts = job.opts
        self.opts, self.backend, self.vw, self.out = opts, backend, vw, out
        self.step = int(opts.step)
        self.want_rgb = opts.task in ("both", "rgb")
        self.want_flow = opts.task in ("both", "flow")
        self.sink = _FlowSink(opts, vw, out)
        self.window: deque = deque(maxlen=self.step + 1)
        self.pending: List[Tuple[np.ndarray, np.ndarray]] = []
        self.batch = batch_size(job, backend)
        self.n_flows = 0
        self.times: List[float] = []
        self.warp = (WarpStage.for_backend(opts.warped, backend)  # --warped
                     if opts.warped and self.want_flow else None)

    def add(self, t: Any, rgb: np.ndarray, store: bool = True) -> None:
        """One selected frame: t seconds, rgb uint8 (H, W, 3)."""
        if store:
            self.times.append(float(t))
            if self.want_rgb:
                self.out.submit(self.vw.add_rgb, rgb)
        if self.want_flow:
            self.window.append(rgb_to_grey(rgb))
            if len(self.window) == self.step + 1:
                self.pending.append((self.window[0], self.window[-1]))
                if len(self.pending) >= self.batch:
                    self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        opts, backend, sink, pending = self.opts, self.backend, self.sink, self.pending
        pairs = list(pending)
        if opts.backward:
            pairs += [(b, a) for a, b in pending]
        flows = backend.compute_batch(pairs)
        k = len(pending)
        for j in range(k):
            sink.add(flows[j], backward=False)
            if opts.backward:
                sink.add(flows[k + j], backward=True)
        if self.warp is not None:  # --warped: homographies, warp, the second flow
            self.warp.process(backend, pending, flows, bool(opts.backward), sink.add)
        self.n_flows += k
        pending.clear()

    def finish(self) -> None:
        self.flush()
        self.out.wait()


def batch_size(job: "Job", backend: Optional[FlowBackend]) -> int:
    """Pairs per flow call (--batch-size, else the backend's choice, else 1)."""
    return max(1, int(job.opts.batch_size or (backend.batch_size if backend else 1) or 1))


@dataclass
class DecodeSummary:
    """What the meta records about a video's decoding (one reader's, or the sum of a
    chunked video's readers).

    Attributes:
        fps: the rate the container states (frames/s, 0.0 unknown).
        width, height, src_width, src_height: output and decoded sizes, pixels.
        container_frames: the count the container claims, or None.
        decode_errors: corrupt packets skipped.
        frames_read: frames decoded (from the first frame, or from the keyframe a
            --start seek landed on).
        decoder: the decoder's describe() dict.
        warnings: problems that did not stop decoding (strings).
    """

    fps: float
    width: int
    height: int
    src_width: int
    src_height: int
    container_frames: Optional[int]
    decode_errors: int
    frames_read: int
    decoder: Dict[str, Any]
    warnings: List[str]

    @classmethod
    def of(cls, reader) -> "DecodeSummary":
        return cls(reader.fps, reader.width, reader.height, reader.src_width, reader.src_height,
                   reader.container_frames, reader.decode_errors, reader.frames_read,
                   reader.describe(), reader.warnings())


def video_meta(vin: VideoInput, job: "Job", backend: Optional[FlowBackend], dec: DecodeSummary,
               times: List[float], n_flows: int, start: Optional[float], end: Optional[float],
               stats: Dict[str, List[Any]], warp_meta: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The meta of one published video (meta.json; the same for a chunked video)."""
    opts = job.opts
    want_flow = opts.task in ("both", "flow")
    meta = {
        "video_id": vin.video_id, "source": source_of(vin.path),
        "class_name": vin.class_name, "label": vin.label,
        "num_frames": len(times), "num_flows": n_flows,
        "fps": float(opts.fps) if opts.fps is not None else dec.fps,
        "width": dec.width, "height": dec.height,
        "src_width": dec.src_width, "src_height": dec.src_height,
        "container_frames": dec.container_frames, "decode_errors": dec.decode_errors,
        "step": int(opts.step), "backward": bool(opts.backward),
        "quant": job.config["quant"], "config_key": job.key,
        "flow": backend.describe() if want_flow else None, "flowprep_version": __version__,
    }
    meta.update(input_meta(dec, opts, opts.task, times, start, end))
    if vin.original_id is not None:  # the id had whitespace: the path's own spelling
        meta["original_id"] = vin.original_id
    if not want_flow:
        meta["mean_flow"] = []
    meta.update(stats)  # mean_flow, clipped_fraction[, ranges] of each stored stream
    if warp_meta is not None:  # --warped: settings, homographies, inliers, fallbacks
        meta.update(warp_meta)
    if dec.warnings:  # published anyway: see docs/reliability.md, "Damaged inputs"
        meta["warnings"] = dec.warnings
    return meta


def process_video(vin: VideoInput, job: Job, backend: FlowBackend, writer: StoreWriter,
                  progress: Optional[Callable[[int], None]] = None,
                  split: Optional[Callable[..., Any]] = None) -> Any:
    """Decode, compute flow, quantize and write one video; commit it or fail cleanly.

    ``split``: a runner that schedules the time chunks of long videos passes
    chunks.split_answer, called as split(reader, job, vin, start, end) once the video is
    open; when it returns an answer (the video is split), process_video returns that
    answer without computing anything.

    Returns:
        its VideoResult (ledger.py): published (committed into ``writer``) or failed with
        the reason; writer_error when ``writer`` must be retired (or split's answer).
        DiskFullError propagates (the run must stop).
    """
    t0 = time.perf_counter()
    opts = job.opts
    step = int(opts.step)
    want_flow = opts.task in ("both", "flow")
    result = VideoResult(vin.video_id, vin.path, FAILED)
    vw = None
    reader = None
    out = _OrderedWriter()
    try:
        start, end = time_range(vin, opts)
        reader = open_reader(vin.path, job.decoder, opts.resize, threads=job.threads,
                             input_fps=opts.input_fps, seek=start or None,
                             storage_options=job.storage_options)
        if split is not None:
            answer = split(reader, job, vin, start, end)
            if answer is not None:
                answer.seconds = time.perf_counter() - t0
                return answer
        vw = writer.begin(vin.video_id)
        run = FrameRun(job, backend, vw, out)

        def decoded():  # progress (and so the per-frame timeout) counts decoded frames
            for k, item in enumerate(reader.frames()):
                if progress is not None and k % 8 == 7:
                    progress(8)
                yield item

        stream = select(decoded(), fps=opts.fps, start=start, end=end,
                        end_time=lambda _t: reader.end_time)
        for t, rgb in stream:
            run.add(t, rgb)
        run.finish()
        n = len(run.times)
        check_count(vin, n, step, want_flow, reader.frames_read, reader.end_time, start, end,
                    reader.skipped_summary())
        meta = video_meta(vin, job, backend, DecodeSummary.of(reader), run.times, run.n_flows,
                          start, end, run.sink.stats,
                          run.warp.meta() if run.warp is not None else None)
        vw.commit(meta)
        result.status, result.frames, result.flows = PUBLISHED, n, run.n_flows
        result.warnings = list(meta.get("warnings") or [])
    except Exception as exc:
        out.stop()  # the background writes end before the writer is aborted or retired
        fail_result(result, exc, vw)
    finally:
        out.stop()
        if reader is not None:
            reader.close()  # the decoder now, not whenever the suspended generator is collected
    result.seconds = time.perf_counter() - t0
    return result


def check_count(vin: VideoInput, n: int, step: int, want_flow: bool, frames_read: int,
                end_time: Any, start: Optional[float], end: Optional[float],
                skipped: str = "") -> None:
    """DecodeError when no frame was selected, or too few for one flow pair.

    ``skipped``: the reader's skipped_summary() (every failure reason counts what was
    skipped), "" when nothing was.
    """
    skipped = f", {skipped}" if skipped else ""
    if n == 0:
        raise DecodeError(f"{vin.path}: no frames in [{_sec(start)}, {_sec(end)}) "
                          f"({frames_read} frames decoded{skipped}"
                          + (f", the last shown until {float(end_time):.3f} s"
                             if end_time is not None else "") + ")")
    if want_flow and n < step + 1:
        raise DecodeError(
            f"{vin.path}: {n} frame{'s' if n != 1 else ''} "
            f"{'decoded' if n == frames_read else 'selected'}{skipped}; flow with "
            f"step {step} needs at least {step + 1}")


def fail_result(result: VideoResult, exc: BaseException, vw=None) -> None:
    """Turn ``exc``, raised while processing a video, into a failed ``result`` (in place):
    the reason, and writer_error when the worker's writer must not be reused. Aborts
    ``vw`` (the video's writer) unless the store itself failed. DiskFullError is raised."""
    storage = _storage_error(exc)
    if vw is not None and storage is None:
        try:
            vw.abort()
        except Exception:  # the writer is broken too; the worker is retired below
            pass
    # after a storage error the writer is not touched again (an HDF5 file that failed
    # a write fails its clean-up too, noisily); what it staged is dropped with the
    # worker or the run's staging area
    if isinstance(storage, DiskFullError):
        raise storage from None
    result.status = FAILED
    if storage is not None:
        result.reason = f"writing the store failed: {storage}"
    elif isinstance(exc, (FlowprepError, cv2.error, MemoryError)):
        result.reason = (str(exc) if isinstance(exc, FlowprepError)
                         else f"{type(exc).__name__}: {exc}")
    else:  # a bug: record it with the traceback, keep the run going
        result.reason = f"internal error {type(exc).__name__}: {exc}"
        result.detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # After a write error or a bug the writer's state is unknown (an HDF5 shard may
    # hold half-written data): the ledger retires the writer, and what it committed
    # but had not yet published is redone by a fresh one (ledger.py).
    result.writer_error = not isinstance(exc, (DecodeError, cv2.error, MemoryError)) \
        and (storage is not None or isinstance(exc, (StoreError, OSError))
             or not isinstance(exc, FlowprepError))


def source_of(path: str) -> str:
    """What a video's meta records as its source: the absolute path, or the URL without
    credentials."""
    from ..remote import is_url, redact
    return redact(path) if is_url(path) else os.path.abspath(path)


def time_range(vin: VideoInput, opts: "ExtractOptions") -> Tuple[Optional[float], Optional[float]]:
    """The [start, end) of one input in seconds: its list line's range, else --start/--end."""
    if vin.start is not None or vin.end is not None:
        return vin.start, vin.end
    return opts.start, opts.end


def _sec(t: Optional[float]) -> str:
    return "end" if t is None else f"{float(t):g} s"


def input_meta(reader, opts: "ExtractOptions", task: str, times: List[float],
               start: Optional[float], end: Optional[float]) -> Dict[str, Any]:
    """What the meta records about the decoding: times, rates, range, decoder, task.

    timestamps: float64 seconds, one per stored frame, when it is shown.
    """
    m: Dict[str, Any] = {"timestamps": times, "source_fps": float(reader.fps),
                         "output_fps": float(opts.fps) if opts.fps is not None else None,
                         "decoded_frames": reader.frames_read,
                         "decoder": reader.decoder if isinstance(reader, DecodeSummary)
                         else reader.describe(),
                         "task": task}
    if start is not None or end is not None:
        m["time_range"] = [start, end]
    return m
