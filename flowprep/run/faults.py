"""Fault injection for the tests, outside the production path.

    FLOWPREP_TEST_HOOK=ACTION:SUBSTRING      (read once, when a worker starts)

ACTION, for the videos whose id contains SUBSTRING:

    segfault            the worker process dies with SIGSEGV as the video starts
    hang                the worker never returns from the video (the timeout kills it)
    sleep               the video starts 2 s late
    segfault_at_close   the worker dies with SIGSEGV when told to finish, if it processed
                        such a video (its HDF5 shard is never sealed)

Without the variable nothing here is installed: the runners call
``pipeline.process_video`` itself and no close hook (``wrap`` returns its argument,
``close_hook`` None). Write errors, full disks and short writes are injected below
Python instead, by the LD_PRELOAD shim of tests/faultinject.py. tests/README.md lists
both.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable, Iterable, Optional, Tuple

ENV = "FLOWPREP_TEST_HOOK"


def _spec() -> Optional[Tuple[str, str]]:
    action, _, pattern = os.environ.get(ENV, "").partition(":")
    return (action, pattern) if action and pattern else None


def wrap(process: Callable[..., Any]) -> Callable[..., Any]:
    """``process`` (process_video), or with FLOWPREP_TEST_HOOK set, ``process`` behind the
    start-of-video fault (segfault, hang, sleep)."""
    spec = _spec()
    if spec is None or spec[0] not in ("segfault", "hang", "sleep"):
        return process
    action, pattern = spec

    def faulty(vin, *args: Any, **kwargs: Any) -> Any:
        if pattern in vin.video_id:
            if action == "segfault":
                os.kill(os.getpid(), signal.SIGSEGV)
            elif action == "hang":
                while True:
                    time.sleep(1)
            else:
                time.sleep(2)
        return process(vin, *args, **kwargs)
    return faulty


def close_hook() -> Optional[Callable[[Iterable[str]], None]]:
    """None, or with FLOWPREP_TEST_HOOK=segfault_at_close:S a function of the ids a worker
    processed that kills it when one contains S."""
    spec = _spec()
    if spec is None or spec[0] != "segfault_at_close":
        return None
    pattern = spec[1]

    def hook(done_ids: Iterable[str]) -> None:
        if any(pattern in v for v in done_ids):
            os.kill(os.getpid(), signal.SIGSEGV)
    return hook
