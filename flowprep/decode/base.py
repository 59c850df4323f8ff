"""What every decoder shares: the resize rule, the Decoder interface, diagnostics.

A decoder streams one video (or frame folder) as uint8 (H, W, 3) RGB frames,
already rotated by the container's display matrix and resized, each with its
presentation time in seconds (``Decoder.frames()`` yields ``(t, rgb)``;
iterating a decoder yields the frames alone). Counts come from decoding;
container metadata (the frame count it claims) is only recorded
(``container_frames``) so that a video whose decoding stops well short of it
can be flagged. Corrupt packets are skipped and counted (``decode_errors``),
decoding goes on with the next good frame, as the ffmpeg command line does.

Timestamps. ``t`` is the frame's presentation time relative to the start of
its stream (PyAV: ``(pts - stream.start_time) * time_base``; OpenCV:
CAP_PROP_POS_MSEC; frame folders: index / input fps). A frame without a time,
or whose time does not increase, gets the previous frame's time plus one frame
period (1 / fps), so the times are always strictly increasing.

Backends live in their own modules (pyav.py, opencv.py, folder.py) and are
picked by name in ``flowprep.decode.open_reader``.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, List, Optional, Tuple, Union

# FFmpeg's own log lines ("Invalid NAL unit size", "moov atom not found") would flood
# stderr on damaged inputs; what they mean is recorded per video instead (the failure
# reason, or meta "warnings"). Read by OpenCV when it first opens a file; a value set
# by the user wins (e.g. OPENCV_FFMPEG_LOGLEVEL=16 to see FFmpeg's errors).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ..errors import ConfigError, DecodeError  # noqa: E402

DEFAULT_SHORT_SIDE = 256

#: consecutive failed reads after which the stream is taken to have ended.
MAX_BAD_READS = 64

#: the most pixels (width x height) one frame may declare: 100 megapixels (8K UHD is 33,
#: 12000x8000 is 96). An image or a video stream whose header declares more is refused
#: before anything of it is decoded: one decoded 20000x20000 RGB frame alone is 1.2 GB,
#: per worker.
MAX_PIXELS = 100_000_000


def too_large(width: int, height: int) -> bool:
    """True when a width x height frame (pixels) is over ``MAX_PIXELS``."""
    return int(width) * int(height) > MAX_PIXELS


def megapixels(width: int, height: int) -> str:
    """"400 megapixels": width x height in millions of pixels, for messages."""
    return f"{int(width) * int(height) / 1e6:.3g} megapixels"


def check_declared_size(path: str, width: int, height: int) -> None:
    """DecodeError naming ``path`` when its video stream declares frames over ``MAX_PIXELS``."""
    if too_large(width, height):
        raise DecodeError(
            f"{path}: its video stream declares {width}x{height} frames "
            f"({megapixels(width, height)}), over flowprep's limit of "
            f"{megapixels(MAX_PIXELS, 1)} a frame; not decoded (a damaged or forged header, "
            f"or a video far larger than optical flow needs)")


def short_of_container(decoded: int, container_frames: Optional[int]) -> bool:
    """True when ``decoded`` frames is well short of the container's claimed count.

    "Well short": more than max(2, 5 %) frames missing. The claimed count is an
    estimate for some containers (duration x fps for WebM/Matroska, variable
    frame rate), which is off by a frame or two, never by 5 %.
    """
    if not container_frames or container_frames <= 0:
        return False
    return container_frames - decoded > max(2, container_frames // 20)


def decode_warnings(frames_read: int, container_frames: Optional[int], exhausted: bool,
                    decode_errors: int, skipped: int = 0) -> List[str]:
    """The warnings of a decode: truncated (decoded to the end, well short of the
    container's count) and corrupt packets skipped (strings for a person).

    ``skipped``: frames before the point a seek started decoding at (estimated from
    its time and the frame rate; 0 without a seek); they count as present."""
    out = []
    if exhausted and short_of_container(frames_read + skipped, container_frames):
        seek = f" after a seek past {skipped}" if skipped else ""
        out.append(f"truncated: {frames_read} frames decoded{seek}, the container claims "
                   f"{container_frames}; the file is probably cut short or corrupt")
    if decode_errors:
        out.append(f"decode errors: {decode_errors} corrupt packet"
                   f"{'s' if decode_errors != 1 else ''} skipped, so the frames "
                   f"around them are not evenly spaced")
    return out


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
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            return diagnose_file(fh, size, opened)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"


def diagnose_file(fh, size: int, opened: bool = False) -> str:
    """:func:`diagnose` for an open, seekable binary file object of ``size`` bytes (a
    local file, or an object on object storage read by byte ranges)."""
    generic = ("not a video file, a damaged one, a codec this FFmpeg build lacks, "
               "or a file with audio but no video stream")
    try:
        fh.seek(0)
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


#: frames/s assumed for a video whose container gives none (and frame folders without --input-fps)
DEFAULT_FPS = 25.0

Time = Union[Fraction, float]


def check_file(path: str) -> None:
    """Raise DecodeError naming ``path`` when it is not a non-empty regular file."""
    if not os.path.isfile(path):
        if os.path.islink(path) and not os.path.exists(path):
            raise DecodeError(f"{path}: a broken symbolic link (its target "
                              f"{os.readlink(path)!r} does not exist)")
        if os.path.exists(path):
            raise DecodeError(f"{path}: not a regular file (a folder, pipe or device)")
        raise DecodeError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")


class Decoder:
    """Streams the frames of one input; base class of the backends.

    Subclasses set ``fps``, ``container_frames`` (and may count ``decode_errors``)
    in their ``__init__``, then call ``_start()``; they implement ``_raw()``, a
    generator of ``(frame, t)``: frame uint8 (h, w, 3) RGB at the source size
    after rotation (or already at the output size, once ``width``/``height`` are
    known: PyAV scales while converting), t its presentation time in seconds
    (Fraction or float) or None.

    Attributes:
        name: the backend's name ("pyav", "opencv", "folder").
        path: the input.
        fps: frames per second the container states (0.0 when unknown).
        src_width, src_height: decoded size before resizing, after rotation.
        width, height: output size.
        container_frames: the frame count the container claims, None when it gives
            none; recorded, never used as the count.
        decode_errors: corrupt packets (or unreadable images) skipped.
        frames_read: frames decoded so far.
        end_time: after the last frame, the time it stops being shown (seconds,
            Fraction or float): its time plus its duration (or one frame period).
        exhausted: True once the stream was decoded to its end.
        duration: seconds the container claims (None when it gives none); like
            container_frames, only an estimate (it plans the chunks of a long video).
        invented_times: frames that had no time, or one that did not increase, and got
            the previous frame's time plus one period.
        seeked_to: where a seek started decoding (seconds), None: at the first frame.
        frames_skipped: frames before ``seeked_to`` (0 without a seek; PyAV: estimated
            from the time and the frame rate, a frame folder: exact); the truncation
            warning counts them as present.
        seekable: True when ``seek`` lands exactly (PyAV on a stream with a start time,
            a frame folder).
    """

    name = ""
    fps: float = 0.0
    container_frames: Optional[int] = None
    duration: Optional[float] = None
    seeked_to: Optional[Time] = None
    frames_skipped: int = 0
    seekable: bool = False

    def __init__(self, path: str, resize: Resize = Resize()) -> None:
        self.path = str(path)
        self.resize = resize
        self.frames_read = 0
        self.decode_errors = 0
        self.end_time: Optional[Time] = None
        self.exhausted = False  # the stream was decoded to its end
        self._last_t: Optional[Time] = None
        self._last_duration: Optional[Time] = None
        self._extra_warnings: List[str] = []
        self.invented_times = 0

    # --- for subclasses ---------------------------------------------------
    def _raw(self) -> Iterator[Tuple[np.ndarray, Optional[Time]]]:
        raise NotImplementedError

    def _start(self) -> None:
        """Decode the first frame (DecodeError when none decodes) and learn the size."""
        self._gen = self._raw()
        self._first = next(self._gen, None)
        if self._first is None:
            self.close()
            raise DecodeError(self._no_frames_reason())
        self.src_height, self.src_width = self._first[0].shape[:2]
        self.width, self.height = self.resize.output_size(self.src_width, self.src_height)

    def _no_frames_reason(self) -> str:
        return f"{self.path}: no video frames decode ({diagnose(self.path, opened=True)})"

    @property
    def period(self) -> Time:
        """One frame period in seconds (1 / fps; 1 / DEFAULT_FPS when the fps is unknown)."""
        fps = self.fps if self.fps and self.fps > 0 else DEFAULT_FPS
        return Fraction(fps).limit_denominator(1_000_000) ** -1

    # --- the stream ---------------------------------------------------------
    def frames(self) -> Iterator[Tuple[Time, np.ndarray]]:
        """Yield ``(t, rgb)``: t seconds (Fraction or float), rgb uint8 (height, width, 3)."""
        item = self._first
        self._first = None
        try:
            while item is not None:
                frame, t = item
                scaled = frame.shape[:2] == (self.height, self.width)  # the backend resized it
                if not scaled and frame.shape[:2] != (self.src_height, self.src_width):
                    raise DecodeError(
                        f"{self.path}: frame {self.frames_read} is {frame.shape[1]}x{frame.shape[0]}, "
                        f"the video started at {self.src_width}x{self.src_height} (size changes "
                        f"are not supported)")
                if t is None or (self._last_t is not None and t <= self._last_t):
                    t = 0 if self._last_t is None else self._last_t + self.period
                    self.invented_times += 1
                self._last_t = t
                self.frames_read += 1
                yield t, frame if scaled else resize_frame(frame, self.width, self.height)
                item = next(self._gen, None)
            self.exhausted = True
            if self._last_t is not None:
                dur = self._last_duration if self._last_duration else self.period
                self.end_time = self._last_t + dur
        finally:
            self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, rgb in self.frames():
            yield rgb

    @property
    def truncated(self) -> bool:
        """True when decoding reached the end of the stream well short of the container's
        frame count (a run stopped early by --end is not truncated)."""
        return self.exhausted and short_of_container(self.frames_read + self.frames_skipped,
                                                     self.container_frames)

    def warnings(self) -> List[str]:
        """Problems with the input that did not stop it decoding, for a person (strings)."""
        return decode_warnings(self.frames_read, self.container_frames, self.exhausted,
                               self.decode_errors, self.frames_skipped) + self._extra_warnings

    def skipped_summary(self) -> str:
        """What decoding skipped, counted, for failure reasons; "" when nothing was.

        Videos: "3 corrupt packets skipped" (frame folders: the images, by cause).
        """
        n = self.decode_errors
        return f"{n} corrupt packet{'s' if n != 1 else ''} skipped" if n else ""

    def describe(self) -> dict:
        """The decoder's name and version (recorded in the store config)."""
        return {"name": self.name}

    def close(self) -> None:
        pass

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
