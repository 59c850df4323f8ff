"""Annotation lists in the "<video dir> <count> <label>" format of TSN-pytorch and mmaction2.

    OUT/rgb_list.txt     <video_id> <num_frames> <label>
    OUT/flow_list.txt    <video_id> <num_flows> <label>     (flows, not frames)
    OUT/wflow_list.txt   <video_id> <num_flows> <label>     videos holding warped flow
                                                            (--warped); written only when
                                                            some video has it
    OUT/classes.txt      <label> <class name>, one per line

A store extracted with ``--task rgb`` has no flow_list.txt (and no wflow_list.txt),
one extracted with ``--task flow`` no rgb_list.txt (each list exists only for what
is stored); a ``--task flow --warped`` store has flow_list.txt and wflow_list.txt.

Rewritten from the store's published videos at the end of every run (and by
``flowprep index``). Video ids hold no whitespace (flowprep.inputs replaces it by '_' and
keeps the path's spelling in the meta's ``original_id``), so every line splits into its
three fields with mmaction2's ``line.split()`` and TSN-pytorch's ``split(' ')``; a store
made before that rule with such an id is listed as it is.

Concurrent runs (the parts of a ``--shard I/N`` split) rewrite them one at a
time under OUT/.flowprep/locks/store.lock, each from a scan started inside the
lock, so the lists written last hold every video published by every run that
has finished. A caller skips its own rescan when a scan that started after
its call has already finished (OUT/.flowprep/lists.gen counts finished scans).
"""
from __future__ import annotations

import os

from ..errors import WriteError
from ..fsutil import atomic_write_bytes
from .base import META_DIR, read_store_file
from .listing import list_texts


GEN_FILE = "lists.gen"


def _read_gen(root: str) -> int:
    try:
        with open(os.path.join(root, META_DIR, GEN_FILE), "rb") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _count_listed(root: str) -> int:
    for name in ("rgb_list.txt", "flow_list.txt"):
        try:
            with open(os.path.join(root, name), "rb") as fh:
                return sum(1 for _ in fh)
        except OSError:
            continue
    return -1


def write_lists(root: str, fmt: str | None = None) -> int:
    """(Re)write the lists for every published video; returns how many videos they list.

    Safe to call from many processes at once (see the module docstring).
    """
    from ..lock import store_lock
    # Scans are serialized and counted when they finish. Scan asked+1 may have been under
    # way at this call; scan asked+2 started after it, so it lists every video we published.
    asked = _read_gen(root)
    with store_lock(root):
        gen = _read_gen(root)
        if gen >= asked + 2:
            n = _count_listed(root)
            if n >= 0:
                return n
        n = _write_lists(root)
        try:
            atomic_write_bytes(os.path.join(root, META_DIR, GEN_FILE), f"{gen + 1}\n".encode())
        except (OSError, WriteError):
            pass  # a read-only store: nothing to coordinate with
        return n


def _write_lists(root: str) -> int:
    from . import open_store
    store = open_store(root)
    store.refresh()
    info = read_store_file(root)
    for name, text in list_texts(store, info).items():
        path = os.path.join(root, name)
        if name == "wflow_list.txt" and text == "" and not os.path.exists(path):
            continue  # no --warped video: no warped list
        if text is not None:
            atomic_write_bytes(path, text.encode())
        elif os.path.exists(path):  # a --task store holds none of these: no stale list
            os.unlink(path)
    return len(store.video_ids)
