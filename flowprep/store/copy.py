"""Byte-level copy of one video from any store into any store's writer (``flowprep convert``).

Stored payloads go across as they are: JPEG bytes of RGB frames and flow planes
are appended with ``add_rgb_bytes`` / ``add_flow_bytes``, never decoded; raw uint8
flow (HDF5 ``--payload raw``) goes to a raw-payload writer with ``add_flow_raw``,
and is JPEG-encoded at the store's quality (the one lossy step) for a writer
that stores JPEG flow.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from . import codec
from .base import StoreWriter, Video, stored_rgb_frames, stored_streams


def copy_video(video: Video, meta: Dict[str, Any], writer: StoreWriter, quality: int) -> None:
    """Write ``video``'s stored frames and flows, then ``meta``, as one video of ``writer``.

    Args:
        video: the source video (any format).
        meta: the metadata to commit (the source's, possibly with a new config key).
        writer: the destination StoreWriter; its ``payload`` says how flow is stored.
        quality: JPEG quality for encoding raw flow into a JPEG-payload writer.
    Raises:
        whatever the reads and writes raise; the destination video is aborted then.
    """
    vw = writer.begin(video.video_id)
    try:
        for i in range(stored_rgb_frames(meta)):  # none for a --task flow video
            vw.add_rgb_bytes(video.rgb_bytes(i))
        for backward, warped in stored_streams(meta):  # flow, bflow, wflow, bwflow
            for i in range(video.num_flows):
                x, y = video.flow_payload(i, backward, warped)
                if isinstance(x, (bytes, bytearray, memoryview)):
                    vw.add_flow_bytes(bytes(x), bytes(y), backward, warped)
                elif getattr(writer, "payload", "jpeg") == "raw":
                    vw.add_flow_raw(np.stack([x, y], axis=-1), backward, warped)
                else:
                    vw.add_flow_bytes(codec.encode_grey(np.ascontiguousarray(x), quality),
                                      codec.encode_grey(np.ascontiguousarray(y), quality),
                                      backward, warped)
        vw.commit(meta)
    except BaseException:
        vw.abort()
        raise
