"""The JPEG-directory store (format "jpeg"), readable unchanged by TSN-pytorch and mmaction2.

Modules: ``store`` (reader and writer; the layout is in its docstring),
``verify`` (its checks for ``flowprep verify``).
"""
from __future__ import annotations

import os
from typing import Dict

from ...fsutil import read_json
from ..registry import StoreFormat
from .store import (META_FILE, JpegStore, JpegStoreWriter, JpegVideo,  # noqa: F401
                    JpegVideoWriter, expected_files, frame_name, is_published, list_video_dirs)


class JpegFormat(StoreFormat):
    name = "jpeg"

    def open(self, root: str) -> JpegStore:
        return JpegStore(root)

    def writer(self, root: str, tmp_root: str, worker_tag: str, *, jpeg_quality: int = 95,
               shard_size: int = 1 << 30, payload: str = "jpeg") -> JpegStoreWriter:
        return JpegStoreWriter(root, tmp_root, jpeg_quality=jpeg_quality)

    def published_keys(self, root: str) -> Dict[str, str]:
        out = {}
        for vid in list_video_dirs(root):
            try:
                meta = read_json(os.path.join(root, vid, META_FILE))
            except (OSError, ValueError):
                continue
            key = meta.get("config_key")
            if is_published(root, vid, key):
                out[vid] = key
        return out

    def verify(self, store, col, decode, progress) -> None:
        from .verify import verify
        verify(store, col, decode, progress)

    def video_bytes(self, store, video_id: str) -> Dict[str, int]:
        out = {"rgb": 0, "flow": 0, "meta": 0}
        try:
            entries = list(os.scandir(os.path.join(store.root, video_id)))
        except OSError:
            return out
        for e in entries:
            try:
                size = e.stat().st_size
            except OSError:
                continue
            if e.name.startswith("img_"):
                out["rgb"] += size
            elif e.name.startswith(("flow_", "bflow_", "wflow_", "bwflow_")):
                out["flow"] += size
            else:
                out["meta"] += size
        return out


FORMAT = JpegFormat()
