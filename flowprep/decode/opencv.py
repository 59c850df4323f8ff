"""The OpenCV decoder: cv2.VideoCapture with its FFmpeg backend (today's reader).

Frames are rotated by the container's display matrix (CAP_PROP_ORIENTATION_AUTO),
times come from CAP_PROP_POS_MSEC. OpenCV's PyPI wheels carry an FFmpeg without
an AV1 decoder; such an input fails with a reason naming the codec and the fix
(``--decoder pyav``) instead of "no frames decode".

Mid-stream corruption. OpenCV's ``read()`` returns False for the first packet
the decoder rejects (a flipped bit in a NAL size, a truncated sample), which
would silently end the video there. The reader therefore reads on past a
failed read, up to ``MAX_BAD_READS`` failures in a row: a corrupt packet is
skipped (counted in ``decode_errors``) and decoding continues with the next
good frame, as the ffmpeg command line does; at the real end of the stream
every read fails at once (about 10 us each), so the extra reads cost nothing.
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

from ..errors import DecodeError
from .base import (MAX_BAD_READS, Decoder, Resize, Time, check_declared_size, check_file,
                   diagnose)

#: codecs OpenCV's PyPI wheels cannot decode (their FFmpeg has no decoder for them)
UNSUPPORTED_CODECS = ("av1",)


def probe_codec(path: str) -> Optional[str]:
    """The FFmpeg name of the first video stream's codec ("av1", "h264", ...), or None.

    With PyAV installed, read from the container header; without it, AV1 is recognised
    from its codec tags (MP4 sample entry ``av01``, Matroska/WebM ``V_AV1``) in the
    file's first and last 4 MiB. None when unknown.
    """
    try:
        import av
    except ImportError:
        return _sniff_av1(path)
    try:
        with av.open(path) as c:
            if not c.streams.video:
                return None
            codec = c.streams.video[0].codec_context.codec
            return getattr(codec, "canonical_name", None) or codec.name
    except Exception:  # noqa: BLE001 - a probe: any failure means "unknown"
        return _sniff_av1(path)


def _sniff_av1(path: str) -> Optional[str]:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(4 << 20)
            fh.seek(max(0, size - (4 << 20)))
            tail = fh.read()
    except OSError:
        return None
    blob = head + tail
    if b"V_AV1" in blob or (b"moov" in blob and b"av01" in blob and b"av1C" in blob):
        return "av1"
    return None


class OpenCVReader(Decoder):
    """Streams one video file through OpenCV (see the module docstring)."""

    name = "opencv"

    def __init__(self, path: str, resize: Resize = Resize()) -> None:
        super().__init__(path, resize)
        check_file(self.path)
        self._cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            self._cap.release()
            raise DecodeError(f"{self.path}: not a readable video ({diagnose(self.path)})")
        try:  # an absurd declared frame size: refused before a frame is decoded
            check_declared_size(self.path, int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                                int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        except DecodeError:
            self._cap.release()
            raise
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 0.0
        claimed = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.container_frames = (
            int(round(claimed)) if claimed and np.isfinite(claimed) and claimed > 0 else None)
        self._start()

    def _no_frames_reason(self) -> str:
        codec = probe_codec(self.path)
        if codec in UNSUPPORTED_CODECS:
            return (f"{self.path}: its video codec is {codec.upper()} ({codec}), which OpenCV's "
                    f"FFmpeg cannot decode; use --decoder pyav (or auto), whose FFmpeg has it")
        return super()._no_frames_reason()

    def _read_raw(self) -> Optional[np.ndarray]:
        failed = 0
        while True:
            ok, frame = self._cap.read()
            if ok and frame is not None:
                break
            failed += 1
            if failed >= MAX_BAD_READS:
                return None  # the end of the stream (or nothing decodes any more)
        self.decode_errors += failed
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if frame.dtype != np.uint8:  # high bit depth from some backends
            frame = (frame >> 8).astype(np.uint8) if frame.dtype == np.uint16 else frame.astype(np.uint8)
        return frame

    def _raw(self) -> Iterator[Tuple[np.ndarray, Optional[Time]]]:
        while True:
            frame = self._read_raw()
            if frame is None:
                return
            ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            t = Fraction(ms).limit_denominator(1_000_000) / 1000 if np.isfinite(ms) else None
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), t

    def describe(self) -> dict:
        return {"name": self.name, "opencv": cv2.__version__}

    def close(self) -> None:
        self._cap.release()


#: the name today's code and tests import
VideoReader = OpenCVReader
