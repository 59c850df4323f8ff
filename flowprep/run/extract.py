"""A run of ``flowprep extract``: the entry point behind the CLI and ``flowprep.extract``.

    options (options.py: checked, preset resolved) -> flow backend resolved -> inputs
    discovered, this shard's part -> store config + run lock -> skip the published ->
    a runner (local.py or dask.py) over a Ledger (ledger.py) -> failure records,
    annotation lists -> Report

One video's stages are pipeline.py's ``process_video``; docs/code_map.md maps the rest.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from .._version import __version__
from ..decode import decoder_info
from ..errors import ConfigError, WriteError
from ..flow import FlowChoice, merge_params, resolve
from ..flow.warp import check_supported as check_warp_supported, settings_from
from ..fsutil import storage_error as _storage_error
from ..inputs import class_names, discover, parse_shard, select_shard
from .chunks import chunk_setting
from .ledger import Ledger
# the runners sit above pipeline.py, extract.py above them
from .local import plan_local, run_local
from .options import ExtractOptions, make_options  # noqa: F401  (ExtractOptions: importable here)
from .pipeline import Job, rgb_only_choice
from .starter import begin as begin_workers, end as end_workers, preload_for, start_method
from ..store import published_keys, registry
from ..remote import is_url
from ..store.base import (STORE_FILE, config_key, read_store_file, record_failure,
                         write_store_file, STORE_VERSION)


def versions() -> Dict[str, str]:
    """Library versions recorded in the store."""
    out = {"flowprep": __version__, "opencv": cv2.__version__, "numpy": np.__version__,
           "python": platform.python_version()}
    for mod in ("h5py", "torch", "av"):
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
    # The store format is not output-affecting (a JPEG store, a wds store and an HDF5
    # store with the JPEG payload hold the same bytes; flowprep convert moves between
    # them), so it is recorded in flowprep.json, not hashed. The raw HDF5 payload stores
    # different flow data (no JPEG loss), so it is.
    if opts.payload == "raw" and "raw" in registry.get(opts.format).payloads:
        cfg["payload"] = "raw"
    if opts.warped:  # only when asked: stores made without --warped keep their config key
        cfg["warped"] = settings_from(opts.warped).describe()
    _input_config(cfg, opts)
    if opts.preset is not None:  # recorded, not hashed (store.base.config_key leaves it out)
        from .presets import describe
        cfg["preset"] = describe(opts.preset, opts)
    return cfg


def _input_config(cfg: Dict[str, Any], opts: ExtractOptions) -> None:
    """Add what was decoded how (--task, --decoder, --fps, --start/--end, --input-fps).

    Keys are added only when they differ from the defaults, so that stores made
    before these options keep their config key (and are not recomputed).
    """
    if opts.task != "both":
        cfg["task"] = opts.task
    if opts.fps is not None:
        cfg["fps"] = float(opts.fps)
    if opts.start is not None or opts.end is not None:
        cfg["time_range"] = [opts.start, opts.end]
    if opts.input_fps is not None:
        cfg["input_fps"] = float(opts.input_fps)
    cfg["decoder"] = decoder_info(opts.decoder)


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
    #: video_id -> time chunks of the long videos published from chunks (run/chunks.py)
    chunked: Dict[str, int] = field(default_factory=dict)
    #: video_id -> why its chunks did not line up (it was computed unsplit instead)
    chunk_fallbacks: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def prepare(inputs: Sequence[str], out: str, opts: ExtractOptions,
            choice: Optional[FlowChoice] = None,
            storage_options: Optional[Dict[str, Any]] = None):
    """Validate options, resolve the backend and discover inputs (no files written).

    ``choice`` given (resolved elsewhere, e.g. on a dask worker) is used as is;
    ``storage_options`` open input URLs.
    """
    opts.validate()  # once more: ``opts`` may have been made without make_options
    if choice is None:
        choice = (rgb_only_choice(opts.algo) if opts.task == "rgb"
                  else resolve(opts.algo, opts.device, opts.backend))
    if choice.note:  # e.g. the native TV-L1 is missing and OpenCV's computes it
        print(choice.note, file=sys.stderr)
    params = merge_params(opts.algo, opts.params)
    if opts.warped:
        check_warp_supported(choice)
    config = build_config(opts, choice, params)
    videos = discover(inputs, storage_options)
    return choice, params, config, videos


def extract(inputs: Sequence[str], out: str, **options: Any) -> Report:
    """Extract RGB frames and quantized flow of ``inputs`` into the store ``out``.

    Args:
        inputs: video files, folders (searched recursively), or .txt lists; local paths
            or fsspec URLs (s3://bucket/videos/, ...).
        out: the store directory (created if missing), or an fsspec URL for a sharded
            format (flowprep.store.remote: shards built in a local staging folder,
            uploaded whole, index parts after their shards).
        options: fields of :class:`ExtractOptions`, and ``storage_options`` (dict for
            fsspec, for input and output URLs; in memory only, never written) and
            ``staging`` (local folder for shards on their way to an ``out`` URL;
            default a temporary folder).
    Returns:
        a Report. Inputs that fail are recorded in the store (store.failures)
        and listed in ``report.failed``; nothing raises for a bad input.
    Raises:
        ConfigError / BackendUnavailable for bad options, LockedError when
        another run holds the store.
    """
    opts = make_options(options)  # unknown names, the preset, every value checked
    method = None if opts.scheduler else start_method()  # ConfigError before anything runs
    if method is not None:
        # the fork server imports what workers need while this process sets the run up
        begin_workers(method, preload_for(opts.format), hold=True)
    try:
        return _extract(inputs, out, opts)
    finally:
        if method is not None:
            end_workers()


def _extract(inputs: Sequence[str], out: str, opts: ExtractOptions) -> Report:
    """extract() once the options are checked (the fork server, if any, starting)."""
    from ..lock import RunLock, clean_stale
    from ..store.lists import write_lists

    storage_options = dict(opts.storage_options or {}) or None  # in memory only
    staging = opts.staging
    if is_url(out):
        from .remote import check_url_run
        check_url_run(out, opts)  # before anything is written
    elif staging is not None:
        raise ConfigError("--staging is for an -o URL on object storage; a local store "
                          "stages inside OUT/.flowprep/tmp")
    choice = None
    if opts.scheduler and opts.task != "rgb":
        # the workers compute the flow: resolve the backend and devices where they run
        from .dask import resolve_on_cluster
        choice = resolve_on_cluster(opts.scheduler, opts.algo, opts.device, opts.backend)
    choice, params, config, videos = prepare(inputs, out, opts, choice, storage_options)
    chunk_frames = chunk_setting()  # FLOWPREP_CHUNK_FRAMES: ConfigError before anything runs
    index, count = parse_shard(opts.shard)
    mine = select_shard(videos, index, count)
    if is_url(out):
        # object storage: the same run, its shards staged locally and published by upload
        from .remote import extract_to_url
        report = Report(root="", not_in_shard=len(videos) - len(mine))
        return extract_to_url(out, opts, storage_options, staging, choice, params, config,
                              videos, mine, (index, count), report, versions())
    t0 = time.perf_counter()
    root = os.path.abspath(out)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        from ..lock import setup_error
        raise setup_error(root, exc) from None
    key = config_key(config)
    report = Report(root=root, not_in_shard=len(videos) - len(mine))
    with RunLock(root, index, count) as lock:
        # under the run lock: a run refused by the lock must not touch flowprep.json
        _write_store_info(root, opts.format, config, key, class_names(videos), lock)
        clean_stale(root)
        done = {} if opts.force else published_keys(opts.format, root)
        todo, jobs, threads = plan_local(mine, done, key, report.skipped, opts.jobs)
        # long videos are split into time chunks over the workers (run/chunks.py): by
        # default with several local workers or on a cluster; FLOWPREP_CHUNK_FRAMES=N
        # forces chunks of N frames, 0 never splits
        if chunk_frames is None and jobs < 2 and not opts.scheduler:
            chunk_frames = 0
        job = Job(opts, choice, params, config, key, root, lock.tmp_root, threads,
                  chunk_frames=chunk_frames, workers=jobs, storage_options=storage_options)
        results = []
        if todo:
            from ..progress import Progress
            ledger = Ledger(root, Progress(len(todo), enabled=opts.progress))
            try:
                if opts.scheduler:
                    from .dask import run_dask
                    run_dask(todo, job, opts.scheduler, ledger)
                else:
                    run_local(todo, job, jobs, ledger)
            finally:
                ledger.progress.close()
            report.stopped = ledger.stopped
            results = ledger.finish(todo)
        unrecorded = None
        for res in results:
            if res.published:
                report.published.append(res.video_id)
                report.frames += int(res.frames)
                if res.warnings:
                    report.warnings[res.input] = list(res.warnings)
                if res.chunks:
                    report.chunked[res.video_id] = int(res.chunks)
                if res.chunk_fallback:
                    report.chunk_fallbacks[res.video_id] = res.chunk_fallback
            else:
                report.failed[res.input] = res.reason
                try:
                    record_failure(root, res.input, res.video_id, res.reason)
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
    from ..errors import LockedError
    from ..lock import store_lock
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
