"""The rules every runner shares, in one place: what a video came to, and what a run owes.

    VideoResult        what one video came to (pipeline.process_video returns one)
    time_limit         a video's time limit: timeout + timeout_per_frame x frames decoded
    reasons            the words of every failure and stop that a runner (not a video) decides
    Ledger             one result per video; the videos each writer committed but has not
                       published (an HDF5 shard still open), redone once when the shard is
                       lost; writers retired after a write error; the run's stop reason

The local runner (local.py: worker processes) and the dask runner (dask.py) are adapters
over this module: they move videos to workers and messages back, and ask the ledger what
follows. Words here are what users read in `flowprep inspect` and on stderr; tests match
on them (tests/test_disk.py, test_dask_faults.py, test_isolation.py).

Writers: a runner names each store writer with a tag (one per worker process, or per
dask worker thread). A video "committed" by a writer is published only once the writer
says so (``StoreWriter.drain_published``: at once for JPEG, when its shard is sealed for
HDF5). A writer that dies, is retired, or cannot seal, loses what it had not published.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..inputs import VideoInput
    from ..progress import Progress

PUBLISHED = "published"
FAILED = "failed"


@dataclass
class VideoResult:
    """What one input came to.

    Attributes:
        video_id: the store id of the input.
        input: the input's path (the key of store.failures and Report.failed).
        status: "published" (committed by its writer: published once the writer says so)
            or "failed".
        reason: why it failed (None when published).
        frames: frames stored (decoded and selected); flows: flows stored per stream.
        seconds: wall time of the video in its worker.
        warnings: problems of an input published anyway (damaged packets, truncation).
        detail: the traceback of an internal error (a bug), else None.
        writer_error: after this video the writer's state is unknown (a write error or a
            bug): the runner retires the writer, never seals it again.
    """

    video_id: str
    input: str
    status: str
    reason: Optional[str] = None
    frames: int = 0
    flows: int = 0
    seconds: float = 0.0
    warnings: List[str] = field(default_factory=list)
    detail: Optional[str] = None
    writer_error: bool = False

    @property
    def published(self) -> bool:
        return self.status == PUBLISHED

    def to_dict(self) -> Dict[str, Any]:
        """A plain dict (what the worker pipes and dask tasks carry)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "VideoResult":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# --------------------------------------------------------------------------- the words

def failed(vin: "VideoInput", reason: str) -> VideoResult:
    """The result of a video that ends failed with ``reason``."""
    return VideoResult(vin.video_id, vin.path, FAILED, reason)


def not_processed(vin: "VideoInput", why: str) -> VideoResult:
    """The result of a video never started (or lost) because the run stopped early."""
    return failed(vin, f"not processed: the run stopped early ({why})")


def time_limit(opts: Any, frames: int) -> float:
    """A video's time limit in seconds: ``opts.timeout + opts.timeout_per_frame x frames``
    decoded so far (``opts``: ExtractOptions or anything with those two fields)."""
    return float(opts.timeout) + float(opts.timeout_per_frame) * int(frames)


def timed_out_reason(vin: "VideoInput", elapsed: float, frames: int, opts: Any) -> str:
    """The failure reason of a video that overran :func:`time_limit`."""
    return (f"{vin.path}: timed out after {elapsed:.0f} s with {frames} frames decoded "
            f"(limit {opts.timeout:.0f} s + {opts.timeout_per_frame:g} s per frame); "
            f"the worker was killed")


def full_disk_message(root: str) -> str:
    """Why a run stopped on a full disk (every runner's words)."""
    return (f"no space left on the store's filesystem ({root}); free some space and "
            f"rerun the same command: published videos are kept and skipped")


def disk_full_reason(vin: "VideoInput", exc: BaseException) -> str:
    """The reason of the video whose write hit the full disk."""
    return f"{vin.path}: not stored: {exc}"


def worker_died_reason(vin: "VideoInput", why: str) -> str:
    """The reason of the video a worker was on when it died (``why``: "crashed (SIGSEGV)")."""
    return (f"{vin.path}: the worker processing it {why} (decoding, flow or writing); "
            f"the rest of the run continued")


# --------------------------------------------------------------------------- the ledger

