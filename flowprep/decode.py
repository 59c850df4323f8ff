"""Video -> RGB frames, streamed, and the resize rule.

Frames come out one at a time as uint8 (H, W, 3) arrays in RGB order, already
rotated by the container's display matrix (OpenCV's FFmpeg backend applies it
when CAP_PROP_ORIENTATION_AUTO is on, which we set) and resized. The number of
frames is what actually decodes; container metadata (CAP_PROP_FRAME_COUNT) is
never trusted for counts, only recorded (``container_frames``) so that a video
whose decoding stops well short of it can be flagged.

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
import struct
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

# FFmpeg's own log lines ("Invalid NAL unit size", "moov atom not found") would flood
# stderr on damaged inputs; what they mean is recorded per video instead (the failure
# reason, or meta "warnings"). Read by OpenCV when it first opens a file; a value set
# by the user wins (e.g. OPENCV_FFMPEG_LOGLEVEL=16 to see FFmpeg's errors).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from .errors import ConfigError, DecodeError  # noqa: E402

DEFAULT_SHORT_SIDE = 256

#: consecutive failed reads after which the stream is taken to have ended.
MAX_BAD_READS = 64


def short_of_container(decoded: int, container_frames: Optional[int]) -> bool:
    """True when ``decoded`` frames is well short of the container's claimed count.

    "Well short": more than max(2, 5 %) frames missing. The claimed count is an
    estimate for some containers (duration x fps for WebM/Matroska, variable
    frame rate), which is off by a frame or two, never by 5 %.
    """
    if not container_frames or container_frames <= 0:
        return False
    return container_frames - decoded > max(2, container_frames // 20)


@dataclass(frozen=True)
class Resize:
    """How frames are resized: ``short_side`` pixels (0 keeps the size) or a fixed ``size``.

    Attributes:
        short_side: target length of the shorter side in pixels, aspect kept; 0 = keep.
        size: (width, height) in pixels; overrides short_side when set.
    """

    short_side: int = DEFAULT_SHORT_SIDE
    size: Optional[Tuple[int, int]] = None

    def __post_init__(self) -> None:
        if self.size is not None:
            w, h = self.size
            if int(w) < 8 or int(h) < 8:
                raise ConfigError(f"size must be at least 8x8 pixels, got {w}x{h}")
        elif int(self.short_side) < 0 or 0 < int(self.short_side) < 8:
            raise ConfigError(
                f"short side must be 0 (keep the size) or at least 8 pixels, got {self.short_side}")

    def output_size(self, width: int, height: int) -> Tuple[int, int]:
        """(width, height) of the output for an input of width x height pixels."""
        if self.size is not None:
            return int(self.size[0]), int(self.size[1])
        if self.short_side == 0:
            return width, height
        s = int(self.short_side)
        if width <= height:
            return s, max(1, int(round(height * s / width)))
        return max(1, int(round(width * s / height))), s

    def describe(self) -> dict:
        return {"short_side": int(self.short_side),
                "size": list(self.size) if self.size else None,
                "interpolation": "area when shrinking, linear when enlarging"}


def parse_size(text: str) -> Tuple[int, int]:
    """Parse 'WxH' into (width, height); raises ConfigError naming the text."""
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise ConfigError(f"size must look like WIDTHxHEIGHT, e.g. 340x256, got {text!r}") from None


def resize_frame(frame: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Resize (H, W, C) or (H, W) uint8 to (out_h, out_w[, C]); area filter when shrinking."""
    h, w = frame.shape[:2]
    if (w, h) == (out_w, out_h):
        return frame
    interp = cv2.INTER_AREA if out_w * out_h < w * h else cv2.INTER_LINEAR
    return cv2.resize(frame, (out_w, out_h), interpolation=interp)


