"""Pictures of stored flow: the Middlebury colour coding, panels, contact sheets. Pure functions.

Colour coding (Baker et al., "A Database and Evaluation Methodology for
Optical Flow", IJCV 2011; the flow-code of the Middlebury benchmark): the
direction of a flow vector is the hue on a colour wheel of 55 colours laid
out after the Munsell colour system (segments red-yellow 15, yellow-green 6,
green-cyan 4, cyan-blue 11, blue-magenta 13, magenta-red 6), the magnitude
is the saturation: white at rest, the full colour at the normalising radius,
darkened to 75 % beyond it. Hue angle is ``atan2(-dy, -dx)``: +x (rightward)
motion is red, -x cyan-blue, +y (downward, image rows grow) orange-yellow,
-y (upward) blue-violet.

Here the normalising radius is the store's quantization bound B for fixed
quantization (so colours compare across frames and videos), or the largest
|component| bound of the flows shown for adaptive quantization; the legend
(the wheel itself, radius = that bound) states it in pixels.

All images are uint8 (H, W, 3) in RGB order.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .store.base import flow_stream, stream_label

GAP = 4              #: pixels between panels
CAPTION = 16         #: pixels of caption strip above each panel
BACKGROUND = 255     #: panel background (white)
TEXT = (0, 0, 0)

# Munsell-based segment lengths of the Middlebury colour wheel.
RY, YG, GC, CB, BM, MR = 15, 6, 4, 11, 13, 6


def make_colorwheel() -> np.ndarray:
    """The Middlebury colour wheel: float64 (55, 3) RGB in [0, 255], hue in wheel order."""
    ncols = RY + YG + GC + CB + BM + MR
    wheel = np.zeros((ncols, 3))
    col = 0
    wheel[0:RY, 0] = 255
    wheel[0:RY, 1] = np.floor(255 * np.arange(RY) / RY)
    col += RY
    wheel[col:col + YG, 0] = 255 - np.floor(255 * np.arange(YG) / YG)
    wheel[col:col + YG, 1] = 255
    col += YG
    wheel[col:col + GC, 1] = 255
    wheel[col:col + GC, 2] = np.floor(255 * np.arange(GC) / GC)
    col += GC
    wheel[col:col + CB, 1] = 255 - np.floor(255 * np.arange(CB) / CB)
    wheel[col:col + CB, 2] = 255
    col += CB
    wheel[col:col + BM, 2] = 255
    wheel[col:col + BM, 0] = np.floor(255 * np.arange(BM) / BM)
    col += BM
    wheel[col:col + MR, 2] = 255 - np.floor(255 * np.arange(MR) / MR)
    wheel[col:col + MR, 0] = 255
    return wheel


_WHEEL = make_colorwheel()


def flow_to_color(flow: np.ndarray, max_radius: Optional[float] = None) -> np.ndarray:
    """Middlebury colour coding of a flow field.

    Args:
        flow: float (H, W, 2) pixels, [..., 0] = dx, [..., 1] = dy.
        max_radius: pixels mapped to full saturation; None: the largest |d| in the field.
    Returns:
        uint8 (H, W, 3) RGB. NaN/inf vectors are black.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got shape {flow.shape}")
    u, v = flow[..., 0].copy(), flow[..., 1].copy()
    bad = ~(np.isfinite(u) & np.isfinite(v))
    u[bad] = 0
    v[bad] = 0
    rad = np.sqrt(u * u + v * v)
    if max_radius is None:
        max_radius = float(rad.max()) if rad.size else 0.0
    scale = float(max_radius) if max_radius and max_radius > 0 else 1.0
    u, v, rad = u / scale, v / scale, rad / scale
    ncols = _WHEEL.shape[0]
    a = np.arctan2(-v, -u) / np.pi                 # [-1, 1]
    fk = (a + 1) / 2 * (ncols - 1)                 # [0, ncols - 1]
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = (1 - f) * _WHEEL[k0] / 255.0 + f * _WHEEL[k1] / 255.0
    r = rad[..., None]
    inside = r <= 1
    col = np.where(inside, 1 - r * (1 - col), col * 0.75)
    img = np.floor(255 * np.clip(col, 0, 1) + 0.5).astype(np.uint8)
    img[bad] = 0
    return img


def wheel_legend(size: int, bound: float) -> np.ndarray:
    """The colour wheel as a legend: uint8 (size, size, 3) RGB; the rim is |d| = bound px.

    The corners (|d| > bound) are left white; the bound is written in the lower left.
    """
    size = max(8, int(size))
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    r_px = max(c - 1, 1.0)
    flow = np.stack([(xs - c) / r_px * bound, (ys - c) / r_px * bound], axis=-1)
    img = flow_to_color(flow, bound)
    outside = np.hypot(xs - c, ys - c) > r_px
    img[outside] = BACKGROUND
    cv2.line(img, (int(round(c)), int(round(c))), (size - 1, int(round(c))), TEXT, 1)
    _put(img, f"{bound:g}px", (2, size - 4), scale=_font_scale(size))
    return img


def _font_scale(width: int) -> float:
    return float(np.clip(width / 260.0, 0.3, 0.5))


