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
``flowprep index``). Video ids containing whitespace are written with the
whitespace kept; such ids are not readable by whitespace-splitting loaders.

Concurrent runs (the parts of a ``--shard I/N`` split) rewrite them one at a
time under OUT/.flowprep/locks/store.lock, each from a scan started inside the
lock, so the lists written last hold every video published by every run that
has finished. A caller skips its own rescan when a scan that started after
its call has already finished (OUT/.flowprep/lists.gen counts finished scans).
"""
from __future__ import annotations

import os
from typing import Dict, Optional

from ..errors import WriteError
from ..fsutil import atomic_write_bytes
from .base import META_DIR, read_store_file, task_of


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


def list_texts(store, info) -> Dict[str, Optional[str]]:
    """The lists of ``store`` (its flowprep.json ``info``): file name -> text, or None for
    a list the store must not have (a --task store holds none of it)."""
    store_task = task_of(info.get("config", {}))
    rgb, flow, wflow = [], [], []
    for vid in store.video_ids:
        m = store.meta(vid)
        label = m.get("label")
        label = 0 if label is None else int(label)
        if task_of(m) != "flow":
            rgb.append(f"{vid} {int(m['num_frames'])} {label}\n")
        if task_of(m) != "rgb":
            flow.append(f"{vid} {int(m['num_flows'])} {label}\n")
            if m.get("warped"):
                wflow.append(f"{vid} {int(m['num_flows'])} {label}\n")
    out: Dict[str, Optional[str]] = {}
    for name, lines, kind in (("rgb_list.txt", rgb, "flow"), ("flow_list.txt", flow, "rgb")):
        out[name] = "".join(lines) if lines or store_task != kind else None
    # wflow_list.txt only in stores with --warped videos (kept, emptied, once it exists)
    out["wflow_list.txt"] = "".join(wflow) if wflow else (None if store_task == "rgb" else "")
    out["classes.txt"] = "".join(f"{i} {c}\n" for i, c in enumerate(info.get("classes", [])))
    return out


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
