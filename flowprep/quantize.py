"""Float flow <-> uint8, and per-flow statistics. Pure functions.

Convention (fixed scheme, bound B pixels), one component at a time:

    q = round((clip(d, -B, B) + B) * 255 / (2B))          uint8
    d = q * 2B / 255 - B                                   float32, pixels

``dequantize_fixed`` is the exact inverse map of the quantization grid: every
d in [-B, B] comes back within half a step (B / 255 px), and under the map
255 - q dequantizes to -d (exactly in real arithmetic; in float32 to within
~1e-5 px), so a horizontal flip done in uint8 space (255 - q on the dx
channel) loses nothing: the flipped bytes are the bytes of the mirrored flow.

Adaptive scheme: each flow component is mapped from its own [lo, hi] onto
[0, 255]; (lo, hi) are stored per flow and per component:

    q = round((d - lo) * 255 / (hi - lo))                  (q = 0 when hi == lo)
    d = lo + q * (hi - lo) / 255

Flipping an adaptive dx component maps q -> 255 - q and (lo, hi) -> (-hi, -lo).
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from .errors import ConfigError

SCHEMES = ("fixed", "adaptive")
DEFAULT_BOUND = 20.0


def check_bound(bound: float) -> float:
    """Validate a quantization bound in pixels; returns it as float."""
    try:
        b = float(bound)
    except (TypeError, ValueError):
        raise ConfigError(f"bound must be a number of pixels, got {bound!r}") from None
    if not np.isfinite(b) or b <= 0:
        raise ConfigError(f"bound must be a positive number of pixels, got {bound!r}")
    return b


def quantize_fixed(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Linearly map flow in [-bound, bound] px to uint8 [0, 255], clipping outside.

    Args:
        flow: float array of any shape (usually (H, W, 2) or (H, W)), pixels.
        bound: B in pixels, > 0.
    Returns:
        uint8 array of the same shape.
    """
    b = float(bound)
    d = np.asarray(flow, dtype=np.float32)
    if d.ndim in (2, 3) and (d.ndim == 2 or d.shape[2] <= 4) and d.size:
        # One pass: saturate_cast<uchar>(d * 255/2B + 127.5) is round((clip(d) + B) * 255/2B):
        # saturation does the clipping, cvRound the rounding (half to even, as np.rint).
        return cv2.addWeighted(d, 255.0 / (2 * b), d, 0.0, 127.5, dtype=cv2.CV_8U)
    q = np.rint((np.clip(d, -b, b) + b) * (255.0 / (2 * b)))
    return q.astype(np.uint8)


