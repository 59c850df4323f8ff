"""Decoders by name: a video file or a frame folder -> RGB frames + timestamps.

    open_reader(path, decoder="auto", resize=Resize(), threads=0, input_fps=None)

``decoder``: "pyav" (the FFmpeg PyAV bundles: AV1, HEVC, VP9, ProRes, ...),
"opencv" (cv2.VideoCapture), or "auto": PyAV when it is installed, OpenCV
(with a note, ``AUTO_NOTE``) when it is not. A folder is always read by the
frame-folder reader (folder.py). Backends are imported lazily.

The resize rule (``Resize``), ``rgb_to_grey`` and the fps / time-range
selection (select.py) are shared by all of them.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from ..errors import ConfigError
from .base import (DEFAULT_FPS, DEFAULT_SHORT_SIDE, MAX_BAD_READS, Decoder, Resize, check_file,
                   diagnose, parse_size, resize_frame, rgb_to_grey, short_of_container)
from .opencv import OpenCVReader, VideoReader

DECODERS = ("auto", "pyav", "opencv")

#: why "auto" fell back to OpenCV (printed once by the CLI, recorded in the store config)
AUTO_NOTE = ("PyAV is not installed, so videos are decoded with OpenCV, which cannot read AV1; "
             "pip install av to decode with PyAV")

__all__ = ["DECODERS", "DEFAULT_FPS", "DEFAULT_SHORT_SIDE", "MAX_BAD_READS", "Decoder", "Resize",
           "VideoReader", "OpenCVReader", "check_file", "diagnose", "parse_size", "resize_frame",
           "rgb_to_grey", "short_of_container", "open_reader", "resolve_decoder", "decoder_info",
           "have_pyav"]


def have_pyav() -> bool:
    """True when PyAV can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_decoder(name: str = "auto") -> str:
    """"auto" | "pyav" | "opencv" -> the decoder used for video files ("pyav" or "opencv").

    Raises ConfigError for an unknown name, or "pyav" asked for without PyAV installed.
    """
    if name not in DECODERS:
        raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, got {name!r}")
    if name == "auto":
        return "pyav" if have_pyav() else "opencv"
    if name == "pyav" and not have_pyav():
        raise ConfigError("--decoder pyav needs PyAV: pip install av (or use --decoder opencv)")
    return name


def decoder_info(name: str = "auto") -> Dict[str, str]:
    """What the store config records: {"name", and the versions of what decodes}."""
    import cv2
    resolved = resolve_decoder(name)
    out = {"name": resolved}
    if resolved == "pyav":
        import av
        from .pyav import ffmpeg_version
        out.update(pyav=av.__version__, ffmpeg=ffmpeg_version())
    else:
        out["opencv"] = cv2.__version__
        if name == "auto":
            out["note"] = AUTO_NOTE
    return out


def open_reader(path: str, decoder: str = "auto", resize: Resize = Resize(), threads: int = 0,
                input_fps: Optional[float] = None, seek: Optional[float] = None,
                storage_options: Optional[Dict[str, Any]] = None) -> Decoder:
    """A Decoder streaming ``path`` (a video file or a frame folder).

    Args:
        path: the input.
        decoder: "auto" | "pyav" | "opencv" for video files (see the module docstring).
        resize: the output size rule.
        threads: PyAV decoder threads (0 = FFmpeg's choice).
        input_fps: frames/s of a frame folder (default DEFAULT_FPS); ignored for videos.
        seek: seconds (float or Fraction): PyAV starts decoding at the keyframe at or
            before it (see decode/pyav.py; frames before it may still come, the caller
            selects), a frame folder at the image shown then; OpenCV's reader decodes
            from the first frame (its seeking is not frame-exact). None: the start.
        storage_options: for an fsspec URL ``path`` (see flowprep.decode.remote_input).
    Raises:
        DecodeError naming the input when it does not decode; ConfigError for a bad name.
    """
    from ..remote import is_url
    if is_url(path):
        from .remote_input import open_remote_reader
        return open_remote_reader(path, resolve_decoder(decoder), resize, threads, input_fps,
                                  storage_options, seek=seek)
    if os.path.isdir(path):
        from .folder import FolderReader
        return FolderReader(path, resize, input_fps=input_fps, seek=seek)
    which = resolve_decoder(decoder)
    if which == "pyav":
        from .pyav import PyAVReader
        return PyAVReader(path, resize, threads=threads, seek=seek)
    return OpenCVReader(path, resize)
