"""The webdataset store (format "wds"): tar shards, one sample per video, an index part
per shard.

Modules: ``keys`` (video id <-> sample key), ``tar`` (member headers, reading a
shard in order), ``store`` (reader, writer; the layout is in its docstring and
in docs/store.md), ``verify`` (its checks for ``flowprep verify``). Index parts and
sealing are shared with the HDF5 store (:mod:`flowprep.store.shards`).
"""
from __future__ import annotations

from typing import Any, Dict

from ..shards import ShardedFormat
from .keys import decode_key, encode_key  # noqa: F401
from .store import (META_FIELD, SHARD_EXT, MemberVideo, WdsStore, WdsStoreWriter,  # noqa: F401
                    WdsVideo, field_name, members_path, meta_bytes, read_members)


class WdsFormat(ShardedFormat):
    name = "wds"
    shard_ext = SHARD_EXT

    def open(self, root: str) -> WdsStore:
        return WdsStore(root)

    def writer(self, root: str, tmp_root: str, worker_tag: str, *, jpeg_quality: int = 95,
               shard_size: int = 1 << 30, payload: str = "jpeg",
               publisher: Any = None) -> WdsStoreWriter:
        return WdsStoreWriter(root, tmp_root, worker_tag, jpeg_quality=jpeg_quality,
                              shard_size=shard_size, publisher=publisher)

    def verify(self, store, col, decode, progress) -> None:
        from .verify import verify
        verify(store, col, decode, progress)

    def video_bytes(self, store, video_id: str) -> Dict[str, int]:
        out = {"rgb": 0, "flow": 0, "meta": 0}
        _, _, members = store._video_members(video_id)
        for field, (_, size, _) in members.items():
            if field.startswith("img_"):
                out["rgb"] += size
            elif field == META_FIELD:
                out["meta"] += size
            else:
                out["flow"] += size
        return out


FORMAT = WdsFormat()