def _put(img: np.ndarray, text: str, org: Tuple[int, int], scale: float = 0.4) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, 1, cv2.LINE_AA)


def grey_to_rgb(plane: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W, 3)."""
    return np.repeat(np.asarray(plane, dtype=np.uint8)[..., None], 3, axis=2)


def _captioned(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` under a CAPTION-px strip holding ``text`` (drawn in the strip only)."""
    h, w = img.shape[:2]
    strip = np.full((CAPTION, w, 3), BACKGROUND, np.uint8)
    scale = 0.4
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if tw > w - 2:
        scale *= max(0.5, (w - 2) / tw)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    _put(strip, text, (2, CAPTION - base - 1), scale=scale)
    return np.concatenate([strip, img], axis=0)


def hstack(images: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Images side by side, top-aligned, ``gap`` px of background between them."""
    h = max(i.shape[0] for i in images)
    w = sum(i.shape[1] for i in images) + gap * (len(images) - 1)
    out = np.full((h, w, 3), BACKGROUND, np.uint8)
    x = 0
    for i in images:
        out[: i.shape[0], x: x + i.shape[1]] = i
        x += i.shape[1] + gap
    return out


def vstack(images: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Images one above another, left-aligned, ``gap`` px of background between them."""
    w = max(i.shape[1] for i in images)
    h = sum(i.shape[0] for i in images) + gap * (len(images) - 1)
    out = np.full((h, w, 3), BACKGROUND, np.uint8)
    y = 0
    for i in images:
        out[y: y + i.shape[0], : i.shape[1]] = i
        y += i.shape[0] + gap
    return out


def frame_panel(rgb: np.ndarray, flow: np.ndarray, q: np.ndarray, bound: float,
                index: int = 0, backward: bool = False, warped: bool = False,
                plain: Optional[np.ndarray] = None) -> np.ndarray:
    """One flow: [RGB frame | (plain flow) | colour-coded flow | dx as stored | dy as stored | legend].

    Args:
        rgb: uint8 (H, W, 3), frame ``index``.
        flow: float32 (H, W, 2) pixels, flow ``index``.
        q: uint8 (H, W, 2), the same flow as stored (quantized).
        bound: normalising radius in pixels (the legend's rim).
        backward, warped: which stream ``flow`` is (for the caption).
        plain: float32 (H, W, 2), the plain flow to show before a warped one (adds a panel).
    Returns:
        uint8 (CAPTION + H, 4 W + H + 4 GAP, 3) RGB (one W + GAP wider with ``plain``);
        the legend is H x H.
    """
    h, w = rgb.shape[:2]
    kind = stream_label(backward, warped)
    extra = [] if plain is None else [
        _captioned(flow_to_color(plain, bound), f"{stream_label(backward)} {index}")]
    panels = [
        _captioned(rgb, f"frame {index}"),
        *extra,
        _captioned(flow_to_color(flow, bound), f"{kind} {index}"),
        _captioned(grey_to_rgb(q[..., 0]), "dx"),
        _captioned(grey_to_rgb(q[..., 1]), "dy"),
        _captioned(wheel_legend(h, bound), f"|d|={bound:g}px"),
    ]
    return hstack(panels)


def panel_size(height: int, width: int) -> Tuple[int, int]:
    """(rows, cols) of :func:`frame_panel`'s image for frames of ``height`` x ``width``."""
    return CAPTION + height, 4 * width + height + 4 * GAP


def sheet_size(height: int, width: int, count: int, columns: int = 4) -> Tuple[int, int]:
    """(rows, cols) of :func:`contact_sheet`'s image for ``count`` flows."""
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    cell_h = CAPTION + 2 * height + GAP
    return (rows * cell_h + (rows - 1) * GAP,
            cols * width + (cols - 1) * GAP + GAP + height)


def contact_sheet(rgbs: Sequence[np.ndarray], flows: Sequence[np.ndarray], indices: Sequence[int],
                  bound: float, columns: int = 4, backward: bool = False,
                  warped: bool = False) -> np.ndarray:
    """A grid of cells [caption; RGB frame i; colour-coded flow i], legend (H x H) at the right.

    Args:
        rgbs: uint8 (H, W, 3) frames.
        flows: float32 (H, W, 2) flows (pixels), one per frame.
        indices: the flow index of each cell (for the captions).
        bound: normalising radius in pixels.
    Returns:
        uint8 RGB image of :func:`sheet_size` (H, W, len(indices), columns).
    """
    h, w = rgbs[0].shape[:2]
    kind = flow_stream(backward, warped)
    cells = [_captioned(vstack([rgb, flow_to_color(fl, bound)]), f"{kind} {i}")
             for rgb, fl, i in zip(rgbs, flows, indices)]
    grid = _grid(cells, columns)
    legend = _captioned(wheel_legend(h, bound), f"|d|={bound:g}px")
    return hstack([grid, legend])


def display_bound(video, indices: Sequence[int], backward: bool = False,
                  warped: bool = False) -> float:
    """The normalising radius for ``video``: its fixed bound, or the widest adaptive range shown."""
    q = video.quant
    if q.get("scheme") == "fixed":
        return float(q["bound"])
    b = 0.0
    for i in indices:
        r = video.flow_ranges(i, backward, warped)
        if r is not None:
            b = max(b, float(np.abs(r).max()))
    return b if b > 0 else 1.0


def evenly_spaced(n: int, count: int) -> List[int]:
    """Up to ``count`` distinct indices spread evenly over [0, n)."""
    if n <= 0:
        return []
    k = min(count, n)
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def render_video(video, frame: Optional[int] = None, count: int = 8,
                 backward: bool = False, warped: bool = False) -> np.ndarray:
    """The picture ``flowprep show`` writes: one frame's panel, or a contact sheet.

    Args:
        video: a store Video.
        frame: flow index for a single panel; None for a sheet of ``count`` evenly spaced flows.
        backward: show the backward flow.
        warped: show the warped flow (the single panel also shows the plain flow beside it).
    Returns:
        uint8 (rows, cols, 3) RGB.
    """
    task = getattr(video, "task", "both")
    if task == "rgb":  # --task rgb: frames only
        n = video.num_frames
        if frame is not None:
            i = frame % n if -n <= frame < n else frame
            return _captioned(video.rgb(i), f"frame {i}")
        return rgb_sheet([video.rgb(i) for i in evenly_spaced(n, count)], evenly_spaced(n, count))

    def rgb_or_blank(i: int) -> np.ndarray:
        return frame_or_blank(video, i)

    if frame is not None:
        i = frame % video.num_flows if -video.num_flows <= frame < video.num_flows else frame
        b = display_bound(video, [i], backward, warped)
        if warped:
            b = max(b, display_bound(video, [i], backward))
        return frame_panel(rgb_or_blank(i), video.flow(i, backward, warped),
                           video.flow_quantized(i, backward, warped), b, i, backward, warped,
                           plain=video.flow(i, backward) if warped else None)
    idx = evenly_spaced(video.num_flows, count)
    b = display_bound(video, idx, backward, warped)
    return contact_sheet([rgb_or_blank(i) for i in idx], [video.flow(i, backward, warped) for i in idx],
                         idx, b, backward=backward, warped=warped)


def frame_or_blank(video, i: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB frame i, or a blank of its size for a --task flow video."""
    if getattr(video, "task", "both") == "flow":
        return np.full((video.height, video.width, 3), BACKGROUND, np.uint8)
    return video.rgb(i)


def thumbnail_size(height: int, width: int, thumb_height: int) -> Tuple[int, int]:
    """(rows, cols) of a frame of ``height`` x ``width`` shrunk to ``thumb_height`` rows."""
    th = max(8, min(int(thumb_height), height))
    return th, max(8, int(round(width * th / height)))


def render_strip(video, count: int = 4, height: int = 64, columns: Optional[int] = None,
                 backward: bool = False) -> np.ndarray:
    """A small contact sheet (the one ``show`` draws, on shrunk frames): ``count`` evenly
    spaced flows, each cell [RGB frame i; colour-coded flow i], legend at the right.

    Frames and flows are shrunk to ``height`` rows first (INTER_AREA; flow vectors keep
    their length in stored pixels, so colours mean what they mean in ``show``).

    Args:
        video: a store Video.
        count: flows shown (frames for a --task rgb video).
        height: rows of each shrunk frame, pixels.
        columns: cells per row (default: all in one row).
    Returns:
        uint8 (rows, cols, 3) RGB.
    """
    th, tw = thumbnail_size(video.height, video.width, height)

    def shrink(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)

    if getattr(video, "task", "both") == "rgb":
        idx = evenly_spaced(video.num_frames, count)
        return rgb_sheet([shrink(video.rgb(i)) for i in idx], idx, columns or len(idx))
    idx = evenly_spaced(video.num_flows, count)
    b = display_bound(video, idx, backward)
    return contact_sheet([shrink(frame_or_blank(video, i)) for i in idx],
                         [shrink(video.flow(i, backward)) for i in idx], idx, b,
                         columns=columns or len(idx), backward=backward)


def rgb_sheet(rgbs: Sequence[np.ndarray], indices: Sequence[int], columns: int = 4) -> np.ndarray:
    """A grid of captioned uint8 (H, W, 3) frames (a --task rgb store's contact sheet)."""
    return _grid([_captioned(rgb, f"frame {i}") for rgb, i in zip(rgbs, indices)], columns)


def _grid(cells: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """uint8 (H, W, 3) cells of one size in rows of ``columns``, the last row padded."""
    cols = min(columns, len(cells))
    blank = np.full_like(cells[0], BACKGROUND)
    rows = []
    for r in range(0, len(cells), cols):
        row = list(cells[r: r + cols])
        row += [blank] * (cols - len(row))
        rows.append(hstack(row))
    return vstack(rows)


def write_png(path: str, img: np.ndarray) -> None:
    """Write uint8 (H, W, 3) RGB as PNG."""
    from .errors import WriteError
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR))
    if not ok:
        raise WriteError(f"{path}: PNG encoding failed")
    from .fsutil import atomic_write_bytes
    atomic_write_bytes(path, buf.tobytes(), fsync=False)
