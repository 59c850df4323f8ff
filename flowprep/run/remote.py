"""An extract run whose OUT is an fsspec URL (object storage).

The run is the local one (the same workers, pipeline and HDF5 writer) with
three differences:

- the workers' HDF5 writers build their shards in a local staging folder
  (``--staging DIR``, else a temporary folder removed at the end) and publish
  each sealed shard through :class:`flowprep.store.remote.RemotePublisher`:
  the shard uploaded whole, then its index part;
- the run's lock is a lock object on the store (``RemoteRunLock``: owner,
  part, expiry) besides the local lock of its staging folder;
- store-level files are read and written on the store: flowprep.json when
  the run starts (checked against running parts, as locally), then failure
  records and the annotation lists when it ends, after every shard and index
  part of the run.

Staging space: each worker process holds its open shard (up to
``--shard-size`` plus one video) until it is sealed and uploaded, so about
``--jobs`` x ``--shard-size``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError, StoreError, WriteError
from ..inputs import VideoInput, class_names
from ..remote import Remote, redact, scrub


def check_url_run(url: str, opts: Any, storage_options: Optional[Dict[str, Any]] = None) -> None:
    """Refuse, before anything is written, what an -o URL run cannot do."""
    from ..store.remote import check_format
    try:
        check_format(opts.format, redact(url))
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    if opts.scheduler:
        raise ConfigError(f"{redact(url)}: --scheduler with an -o URL is not supported; run "
                          f"the parts as jobs (--shard I/N, one Slurm array task each) or "
                          f"extract into a shared filesystem")


def _staging_root(staging: Optional[str], remote: Remote) -> Tuple[str, bool]:
    """(local staging folder for this store, whether it is a temporary one to remove)."""
    if staging is None:
        return tempfile.mkdtemp(prefix="flowprep-staging-"), True
    # one folder per store: runs on other stores never share its locks
    sub = hashlib.sha1(remote.display.encode()).hexdigest()[:12]
    root = os.path.join(os.path.abspath(staging), sub)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--staging {staging}: cannot create the staging folder "
                          f"({exc.strerror or exc})") from None
    return root, False


def extract_to_url(url: str, opts: Any, storage_options: Optional[Dict[str, Any]],
                   staging: Optional[str], choice: Any, params: Dict[str, Any],
                   config: Dict[str, Any], videos: Sequence[VideoInput],
                   mine: Sequence[VideoInput], part: Tuple[int, int], report: Any,
                   versions: Dict[str, str]) -> Any:
    """Run extract into the store at ``url``; fills and returns ``report`` (extract.Report).

    Args:
        url: the store's URL.
        opts: the run's ExtractOptions (validated).
        storage_options: for fsspec (inputs and store); in memory only.
        staging: local staging folder, or None for a temporary one.
        choice, params, config: the resolved backend, parameters and store config.
        videos: every input (class names are numbered over all of them).
        mine: this run's part of them.
        part: (index, count) of --shard.
        report: the Report to fill.
        versions: library versions for flowprep.json.
    """
    from ..lock import RunLock, clean_stale
    from .ledger import Ledger
    from .local import plan_local, run_local
    from .pipeline import Job
    from ..store.base import STORE_VERSION, config_key
    from ..store import remote as rs

    check_url_run(url, opts)
    remote = Remote(url, storage_options)
    remote.fs  # noqa: B018 - ConfigError naming the extra when s3fs/gcsfs is missing
    report.root = remote.display
    t0 = time.perf_counter()
    key = config_key(config)
    index, count = part
    root, temporary = _staging_root(staging, remote)
    try:
        with RunLock(root, index, count) as lock:
            clean_stale(root)
            with rs.RemoteRunLock(remote, lock.token, index, count) as rlock:
                info = {"format": opts.format, "store_version": STORE_VERSION, "config": config,
                        "config_key": key, "classes": class_names(videos), "versions": versions}
                rs.write_store_info(remote, info, rlock.others_alive)
                rs.clean_orphans(remote, rlock.live_tokens(), opts.format)
                done = {} if opts.force else rs.published_keys(remote, opts.format)
                todo, jobs, threads = plan_local(mine, done, key, report.skipped, opts.jobs)
                job = Job(opts, choice, params, config, key, root, lock.tmp_root, threads,
                          publisher=rs.RemotePublisher(remote), storage_options=storage_options,
                          chunk_frames=0)  # a run into a URL does not split long videos (yet)
                results = []
                if todo:
                    from ..progress import Progress
                    ledger = Ledger(root, Progress(len(todo), enabled=opts.progress))
                    try:
                        run_local(todo, job, jobs, ledger)
                    finally:
                        ledger.progress.close()
                    report.stopped = ledger.stopped
                    results = ledger.finish(todo)
                _record(results, remote, report, storage_options)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    report.seconds = time.perf_counter() - t0
    return report


def _record(results: List[Any], remote: Remote, report: Any,
            storage_options: Optional[Dict[str, Any]]) -> None:
    """Results into the report, failure records and lists onto the store (last)."""
    from ..store import remote as rs
    unrecorded = None
    for res in results:
        inp = redact(res.input)
        if res.published:
            report.published.append(res.video_id)
            report.frames += int(res.frames)
            if res.warnings:
                report.warnings[inp] = [scrub(w, storage_options) for w in res.warnings]
        else:
            reason = scrub(res.reason, storage_options)
            report.failed[inp] = reason
            try:
                rs.record_failure(remote, inp, res.video_id, reason)
            except WriteError as exc:
                unrecorded = exc
    try:
        rs.write_lists(remote)
    except (WriteError, StoreError) as exc:
        unrecorded = exc
    if unrecorded is not None:
        note = (f"the failure records or annotation lists could not be written ({unrecorded}); "
                f"rerun the same command once the store is reachable")
        report.stopped = f"{report.stopped}; {note}" if report.stopped else note
