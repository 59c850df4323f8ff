"""The HDF5 shard store (format "hdf5"): many videos per shard file, an index part per shard.

Modules: ``store`` (reader and writer; the layout is in its docstring and in
docs/store.md), ``verify`` (its checks for ``flowprep verify``). The index parts
and sealing are shared with the wds store (:mod:`flowprep.store.shards`).
"""
from __future__ import annotations

from typing import Any, Dict

from ..base import FLOW_STREAMS
from ..shards import ShardedFormat
from .store import *  # noqa: F401,F403 - the names this package always had
from .store import (BLOB_CHUNK, FLUSH_BYTES, H5_ERRORS, JPEG_FLOW_STREAMS,  # noqa: F401
                    RAW_FLOW_STREAMS, SHARD_EXT, SPAN_GAP, SPAN_MAX, Hdf5Store, Hdf5StoreWriter,
                    Hdf5Video, Hdf5VideoWriter, _safe_tag, open_h5)


class Hdf5Format(ShardedFormat):
    name = "hdf5"
    shard_ext = SHARD_EXT
    payloads = ("jpeg", "raw")

    def open(self, root: str) -> Hdf5Store:
        return Hdf5Store(root)

    def writer(self, root: str, tmp_root: str, worker_tag: str, *, jpeg_quality: int = 95,
               shard_size: int = 1 << 30, payload: str = "jpeg",
               publisher: Any = None) -> Hdf5StoreWriter:
        return Hdf5StoreWriter(root, tmp_root, worker_tag, jpeg_quality=jpeg_quality,
                               shard_size=shard_size, payload=payload, publisher=publisher)

    def verify(self, store, col, decode, progress) -> None:
        from .verify import verify
        verify(store, col, decode, progress)

    def _payload_text(self, d: Dict[str, Any]) -> str:
        return f" (payload {d['payload']})"

    def video_bytes(self, store, video_id: str) -> Dict[str, int]:
        out = {"rgb": 0, "flow": 0, "meta": 0}
        video = store[video_id]
        g = video._group()
        out["rgb"] = int(video.table("rgb")[:, 1].sum())
        out["meta"] = int(g["meta"].shape[0])
        for key in FLOW_STREAMS:  # (backward, warped)
            raw = RAW_FLOW_STREAMS[key]
            if raw in g:
                out["flow"] += int(g[raw].id.get_storage_size())
            for s in JPEG_FLOW_STREAMS[key]:
                if s in g:
                    out["flow"] += int(video.table(s)[:, 1].sum())
        return out


FORMAT = Hdf5Format()
