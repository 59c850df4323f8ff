"""Inputs on object storage: a video object or a frame-folder prefix at an fsspec URL.

A video object is read by PyAV through a file object that fetches byte ranges
through a bounded block cache (``flowprep.remote.VIDEO_BLOCK`` x
``VIDEO_BLOCKS``): demuxing reads forward, an MP4 whose index (moov) is at the
end costs one more range, and the object is never downloaded whole. A prefix
that directly holds images and no videos is a frame folder, each image fetched
whole. OpenCV's reader needs a local file, so ``--decoder opencv`` is refused
for URL inputs (``auto`` is PyAV).

A missing object, a zero-byte object, one that is not a video and one cut
short fail with a DecodeError naming the URL, as local files do.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ..errors import DecodeError
from ..remote import VIDEO_BLOCK, VIDEO_BLOCKS, Remote
from .base import Decoder, Resize


def open_remote_reader(url: str, decoder: str, resize: Resize, threads: int = 0,
                       input_fps: Optional[float] = None,
                       storage_options: Optional[Dict[str, Any]] = None,
                       seek=None) -> Decoder:
    """A Decoder streaming the video object or frame-folder prefix at ``url``.

    ``seek``: as open_reader's (video objects seek by byte range; a folder starts at the
    image shown then, its earlier images are not read).

    ``decoder``: the resolved decoder of video objects ("pyav" or "opencv").
    Raises DecodeError naming the URL (credentials left out) when it does not decode.
    """
    remote = Remote(url, storage_options)
    where = remote.display
    try:
        info = remote.info()
        if info is None and remote.listdir(""):
            info = {"type": "directory"}
    except Exception as exc:  # noqa: BLE001 - network errors, permissions
        raise DecodeError(remote.error(f"{where}: cannot be read", exc)) from None
    if info is None:
        raise DecodeError(f"{where}: no such object")
    if info.get("type") == "directory":
        from .folder import FolderReader
        return FolderReader(where, resize, input_fps=input_fps, remote=remote, seek=seek)
    size = int(info.get("size") or 0)
    if size == 0:
        raise DecodeError(f"{where}: empty object (0 bytes)")
    if decoder != "pyav":
        raise DecodeError(f"{where}: OpenCV's reader cannot read from object storage; "
                          f"use --decoder pyav (what auto picks when PyAV is installed)")
    from .pyav import PyAVReader
    try:
        fobj = remote.open_read("", VIDEO_BLOCK, VIDEO_BLOCKS)
    except Exception as exc:  # noqa: BLE001
        raise DecodeError(remote.error(f"{where}: cannot be opened", exc)) from None
    try:
        return PyAVReader(where, resize, threads=threads, seek=seek, fileobj=fobj, size=size)
    except BaseException:
        fobj.close()
        raise
