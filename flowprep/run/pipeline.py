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


def process_video(vin: VideoInput, job: Job, backend: FlowBackend, writer: StoreWriter,
                  progress: Optional[Callable[[int], None]] = None) -> VideoResult:
    """Decode, compute flow, quantize and write one video; commit it or fail cleanly.

    Returns:
        its VideoResult (ledger.py): published (committed into ``writer``) or failed with
        the reason; writer_error when ``writer`` must be retired. DiskFullError propagates
        (the run must stop).
    """
    t0 = time.perf_counter()
    opts = job.opts
    step = int(opts.step)
    task = opts.task
    want_rgb, want_flow = task in ("both", "rgb"), task in ("both", "flow")
    result = VideoResult(vin.video_id, vin.path, FAILED)
    vw = None
    reader = None
    out = _OrderedWriter()
    try:
        reader = open_reader(vin.path, job.decoder, opts.resize, threads=job.threads,
                             input_fps=opts.input_fps, storage_options=job.storage_options)
        start, end = time_range(vin, opts)
        vw = writer.begin(vin.video_id)
        sink = _FlowSink(opts, vw, out)
        window: deque = deque(maxlen=step + 1)
        pending: List[Tuple[np.ndarray, np.ndarray]] = []
        batch = max(1, int(opts.batch_size or (backend.batch_size if backend else 1) or 1))
        n_flows = 0
        times: List[float] = []
        warp = (WarpStage.for_backend(opts.warped, backend)  # --warped
                if opts.warped and want_flow else None)

        def flush() -> None:
            nonlocal n_flows
            if not pending:
                return
            pairs = list(pending)
            if opts.backward:
                pairs += [(b, a) for a, b in pending]
            flows = backend.compute_batch(pairs)
            k = len(pending)
            for j in range(k):
                sink.add(flows[j], backward=False)
                if opts.backward:
                    sink.add(flows[k + j], backward=True)
            if warp is not None:  # --warped: homographies, warp, the second flow
                warp.process(backend, pending, flows, bool(opts.backward), sink.add)
            n_flows += k
            pending.clear()

        def decoded():  # progress (and so the per-frame timeout) counts decoded frames
            for k, item in enumerate(reader.frames()):
                if progress is not None and k % 8 == 7:
                    progress(8)
                yield item

        stream = select(decoded(), fps=opts.fps, start=start, end=end,
                        end_time=lambda _t: reader.end_time)
        for t, rgb in stream:
            times.append(float(t))
            if want_rgb:
                out.submit(vw.add_rgb, rgb)
            if want_flow:
                window.append(rgb_to_grey(rgb))
                if len(window) == step + 1:
                    pending.append((window[0], window[-1]))
                    if len(pending) >= batch:
                        flush()
        flush()
        out.wait()
        n = len(times)
        skipped = reader.skipped_summary()  # every failure reason counts what was skipped
        skipped = f", {skipped}" if skipped else ""
        if n == 0:
            raise DecodeError(f"{vin.path}: no frames in [{_sec(start)}, {_sec(end)}) "
                              f"({reader.frames_read} frames decoded{skipped}"
                              + (f", the last shown until {float(reader.end_time):.3f} s"
                                 if reader.end_time is not None else "") + ")")
        if want_flow and n < step + 1:
            raise DecodeError(
                f"{vin.path}: {n} frame{'s' if n != 1 else ''} "
                f"{'decoded' if n == reader.frames_read else 'selected'}{skipped}; flow with "
                f"step {step} needs at least {step + 1}")
        src_fps = reader.fps
        meta = {
            "video_id": vin.video_id, "source": source_of(vin.path),
            "class_name": vin.class_name, "label": vin.label,
            "num_frames": n, "num_flows": n_flows,
            "fps": float(opts.fps) if opts.fps is not None else src_fps,
            "width": reader.width, "height": reader.height,
            "src_width": reader.src_width, "src_height": reader.src_height,
            "container_frames": reader.container_frames, "decode_errors": reader.decode_errors,
            "step": step, "backward": bool(opts.backward),
            "quant": job.config["quant"], "config_key": job.key,
            "flow": backend.describe() if want_flow else None, "flowprep_version": __version__,
        }
        meta.update(input_meta(reader, opts, task, times, start, end))
        if vin.original_id is not None:  # the id had whitespace: the path's own spelling
            meta["original_id"] = vin.original_id
        if not want_flow:
            meta["mean_flow"] = []
        meta.update(sink.stats)  # mean_flow, motion(_p95), clipped_fraction[, ranges] of each stream
        if warp is not None:  # --warped: settings, homographies, inliers, fallbacks
            meta.update(warp.meta())
        warnings = reader.warnings()
        if warnings:  # published anyway: see docs/reliability.md, "Damaged inputs"
            meta["warnings"] = warnings
        vw.commit(meta)
        result.status, result.frames, result.flows = PUBLISHED, n, n_flows
        result.warnings = list(warnings or [])
    except Exception as exc:
        out.stop()  # the background writes end before the writer is aborted or retired
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
            result.detail = traceback.format_exc()
        # After a write error or a bug the writer's state is unknown (an HDF5 shard may
        # hold half-written data): the ledger retires the writer, and what it committed
        # but had not yet published is redone by a fresh one (ledger.py).
        result.writer_error = not isinstance(exc, (DecodeError, cv2.error, MemoryError)) \
            and (storage is not None or isinstance(exc, (StoreError, OSError))
                 or not isinstance(exc, FlowprepError))
    finally:
        out.stop()
        if reader is not None:
            reader.close()  # the decoder now, not whenever the suspended generator is collected
    result.seconds = time.perf_counter() - t0
    return result


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
                         "decoded_frames": reader.frames_read, "decoder": reader.describe(),
                         "task": task}
    if start is not None or end is not None:
        m["time_range"] = [start, end]
    return m
