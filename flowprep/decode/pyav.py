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
- Seeking (``seek=S``, for --start and for the time chunks of a long video):
  the demuxer seeks to the last keyframe at or before S, frames decoded before
  that keyframe (leading pictures that reference the previous group) are
  dropped, and the keyframe's time is checked: when it lies after S (an index
  that does not list every keyframe, an open group), the seek is retried
  further back (1/4, 1, 4, 16, 64 s before S; demuxers that seek by
  decoding time land after S with B-frames), and finally the file is decoded from
  its first frame. Every frame shown at or after S is therefore decoded from
  its keyframe on, as in a decode from the start, and the caller's selection
  keeps the same frames. Streams without a start time or frames without a
  presentation time are decoded from the start (no seek).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterator, Optional, Tuple

import numpy as np

from ..errors import DecodeError
from .base import (MAX_BAD_READS, Decoder, Resize, Time, check_declared_size, check_file,
                   diagnose, diagnose_file)
from .select import as_fraction


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
        seek: start decoding at the keyframe at or before this time (seconds, Fraction
            or float, >= 0); None or 0 decodes from the first frame. Frames before it
            may still come out (from the keyframe on): the caller selects.

    Attributes:
        seeked_to: the time (seconds, Fraction) of the keyframe decoding started at
            after a seek, None when decoding started at the beginning.
    """

    name = "pyav"

    #: the seek is retried this many times further back before decoding from the start
    SEEK_TRIES = 6
    #: frames dropped after a seek while looking for the keyframe, before giving up on it
    SEEK_MAX_LEADING = 512

    def __init__(self, path: str, resize: Resize = Resize(), threads: int = 0,
                 seek: Optional[Time] = None, fileobj=None, size: int = 0) -> None:
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
        if st.duration and st.time_base:
            self.duration = float(Fraction(st.duration) * Fraction(st.time_base))
        elif self._container.duration:
            self.duration = self._container.duration / 1_000_000  # AV_TIME_BASE
        # one reformatter for the whole stream: frame.to_ndarray(format=...) would set up a
        # new swscale context for every frame (about half the time on small frames)
        from av.video.reformatter import VideoReformatter
        self._reformatter = VideoReformatter()
        self._size: Optional[Tuple[int, int]] = None  # coded (width, height) of the first frame
        self.seeked_to: Optional[Fraction] = None
        self._frames_from: Optional[Iterator] = None  # decoded av frames after a seek
        self.seekable = self._origin is not None and bool(self._tb)
        if seek is not None and seek > 0 and self.seekable:
            self._frames_from = self._seek(Fraction(seek) if isinstance(seek, int)
                                           else as_fraction(seek))
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
        frames = self._frames_from if self._frames_from is not None else self._av_frames()
        for frame in frames:
            yield self._convert(frame)

    def _time_of(self, frame) -> Optional[Fraction]:
        tb = frame.time_base or self._tb
        if frame.pts is None or tb is None or self._origin is None:
            return None
        return Fraction(frame.pts - self._origin) * Fraction(tb)

    def _seek(self, target: Fraction) -> Iterator:
        """Position the decoder for a decode from ``target`` seconds on (see the module
        docstring); returns the av frames from the keyframe on."""
        back = Fraction(0)
        st = self._stream
        for _ in range(self.SEEK_TRIES):
            at = target - back
            if at <= 0:
                break
            pts = int(self._origin) + math.floor(at / Fraction(self._tb))
            try:
                self._container.seek(pts, stream=st, backward=True, any_frame=False)
                st.codec_context.flush_buffers()
            except self._av.FFmpegError:
                break
            gen = self._av_frames()
            first = None
            for k, frame in enumerate(gen):
                if self._time_of(frame) is None or k >= self.SEEK_MAX_LEADING:
                    gen.close()
                    return self._restart()
                if frame.key_frame:
                    first = frame
                    break
            if first is not None and self._time_of(first) <= target:
                self.seeked_to = self._time_of(first)
                self.frames_skipped = round(float(self.seeked_to) * self.fps) if self.fps else 0
                return _chain(first, gen)
            gen.close()
            back = max(Fraction(1, 4), 4 * back)  # 1/4, 1, 4, 16, 64 s back
        return self._restart()

    def _restart(self) -> Iterator:
        """Back to the first frame: a fresh container, decoded from the start."""
        self.seeked_to = None
        self.frames_skipped = 0
        self.decode_errors = 0
        self._container.close()
        self._container = self._av.open(self.path, metadata_errors="ignore")
        threads = self._stream.codec_context.thread_count
        self._stream = st = self._container.streams.video[0]
        st.thread_type = "AUTO"
        st.codec_context.thread_count = threads
        return self._av_frames()

    def _av_frames(self):
        """The decoded av.VideoFrames from the demuxer's position (corrupt packets skipped)."""
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
            yield from frames

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
        # freed here, in the process that made it: its swscale slice threads exist only here
        # (a reformatter collected later in a forked child waits on them forever)
        self._reformatter = None
        f = getattr(self, "_fileobj", None)
        if f is not None:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - a broken connection
                pass


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