def dequantize_fixed(q: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Inverse of :func:`quantize_fixed`.

    Args:
        q: uint8 array of any shape.
        bound: B in pixels, as used for quantization.
    Returns:
        float32 array of the same shape, pixels in [-bound, bound].
    """
    b = np.float32(bound)
    return np.asarray(q, dtype=np.float32) * (2 * b / np.float32(255.0)) - b


def quantize_adaptive(flow: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Map each component of one flow from its own [min, max] onto [0, 255].

    Args:
        flow: float (H, W, 2) flow in pixels.
    Returns:
        (q, ranges): q uint8 (H, W, 2); ranges float32 (2, 2) = [[lo_x, hi_x], [lo_y, hi_y]].
    """
    flow = np.asarray(flow, dtype=np.float32)
    q = np.empty(flow.shape, dtype=np.uint8)
    ranges = np.zeros((2, 2), dtype=np.float32)
    for c in range(2):
        comp = flow[..., c]
        lo, hi = np.float32(comp.min()), np.float32(comp.max())
        ranges[c] = (lo, hi)
        if hi > lo:
            q[..., c] = np.rint((comp - lo) * (np.float32(255.0) / (hi - lo))).astype(np.uint8)
        else:
            q[..., c] = 0
    return q, ranges


def dequantize_adaptive(q: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_adaptive`.

    Args:
        q: uint8 (H, W, 2).
        ranges: float (2, 2) = [[lo_x, hi_x], [lo_y, hi_y]] pixels.
    Returns:
        float32 (H, W, 2) flow in pixels.
    """
    ranges = np.asarray(ranges, dtype=np.float32)
    lo = ranges[:, 0]
    scale = (ranges[:, 1] - ranges[:, 0]) / np.float32(255.0)
    return np.asarray(q, dtype=np.float32) * scale + lo


def dequantize(q: np.ndarray, quant: dict, ranges: np.ndarray | None = None) -> np.ndarray:
    """Dequantize uint8 (H, W, 2) flow by a store's quantization record.

    Args:
        q: uint8 (H, W, 2).
        quant: {"scheme": "fixed", "bound": B} or {"scheme": "adaptive"}.
        ranges: float (2, 2) per-component [lo, hi], required for adaptive.
    Returns:
        float32 (H, W, 2) pixels.
    """
    if quant["scheme"] == "fixed":
        return dequantize_fixed(q, quant["bound"])
    if ranges is None:
        raise ConfigError("adaptive quantization needs the flow's stored (lo, hi) ranges")
    return dequantize_adaptive(q, ranges)


def mean_flow(flow: np.ndarray) -> np.ndarray:
    """Mean displacement vector of one float flow (before quantization).

    Args:
        flow: float (H, W, 2) pixels.
    Returns:
        float32 (2,) = (mean dx, mean dy), pixels.
    """
    f = np.ascontiguousarray(flow, dtype=np.float32)
    if f.ndim == 3 and f.shape[2] == 2:
        return np.asarray(cv2.mean(f)[:2], dtype=np.float32)  # float64 sums, 50x numpy's speed
    return f.reshape(-1, 2).mean(axis=0, dtype=np.float64).astype(np.float32)


def clipped_fraction(flow: np.ndarray, bound: float) -> float:
    """Fraction of flow components with |d| > bound (lost to clipping), in [0, 1].

    Args:
        flow: float (H, W, 2) pixels.
        bound: B pixels.
    """
    f = np.asarray(flow)
    if f.size == 0:
        return 0.0
    lo, hi = float(f.min()), float(f.max())  # the common case, nothing clipped, in two fast passes
    if lo >= -bound and hi <= bound:
        return 0.0
    return float(np.count_nonzero(np.abs(f) > bound)) / float(f.size)


#: the high percentile of |d| recorded per flow (meta "motion_p95")
MOTION_PERCENTILE = 95


def motion_stats(flow: np.ndarray, percentile: float = MOTION_PERCENTILE) -> Tuple[float, float]:
    """Mean and high percentile of the per-pixel displacement length |d| of one flow.

    Computed on the float flow before quantization at extraction (meta "motion",
    "motion_p95"); on dequantized planes for stores made before (approximate).

    Args:
        flow: float (H, W, 2) pixels, [..., 0] = dx, [..., 1] = dy.
        percentile: in [0, 100]; the nearest-rank percentile (the smallest |d| that at
            least ``percentile`` % of the pixels do not exceed).
    Returns:
        (mean |d|, percentile of |d|), pixels; (0.0, 0.0) for an empty flow.
    """
    f = np.asarray(flow, dtype=np.float32)
    if f.ndim != 3 or f.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got shape {f.shape}")
    if f.size == 0:
        return 0.0, 0.0
    mag = cv2.magnitude(np.ascontiguousarray(f[..., 0]), np.ascontiguousarray(f[..., 1]))
    mean = float(cv2.mean(mag)[0])
    flat = mag.reshape(-1)
    k = min(flat.size - 1, max(0, int(np.ceil(percentile / 100.0 * flat.size)) - 1))
    return mean, float(kth_smallest(flat, k))


def kth_smallest(flat: np.ndarray, k: int) -> np.number:
    """``np.partition(flat, k)[k]``, exactly, in a third of its time for a high ``k``.

    A 1-D float array's k-th smallest value (NaN sorts last, as np.partition puts it).
    A threshold t is read off every 16th element, a little below rank k; the elements
    not below t (NaN included) are partitioned alone. When no more than k elements are
    below t, the answer is among them at rank k - (elements below t): the same value.
    Otherwise (an unlucky sample) the whole array is partitioned.
    """
    n = flat.size
    if n < 4096 or k < n // 2:
        return np.partition(flat, k)[k]
    sample = flat[::16]
    j = max(0, k * sample.size // n - sample.size // 50 - 1)  # ~2 % of the sample below
    t = np.partition(sample, j)[j]
    top = flat[~(flat < t)]
    below = n - top.size
    if below > k:
        return np.partition(flat, k)[k]
    return np.partition(top, k - below)[k - below]
