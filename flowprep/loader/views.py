"""Where a sample looks: crop boxes and flips (train crops, centre crop, ten-crop).

A view is (x0, y0, w, h, flip): a box in stored frame pixels (ints; x0, y0 its top-left
corner) and whether the output is mirrored. One sample has V views (1, or 10 with
ten-crop), shared by its K snippets and by RGB and flow of a two-stream sample.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

View = Tuple[int, int, int, int, bool]
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


def multiscale_boxes(height: int, width: int, size: int,
                     scales: Sequence[float] = TSN_SCALES, max_distort: int = 1
                     ) -> Tuple[List[Tuple[int, int]], int]:
    """TSN's candidate crop sizes [(w, h), ...] for a frame; and the 13 fixed positions' count.

    Sides are int(short side * scale), snapped to ``size`` when within 3 px of it; width and
    height at most ``max_distort`` scale steps apart; clipped to the frame.
    """
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(x - size) < 3 else x for x in sides]
    pairs = [(min(w, width), min(h, height)) for i, h in enumerate(sides)
             for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    return pairs, 13


def fixed_offsets(width: int, height: int, cw: int, ch: int) -> List[Tuple[int, int]]:
    """TSN's 13 crop positions (x0, y0) of a cw x ch box (corners, centre, edge centres,
    quarter points)."""
    ws, hs = (width - cw) // 4, (height - ch) // 4
    return [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs),
            (0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
            (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]


def multiscale_candidates(height: int, width: int, size: int, scales: Sequence[float]
                          ) -> List[Tuple[Tuple[int, int], List[Tuple[int, int]]]]:
    """[((w, h), [(x0, y0) x 13]), ...]: every multiscale crop size with its positions."""
    pairs, _ = multiscale_boxes(height, width, size, scales)
    return [((bw, bh), fixed_offsets(width, height, bw, bh)) for bw, bh in pairs]


def union_box(views: Sequence[View]) -> Tuple[int, int, int, int]:
    """The smallest (x0, y0, w, h) holding every view's box: the region a sample decodes."""
    x0, y0 = min(v[0] for v in views), min(v[1] for v in views)
    return (x0, y0, max(v[0] + v[2] for v in views) - x0, max(v[1] + v[3] for v in views) - y0)


def ten_crop_boxes(height: int, width: int, cw: int, ch: int) -> List[Tuple[int, int, int, int]]:
    """Centre, top-left, top-right, bottom-left, bottom-right cw x ch boxes (x0, y0, w, h)."""
    centre = ((width - cw) // 2, (height - ch) // 2, cw, ch)
    return [centre, (0, 0, cw, ch), (width - cw, 0, cw, ch), (0, height - ch, cw, ch),
            (width - cw, height - ch, cw, ch)]


def sample_views(height: int, width: int, crop_size: Optional[int], mode: str, crop: str,
                 flip: bool, test_crops: int, rng: Optional[np.random.Generator],
                 candidates=None) -> List[View]:
    """The views [(x0, y0, w, h, flip)] of one sample, in stored frame pixels.

    Args:
        height, width: the stored frame size.
        crop_size: S (boxes are min(S, W) x min(S, H)), or None for the whole frame.
        mode: "train" (``crop`` + a flip with probability 1/2 when ``flip``), "val" (centre),
            "test" (centre, or ten crops: views 0-4 = :func:`ten_crop_boxes`, 5-9 flipped).
        crop: train crop, "multiscale" | "random" | "center".
        rng: the sample's generator; draws in this order: box, then flip.
        candidates: :func:`multiscale_candidates` for this frame (computed when None).
    """
    H, W, S = height, width, crop_size
    if S is None:
        fl = mode == "train" and flip and bool(rng.random() < 0.5)
        return [(0, 0, W, H, fl)]
    cw, ch = min(S, W), min(S, H)
    centre = ((W - cw) // 2, (H - ch) // 2, cw, ch)
    if mode == "test":
        if test_crops == 1:
            return [centre + (False,)]
        boxes = ten_crop_boxes(H, W, cw, ch)
        return [b + (False,) for b in boxes] + [b + (True,) for b in boxes]
    if mode == "val":
        return [centre + (False,)]
    if crop == "random":
        box = (int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1)), cw, ch)
    elif crop == "multiscale":
        cands = candidates if candidates is not None else multiscale_candidates(H, W, S, TSN_SCALES)
        (bw, bh), offsets = cands[int(rng.integers(len(cands)))]
        x0, y0 = offsets[int(rng.integers(len(offsets)))]
        box = (x0, y0, bw, bh)
    else:
        box = centre
    fl = flip and bool(rng.random() < 0.5)
    return [box + (fl,)]


def resize_scales(views: Sequence[View], out_hw: Tuple[int, int]) -> np.ndarray:
    """float32 (V, 2) = (sx, sy) = (out width / w, out height / h): how a view's resize
    stretches displacements."""
    oh, ow = out_hw
    return np.array([[ow / v[2], oh / v[3]] for v in views], np.float32)


def flip_signs(views: Sequence[View]) -> np.ndarray:
    """float32 (V,): -1 for flipped views (dx is negated), +1 otherwise."""
    return np.where(np.array([v[4] for v in views], bool), -1.0, 1.0).astype(np.float32)


__all__ = ["View", "TSN_SCALES", "multiscale_boxes", "fixed_offsets", "multiscale_candidates",
           "union_box", "ten_crop_boxes", "sample_views", "resize_scales", "flip_signs"]
