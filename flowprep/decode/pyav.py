"""The PyAV decoder: the FFmpeg that PyAV's wheel bundles (AV1 via dav1d, HEVC, VP9,
ProRes, MJPEG, ...), the default.

- Colour conversion and resizing in one swscale pass (``VideoReformatter``, one
  per stream): straight from the decoder's YUV to RGB at the output size, with
  the resize rule's filters (area when shrinking, bilinear when enlarging);
  the first frame, which sets the size, goes through the shared resize.
- Frame threading: ``thread_type = "AUTO"`` (frame and slice threads), with
  ``threads`` decoder threads (0 = FFmpeg's choice: one per core).
- Times: ``(frame.pts - stream.start_time) * time_base``, exact fractions.
- Display rotation: the frame's display matrix (``frame.rotation``, from the
  stream's side data), applied as FFmpeg's ``autorotate`` does: a matrix that
  rotates by r degrees counter-clockwise gives frames rotated by r degrees
  counter-clockwise (90 and 270 swap width and height).
- Corrupt packets: a packet the decoder rejects (``av.error.InvalidDataError``
  and other FFmpeg errors) is skipped and counted in ``decode_errors``; decoding
  goes on with the next packet. ``MAX_BAD_READS`` rejected packets in a row end
  the stream (nothing decodes any more).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterator, Optional, Tuple

import numpy as np

from ..errors import DecodeError
from .base import (MAX_BAD_READS, Decoder, Resize, Time, check_declared_size, check_file,
                   diagnose, diagnose_file)


def ffmpeg_version() -> str:
    """The version of the FFmpeg inside PyAV (e.g. "7.1.1"), or its libavcodec version."""
    import av
    info = getattr(av, "ffmpeg_version_info", None)
    if info:
        return str(info)
    lv = getattr(av, "library_versions", {}).get("libavcodec")
    return "libavcodec " + ".".join(map(str, lv)) if lv else "unknown"


def _rotate(rgb: np.ndarray, ccw: int) -> np.ndarray:
    """Rotate uint8 (H, W, 3) by ``ccw`` degrees counter-clockwise (a multiple of 90)."""
    k = (int(round(ccw / 90.0)) % 4)
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


class PyAVReader(Decoder):
    """Streams one video file through PyAV (see the module docstring).

    Args:
        path: the video file.
        resize: the output size rule.
        threads: decoder threads; 0 lets FFmpeg choose (one per core).
    """

    name = "pyav"

    def __init__(self, path: str, resize: Resize = Resize(), threads: int = 0,
                 fileobj=None, size: int = 0) -> None:
        super().__init__(path, resize)
        import av
        self._av = av
        #: an open binary file object to read instead of ``path`` (object storage: byte
        #: ranges, see flowprep.decode.remote_input), and its size in bytes
        self._fileobj, self._fsize = fileobj, int(size)
        if fileobj is None:
            check_file(self.path)
        try:
            self._container = av.open(self.path if fileobj is None else fileobj,
                                      metadata_errors="ignore")
        except Exception as exc:  # noqa: BLE001 - av.error.* and OSError
            raise DecodeError(f"{self.path}: not a readable video ({self._diagnose()}; "
                              f"FFmpeg: {_short(exc)})") from None
        if not self._container.streams.video:
            self._container.close()
            what = "it has audio but no video stream" if self._container.streams.audio \
                else self._diagnose(opened=True)
            raise DecodeError(f"{self.path}: no video stream ({what})")
        self._stream = st = self._container.streams.video[0]
        try:  # an absurd declared frame size: refused before a frame is decoded
            check_declared_size(self.path, st.codec_context.width, st.codec_context.height)
        except DecodeError:
            self._container.close()
            raise
        st.thread_type = "AUTO"
        st.codec_context.thread_count = int(threads)
        self.threads = int(threads)
        self.codec = st.codec_context.name
        rate = st.average_rate or st.base_rate or st.guessed_rate
        self.fps = float(rate) if rate and float(rate) > 0 else 0.0
        self.container_frames = int(st.frames) if st.frames and st.frames > 0 else None
        self._tb = st.time_base
        self._origin = st.start_time
        # one reformatter for the whole stream: frame.to_ndarray(format=...) would set up a
        # new swscale context for every frame (about half the time on small frames)
        from av.video.reformatter import VideoReformatter
        self._reformatter = VideoReformatter()
        self._size: Optional[Tuple[int, int]] = None  # coded (width, height) of the first frame
        self._start()
        # the first frame decided the output size; convert it like every other frame
        first, self._first_av = self._first_av, None
        if (self.width, self.height) != (self.src_width, self.src_height):
            self._first = (self._convert(first)[0], self._first[1])

    def _diagnose(self, opened: bool = False) -> str:
        if self._fileobj is None:
            return diagnose(self.path, opened)
        return diagnose_file(self._fileobj, self._fsize, opened)

    def _no_frames_reason(self) -> str:
        if self.decode_errors:
            return (f"{self.path}: no video frames decode ({self.decode_errors} packets of its "
                    f"{self.codec} stream rejected by the decoder: a damaged file)")
        return f"{self.path}: no video frames decode ({self._diagnose(opened=True)})"

    def _packets(self):
        """Demux the video stream; a demuxer error is counted and demuxing resumes."""
        failed = 0
        while failed < MAX_BAD_READS:
            try:
                for packet in self._container.demux(self._stream):
                    yield packet
                return
            except self._av.error.EOFError:
                return
            except self._av.FFmpegError:
                failed += 1
                self.decode_errors += 1

    def _raw(self) -> Iterator[Tuple[np.ndarray, Optional[Time]]]:
        bad_in_a_row = 0
        for packet in self._packets():
            try:
                frames = packet.decode()
            except self._av.error.EOFError:
                break
            except self._av.FFmpegError:
                self.decode_errors += 1
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_BAD_READS:
                    return
                continue
            bad_in_a_row = 0
            for frame in frames:
                yield self._convert(frame)

    def _convert(self, frame) -> Tuple[np.ndarray, Optional[Time]]:
        rot = getattr(frame, "rotation", 0) or 0
        quarter = int(round(rot / 90.0)) % 2 == 1  # 90 or 270 degrees: width and height swap
        if self._size is None:
            self._size = (frame.width, frame.height)
            self._first_av = frame  # converted again at the output size once that is known
        elif (frame.width, frame.height) != self._size:
            w, h = (frame.height, frame.width) if quarter else (frame.width, frame.height)
            raise DecodeError(f"{self.path}: frame {self.frames_read} is {w}x{h}, the video started "
                              f"at {self.src_width}x{self.src_height} (size changes are not "
                              f"supported)")
        out = getattr(self, "width", None)
        if out is not None and (self.width, self.height) != (self.src_width, self.src_height):
            # scale while converting, to the output size before rotation
            ow, oh = (self.height, self.width) if quarter else (self.width, self.height)
            shrink = ow * oh < frame.width * frame.height
            rgb = self._reformatter.reformat(frame, width=ow, height=oh, format="rgb24",
                                             interpolation="AREA" if shrink else "BILINEAR"
                                             ).to_ndarray()
        else:
            rgb = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
        if rot:
            rgb = _rotate(rgb, rot)
        t: Optional[Time] = None
        tb = frame.time_base or self._tb
        if frame.pts is not None and tb is not None:
            origin = self._origin if self._origin is not None else None
            if origin is None:
                if not hasattr(self, "_first_pts"):
                    self._first_pts = frame.pts
                origin = self._first_pts
            t = Fraction(frame.pts - origin) * Fraction(tb)
        dur = getattr(frame, "duration", None)
        self._last_duration = Fraction(dur) * Fraction(tb) if dur and tb is not None else None
        return rgb, t

    def describe(self) -> dict:
        import av
        return {"name": self.name, "pyav": av.__version__, "ffmpeg": ffmpeg_version()}

    def close(self) -> None:
        c = getattr(self, "_container", None)
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a broken container
                pass
            self._container = None
        f = getattr(self, "_fileobj", None)
        if f is not None:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - a broken connection
                pass


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
