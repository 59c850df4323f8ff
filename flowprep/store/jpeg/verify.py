"""``flowprep verify`` for the JPEG store: the exact file set of every video directory.

The JPEG store records no checksums; decodability (with ``decode``) is the check.
"""
from __future__ import annotations

import os

from ...fsutil import read_json
from ..base import stored_rgb_frames
from ..checks import Collector, decode_ok, flow_items, record_meta
from .store import META_FILE, frame_name


def verify(store, col: Collector, decode: bool, progress) -> None:
    """Add the problems of every published video of the JPEG store ``store`` to ``col``."""
    key = store.info.get("config_key")
    for vid in store.video_ids:
        if progress:
            progress(vid)
        d = os.path.join(store.root, vid)
        rel = vid + "/" + META_FILE
        try:
            meta = read_json(os.path.join(d, META_FILE))
        except (OSError, ValueError) as exc:
            col.add(vid, "metadata", f"unreadable ({exc})", rel)
            continue
        counts = record_meta(col, meta, vid, key, rel)
        if counts is None:
            continue
        n, f, h, w = counts
        expected = {frame_name("img", i): ("frame", i, None, True)
                    for i in range(stored_rgb_frames(meta))}
        for _, label, p in flow_items(meta):
            for i in range(f):
                for axis in "xy":
                    expected[frame_name(f"{p}_{axis}", i)] = (label, i, axis, False)
        try:
            present = set(os.listdir(d))
        except OSError as exc:
            col.add(vid, "", f"cannot list the video directory ({exc.strerror})", vid)
            continue
        for name in sorted(present - set(expected) - {META_FILE}):
            col.add(vid, name, "unexpected file (not part of the video by its metadata)",
                    f"{vid}/{name}")
        for name, (label, i, axis, colour) in expected.items():
            where = f"{label} {i}" + (f" {axis}" if axis else "")
            if name not in present:
                col.add(vid, where, "file missing", f"{vid}/{name}")
                continue
            if not decode:
                continue
            try:
                with open(os.path.join(d, name), "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                col.add(vid, where, f"unreadable ({exc.strerror})", f"{vid}/{name}")
                continue
            err = decode_ok(data, colour, h, w)
            if err:
                col.add(vid, where, err, f"{vid}/{name}")

