"""Time chunks of one long video: computed by different workers, published as one video.

A video with many more frames than a chunk is split at times t_1 < ... < t_{C-1}
inside its range [S, E) (--start/--end, else the whole video). Chunk c owns the
stored frames shown in [t_c, t_{c+1}) (t_0 = S, t_C = E) and the flows that start
at them:

    frames   |-- chunk 0 --|-- chunk 1 --|-- chunk 2 --|
    chunk 0  decodes from S; stores its frames; its last `step` flows end on the
             first `step` frames of chunk 1 (the overlap), which it decodes too
    chunk 1  seeks to t_1 (a keyframe at or before it, decode forward), ...

so every pair is computed exactly once. Each chunk runs the same selection as an
unsplit decode (select.py: --fps ticks, the [S, E) range): decoding from any
frame at or before t_c reproduces the unsplit stream from t_c on, because the
fps filter's state after a source frame depends only on that frame (its tick).

A chunk's result (``ChunkPart``) holds its stored payloads (the store's own bytes:
JPEG frames and planes, or raw uint8 flow), its times, per-flow statistics,
homographies, the source frames it decoded in its span, and a digest of its
first and overlap frames. ``join_parts`` checks that the parts line up (each
chunk's overlap frames are, time and pixels, the next chunk's first frames; the
times increase; no chunk met a corrupt packet or a frame without a time) and
``publish_parts`` writes them through the store's writer in the order an unsplit
run writes (``write_order``), with the meta an unsplit run records: the same
bytes. On any mismatch the video is computed unsplit instead (``ChunkMismatch``;
the runner does it), never published from parts that may differ.

Chunk size: FLOWPREP_CHUNK_FRAMES=N (frames; 0 turns splitting off), else
automatic: at most ``AUTO_CHUNK`` frames a chunk, at least one chunk a worker and
their count rounded up to a multiple of the run's workers, both while chunks keep
``MIN_CHUNK`` frames, and only for videos of at least ``2 x AUTO_CHUNK`` frames
(estimated from the container's duration and the frame rate). Splitting needs a seekable decode (PyAV on a video
file with a start time, or a frame folder), flow (--task both/flow) and a store whose writer takes
stored payloads (jpeg, hdf5, wds).
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..decode import open_reader
from ..decode.base import decode_warnings
from ..decode.select import as_fraction, select
from ..errors import FlowprepError
from ..fsutil import atomic_write_bytes
from ..inputs import VideoInput
from ..store import codec
from ..store.base import FLOW_STREAMS, VideoWriter
from .ledger import FAILED, PUBLISHED, VideoResult
from .pipeline import (DecodeSummary, FrameRun, _OrderedWriter, check_count, fail_result,
                       time_range, video_meta)

if TYPE_CHECKING:  # pragma: no cover
    from ..flow.base import FlowBackend
    from ..store.base import StoreWriter
    from .pipeline import Job

#: the environment variable that sets the chunk size in frames (0: never split)
CHUNK_ENV = "FLOWPREP_CHUNK_FRAMES"
#: automatic chunk size: at most this many frames a chunk (~25 s of native TV-L1 at 340x256)
AUTO_CHUNK = 256
#: automatic chunks are not made smaller than this to balance the workers
MIN_CHUNK = 64
#: stores whose video writer takes stored payloads (add_rgb_bytes, add_flow_bytes)
CHUNKED_FORMATS = ("jpeg", "hdf5", "wds")


class ChunkMismatch(FlowprepError):
    """The parts of a chunked video do not line up; the video is computed unsplit."""


def chunk_setting(value: Optional[str] = None) -> Optional[int]:
    """The chunk size from FLOWPREP_CHUNK_FRAMES (or ``value``): None automatic, 0 off, N frames.

    Raises ConfigError naming the variable for anything but a whole number >= 0 (or
    "auto"/empty).
    """
    from ..errors import ConfigError
    text = os.environ.get(CHUNK_ENV, "") if value is None else value
    text = str(text).strip().lower()
    if text in ("", "auto"):
        return None
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0 or (0 < n < 2):
        raise ConfigError(f"{CHUNK_ENV} must be 0 (never split), auto, or a number of frames "
                          f">= 2, got {text!r}")
    return n


@dataclass(frozen=True)
class ChunkSpec:
    """One time chunk of a video.

    Attributes:
        index, count: which chunk, of how many.
        t0: start of its span, seconds (None for the first: from the video's start S).
        t1: end of its span, seconds (None for the last: to the video's end E).
    """

    index: int
    count: int
    t0: Optional[Fraction]
    t1: Optional[Fraction]


def plan_chunks(reader, job: "Job", start: Optional[float], end: Optional[float]
                ) -> Optional[List[ChunkSpec]]:
    """The chunks of the video ``reader`` opened, or None when it is not split.

    Args:
        reader: the open Decoder of the video (its container's duration and rate).
        job: the run (chunk size, workers, options).
        start, end: the video's time range in seconds (None: unbounded).
    """
    opts = job.opts
    size = getattr(job, "chunk_frames", None)
    if size == 0 or opts.task == "rgb" or opts.format not in CHUNKED_FORMATS:
        return None
    if not reader.seekable or not reader.duration:
        return None
    rate = float(opts.fps) if opts.fps is not None else float(reader.fps or 0)
    if rate <= 0:
        return None
    a = as_fraction(start) if start else Fraction(0)
    b = as_fraction(reader.duration)
    if end is not None:
        b = min(b, as_fraction(end))
    frames = float(b - a) * rate
    chunk = AUTO_CHUNK if size is None else int(size)
    if frames < 2 * chunk or frames < 2 * (int(opts.step) + 1):
        return None
    count = math.ceil(frames / chunk)
    workers = max(1, int(getattr(job, "workers", 1) or 1))
    if size is None:  # automatic: every worker gets chunks, in equal numbers where it can
        count = max(count, min(workers, int(frames // MIN_CHUNK)))
        balanced = count + (-count) % workers
        if frames / balanced >= MIN_CHUNK:
            count = balanced
    # span ends on a grid of 1/1000 s so that they are short exact fractions
    bounds = [a + Fraction(round(float(b - a) * c / count * 1000), 1000) for c in range(1, count)]
    bounds = sorted(set(t for t in bounds if a < t < b))
    if not bounds:
        return None
    edges: List[Optional[Fraction]] = [None, *bounds, None]
    n = len(edges) - 1
    return [ChunkSpec(i, n, edges[i], edges[i + 1]) for i in range(n)]


def digest(rgb: np.ndarray) -> bytes:
    """A 16-byte digest of a frame's pixels: uint8 (H, W, 3)."""
    return hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest()


class PayloadRecorder(VideoWriter):
    """A VideoWriter that keeps the payloads a store would write, encoded as it encodes
    them (codec.py: JPEG at the run's quality; raw uint8 flow for the HDF5 raw payload).

    Attributes:
        rgb: JPEG bytes per frame, in order.
        flows: (backward, warped) -> per flow (x, y) JPEG bytes, or uint8 (H, W, 2).
    """

    def __init__(self, quality: int, raw_flow: bool) -> None:
        self.quality, self.raw_flow = int(quality), bool(raw_flow)
        self.rgb: List[bytes] = []
        self.flows: Dict[Tuple[bool, bool], List[Any]] = {k: [] for k in FLOW_STREAMS}

    def add_rgb(self, rgb: np.ndarray) -> None:
        self.rgb.append(codec.encode_rgb(rgb, self.quality))

    def add_flow(self, q: np.ndarray, backward: bool = False, warped: bool = False) -> None:
        key = (bool(backward), bool(warped))
        if self.raw_flow:
            self.flows[key].append(np.array(q, dtype=np.uint8, copy=True))
        else:
            self.flows[key].append(
                (codec.encode_grey(np.ascontiguousarray(q[..., 0]), self.quality),
                 codec.encode_grey(np.ascontiguousarray(q[..., 1]), self.quality)))

    def commit(self, meta: Dict[str, Any]) -> None:  # pragma: no cover - never published
        raise AssertionError("a chunk is joined, not committed")

    def abort(self) -> None:
        self.rgb.clear()
        for v in self.flows.values():
            v.clear()


@dataclass
class ChunkPart:
    """What one chunk computed (pickled into the run's staging area between workers).

    Attributes:
        spec: the chunk.
        times: float seconds of its stored frames; exact: Fraction (or float) each.
        head: (time, digest) of its first min(step, frames) frames.
        overlap: (time, digest) of the frames after its span its last flows end on
            (step of them, fewer at the end of the video).
        n_flows: flows it computed (pairs starting at its frames).
        batch: pairs per flow call (the unsplit write order depends on it).
        stats: per-flow statistics (the _FlowSink's): meta key -> list, one per flow.
        warp: the WarpStage's meta of its flows (--warped), or None.
        frames_read: source frames decoded inside its span (the first chunk: from where
            decoding started), so that the parts add up to an unsplit decode's count.
        exhausted: the decode reached the end of the stream.
        decode_errors, invented_times: corrupt packets / invented timestamps met.
        decoder: the reader's DecodeSummary (sizes, rates, describe).
        seeked_to: where its seek landed (seconds) or None.
        frames_skipped: the reader's frames before where its seek landed (the first
            chunk's, after a --start seek, count for the truncation warning).
        rgb, flows: the payloads (PayloadRecorder's), dropped from the header.
    """

    spec: ChunkSpec
    times: List[Any]
    head: List[Tuple[Any, bytes]]
    overlap: List[Tuple[Any, bytes]]
    n_flows: int
    batch: int
    stats: Dict[str, List[Any]]
    warp: Optional[Dict[str, Any]]
    frames_read: int
    exhausted: bool
    decode_errors: int
    invented_times: int
    decoder: DecodeSummary
    seeked_to: Optional[float] = None
    frames_skipped: int = 0
    rgb: List[bytes] = field(default_factory=list)
    flows: Dict[Tuple[bool, bool], List[Any]] = field(default_factory=dict)
    seconds: float = 0.0


def compute_chunk(vin: VideoInput, job: "Job", backend: "FlowBackend", spec: ChunkSpec,
                  progress: Optional[Callable[[int], None]] = None) -> ChunkPart:
    """Decode, compute and encode one chunk (see the module docstring).

    Raises the errors process_video turns into a failure (DecodeError, ...).
    """
    t_start = time.perf_counter()
    opts = job.opts
    step = int(opts.step)
    start, end = time_range(vin, opts)
    lo = spec.t0 if spec.t0 is not None else (as_fraction(start) if start else None)
    reader = open_reader(vin.path, job.decoder, opts.resize, threads=job.threads,
                         input_fps=opts.input_fps, seek=lo,
                         storage_options=job.storage_options)
    out = _OrderedWriter()
    try:
        rec = PayloadRecorder(opts.jpeg_quality, opts.format == "hdf5" and opts.payload == "raw")
        run = FrameRun(job, backend, rec, out)
        state = {"own": 0, "last": None}

        def counted() -> Iterator[Tuple[Any, np.ndarray]]:
            for k, (t, rgb) in enumerate(reader.frames()):
                state["last"] = t
                if (spec.t0 is None or t >= spec.t0) and (spec.t1 is None or t < spec.t1):
                    state["own"] += 1
                if progress is not None and k % 8 == 7:
                    progress(8)
                yield t, rgb

        src = counted()
        head: List[Tuple[Any, bytes]] = []
        overlap: List[Tuple[Any, bytes]] = []
        for t, rgb in select(src, fps=opts.fps, start=lo, end=end,
                             end_time=lambda _t: reader.end_time):
            if spec.t1 is None or t < spec.t1:
                if len(head) < step:
                    head.append((t, digest(rgb)))
                run.add(t, rgb)
            else:
                overlap.append((t, digest(rgb)))
                run.add(t, rgb, store=False)
                if len(overlap) >= step:
                    break
        run.finish()
        if spec.t1 is not None and (state["last"] is None or state["last"] < spec.t1):
            for t, _ in src:  # every source frame of the span is counted
                if t >= spec.t1:
                    break
        return ChunkPart(
            spec=spec, times=list(run.times), head=head, overlap=overlap, n_flows=run.n_flows,
            batch=run.batch, stats=run.sink.stats,
            warp=run.warp.meta() if run.warp is not None else None,
            frames_read=state["own"], exhausted=bool(reader.exhausted),
            decode_errors=int(reader.decode_errors), invented_times=int(reader.invented_times),
            decoder=DecodeSummary.of(reader),
            seeked_to=None if reader.seeked_to is None else float(reader.seeked_to),
            frames_skipped=int(reader.frames_skipped),
            rgb=rec.rgb, flows={k: v for k, v in rec.flows.items() if v},
            seconds=time.perf_counter() - t_start)
    finally:
        out.stop()
        reader.close()


# --------------------------------------------------------------------------------------
# parts on disk: a header pickle, then the payload pickle (the join reads headers first)


def save_part(part: ChunkPart, path: str) -> None:
    """Write ``part`` to ``path`` atomically (a temporary name, then renamed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    header = ChunkPart(**{**part.__dict__, "rgb": [], "flows": {}})
    # two pickles back to back: the join reads the headers alone first. Not fsynced:
    # staged parts never outlive their run (a crash redoes the video)
    atomic_write_bytes(path, pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
                       + pickle.dumps((part.rgb, part.flows), protocol=pickle.HIGHEST_PROTOCOL),
                       fsync=False)


def load_header(path: str) -> ChunkPart:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def load_payload(path: str) -> Tuple[List[bytes], Dict[Tuple[bool, bool], List[Any]]]:
    with open(path, "rb") as fh:
        pickle.load(fh)
        return pickle.load(fh)


def parts_dir(job: "Job", video_id: str) -> str:
    """Where the parts of ``video_id`` are staged (inside the run's staging area)."""
    h = hashlib.sha1(video_id.encode()).hexdigest()[:16]
    return os.path.join(job.tmp_root, "chunks", h)


def part_path(job: "Job", video_id: str, index: int) -> str:
    return os.path.join(parts_dir(job, video_id), f"part-{index:05d}.pkl")


def drop_parts(job: "Job", video_id: str) -> None:
    shutil.rmtree(parts_dir(job, video_id), ignore_errors=True)


# --------------------------------------------------------------------------------------
# the join


@dataclass
class Joined:
    """The checked, concatenated headers of a chunked video.

    Attributes:
        times: float seconds of every stored frame.
        n_flows: flows in all.
        offsets: per part, the global index of its first frame and first flow.
        stats, warp: the concatenated per-flow meta (warp None without --warped).
        decoder: the DecodeSummary an unsplit decode records.
        batch: pairs per flow call.
    """

    times: List[float]
    n_flows: int
    offsets: List[Tuple[int, int]]
    stats: Dict[str, List[Any]]
    warp: Optional[Dict[str, Any]]
    decoder: DecodeSummary
    batch: int


#: WarpStage.meta() keys holding one value per flow (the rest must agree across chunks)
WARP_PER_FLOW = ("homographies", "homography_inliers", "homography_points",
                 "homography_fallback", "homography_fallback_reason")


def join_parts(parts: Sequence[ChunkPart], step: int) -> Joined:
    """Check that the chunk headers line up and concatenate them (pure).

    Raises:
        ChunkMismatch naming the first problem: parts missing or out of order, a
        corrupt packet or an invented time in a chunk, readers that disagree, times
        that do not increase, overlap frames (time or pixels) that are not the next
        chunk's first frames, flow counts that do not add up, too few frames.
    """
    if not parts:
        raise ChunkMismatch("no chunks")
    count = parts[0].spec.count
    if [p.spec.index for p in parts] != list(range(count)) or any(p.spec.count != count
                                                                 for p in parts):
        raise ChunkMismatch(f"chunks missing or out of order: {[p.spec.index for p in parts]}")
    d0 = parts[0].decoder
    for p in parts:
        if p.decode_errors or p.invented_times:
            raise ChunkMismatch(f"chunk {p.spec.index} met {p.decode_errors} corrupt packets and "
                                f"{p.invented_times} frames without a usable time")
        d = p.decoder
        same = (d.fps, d.width, d.height, d.src_width, d.src_height, d.container_frames,
                d.decoder) == (d0.fps, d0.width, d0.height, d0.src_width, d0.src_height,
                               d0.container_frames, d0.decoder)
        if not same or p.batch != parts[0].batch:
            raise ChunkMismatch(f"chunk {p.spec.index} decoded differently from chunk 0")
    exact = [t for p in parts for t in p.times]
    n = len(exact)
    if any(not a < b for a, b in zip(exact, exact[1:])):
        raise ChunkMismatch("frame times do not increase across the chunks")
    if n < step + 1:
        raise ChunkMismatch(f"{n} frames in all")
    heads: List[List[Tuple[Any, bytes]]] = [p.head for p in parts]
    offsets: List[Tuple[int, int]] = []
    first, flows = 0, 0
    for c, p in enumerate(parts):
        own = len(p.times)
        if [float(t) for t, _ in p.head] != [float(t) for t in p.times[:step]]:
            raise ChunkMismatch(f"chunk {c}: its first frames and its times disagree")
        following = [h for hs in heads[c + 1:] for h in hs][:step]
        want = min(step, n - first - own)
        if len(p.overlap) != want or [(float(t), h) for t, h in p.overlap] != \
                [(float(t), h) for t, h in following[:want]]:
            raise ChunkMismatch(f"chunk {c}: its overlap frames are not chunk {c + 1}'s first "
                                f"frames (times or pixels differ)")
        expect = max(0, min(first + own, n - step) - first)
        if p.n_flows != expect:
            raise ChunkMismatch(f"chunk {c}: {p.n_flows} flows, expected {expect}")
        offsets.append((first, flows))
        first += own
        flows += p.n_flows
    stats: Dict[str, List[Any]] = {}
    for p in parts:
        for k, v in p.stats.items():
            stats.setdefault(k, []).extend(v)
    warp = None
    if any(p.warp is not None for p in parts):
        warp = {}
        for p in parts:
            if p.warp is None:
                raise ChunkMismatch(f"chunk {p.spec.index} has no warp record")
            for k, v in p.warp.items():
                if k in WARP_PER_FLOW:
                    warp.setdefault(k, []).extend(v)
                elif k in warp and warp[k] != v:
                    raise ChunkMismatch(f"chunks disagree on the warp's {k}")
                else:
                    warp[k] = v
    frames_read = sum(p.frames_read for p in parts)
    exhausted = any(p.exhausted for p in parts)
    dec = DecodeSummary(d0.fps, d0.width, d0.height, d0.src_width, d0.src_height,
                        d0.container_frames, 0, frames_read, d0.decoder,
                        decode_warnings(frames_read, d0.container_frames, exhausted, 0,
                                        parts[0].frames_skipped))
    return Joined([float(t) for t in exact], flows, offsets, stats, warp, dec, parts[0].batch)


def write_order(n_frames: int, step: int, batch: int, want_rgb: bool, want_flow: bool,
                backward: bool, warped: bool) -> Iterator[Tuple[Any, ...]]:
    """The VideoWriter calls of an unsplit run, in order (FrameRun's order).

    Yields ("rgb", k) for frame k, ("flow", j, backward, warped) for flow j.
    """
    pending: List[int] = []

    def flush() -> Iterator[Tuple[Any, ...]]:
        for j in pending:
            yield ("flow", j, False, False)
            if backward:
                yield ("flow", j, True, False)
        if warped:
            for j in pending:
                yield ("flow", j, False, True)
                if backward:
                    yield ("flow", j, True, True)
        pending.clear()

    for k in range(n_frames):
        if want_rgb:
            yield ("rgb", k)
        if want_flow and k >= step:
            pending.append(k - step)
            if len(pending) >= batch:
                yield from flush()
    yield from flush()


class _Payloads:
    """Payloads of the parts by global index, loaded a part at a time (memory: two parts)."""

    def __init__(self, paths: Sequence[str], joined: Joined) -> None:
        self.paths, self.offsets = list(paths), joined.offsets
        self.loaded: Dict[int, Tuple[List[bytes], Dict[Tuple[bool, bool], List[Any]]]] = {}

    def _part(self, c: int):
        if c not in self.loaded:
            for old in [k for k in self.loaded if k < c - 1]:
                del self.loaded[old]
            self.loaded[c] = load_payload(self.paths[c])
        return self.loaded[c]

    def _find(self, i: int, which: int) -> Tuple[int, int]:
        c = max(k for k, off in enumerate(self.offsets) if off[which] <= i)
        return c, i - self.offsets[c][which]

    def rgb(self, k: int) -> bytes:
        c, i = self._find(k, 0)
        return self._part(c)[0][i]

    def flow(self, j: int, key: Tuple[bool, bool]) -> Any:
        c, i = self._find(j, 1)
        return self._part(c)[1][key][i]


def publish_parts(vin: VideoInput, job: "Job", backend: "FlowBackend", writer: "StoreWriter",
                  paths: Sequence[str], progress: Optional[Callable[[int], None]] = None
                  ) -> Dict[str, Any]:
    """Join the parts at ``paths`` (in chunk order) into one published video.

    ``progress`` is called with 8 for every 8 payloads written (the runners' clock
    allows time per frame; a join writes a whole long video).

    Returns the video's VideoResult (published, or failed writing); raises ChunkMismatch
    (nothing written) when the parts do not line up, and DiskFullError.
    """
    t_start = time.perf_counter()
    opts = job.opts
    step = int(opts.step)
    result = VideoResult(vin.video_id, vin.path, FAILED)
    try:
        headers = [load_header(p) for p in paths]
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as exc:
        raise ChunkMismatch(f"a staged chunk is unreadable ({type(exc).__name__}: {exc})") from None
    joined = join_parts(headers, step)
    start, end = time_range(vin, opts)
    n = len(joined.times)
    check_count(vin, n, step, opts.task in ("both", "flow"), joined.decoder.frames_read, None,
                start, end)
    meta = video_meta(vin, job, backend, joined.decoder, joined.times, joined.n_flows,
                      start, end, joined.stats, joined.warp)
    vw = None
    try:
        vw = writer.begin(vin.video_id)
        src = _Payloads(paths, joined)
        raw = opts.format == "hdf5" and opts.payload == "raw"
        ops = write_order(n, step, joined.batch, opts.task in ("both", "rgb"),
                          opts.task in ("both", "flow"), bool(opts.backward), bool(opts.warped))
        for k, op in enumerate(ops):
            if progress is not None and k % 8 == 7:
                progress(8)
            if op[0] == "rgb":
                vw.add_rgb_bytes(src.rgb(op[1]))
            else:
                _, j, b, w = op
                data = src.flow(j, (b, w))
                if raw:
                    vw.add_flow_raw(data, backward=b, warped=w)
                else:
                    vw.add_flow_bytes(data[0], data[1], backward=b, warped=w)
        vw.commit(meta)
        result.status, result.frames, result.flows = PUBLISHED, n, joined.n_flows
        result.chunks = len(paths)
        result.warnings = list(meta.get("warnings") or [])
    except Exception as exc:
        fail_result(result, exc, vw)
    result.seconds = time.perf_counter() - t_start
    return result


# --------------------------------------------------------------------------------------
# scheduling: the tasks a runner hands its workers, and its book of chunked videos


class _VideoTask:
    """A task on one input video ``vin``: its id and path, as a VideoInput's."""

    @property
    def video_id(self) -> str:
        return self.vin.video_id  # type: ignore[attr-defined]

    @property
    def path(self) -> str:
        return self.vin.path  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ChunkTask(_VideoTask):
    """Compute chunk ``spec`` of video ``vin`` into the run's staging area."""

    vin: VideoInput
    spec: ChunkSpec


@dataclass(frozen=True)
class JoinTask(_VideoTask):
    """Join the ``count`` staged chunks of ``vin`` into one published video."""

    vin: VideoInput
    count: int


def video_of(item: Any) -> VideoInput:
    """The VideoInput of a runner's task (a VideoInput, ChunkTask or JoinTask)."""
    return getattr(item, "vin", item)


def splitting(job: "Job") -> bool:
    """True when the run may split long videos (FLOWPREP_CHUNK_FRAMES is not 0, flow is
    computed, the store takes stored payloads)."""
    return (getattr(job, "chunk_frames", None) != 0 and job.opts.task != "rgb"
            and job.opts.format in CHUNKED_FORMATS)


@dataclass
class ChunkAnswer:
    """What a worker answers, instead of a VideoResult, about a long video's chunks.

    Attributes:
        video_id, input: the video.
        status: "split" (not computed: ``chunks`` to schedule), "chunk" (chunk ``index``
            is staged) or "failed" (chunk ``index`` failed: ``reason``).
        chunks: the ChunkSpecs of a split video.
        index: the chunk's index.
        reason: why the chunk failed.
        frames: stored frames the chunk computed.
        seconds: wall time in the worker.
    """

    video_id: str
    input: str
    status: str
    chunks: List[ChunkSpec] = field(default_factory=list)
    index: int = -1
    reason: Optional[str] = None
    frames: int = 0
    seconds: float = 0.0


def split_answer(reader, job: "Job", vin: VideoInput, start: Optional[float],
                 end: Optional[float]) -> Optional[ChunkAnswer]:
    """process_video's ``split``: a "split" answer for a long video, else None."""
    specs = plan_chunks(reader, job, start, end)
    if not specs:
        return None
    return ChunkAnswer(vin.video_id, vin.path, "split", chunks=specs)


def run_item(item: Any, job: "Job", backend: "FlowBackend", writer: "StoreWriter",
             progress: Optional[Callable[[int], None]] = None,
             process: Optional[Callable[..., Any]] = None) -> Any:
    """What a worker does with a task: a video (its VideoResult, or a "split" ChunkAnswer),
    a chunk (a ChunkAnswer: staged or failed), or a join (the video's VideoResult).

    ``process``: process_video, or the test hook's wrapper of it (run/faults.py).
    DiskFullError propagates, as from process_video.
    """
    from .pipeline import process_video
    if isinstance(item, ChunkTask):
        return _run_chunk(item, job, backend, progress)
    if isinstance(item, JoinTask):
        return _run_join(item, job, backend, writer, progress)
    return (process or process_video)(item, job, backend, writer, progress,
                                      split=split_answer if splitting(job) else None)


def _run_chunk(task: ChunkTask, job: "Job", backend: "FlowBackend",
               progress: Optional[Callable[[int], None]]) -> ChunkAnswer:
    from . import faults
    t0 = time.perf_counter()
    spec = task.spec
    answer = ChunkAnswer(task.video_id, task.path, "failed", index=spec.index)
    try:
        # FLOWPREP_TEST_HOOK=segfault:<id>#chunk<i> (tests): the fault of one chunk
        faults.wrap(lambda _chunk: None)(_ChunkId(f"{task.video_id}#chunk{spec.index}"))
        part = compute_chunk(task.vin, job, backend, spec, progress)
        save_part(part, part_path(job, task.video_id, spec.index))
        answer.status, answer.frames = "chunk", len(part.times)
    except Exception as exc:
        res = VideoResult(task.video_id, task.path, FAILED)
        fail_result(res, exc)  # DiskFullError propagates
        answer.reason = f"{res.reason} (in {describe_chunk(spec)})"
    answer.seconds = time.perf_counter() - t0
    return answer


def _run_join(task: JoinTask, job: "Job", backend: "FlowBackend", writer: "StoreWriter",
              progress: Optional[Callable[[int], None]]) -> VideoResult:
    from .pipeline import process_video
    paths = [part_path(job, task.video_id, i) for i in range(task.count)]
    try:
        try:
            return publish_parts(task.vin, job, backend, writer, paths, progress)
        except ChunkMismatch as exc:  # never publish parts that may differ: compute it whole
            res = process_video(task.vin, job, backend, writer, progress)
            res.chunk_fallback = str(exc)
            return res
    finally:
        drop_parts(job, task.video_id)


class _ChunkId:
    """What the test hook reads of a chunk: an id naming the chunk."""

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id


def describe_chunk(spec: ChunkSpec) -> str:
    """"time chunk 2 of 4 [12.5 s, 25 s)" for failure reasons."""
    a = "start" if spec.t0 is None else f"{float(spec.t0):g} s"
    b = "end" if spec.t1 is None else f"{float(spec.t1):g} s"
    return f"time chunk {spec.index + 1} of {spec.count} [{a}, {b})"


class ChunkBook:
    """A runner's record of its split videos: which chunks are staged, when to join, and
    the first failure of each (which fails the video; later ones are ignored)."""

    def __init__(self, job: "Job") -> None:
        self.job = job
        #: video_id -> {"vin", "count", "done": set of indices, "failed": reason or None}
        self.videos: Dict[str, Dict[str, Any]] = {}

    def split(self, vin: VideoInput, specs: Sequence[ChunkSpec]) -> List[ChunkTask]:
        """Register a split video; its chunk tasks, in chunk order."""
        drop_parts(self.job, vin.video_id)
        self.videos[vin.video_id] = {"vin": vin, "count": len(specs), "done": set(),
                                     "failed": None}
        return [ChunkTask(vin, s) for s in specs]

    def chunk_done(self, task: ChunkTask) -> Optional[JoinTask]:
        """A chunk is staged; the join task once every chunk of a live video is."""
        v = self.videos.get(task.video_id)
        if v is None or v["failed"] is not None:
            return None
        v["done"].add(task.spec.index)
        if len(v["done"]) == v["count"]:
            return JoinTask(v["vin"], v["count"])
        return None

    def chunk_failed(self, task: ChunkTask, reason: str) -> bool:
        """Record a failed chunk; True the first time for its video (record the video's
        failure then), False when the video had failed already."""
        v = self.videos.get(task.video_id)
        if v is None or v["failed"] is not None:
            return False
        v["failed"] = reason
        drop_parts(self.job, task.video_id)
        return True

    def is_sibling(self, item: Any, video_id: str) -> bool:
        """True when ``item`` is a chunk or join task of ``video_id`` (to drop from a queue)."""
        return isinstance(item, (ChunkTask, JoinTask)) and item.video_id == video_id
