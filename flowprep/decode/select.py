"""Which decoded frames are stored: time ranges (--start/--end) and a fixed rate (--fps).

Pure stream transforms over ``(t, frame)`` pairs, t in seconds (Fraction or
float), strictly increasing (decoders guarantee it).

Time range [S, E): without --fps, a source frame is kept when S <= t < E
(its presentation time). With --fps the range applies to the output times.

Fixed rate F, as FFmpeg's ``fps`` filter does it (libavfilter/vf_fps.c, default
``round=near``, ``eof_action=round``, no ``start_time``):

- every source frame j gets the output tick q_j = round(t_j * F), rounded to
  the nearest integer, halves away from zero (AV_ROUND_NEAR_INF);
- the ticks run from n = q_0 (the first frame's) up to, not including,
  q_end = round(t_end * F), where t_end is when the last frame stops being
  shown (its time plus its duration, or one frame period);
- output tick n shows the last source frame j with q_j <= n (so a frame whose
  tick is taken by a later one is dropped, and a frame is repeated over the
  ticks until the next frame's); output frame k has time n / F.

So 30 -> 25 frames/s drops one frame in six, 25 -> 30 repeats one in five, a
variable-frame-rate input gives evenly spaced frames showing what was on
screen (after rounding to the output ticks). tests/test_decode.py checks
every output frame against the ffmpeg command line's fps filter.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from ..errors import ConfigError

T = TypeVar("T")
Time = Union[Fraction, float]


def round_near_inf(x: Time) -> int:
    """Round to the nearest integer, halves away from zero (FFmpeg's AV_ROUND_NEAR_INF)."""
    if x >= 0:
        return int(math.floor(x + Fraction(1, 2))) if isinstance(x, Fraction) else int(math.floor(x + 0.5))
    return -round_near_inf(-x)


def as_fraction(x: Time) -> Fraction:
    """A time or rate as an exact Fraction (floats: nearest with denominator <= 10**6)."""
    return x if isinstance(x, Fraction) else Fraction(x).limit_denominator(1_000_000)


def check_selection(fps: Optional[float] = None, start: Optional[float] = None,
                    end: Optional[float] = None) -> None:
    """ConfigError naming the bad value when fps <= 0, a time < 0 or start >= end."""
    for name, v in (("--fps", fps), ("--start", start), ("--end", end)):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, Fraction)) or not math.isfinite(float(v)):
            raise ConfigError(f"{name} must be a number, got {v!r}")
    if fps is not None and not float(fps) > 0:
        raise ConfigError(f"--fps must be positive (frames per second), got {fps}")
    for name, v in (("--start", start), ("--end", end)):
        if v is not None and float(v) < 0:
            raise ConfigError(f"{name} must be a time in seconds >= 0, got {v}")
    if start is not None and end is not None and not float(start) < float(end):
        raise ConfigError(f"--start must be before --end, got start {start} >= end {end}")


def in_range(t: Time, start: Optional[Time], end: Optional[Time]) -> bool:
    """True when start <= t < end (a missing bound does not limit)."""
    return (start is None or t >= start) and (end is None or t < end)


def resample(frames: Iterable[Tuple[Time, T]], fps: Time,
             end_time: Callable[[Optional[Time]], Optional[Time]],
             stop_after: Optional[Time] = None) -> Iterator[Tuple[Fraction, T]]:
    """FFmpeg's fps filter over a stream (see the module docstring).

    Args:
        frames: (t, item) pairs, t strictly increasing seconds.
        fps: the output rate F (> 0).
        end_time: called once the input ends with the last frame's time; returns when
            it stops being shown (t_end), or None for "one output period after it".
        stop_after: stop reading input once output times reach this (the --end bound).
    Yields:
        (n / F, item) for each output tick n.
    """
    F = as_fraction(fps)
    n: Optional[int] = None
    prev: Optional[Tuple[int, T]] = None
    last_t: Optional[Time] = None
    stop_tick = None if stop_after is None else math.ceil(as_fraction(stop_after) * F)
    for t, item in frames:
        q = round_near_inf(as_fraction(t) * F)
        last_t = t
        if prev is None:
            n = q
        else:
            while n < q:  # ticks before this frame's show the previous one
                if stop_tick is not None and n >= stop_tick:
                    return
                yield Fraction(n) / F, prev[1]
                n += 1
        prev = (q, item)
    if prev is None:
        return
    t_end = end_time(last_t)
    q_end = round_near_inf(as_fraction(t_end) * F) if t_end is not None else n + 1
    while n < q_end:
        if stop_tick is not None and n >= stop_tick:
            return
        yield Fraction(n) / F, prev[1]
        n += 1


def resample_indices(times: Sequence[Time], end: Time, fps: Time) -> List[int]:
    """Source frame index of each output frame of ``resample`` (a pure helper for tests/docs).

    Args:
        times: float or Fraction (N,) source presentation times, seconds, increasing.
        end: when the last frame stops being shown, seconds.
        fps: output rate.
    Returns:
        a list of indices into ``times``, one per output frame.
    """
    return [j for _, j in resample(((t, j) for j, t in enumerate(times)), fps, lambda _t: end)]


def select(frames: Iterable[Tuple[Time, T]], fps: Optional[Time] = None,
           start: Optional[Time] = None, end: Optional[Time] = None,
           end_time: Callable[[Optional[Time]], Optional[Time]] = lambda _t: None
           ) -> Iterator[Tuple[Time, T]]:
    """The stored frames: (t, item) pairs in [start, end), resampled to ``fps`` when given.

    Input beyond ``end`` is not read (decoding stops there).
    """
    s = None if start is None else as_fraction(start)
    e = None if end is None else as_fraction(end)
    if fps is not None:
        for t, item in resample(frames, fps, end_time, stop_after=e):
            if in_range(t, s, e):
                yield t, item
        return
    for t, item in frames:
        if e is not None and as_fraction(t) >= e:
            return
        if s is None or as_fraction(t) >= s:
            yield t, item
