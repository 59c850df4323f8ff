"""Which flows and frames a sample reads: snippet starts, windows, padding, the test protocol.

Pure functions of integers (and a numpy Generator for the train draws). Indices are 0-based:
flow i is the displacement from frame i to frame i+step; frame t is the t-th stored frame.
The package docstring (flowprep/loader/__init__.py) states the conventions in full.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def segment_offsets(num_valid: int, num_segments: int, mode: str,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Snippet offsets in [0, num_valid) for K = num_segments segments (TSN).

    Segment k is [floor(k M/K), floor((k+1) M/K)) with M = num_valid (at
    least one position wide). "train": one uniform draw in each segment;
    otherwise the centre floor(M/K (k + 1/2)) ("val", and "test" with K =
    test_snippets: the papers' evenly spaced test snippets).

    Returns:
        int64 (K,).
    """
    m, k = max(int(num_valid), 1), int(num_segments)
    if mode == "train":
        b = (np.arange(k + 1, dtype=np.int64) * m) // k
        lo = np.minimum(b[:-1], m - 1)
        hi = np.maximum(b[1:], lo + 1)
        return rng.integers(lo, hi).astype(np.int64)
    tick = m / k
    return np.minimum((tick / 2 + tick * np.arange(k)).astype(np.int64), m - 1)


def snippet_starts(n: int, lo: int, num_valid: int, num_snippets: int, mode: str,
                   rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Snippet start frames tau, int64 (K,) with K = num_snippets.

    Args:
        n: the count the window's indices run over (num_flows or num_frames).
        lo: the first valid start (0; (L/2)*step for bidirectional stacks).
        num_valid: M, how many starts lo, lo+1, ... have their whole window inside
            the video (may be zero or negative for a short video).
        mode: "train" (a uniform draw per segment) | "val" | "test" (centres).
    Returns:
        lo + segment_offsets(M, K, mode) when M >= 1; else K copies of the start that
        centres the window on the video (lo + M//2, clamped into [0, n-1]), whose
        out-of-range indices the padding rule then maps.
    """
    offs = segment_offsets(num_valid, num_snippets, mode, rng)
    if num_valid >= 1:
        return lo + offs
    tau = int(np.clip(lo + num_valid // 2, 0, max(n - 1, 0)))
    return np.full(num_snippets, tau, dtype=np.int64)


def valid_starts(num_flows: int, num_frames: int, step: int, length: int, *, kind: str,
                 bidirectional: bool = False, stride: int = 1) -> Tuple[int, int, int]:
    """(n, lo, M) for :func:`snippet_starts`: the index range and the starts whose window fits.

    Args:
        kind: "flow" (a flow window: flows tau + j*stride*step, or the bidirectional window),
            "rgb" (one frame, or a clip of L frames tau + j*stride), "rgbdiff" (L frames).
        stride: frame_interval (clip layout; 1 for stacks).
    """
    L, s = int(length), int(step)
    if kind == "flow":
        lo = (L // 2) * s if bidirectional else 0
        return num_flows, lo, num_flows - (L - 1) * s * stride
    if kind == "rgb":
        return num_frames, 0, num_frames - (L - 1) * stride
    return num_frames, 0, num_frames - L + 1


def pad_indices(idx: np.ndarray, n: int, pad: str) -> np.ndarray:
    """Map indices outside [0, n) by the padding rule: "repeat_last" clamps, "loop" wraps."""
    if pad == "loop":
        return np.mod(idx, n)
    return np.clip(idx, 0, n - 1)


def flow_window(tau: int, length: int, step: int, bidirectional: bool
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Flow indices and directions of the stack starting at frame tau (before padding).

    Plain: flows tau, tau+step, ..., tau+(L-1)*step (chaining frame tau -> tau+L*step).
    Bidirectional: L/2 forward flows tau, ..., tau+(L/2-1)*step, then L/2 backward flows
    tau-step, ..., tau-(L/2)*step, ordered outward from tau. (For a clip with
    frame_interval f pass step*f: flows tau + j*f*step.)

    Returns:
        (indices int64 (L,), backward bool (L,)).
    """
    if not bidirectional:
        return tau + step * np.arange(length, dtype=np.int64), np.zeros(length, bool)
    h = length // 2
    idx = np.concatenate([tau + step * np.arange(h, dtype=np.int64),
                          tau - step * np.arange(1, h + 1, dtype=np.int64)])
    return idx, np.repeat(np.array([False, True]), h)


def frame_window(taus: np.ndarray, length: int, stride: int, num_frames: int, pad: str
                 ) -> np.ndarray:
    """Frame indices of L frames from each start: int64 (K, L) = pad(tau + j*stride)."""
    return pad_indices(np.asarray(taus, np.int64)[:, None] + stride * np.arange(length),
                       num_frames, pad)
