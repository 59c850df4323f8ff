"""From stored payloads to arrays: plain, trajectory and clip flow stacks; RGB frames and clips.

Functions of what was read (JPEG bytes or raw uint8 planes) and of the views; no store
access except through the ``read`` callables passed in. Shapes below: V views, K snippets,
L flows (frames), S x S output (oh x ow), row r = v*K + k (view-major).

Flow values (see the package docstring for the conventions):
    stored q (uint8) -> d = a*q + b, stored pixels (a, b per flow and component: fixed
    a = 2B/255, b = -B; adaptive a = (hi-lo)/255, b = lo). Float output is
    (d - mean) * f with f = (sx * sign, sy) (``flow_scale="pixels"``), computed as one
    product and one sum per value: q*A + C. ``flow_scale="unit"`` (fixed quantization) is
    (2q - 255)/255 = d/B, computed q*2*sign - 255*sign then divided by 255, so that it is
    exactly in [-1, 1] and flipped values are exactly negated.
    uint8 output is q as stored; flipped views hold 255 - q on dx (the quantized -d).

Layouts:
    "stack": flow (V*K, 2L, S, S), channel 2j = dx, 2j+1 = dy of the stack's j-th flow.
    "clip":  flow (V*K, 2, L, S, S) = stack.reshape(V*K, L, 2, S, S).transpose(0, 2, 1, 3, 4)
             (:func:`stack_to_clip`): the same values, time on axis 2.
    RGB "stack": (V*K, 3, S, S) of one frame; "clip": (V*K, 3, L, S, S) of L frames.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..store import codec
from .views import View, union_box

FlowPair = Tuple[Any, Any]  # (x, y) payloads: JPEG bytes-likes, or uint8 (H, W) arrays


# --- decoding (module functions so a benchmark can time them) ---------------
def decode_grey(buf: Any, where: object = "") -> np.ndarray:
    """A stored grey payload -> uint8 (H, W): JPEG bytes decoded whole (codec.decode_grey,
    errors name ``where``), raw arrays as they are."""
    if isinstance(buf, np.ndarray):  # raw payload (HDF5 payload="raw"): a strided view
        return np.ascontiguousarray(buf, dtype=np.uint8)
    return codec.decode_grey(buf, where)


class PlaneName:
    """Names a stored plane in error messages; formatted only when an error is raised."""

    __slots__ = ("video", "i", "back", "c", "warped")

    def __init__(self, video: Any, i: int, back: bool, c: int, warped: bool = False) -> None:
        self.video, self.i, self.back, self.c, self.warped = video, i, back, c, warped

    def __str__(self) -> str:
        kind = ("backward " if self.back else "") + ("warped " if self.warped else "") + "flow"
        return f"{self.video.video_id}: {kind} {self.i} {'xy'[self.c]}"


# --- layouts ----------------------------------------------------------------
def stack_to_clip(stack: np.ndarray) -> np.ndarray:
    """(R, 2L, H, W) stack -> contiguous (R, 2, L, H, W) clip; same values, same dtype."""
    r, c2, h, w = stack.shape
    return np.ascontiguousarray(stack.reshape(r, c2 // 2, 2, h, w).transpose(0, 2, 1, 3, 4))


def clip_to_stack(clip: np.ndarray) -> np.ndarray:
    """(R, 2, L, H, W) clip -> contiguous (R, 2L, H, W) stack (the inverse of stack_to_clip)."""
    r, _, L, h, w = clip.shape
    return np.ascontiguousarray(clip.transpose(0, 2, 1, 3, 4)).reshape(r, 2 * L, h, w)


# --- value maps ---------------------------------------------------------------
def dequant_affine(quant: Dict[str, Any], ranges: Optional[np.ndarray], K: int, L: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """(a, b), float32 (K, L, 2) each: d = a*q + b in stored pixels, per flow and component.

    quant: the video's quantization record; ranges: float32 (K, L, 2, 2) [lo, hi] per
    component for adaptive quantization (None for fixed).
    """
    if quant["scheme"] == "fixed":
        B = np.float32(quant["bound"])
        a = np.full((K, L, 2), 2 * B / np.float32(255.0), np.float32)
        b = np.full((K, L, 2), -B, np.float32)
        return a, b
    a = ((ranges[..., 1] - ranges[..., 0]) / np.float32(255.0)).astype(np.float32)
    return a, ranges[..., 0].copy()


def unit_affine(bound: float, means: Optional[np.ndarray], K: int, L: int
                ) -> Tuple[np.ndarray, np.ndarray]:
    """(a, b) float32 (K, L, 2) with (a*q + b)/255 = (2q - 255)/255 - mean/B: d/B ("unit").

    means: float32 (K, L, 2) stored mean vectors (pixels) to subtract, or None.
    """
    a = np.full((K, L, 2), 2.0, np.float32)
    b = np.full((K, L, 2), -255.0, np.float32)
    if means is not None:
        b = b - means * np.float32(255.0 / float(bound))
    return a, b


def affine_coefficients(a: np.ndarray, b: np.ndarray, f: np.ndarray
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """Per (row, channel) A, C float32 (V*K, 2L, 1, 1) with value = q*A + C.

    a, b: float32 (K, L, 2) (b already holds any mean subtraction); f: float32 (V, 2) the
    per-view factors of (dx, dy) (resize scale and flip sign).
    """
    K, L = a.shape[:2]
    V = f.shape[0]
    A = (a[None] * f[:, None, None, :]).reshape(V * K, 2 * L, 1, 1)
    C = (b[None] * f[:, None, None, :]).reshape(V * K, 2 * L, 1, 1)
    return A, C


# --- plain flow stacks --------------------------------------------------------
def plain_flow_stack(payloads: Sequence[FlowPair], views: Sequence[View], K: int, L: int,
                     out_hw: Tuple[int, int], coeffs: Optional[Tuple[np.ndarray, np.ndarray]],
                     divisor: Optional[float] = None, layout: str = "stack",
                     name: Callable[[int, int, int], object] = lambda k, j, c: "") -> np.ndarray:
    """Decode, crop, resize and mirror K*L stored flows; uint8 or float32 output.

    Args:
        payloads: K*L (x, y) pairs in (k, j) order: flow j of snippet k at k*L + j.
        views: V views; every plane is decoded only inside their union box (crop decoding).
        out_hw: (oh, ow) output size; boxes of another size are resized bilinearly on the
            uint8 planes (as TSN resizes its images).
        coeffs: None for uint8 output (q as stored, 255 - q on dx of flipped views); else
            (A, C) of :func:`affine_coefficients`: float32 output q*A + C (then / divisor).
        divisor: None, or 255.0 for flow_scale="unit".
        layout: "stack" -> (V*K, 2L, oh, ow); "clip" -> (V*K, 2, L, oh, ow).
        name: (k, j, c) -> what errors name for that plane.
    Returns:
        float32 or uint8 array in the layout's shape.
    """
    V = len(views)
    oh, ow = out_hw
    float_out = coeffs is not None
    u8 = np.empty((V * K, 2 * L, oh, ow), np.uint8)  # the output itself for uint8 stacks
    # Only the region the views need is decoded: the union of their boxes (one box in
    # train and val, the whole frame for ten crops), with libjpeg-turbo's partial
    # decompression where flowprep._jpegcrop is built (codec.decode_grey_crop).
    region_box = ux0, uy0, uw, uh = union_box(views)
    plan = [(y0 - uy0, y0 - uy0 + h, x0 - ux0, x0 - ux0 + w, (h, w) != (oh, ow), v * K)
            for v, (x0, y0, w, h, _) in enumerate(views)]
    # one view needing no resize: decode straight into its plane of the stack
    direct = V == 1 and not plan[0][4]
    region = None if direct else np.empty((uh, uw), np.uint8)
    resize, linear, size = cv2.resize, cv2.INTER_LINEAR, (ow, oh)
    crop_decode, raw_crop = codec.decode_grey_crop, (slice(uy0, uy0 + uh), slice(ux0, ux0 + uw))
    for k in range(K):
        for j in range(L):
            pair = payloads[k * L + j]
            for c in (0, 1):
                buf, ch = pair[c], 2 * j + c
                dst = u8[k, ch] if direct else region
                if isinstance(buf, np.ndarray):  # raw payload: a (H, W) uint8 array
                    dst[...] = buf[raw_crop]
                else:
                    crop_decode(buf, region_box, dst, name(k, j, c))
                if direct:
                    continue
                for ya, yb, xa, xb, rs, r0 in plan:
                    if rs:
                        resize(region[ya:yb, xa:xb], size, dst=u8[r0 + k, ch], interpolation=linear)
                    else:
                        u8[r0 + k, ch] = region[ya:yb, xa:xb]
    for v, view in enumerate(views):
        if not view[4]:
            continue
        rows = u8[v * K:(v + 1) * K]
        # one in-place cv2.flip over every row of the view's planes (each image row is
        # mirrored on its own): a tenth of numpy's reversed copy, a fifth of one call a plane
        flat = rows.reshape(-1, ow)
        cv2.flip(flat, 1, dst=flat)
        if not float_out:
            np.subtract(255, rows[:, 0::2], out=rows[:, 0::2])
    if not float_out:
        return u8 if layout == "stack" else stack_to_clip(u8)
    A, C = coeffs
    if layout == "stack":
        out = np.empty((V * K, 2 * L, oh, ow), np.float32)
        dst, src = out, u8
    else:
        # written through a (V*K, L, 2, oh, ow) view of the clip: the same element-wise
        # operations as the stack, so the same bits, and no rearranging copy afterwards
        out = np.empty((V * K, 2, L, oh, ow), np.float32)
        dst = out.transpose(0, 2, 1, 3, 4)
        src = u8.reshape(V * K, L, 2, oh, ow)
        A, C = A.reshape(V * K, L, 2, 1, 1), C.reshape(V * K, L, 2, 1, 1)
    dst[...] = src  # exact; then float32 products and sums in place (faster than
    np.multiply(dst, A, out=dst)  # numpy's uint8 * float32 loop, same bits)
    np.add(dst, C, out=dst)
    if divisor is not None:
        np.divide(dst, np.float32(divisor), out=dst)
    return out


# --- trajectory stacks ----------------------------------------------------------
def _resize_into(img: np.ndarray, dst: np.ndarray) -> None:
    if img.shape == dst.shape:
        dst[...] = img
    else:
        cv2.resize(img, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_LINEAR)


_FLIP_U8 = (255 - np.arange(256)).astype(np.uint8)


def trajectory_flow_stack(read: Callable[[List[Tuple[int, bool]]], List[FlowPair]],
                          idx: np.ndarray, bwd: np.ndarray, views: Sequence[View],
                          stack: np.ndarray, a: np.ndarray, b: np.ndarray, means: np.ndarray,
                          out_scale: np.ndarray, mean_subtract: bool, bidirectional: bool,
                          scratch: Callable[[Tuple[int, ...]], np.ndarray],
                          frame_hw: Tuple[int, int],
                          name: Callable[[int, bool, int], object] = lambda i, b, c: "",
                          clip_unit: bool = False) -> None:
    """Trajectory stacks (Simonyan & Zisserman eq. 2) written into ``stack``.

    Channel pair j of output pixel p holds flow idx[k, j] sampled at p_j, p_1 = p and
    p_{j+1} = p_j + d_j(p_j) (bilinear, cv2.remap on 1/32-pixel fixed-point maps, clamped
    to the frame border), computed on whole stored planes, unflipped, then cropped,
    mirrored and resized per view. The backward half of a bidirectional stack starts again
    at p.

    Args:
        read: [(flow index, backward)] -> payload pairs (one snippet's L flows).
        idx, bwd: int64 / bool (K, L) the stack's flows.
        stack: (V*K, 2L, oh, ow) float32 or uint8 output.
        a, b: float32 (K, L, 2) dequantization d = a*q + b (stored pixels; points follow d).
        means: float32 (K, L, 2) subtracted when ``mean_subtract``.
        out_scale: float32 (V, 2) factors of (dx, dy) (resize scale, or 1/B for "unit");
            dx of flipped views is negated on top.
        scratch: shape -> a reusable float32 work array.
        frame_hw: (H, W) of the stored frames.
        clip_unit: clamp float output to [-1, 1] (flow_scale="unit", no mean subtraction).
    """
    K, L = idx.shape
    H, W = frame_hw
    float_out = stack.dtype == np.float32
    halves = [range(L // 2), range(L // 2, L)] if bidirectional else [range(L)]
    remap_kw = dict(interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    for k in range(K):
        # per flow: the stored planes, uint8 (H, W), and as float32 q values. Bilinear
        # sampling commutes with the affine dequantization (its weights sum to 1), so the
        # q planes are sampled and only the samples dequantized: a cast of the frame
        # instead of a dequantized float copy of it, and two 1-channel remaps, which are
        # ~4x cheaper here than one remap of an interleaved 2-channel frame.
        q_planes = []
        qf_planes = scratch((L, 2, H, W))
        payloads = read([(int(idx[k, j]), bool(bwd[k, j])) for j in range(L)])
        for j in range(L):
            i, back = int(idx[k, j]), bool(bwd[k, j])
            qs = [decode_grey(payloads[j][c], name(i, back, c)) for c in (0, 1)]
            q_planes.append(qs)
            for c in (0, 1):
                np.copyto(qf_planes[j, c], qs[c], casting="unsafe")
        done: Dict[Tuple[int, int, int, int], List[List[np.ndarray]]] = {}
        for v, (x0, y0, w, h, fl) in enumerate(views):
            box = (x0, y0, w, h)
            if box not in done:
                gx, gy = np.meshgrid(np.arange(x0, x0 + w, dtype=np.float32),
                                     np.arange(y0, y0 + h, dtype=np.float32))
                sampled: List[List[np.ndarray]] = [[] for _ in range(L)]
                for half in halves:
                    px, py = gx.copy(), gy.copy()
                    for j in half:
                        # the points in remap's fixed-point form (1/32 pixel, what remap
                        # makes of float maps itself), once for every plane sampled there
                        m1, m2 = cv2.convertMaps(px, py, cv2.CV_16SC2)
                        # d = a*q + b at the points (float32, pixels of the stored frame)
                        dx, dy = (cv2.remap(qf_planes[j][c], m1, m2, **remap_kw) for c in (0, 1))
                        for c, dc in enumerate((dx, dy)):
                            np.multiply(dc, a[k, j, c], out=dc)
                            np.add(dc, b[k, j, c], out=dc)
                        if float_out:
                            sampled[j] = [dx, dy]
                        else:
                            sampled[j] = [cv2.remap(q, m1, m2, **remap_kw) for q in q_planes[j]]
                        np.add(px, dx, out=px)
                        np.add(py, dy, out=py)
                done[box] = sampled
            sampled = done[box]
            row = v * K + k
            direct = (h, w) == stack.shape[2:] and not fl  # the value goes straight to dst
            tmp = None if direct else np.empty((h, w), stack.dtype)
            for j in range(L):
                for c in range(2):
                    val = sampled[j][c]
                    dst = stack[row, 2 * j + c]
                    neg = fl and c == 0
                    out = dst if direct else tmp
                    if float_out:  # (val - mean) * scale in float32, without temporaries
                        sc = np.float32(out_scale[v, c] * (-1.0 if neg else 1.0))
                        if mean_subtract:
                            np.subtract(val, means[k, j, c], out=out)
                            np.multiply(out, sc, out=out)
                        else:
                            np.multiply(val, sc, out=out)
                        if clip_unit:
                            np.clip(out, -1.0, 1.0, out=out)
                    elif neg:
                        cv2.LUT(val, _FLIP_U8, dst=out)
                    else:
                        out[...] = val
                    if direct:
                        continue
                    if fl:
                        cv2.flip(tmp, 1, dst=tmp)
                    _resize_into(tmp, dst)


# --- RGB ----------------------------------------------------------------------
def rgb_luts(mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> List[np.ndarray]:
    """Three float32 (256,) tables q -> (q/255 - mean[c]) / std[c] (R, G, B); [0, 1] by default."""
    m = np.zeros(3, np.float32) if mean is None else np.asarray(mean, np.float32).reshape(-1)
    sd = np.ones(3, np.float32) if std is None else np.asarray(std, np.float32).reshape(-1)
    q = np.arange(256, dtype=np.float32) / np.float32(255.0)
    return [((q - m[c]) / sd[c]).astype(np.float32) for c in range(3)]


def rgb_views(data: Any, views: Sequence[View], dsts: Sequence[np.ndarray],
              region: Tuple[Tuple[int, int, int, int], np.ndarray],
              luts: Optional[List[np.ndarray]], where: object = "") -> None:
    """Decode the views' region of one frame and write each view's (3, S, S) into dsts[v].

    data: the frame's JPEG bytes; region: (the union box of the views, a uint8 (h, w, 3)
    scratch of its size); luts: :func:`rgb_luts` for float32 destinations (uint8 ones take
    the decoded values). Crops are resized (bilinear, uint8), then mirrored.
    """
    box, buf = region
    codec.decode_rgb_crop(data, box, buf, where)
    ux0, uy0 = box[:2]
    for v, (x0, y0, w, h, fl) in enumerate(views):
        crop = buf[y0 - uy0:y0 - uy0 + h, x0 - ux0:x0 - ux0 + w]
        dst = dsts[v]
        if crop.shape[:2] != dst.shape[1:]:  # resize, then mirror: as the flow planes
            crop = cv2.resize(crop, (dst.shape[2], dst.shape[1]), interpolation=cv2.INTER_LINEAR)
        if fl:
            crop = cv2.flip(crop, 1)
        chans = cv2.split(np.ascontiguousarray(crop))
        for c in range(3):
            if dst.dtype == np.float32:
                cv2.LUT(chans[c], luts[c], dst=dst[c])
            else:
                dst[c] = chans[c]


def rgb_region(views: Sequence[View]) -> Tuple[Tuple[int, int, int, int], np.ndarray]:
    box = union_box(views)
    return box, np.empty((box[3], box[2], 3), np.uint8)


def rgb_frames(read: Callable[[int], Any], frames: np.ndarray, views: Sequence[View],
               out_hw: Tuple[int, int], dtype: type, luts: List[np.ndarray],
               layout: str = "stack", where: Callable[[int], object] = str) -> np.ndarray:
    """RGB of frames int64 (K, L) through the views.

    Returns:
        "stack" (L = 1): (V*K, 3, oh, ow); "clip": (V*K, 3, L, oh, ow); float32 (by ``luts``)
        or uint8, RGB order. Each frame is decoded once for all views.
    """
    K, L = frames.shape
    V = len(views)
    oh, ow = out_hw
    region = rgb_region(views)
    if layout == "stack":
        out = np.empty((V * K, 3, oh, ow), dtype)
        for k in range(K):
            f = int(frames[k, 0])
            rgb_views(read(f), views, [out[v * K + k] for v in range(V)], region, luts, where(f))
        return out
    out = np.empty((V * K, 3, L, oh, ow), dtype)
    for k in range(K):
        for j in range(L):
            f = int(frames[k, j])
            rgb_views(read(f), views, [out[v * K + k, :, j] for v in range(V)], region, luts,
                      where(f))
    return out


def rgb_differences(read: Callable[[int], Any], frames: np.ndarray, views: Sequence[View],
                    out_hw: Tuple[int, int], float_out: bool, luts: List[np.ndarray],
                    where: Callable[[int], object] = str) -> np.ndarray:
    """TSN's RGB differences of frames int64 (K, L): (V*K, 3(L-1), oh, ow), channel block j =
    frame j+1 - frame j; float32 (differences of the LUT values) or int16 (of uint8)."""
    K, L = frames.shape
    V = len(views)
    oh, ow = out_hw
    tmp = np.empty((V, L, 3, oh, ow), np.float32 if float_out else np.uint8)
    out = np.empty((V * K, 3 * (L - 1), oh, ow), np.float32 if float_out else np.int16)
    region = rgb_region(views)
    for k in range(K):
        for j in range(L):
            f = int(frames[k, j])
            rgb_views(read(f), views, [tmp[v, j] for v in range(V)], region, luts, where(f))
        for v in range(V):
            t = tmp[v] if float_out else tmp[v].astype(np.int16)
            out[v * K + k] = (t[1:] - t[:-1]).reshape(3 * (L - 1), oh, ow)
    return out
