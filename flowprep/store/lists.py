"""Annotation lists in the "<video dir> <count> <label>" format of TSN-pytorch and mmaction2.

    OUT/rgb_list.txt     <video_id> <num_frames> <label>
    OUT/flow_list.txt    <video_id> <num_flows> <label>     (flows, not frames)
    OUT/classes.txt      <label> <class name>, one per line

Rewritten from the store's published videos at the end of every run (and by
``flowprep index``). Video ids containing whitespace are written with the
whitespace kept; such ids are not readable by whitespace-splitting loaders.
"""
from __future__ import annotations

import os

from ..fsutil import atomic_write_bytes
from .base import read_store_file


def write_lists(root: str, fmt: str | None = None) -> int:
    """(Re)write the lists for every published video; returns how many videos they list."""
    from . import open_store
    store = open_store(root)
    store.refresh()
    rgb, flow = [], []
    for vid in store.video_ids:
        m = store.meta(vid)
        label = m.get("label")
        label = 0 if label is None else int(label)
        rgb.append(f"{vid} {int(m['num_frames'])} {label}\n")
        flow.append(f"{vid} {int(m['num_flows'])} {label}\n")
    classes = read_store_file(root).get("classes", [])
    atomic_write_bytes(os.path.join(root, "rgb_list.txt"), "".join(rgb).encode())
    atomic_write_bytes(os.path.join(root, "flow_list.txt"), "".join(flow).encode())
    atomic_write_bytes(os.path.join(root, "classes.txt"),
                       "".join(f"{i} {c}\n" for i, c in enumerate(classes)).encode())
    return len(rgb)
