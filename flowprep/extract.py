"""One video through the stages, and many videos in parallel.

    decode -> grey -> flow (t -> t+step[, and back]) -> quantize + mean -> store

``extract`` is the library entry point behind ``flowprep extract``.
"""
from __future__ import annotations

import os
import platform
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from . import __version__
from . import quantize as qz
from .decode import Resize, VideoReader, rgb_to_grey
from .errors import (ConfigError, DecodeError, DiskFullError, FlowprepError, StoreError,
                     WriteError)
from .flow import FlowChoice, merge_params, resolve
from .flow.base import FlowBackend
from .flow.warp import WarpStage, check_supported as check_warp_supported, settings_from
from .fsutil import storage_error as _storage_error
from .inputs import VideoInput, class_names, discover, parse_shard, select_shard
from .store import FORMATS, open_writer, published_keys
from .store.base import (STORE_FILE, StoreWriter, config_key, read_store_file, record_failure,
                         write_store_file, STORE_VERSION)


@dataclass(frozen=True)
class ExtractOptions:
    """Every option of ``flowprep extract`` (see DESIGN.md, The command line).

    Attributes:
        algo: "tvl1" | "farneback" | "dis" | "brox".
        device: "auto" | "cpu" | "cuda" | "cuda:N" | "cuda:N,M".
        backend: "auto" | "opencv" | "torch".
        params: algorithm parameter overrides (strings or values).
        format: "jpeg" | "hdf5".
        short_side: resize short side in pixels (0 keeps the size); ignored with size.
        size: (width, height) in pixels, or None.
        bound: B in pixels for fixed quantization.
        quant: "fixed" | "adaptive".
        step: K, flow from frame t to t+K.
        backward: also store the flow from t+K back to t.
        warped: also store TSN's warped flow (camera homography removed, see
            docs/warped.md): False, True (default settings), or a dict of
            flowprep.flow.warp.WarpSettings fields.
        jpeg_quality: 1..100.
        jobs: parallel worker processes (None: the machine's cores).
        shard: "I/N" (0-based) or None (from SLURM_ARRAY_TASK_* when set).
        scheduler: dask.distributed scheduler address, or None for local processes.
        force: recompute published videos.
        timeout: per-video limit in seconds is timeout + timeout_per_frame x frames decoded.
        batch_size: frame pairs per flow call (torch backend), None = backend's choice.
        shard_size: HDF5 shard size limit in bytes.
        payload: HDF5 frame payload, "jpeg" (same bytes as the JPEG store) or "raw".
        progress: draw a progress line on stderr.
    """

    algo: str = "tvl1"
    device: str = "auto"
    backend: str = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)
    format: str = "jpeg"
    short_side: int = 256
    size: Optional[Tuple[int, int]] = None
    bound: float = qz.DEFAULT_BOUND
    quant: str = "fixed"
    step: int = 1
    backward: bool = False
    warped: Any = False
    jpeg_quality: int = 95
    jobs: Optional[int] = None
    shard: Optional[str] = None
    scheduler: Optional[str] = None
    force: bool = False
    timeout: float = 300.0
    timeout_per_frame: float = 10.0
    batch_size: Optional[int] = None
    shard_size: int = 1 << 30
    payload: str = "jpeg"
    progress: bool = False

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.quant not in qz.SCHEMES:
            raise ConfigError(f"quant must be one of {', '.join(qz.SCHEMES)}, got {self.quant!r}")
        qz.check_bound(self.bound)
        if int(self.step) < 1:
            raise ConfigError(f"step must be at least 1, got {self.step}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ConfigError(f"jpeg quality must be in 1..100, got {self.jpeg_quality}")
        if self.jobs is not None and int(self.jobs) < 1:
            raise ConfigError(f"jobs must be at least 1, got {self.jobs}")
        if self.payload not in ("jpeg", "raw"):
            raise ConfigError(f"payload must be jpeg or raw, got {self.payload!r}")
        if self.timeout <= 0 or self.timeout_per_frame < 0:
            raise ConfigError("timeout must be positive and timeout per frame non-negative")
        Resize(self.short_side, self.size)
        if self.warped:
            settings_from(self.warped)
            if getattr(self, "task", "both") == "rgb":  # --task: helper 12's option
                raise ConfigError("--warped computes flow, but --task rgb stores none; "
                                  "use --task both or --task flow with --warped")

    @property
    def resize(self) -> Resize:
        return Resize(int(self.short_side), tuple(self.size) if self.size else None)


def versions() -> Dict[str, str]:
    """Library versions recorded in the store."""
    out = {"flowprep": __version__, "opencv": cv2.__version__, "numpy": np.__version__,
           "python": platform.python_version()}
    for mod in ("h5py", "torch"):
        try:
            import importlib.metadata as md
            out[mod] = md.version(mod)
        except Exception:
            pass
    return out


def build_config(opts: ExtractOptions, choice: FlowChoice, params: Dict[str, Any]) -> Dict[str, Any]:
    """The output-affecting configuration (hashed into config_key)."""
    quant: Dict[str, Any] = {"scheme": opts.quant}
    if opts.quant == "fixed":
        quant["bound"] = float(opts.bound)
    cfg = {
        "algo": choice.algo, "implementation": choice.implementation, "params": params,
        "quant": quant, "resize": opts.resize.describe(), "step": int(opts.step),
        "backward": bool(opts.backward), "jpeg_quality": int(opts.jpeg_quality),
        "grey": "ITU-R BT.601 luma of the resized RGB frame",
    }
    # The store format is not output-affecting (a JPEG store and an HDF5 store with the
    # JPEG payload hold the same bytes; flowprep convert moves between them), so it is
    # recorded in flowprep.json, not hashed. The raw HDF5 payload stores different flow
    # data (no JPEG loss), so it is.
    if opts.format == "hdf5" and opts.payload == "raw":
        cfg["payload"] = "raw"
    if opts.warped:  # only when asked: stores made without --warped keep their config key
        cfg["warped"] = settings_from(opts.warped).describe()
    return cfg


@dataclass
class Job:
    """What a worker needs to process videos (picklable)."""

    opts: ExtractOptions
    choice: FlowChoice
    params: Dict[str, Any]
    config: Dict[str, Any]
    key: str
    root: str
    tmp_root: str
    threads: int = 1

    def writer(self, tag: str) -> StoreWriter:
        return open_writer(self.opts.format, self.root, self.tmp_root, tag,
                           jpeg_quality=self.opts.jpeg_quality, shard_size=self.opts.shard_size,
                           payload=self.opts.payload)


class _OrderedWriter:
    """Runs a VideoWriter's calls (JPEG encoding, file or HDF5 writes) in one background
    thread, in submission order, so they overlap the next frame's decoding and flow.

    At most ``depth`` calls wait, which bounds memory. An error raised by a call comes
    back, unchanged, from a later ``submit`` or from ``drain``; ``stop`` discards what
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

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def stop(self) -> None:
        for f in self._pending:
            f.cancel()
        self._ex.shutdown(wait=True)
        self._pending.clear()


class _FlowSink:
    """Quantizes flows, keeps per-flow statistics, hands uint8 flow to the writer."""

    def __init__(self, opts: ExtractOptions, vw, out: "_OrderedWriter") -> None:
        self.opts, self.vw, self.out = opts, vw, out
        self.stats: Dict[str, List[Any]] = {"mean_flow": [], "clipped_fraction": [], "ranges": [],
                                            "mean_flow_backward": [], "clipped_fraction_backward": [],
                                            "ranges_backward": []}

    def add(self, flow: np.ndarray, backward: bool, warped: bool = False) -> None:
        sfx = ("_warped" if warped else "") + ("_backward" if backward else "")
        for key in ("mean_flow", "clipped_fraction", "ranges"):
            self.stats.setdefault(key + sfx, [])
        self.stats["mean_flow" + sfx].append([float(v) for v in qz.mean_flow(flow)])
        if self.opts.quant == "fixed":
            q = qz.quantize_fixed(flow, self.opts.bound)
            self.stats["clipped_fraction" + sfx].append(qz.clipped_fraction(flow, self.opts.bound))
        else:
            q, ranges = qz.quantize_adaptive(flow)
            self.stats["ranges" + sfx].append(ranges.tolist())
            self.stats["clipped_fraction" + sfx].append(0.0)
        self.out.submit(self.vw.add_flow, q, backward=backward, warped=warped)


def process_video(vin: VideoInput, job: Job, backend: FlowBackend, writer: StoreWriter,
                  progress: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
    """Decode, compute flow, quantize and write one video; commit it or fail cleanly.

    Returns:
        {"video_id", "input", "status": "published" | "failed", "reason", "frames",
         "flows", "seconds"}. DiskFullError propagates (the run must stop).
    """
    t0 = time.perf_counter()
    opts = job.opts
    step = int(opts.step)
    result: Dict[str, Any] = {"video_id": vin.video_id, "input": vin.path, "frames": 0, "flows": 0}
    vw = None
    reader = None
    out = _OrderedWriter()
    try:
        _test_hook(vin)
        reader = VideoReader(vin.path, opts.resize)
        vw = writer.begin(vin.video_id)
        sink = _FlowSink(opts, vw, out)
        window: deque = deque(maxlen=step + 1)
        pending: List[Tuple[np.ndarray, np.ndarray]] = []
        batch = max(1, int(opts.batch_size or backend.batch_size or 1))
        n_flows = 0
        warp = WarpStage.for_backend(opts.warped, backend) if opts.warped else None  # --warped

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

        for i, rgb in enumerate(reader):
            out.submit(vw.add_rgb, rgb)
            window.append(rgb_to_grey(rgb))
            if len(window) == step + 1:
                pending.append((window[0], window[-1]))
                if len(pending) >= batch:
                    flush()
            if progress is not None and i % 8 == 7:
                progress(8)
        flush()
        out.drain()
        n = reader.frames_read
        if n < step + 1:
            raise DecodeError(
                f"{vin.path}: {n} frame{'s' if n != 1 else ''} decoded; flow with step {step} "
                f"needs at least {step + 1}")
        meta = {
            "video_id": vin.video_id, "source": os.path.abspath(vin.path),
            "class_name": vin.class_name, "label": vin.label,
            "num_frames": n, "num_flows": n_flows, "fps": reader.fps,
            "width": reader.width, "height": reader.height,
            "src_width": reader.src_width, "src_height": reader.src_height,
            "container_frames": reader.container_frames, "decode_errors": reader.decode_errors,
            "step": step, "backward": bool(opts.backward),
            "quant": job.config["quant"], "config_key": job.key,
            "flow": backend.describe(), "flowprep_version": __version__,
        }
        for k, v in sink.stats.items():
            if v:
                meta[k] = v
        if warp is not None:  # --warped: settings, homographies, inliers, fallbacks
            meta.update(warp.meta())
        warnings = reader.warnings()
        if warnings:  # published anyway: see docs/reliability.md, "Damaged inputs"
            meta["warnings"] = warnings
        vw.commit(meta)
        result.update(status="published", frames=n, flows=n_flows)
        if warnings:
            result["warnings"] = warnings
    except Exception as exc:
        out.stop()  # the background writes end before the writer is aborted or retired
        if reader is not None:
            reader.close()  # the decoder now, not whenever the suspended generator is collected
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
        if storage is not None:
            result.update(status="failed", reason=f"writing the store failed: {storage}")
        elif isinstance(exc, (FlowprepError, cv2.error, MemoryError)):
            result.update(status="failed", reason=str(exc) if isinstance(exc, FlowprepError)
                          else f"{type(exc).__name__}: {exc}")
        else:  # a bug: record it with the traceback, keep the run going
            result.update(status="failed", reason=f"internal error {type(exc).__name__}: {exc}",
                          detail=traceback.format_exc())
        # After a write error or a bug the writer's state is unknown (an HDF5 shard may
        # hold half-written data): the worker is not reused, and what it committed but
        # had not yet published is redone by a fresh one (parallel.py).
        result["writer_error"] = not isinstance(exc, (DecodeError, cv2.error, MemoryError)) \
            and (storage is not None or isinstance(exc, (StoreError, OSError))
                 or not isinstance(exc, FlowprepError))
    finally:
        out.stop()
    result["seconds"] = time.perf_counter() - t0
    return result


def failed_result(vin: VideoInput, reason: str) -> Dict[str, Any]:
    """The result dict of a video that ends failed with ``reason`` (runners use it too)."""
    return {"video_id": vin.video_id, "input": vin.path, "status": "failed", "reason": reason}


def timed_out_reason(vin: VideoInput, elapsed: float, frames: int, opts: "ExtractOptions") -> str:
    """The failure reason of a video that overran timeout + timeout_per_frame x frames."""
    return (f"{vin.path}: timed out after {elapsed:.0f} s with {frames} frames decoded "
            f"(limit {opts.timeout:.0f} s + {opts.timeout_per_frame:g} s per frame); "
            f"the worker was killed")


def not_processed(vin: VideoInput, why: str) -> Dict[str, Any]:
    """The result of a video never started because the run stopped early."""
    return failed_result(vin, f"not processed: the run stopped early ({why})")


def _test_hook(vin: VideoInput) -> None:
    """FLOWPREP_TEST_HOOK=action:substring makes a worker crash or hang on matching ids (tests)."""
    hook = os.environ.get("FLOWPREP_TEST_HOOK")
    if not hook:
        return
    action, _, pattern = hook.partition(":")
    if pattern and pattern in vin.video_id:
        if action == "segfault":
            import signal
            os.kill(os.getpid(), signal.SIGSEGV)
        elif action == "hang":
            while True:
                time.sleep(1)
        elif action == "sleep":
            time.sleep(2)


@dataclass
class Report:
    """What a run did. ``failed`` maps input path -> reason."""

    root: str
    published: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    stopped: Optional[str] = None
    not_in_shard: int = 0
    #: input path -> problems of inputs published anyway (truncated, corrupt packets skipped)
    warnings: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def prepare(inputs: Sequence[str], out: str, opts: ExtractOptions,
            choice: Optional[FlowChoice] = None):
    """Validate options, resolve the backend and discover inputs (no files written).

    ``choice`` given (resolved elsewhere, e.g. on a dask worker) is used as is.
    """
    opts.validate()
    if choice is None:
        choice = resolve(opts.algo, opts.device, opts.backend)
    params = merge_params(opts.algo, opts.params)
    if opts.warped:
        check_warp_supported(choice)
    config = build_config(opts, choice, params)
    videos = discover(inputs)
    return choice, params, config, videos


def extract(inputs: Sequence[str], out: str, **options: Any) -> Report:
    """Extract RGB frames and quantized flow of ``inputs`` into the store ``out``.

    Args:
        inputs: video files, folders (searched recursively), or .txt lists.
        out: the store directory (created if missing).
        options: fields of :class:`ExtractOptions`.
    Returns:
        a Report. Inputs that fail are recorded in the store (store.failures)
        and listed in ``report.failed``; nothing raises for a bad input.
    Raises:
        ConfigError / BackendUnavailable for bad options, LockedError when
        another run holds the store.
    """
    from .lock import RunLock, clean_stale
    from .parallel import run_local
    from .store.lists import write_lists

    unknown = set(options) - set(ExtractOptions.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown extract option(s): {', '.join(sorted(unknown))}")
    opts = ExtractOptions(**options)
    choice = None
    if opts.scheduler:
        # the workers compute the flow: resolve the backend and devices where they run
        opts.validate()
        from .distributed import resolve_on_cluster
        choice = resolve_on_cluster(opts.scheduler, opts.algo, opts.device, opts.backend)
    choice, params, config, videos = prepare(inputs, out, opts, choice)
    index, count = parse_shard(opts.shard)
    mine = select_shard(videos, index, count)
    t0 = time.perf_counter()
    root = os.path.abspath(out)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        from .lock import setup_error
        raise setup_error(root, exc) from None
    key = config_key(config)
    report = Report(root=root, not_in_shard=len(videos) - len(mine))
    with RunLock(root, index, count) as lock:
        # under the run lock: a run refused by the lock must not touch flowprep.json
        _write_store_info(root, opts.format, config, key, class_names(videos), lock)
        clean_stale(root)
        done = {} if opts.force else published_keys(opts.format, root)
        todo = []
        for v in mine:
            if done.get(v.video_id) == key:
                report.skipped.append(v.video_id)
            else:
                todo.append(v)
        jobs = int(opts.jobs or os.cpu_count() or 1)
        threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(todo) or 1)))
        job = Job(opts, choice, params, config, key, root, lock.tmp_root, threads)
        if opts.scheduler:
            from .distributed import run_dask
            results = run_dask(todo, job, opts.scheduler, report)
        else:
            results = run_local(todo, job, jobs, report)
        unrecorded = None
        for res in results:
            if res["status"] == "published":
                report.published.append(res["video_id"])
                report.frames += int(res.get("frames", 0))
                if res.get("warnings"):
                    report.warnings[res["input"]] = list(res["warnings"])
            else:
                report.failed[res["input"]] = res["reason"]
                try:
                    record_failure(root, res["input"], res["video_id"], res["reason"])
                except (WriteError, OSError) as exc:  # a full disk: the report still has them
                    unrecorded = _storage_error(exc) or exc
        try:
            write_lists(root, opts.format)
        except (WriteError, OSError) as exc:
            unrecorded = _storage_error(exc) or exc
        if unrecorded is not None:
            note = (f"the failure records or annotation lists could not be written ({unrecorded}); "
                    f"rerun the same command once the store is writable (flowprep index "
                    f"rewrites the lists alone)")
            report.stopped = f"{report.stopped}; {note}" if report.stopped else note
    report.seconds = time.perf_counter() - t0
    return report


def _write_store_info(root: str, fmt: str, config: Dict[str, Any], key: str,
                      classes: List[str], lock=None) -> None:
    """Create or update OUT/flowprep.json (under store.lock: shard parts start together).

    A store whose other parts are being extracted right now (``lock.others_alive()``)
    keeps its configuration: a part with another configuration or other classes
    (label numbering) would mix two stores in one, so it is refused.
    """
    from .errors import LockedError
    from .lock import store_lock
    path = os.path.join(root, STORE_FILE)
    with store_lock(root):
        if os.path.exists(path):
            info = read_store_file(root)
            if info.get("format") != fmt:
                raise ConfigError(
                    f"{root} is a {info.get('format')} store; extract into it with --format "
                    f"{info.get('format')}, or convert it (flowprep convert)")
            if info.get("config_key") == key and info.get("classes") == classes:
                return
            if lock is not None and lock.others_alive():
                what = ("configuration (config key "
                        f"{info.get('config_key')}, this run's is {key})"
                        if info.get("config_key") != key else
                        "list of classes (the inputs differ, so labels would be numbered "
                        "differently)")
                raise LockedError(
                    f"{root}: other parts of this store are being extracted right now with "
                    f"another {what}; give every --shard part the same inputs and options, "
                    f"or wait for them to finish")
        info = {"format": fmt, "store_version": STORE_VERSION, "config": config,
                "config_key": key, "classes": classes, "versions": versions()}
        write_store_file(root, info)