class VideoReader:
    """Streams the frames of one video file.

    Use as an iterator of uint8 (H, W, 3) RGB frames at the output size. The
    reader holds one frame at a time; ``frames_read`` counts what decoded.

    Attributes:
        path: the video file.
        fps: frames per second from the container (0.0 when unknown).
        src_width, src_height: decoded size before resizing, after rotation.
        width, height: output size.
        container_frames: the frame count the container claims (CAP_PROP_FRAME_COUNT),
            None when it gives none; recorded, never used as the count.
        decode_errors: corrupt packets skipped (failed reads followed by a good frame).
    """

    def __init__(self, path: str, resize: Resize = Resize()) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            if os.path.islink(self.path) and not os.path.exists(self.path):
                raise DecodeError(f"{self.path}: a broken symbolic link (its target "
                                  f"{os.readlink(self.path)!r} does not exist)")
            if os.path.exists(self.path):
                raise DecodeError(f"{self.path}: not a regular file (a folder, pipe or device)")
            raise DecodeError(f"{self.path}: no such file")
        if os.path.getsize(self.path) == 0:
            raise DecodeError(f"{self.path}: empty file (0 bytes)")
        self._cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            self._cap.release()
            raise DecodeError(f"{self.path}: not a readable video ({diagnose(self.path)})")
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 0.0
        claimed = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.container_frames: Optional[int] = (
            int(round(claimed)) if claimed and np.isfinite(claimed) and claimed > 0 else None)
        self.resize = resize
        self.frames_read = 0
        self.decode_errors = 0
        self._first = self._read_raw()
        if self._first is None:
            self._cap.release()
            raise DecodeError(f"{self.path}: no video frames decode ({diagnose(self.path, opened=True)})")
        self.src_height, self.src_width = self._first.shape[:2]
        self.width, self.height = resize.output_size(self.src_width, self.src_height)

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
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        frame = self._first
        self._first = None
        try:
            while frame is not None:
                if frame.shape[:2] != (self.src_height, self.src_width):
                    raise DecodeError(
                        f"{self.path}: frame {self.frames_read} is {frame.shape[1]}x{frame.shape[0]}, "
                        f"the video started at {self.src_width}x{self.src_height} (size changes are not supported)")
                if frame.dtype != np.uint8:  # high bit depth from some backends
                    frame = (frame >> 8).astype(np.uint8) if frame.dtype == np.uint16 else frame.astype(np.uint8)
                rgb = cv2.cvtColor(resize_frame(frame, self.width, self.height), cv2.COLOR_BGR2RGB)
                self.frames_read += 1
                yield rgb
                frame = self._read_raw()
        finally:
            self.close()

    @property
    def truncated(self) -> bool:
        """True when decoding ended well short of the container's frame count."""
        return short_of_container(self.frames_read, self.container_frames)

    def warnings(self) -> list:
        """Problems with the input that did not stop it decoding, for a person (strings)."""
        out = []
        if self.truncated:
            out.append(f"truncated: {self.frames_read} frames decoded, the container claims "
                       f"{self.container_frames}; the file is probably cut short or corrupt")
        if self.decode_errors:
            out.append(f"decode errors: {self.decode_errors} corrupt packet"
                       f"{'s' if self.decode_errors != 1 else ''} skipped, so the frames "
                       f"around them are not evenly spaced")
        return out

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mp4_boxes(head: bytes, size: int, fh) -> List[Tuple[bytes, int, int]]:
    """Top-level ISO-BMFF boxes (type, offset, declared size) of an open file."""
    boxes = []
    off = 0
    while off + 8 <= size and len(boxes) < 64:
        fh.seek(off)
        hdr = fh.read(16)
        if len(hdr) < 8:
            break
        n, kind = struct.unpack(">I4s", hdr[:8])
        if n == 1 and len(hdr) >= 16:
            n = struct.unpack(">Q", hdr[8:16])[0]
        elif n == 0:
            n = size - off
        if n < 8:
            break
        boxes.append((kind, off, n))
        off += n
    return boxes


def diagnose(path: str, opened: bool = False) -> str:
    """A person's explanation of why ``path`` does not decode (best effort, cheap).

    Looks at the first bytes (text? an MP4 whose index is missing or cut short, or
    that has only audio?) and otherwise lists the usual causes.
    """
    generic = ("not a video file, a damaged one, a codec this FFmpeg build lacks, "
               "or a file with audio but no video stream")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(4096)
            if head and not opened:
                try:
                    text = head.decode("utf-8")
                    if all(c.isprintable() or c in "\r\n\t" for c in text[:-4]):
                        return "it is a text file, not a video"
                except UnicodeDecodeError:
                    pass
            if head[4:8] != b"ftyp":
                return generic if not opened else "the stream holds no decodable video frame"
            boxes = _mp4_boxes(head, size, fh)
            kinds = {k: (o, n) for k, o, n in boxes}
            if b"moov" not in kinds:
                return ("an MP4 file without its index (moov atom): the file is cut short, "
                        "e.g. an incomplete download or copy")
            off, n = kinds[b"moov"]
            if off + n > size:
                return ("the MP4 index (moov atom) is cut short: the file is truncated, "
                        "e.g. an incomplete download or copy")
            fh.seek(off)
            moov = fh.read(min(n, 1 << 22))
            if b"vide" not in moov:
                return "the file has audio but no video stream" if b"soun" in moov else generic
            mdat = kinds.get(b"mdat")
            if mdat is None or mdat[0] + mdat[1] > size:
                return ("the MP4 media data (mdat) is missing or cut short: the file is "
                        "truncated, e.g. an incomplete download or copy")
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    return generic if not opened else "the stream holds no decodable video frame"


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> uint8 (H, W) luma (ITU-R BT.601, as cv2.COLOR_RGB2GRAY)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