class Ledger:
    """One run's results and the rules that follow from them (see the module docstring).

    Args:
        root: the store (named in the full-disk message).
        progress: the run's progress line (videos done and failed are counted here).
    """

    def __init__(self, root: str, progress: "Progress") -> None:
        self.root = root
        self.progress = progress
        self.results: Dict[str, VideoResult] = {}
        #: why the run stopped early (None: it did not)
        self.stopped: Optional[str] = None
        self._unsealed: Dict[str, Dict[str, "VideoInput"]] = {}  # writer tag -> committed videos
        self._lost_once: set = set()
        self._retired: set = set()
        #: writer tag -> how it ended, when it ended with videos unsealed (for finish)
        self.unsealed_why: Dict[str, str] = {}

    # results
    def record(self, vin: "VideoInput", result: VideoResult, writer: Optional[str] = None,
               published: Iterable[str] = ()) -> None:
        """``result`` of ``vin``, reported by ``writer`` together with the ids that writer
        published since its last report. A published result the writer has not published
        yet is held as unsealed; a writer_error retires the writer (see :meth:`retire`)."""
        self.results[vin.video_id] = result
        if writer is not None:
            published = set(published)
            self.sealed(writer, published)
            if result.published and vin.video_id not in published:
                self._unsealed.setdefault(writer, {})[vin.video_id] = vin
            if result.writer_error:
                self._retired.add(writer)
        self.progress.video_done(result.published)

    def fail(self, vin: "VideoInput", reason: str) -> None:
        self.record(vin, failed(vin, reason))

    # writers
    def sealed(self, writer: str, ids: Iterable[str]) -> None:
        """``writer`` published ``ids`` (its shard was sealed)."""
        box = self._unsealed.get(writer)
        if box:
            for vid in ids:
                box.pop(vid, None)
            if not box:
                del self._unsealed[writer]

    def has_unsealed(self, writer: str) -> bool:
        return bool(self._unsealed.get(writer))

    def is_retired(self, writer: str) -> bool:
        """True once ``writer`` reported a writer_error: it must never seal again."""
        return writer in self._retired

    def retire(self, writer: str) -> None:
        self._retired.add(writer)

    def writers_unsealed(self) -> List[str]:
        return [w for w, box in self._unsealed.items() if box]

    def requeue_unsealed(self, writer: str, why: str) -> List["VideoInput"]:
        """The videos ``writer`` committed but never published, now lost (``why``: what
        happened to its worker, a verb phrase: "crashed (SIGSEGV)").

        Returns those to process again: each video once. One lost a second time fails
        with the reason; one lost after the run stopped is reported not processed.
        """
        redo = []
        for vin in self._unsealed.pop(writer, {}).values():
            self.progress.done -= 1  # its "published" is taken back
            if self.stopped is not None:
                self.results[vin.video_id] = not_processed(vin, self.stopped)
                self.progress.video_done(False)
            elif vin.video_id in self._lost_once:
                self.results[vin.video_id] = failed(
                    vin, f"{vin.path}: computed twice, and lost both times before its HDF5 "
                         f"shard was sealed (its worker {why})")
                self.progress.video_done(False)
            else:
                self._lost_once.add(vin.video_id)
                self.results.pop(vin.video_id, None)
                redo.append(vin)
        return redo

    # stopping
    def stop(self, why: str) -> bool:
        """Stop the run early with reason ``why``; True for the first reason (kept)."""
        if self.stopped is not None:
            return False
        self.stopped = why
        return True

    def stop_full_disk(self) -> bool:
        return self.stop(full_disk_message(self.root))

    # the end
    def finish(self, videos: Sequence["VideoInput"]) -> List[VideoResult]:
        """One result per video of ``videos``, in their order.

        A video still unsealed (its writer ended without publishing it) never counts as
        published: failed (``unsealed_why[writer]`` says how its writer ended), or not
        processed when the run stopped. A video without a result was never processed (the
        run stopped) or never came back.
        """
        for writer, box in self._unsealed.items():
            for vin in box.values():
                self.results[vin.video_id] = (
                    not_processed(vin, self.stopped) if self.stopped is not None else
                    failed(vin, f"{vin.path}: computed, but its worker ended before its HDF5 "
                                f"shard was sealed ({self.unsealed_why.get(writer) or 'unknown reason'})"))
        self._unsealed.clear()
        out = []
        for vin in videos:
            res = self.results.get(vin.video_id)
            if res is None:
                res = not_processed(vin, self.stopped or "no result came back from its worker")
            out.append(res)
        return out
