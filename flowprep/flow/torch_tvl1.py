"""TV-L1 optical flow in PyTorch: batched, on any torch device.

The algorithm is the one ``cv2.optflow.DualTVL1OpticalFlow`` runs (opencv_contrib,
modules/optflow/src/tvl1flow.cpp): the duality-based TV-L1 scheme of Zach, Pock
& Bischof (2007) with the improvements of Wedel et al. as described by Sánchez,
Meinhardt-Llopis & Facciolo, "TV-L1 Optical Flow Estimation", IPOL 2013. This
module is written from that description and from reading OpenCV's source; it
shares no code with it. Step by step, as OpenCV does it:

* Frames are taken as float32 grey values in [0, 255] (no normalisation).
* Pyramid: level s+1 is level s resized by ``scale_step`` with bilinear
  interpolation (OpenCV ``resize(..., INTER_LINEAR)``: half-pixel centres,
  replicated border, no Gaussian pre-smoothing), new size rounded to nearest;
  levels stop early when a side would drop below 16 pixels.
* Per level, from the coarsest: the centred gradient of the second frame
  (one-sided halves at the border), then ``warps`` times: warp the second frame
  and its gradient by the current flow with bicubic interpolation (A = -0.75,
  taps outside the frame read 0, as OpenCV ``remap(INTER_CUBIC,
  BORDER_CONSTANT)``), linearise the data term, then up to
  ``outer_iterations`` x (``median_filtering``-sized median filter of the flow,
  then up to ``inner_iterations`` x (thresholding step with the ``gamma``
  illumination term, flow update u = v + theta * div p, dual update
  p = (p + tau/theta * grad u) / (1 + tau/theta * |grad u|))).
* Stopping rule: a warp's loops end once the sum over pixels of the squared
  flow change of one inner iteration is at most ``epsilon**2 * H * W`` of that
  level. Here the rule is applied per pair: a converged pair is frozen (and
  dropped from the working set) while the others go on, so a pair's result does
  not depend on which other pairs share its batch.
* The flow is resized (bilinear) to the next finer level and divided by
  ``scale_step``; the dual variables restart from 0 at each level.

Where this differs from OpenCV, and why:

* Warp coordinates: OpenCV's ``remap`` rounds sampling positions to 1/32 pixel
  (fixed-point tables); this module samples at the exact float position
  (``torch.nn.functional.grid_sample``, bicubic, same kernel and border). The
  quantisation is an artefact of OpenCV's lookup tables, not of the method;
  the effect on the result is far below the tolerance the tests hold the two
  implementations to.
* The per-iteration sum that drives the stopping rule is accumulated in
  float64 (OpenCV accumulates in float32, row by row). Float32 accumulation
  order would differ between batch sizes and devices; float64 makes the stop
  decision the same for a pair alone or in a batch (up to ties within 1e-16).
* Thresholding uses ``clamp(rho / |grad I1|^2, -lambda*theta, lambda*theta)``,
  which is OpenCV's three-way branch rewritten; it differs only where
  ``|grad I1|^2 <= FLT_EPSILON``, where OpenCV moves nothing and this moves by
  at most lambda*theta*sqrt(FLT_EPSILON) ~ 2e-5 px.
* The median filter is exact (a min/max selection network, replicated border,
  as ``cv2.medianBlur``); OpenCV accepts 3 and 5 for float flow and so does
  this module.
* As in OpenCV, ``gamma`` > 0 adds the illumination variable u3, but the
  thresholding divides by |grad I1|^2 without the gamma^2 term (OpenCV's
  choice, kept so that results agree).
* OpenCV's ``calc`` permanently lowers the object's ``nscales`` once it sees a
  frame too small for it; here the level count is worked out per call.
* Float rounding: elementwise order of operations differs in places, so
  results agree with OpenCV to float rounding per step, which the iterative
  scheme can amplify to small (well under 0.1 px on textured frames) flow
  differences.

Shapes and conventions: frames (B, H, W), grey values in [0, 255]; flow
(B, H, W, 2) float32 in pixels, [..., 0] = dx, [..., 1] = dy, with
next(x + d(x)) ~ prev(x) -- the same sign convention as OpenCV's
``calc(prev, next)``.

torch is optional for flowprep: this module imports it only inside functions,
and its parameters, defaults and validation live in flowprep/flow/tvl1_params.py (shared
with the native and OpenCV backends; importable here too, as before).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from flowprep.errors import BackendUnavailable, ConfigError
from flowprep.flow.base import FlowBackend
from flowprep.flow.tvl1_params import TVL1_DEFAULTS, tvl1_params, validate_tvl1_params  # noqa: F401

__all__ = [
    "TVL1_DEFAULTS",
    "TorchTVL1Backend",
    "tvl1_batch",
    "validate_tvl1_params",
    "auto_batch_size",
]

_INSTALL_HINT = "pip install 'flowprep[torch]'"
_MIN_LEVEL_SIDE = 16  # OpenCV stops adding pyramid levels below this side
_BYTES_PER_PIXEL = 400  # rough peak memory per pixel of one pair (see auto_batch_size)


# --------------------------------------------------------------------------
# torch import and devices


def _torch():
    """Import torch or raise BackendUnavailable with the install command."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised without torch
        raise BackendUnavailable(
            f"the torch TV-L1 backend needs PyTorch, which is not installed; install it with: {_INSTALL_HINT}"
        ) from exc
    return torch


def _resolve_device(device: Any):
    """A torch.device for ``device`` ("cpu", "cuda", "cuda:N", or a torch.device)."""
    torch = _torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"bad torch device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device {device!r} asked for, but this PyTorch has no usable CUDA device "
                f"(torch {torch.__version__}); use device 'cpu', or install a CUDA build of PyTorch"
            )
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        dev = torch.device("cuda", index)
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BackendUnavailable(f"device {device!r} asked for, but MPS is not available here")
    return dev


def auto_batch_size(height: int, width: int, device: Any = "cpu") -> int:
    """How many pairs of (height, width) frames to process at once on ``device``.

    CPU: about 0.4 M pixels per batch (4 pairs at 340x256), at most 16: this
    amortises per-operation overhead while the working set stays near the
    caches; larger CPU batches measured no faster. CUDA: half the device's
    free memory divided by a rough peak footprint of ~400 bytes per pixel per
    pair, capped at 256 (benchmarks/gpu_torch_tvl1.py measures the real peak).
    """
    torch = _torch()
    dev = _resolve_device(device)
    pixels = max(1, int(height) * int(width))
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        # memory this process's caching allocator holds but does not use is free to us too
        free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int(max(1, min(256, (free // 2) // (_BYTES_PER_PIXEL * pixels))))
    return int(max(1, min(16, 400_000 // pixels)))


# --------------------------------------------------------------------------
# median filter: an exact min/max selection network


def _batcher_pairs(n: int) -> List[Tuple[int, int]]:
    """Compare-exchange pairs of Batcher's odd-even merge sort for n = 2**k wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


class _Net:
    """A symbolic min/max network: wires are ints, ops are (name, a, b) -> new wire."""

    def __init__(self, n_inputs: int) -> None:
        self.n_inputs = n_inputs
        self.ops: List[Tuple[str, int, int]] = []

    def op(self, name: str, a: int, b: int) -> int:
        self.ops.append((name, a, b))
        return self.n_inputs + len(self.ops) - 1

    def sort(self, wires: Sequence[int]) -> List[int]:
        """Sorted wires (ascending) by a padded Batcher network (pads never cost ops)."""
        n = 1 << max(0, (len(wires) - 1).bit_length())
        lo = object()  # -inf pad
        hi = object()  # +inf pad
        pad = n - len(wires)
        w: List[Any] = [lo] * (pad // 2) + list(wires) + [hi] * (pad - pad // 2)
        for i, j in _batcher_pairs(n):
            a, b = w[i], w[j]
            if a is lo or b is hi:
                continue
            if a is hi or b is lo:
                w[i], w[j] = b, a
                continue
            w[i], w[j] = self.op("min", a, b), self.op("max", a, b)
        return [x for x in w if x is not lo and x is not hi]

    def schedule(self, outputs: Sequence[int]):
        """Ops needed for ``outputs`` and, per op, the wires that die after it."""
        need = set()
        stack = [o for o in outputs if o >= self.n_inputs]
        while stack:
            wire = stack.pop()
            if wire in need:
                continue
            need.add(wire)
            _, a, b = self.ops[wire - self.n_inputs]
            stack.extend(x for x in (a, b) if x >= self.n_inputs)
        kept = [(self.n_inputs + i, op) for i, op in enumerate(self.ops) if self.n_inputs + i in need]
        last_use: Dict[int, int] = {}
        for step, (_, (_, a, b)) in enumerate(kept):
            last_use[a] = step
            last_use[b] = step
        for o in outputs:
            last_use[o] = len(kept)
        frees = [[] for _ in kept]
        for wire, step in last_use.items():
            if wire >= self.n_inputs and step < len(kept):
                frees[step].append(wire)
        return kept, frees


@lru_cache(maxsize=None)
def _median_networks(k: int):
    """(column sort network, window median network) for a k x k median.

    Stage 1 sorts each vertical k-tuple (shared by the k windows that contain
    it). Stage 2 takes a window's k sorted columns, sorts each rank across the
    k columns (rows and columns then stay sorted), and selects the median among
    the candidates that can still be it: entry (i, j) has at least
    (i+1)(j+1)-1 entries <= it and (k-i)(k-j)-1 entries >= it; the others
    split evenly below and above, so the overall median is the candidates'.
    """
    col = _Net(k)
    col_out = col.sort(list(range(k)))
    win = _Net(k * k)  # input wire r*k + j: rank r of the column at offset j
    m = (k * k - 1) // 2
    candidates = []
    for r in range(k):
        row = win.sort([r * k + j for j in range(k)])
        for j, wire in enumerate(row):
            if (r + 1) * (j + 1) - 1 <= m and (k - r) * (k - j) - 1 <= m:
                candidates.append(wire)
    med = win.sort(candidates)[len(candidates) // 2]
    return (col, col.schedule(col_out), col_out), (win, win.schedule([med]), med)


def _run_net(torch, net, sched, outputs, inputs, template):
    """Evaluate a scheduled network; buffers shaped like ``template`` are reused."""
    kept, frees = sched
    values: Dict[int, Any] = dict(enumerate(inputs))
    pool: List[Any] = []
    for step, (wire, (name, a, b)) in enumerate(kept):
        out = pool.pop() if pool else torch.empty_like(template)
        fn = torch.minimum if name == "min" else torch.maximum
        fn(values[a], values[b], out=out)
        values[wire] = out
        for dead in frees[step]:
            pool.append(values.pop(dead))
    return [values[o] for o in outputs]


def _median_filter(torch, x, k: int):
    """k x k median (k odd) of each (H, W) plane of x (N, C, H, W), replicated border.

    Returns a new tensor; equals cv2.medianBlur(plane, k) for float planes.
    """
    F = torch.nn.functional
    r = k // 2
    n, c, h, w = x.shape
    xp = F.pad(x, (r, r, r, r), mode="replicate")  # (N, C, H+2r, W+2r)
    (col, col_sched, col_out), (win, win_sched, med) = _median_networks(k)
    rows = [xp[:, :, i:i + h, :] for i in range(k)]
    template = torch.empty((n, c, h, w + 2 * r), dtype=x.dtype, device=x.device)
    ranks = _run_net(torch, col, col_sched, col_out, rows, template)
    cols = [ranks[rr][..., j:j + w] for rr in range(k) for j in range(k)]
    out_template = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device)
    (result,) = _run_net(torch, win, win_sched, [med], cols, out_template)
    return result


# --------------------------------------------------------------------------
# resizing (OpenCV INTER_LINEAR), gradients, warping


def _cv_round(value: float) -> int:
    """cvRound: nearest integer, ties to even."""
    return int(round(value))


def _pyramid_sizes(height: int, width: int, nscales: int, scale_step: float) -> List[Tuple[int, int]]:
    sizes = [(height, width)]
    for _ in range(1, nscales):
        h, w = sizes[-1]
        nh, nw = _cv_round(h * scale_step), _cv_round(w * scale_step)
        if nh < _MIN_LEVEL_SIDE or nw < _MIN_LEVEL_SIDE:
            break
        sizes.append((nh, nw))
    return sizes


def _linear_taps(src: int, dst: int, scale: float):
    """Source indices and weights of OpenCV's INTER_LINEAR along one axis.

    scale: source pixels per destination pixel (OpenCV's scale_x).
    """
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f)
    f = (f - s).astype(np.float32)
    s = s.astype(np.int64)
    low = s < 0
    f[low] = 0.0
    s[low] = 0
    high = s >= src - 1
    f[high] = 0.0
    s[high] = src - 1
    s1 = np.minimum(s + 1, src - 1)
    return s, s1, (np.float32(1.0) - f).astype(np.float32), f


def _resize_linear(torch, x, size: Tuple[int, int], scale_yx: Tuple[float, float]):
    """Resize the last two axes of x to ``size`` as cv2.resize(INTER_LINEAR) on float32.

    scale_yx: OpenCV's (scale_y, scale_x), source pixels per destination pixel.
    """
    h, w = x.shape[-2:]
    dh, dw = size
    dev = x.device
    y0, y1, wy0, wy1 = _linear_taps(h, dh, scale_yx[0])
    x0, x1, wx0, wx1 = _linear_taps(w, dw, scale_yx[1])
    t = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    x0, x1, wx0, wx1 = t(x0), t(x1), t(wx0), t(wx1)
    y0, y1, wy0, wy1 = t(y0), t(y1), t(wy0)[:, None], t(wy1)[:, None]
    horiz = x.index_select(-1, x0) * wx0 + x.index_select(-1, x1) * wx1
    return horiz.index_select(-2, y0) * wy0 + horiz.index_select(-2, y1) * wy1


def _centered_gradient(torch, img):
    """(dx, dy) of img (B, H, W): central differences / 2, one-sided halves at the border."""
    dx = torch.empty_like(img)
    dy = torch.empty_like(img)
    dx[..., 1:-1] = 0.5 * (img[..., 2:] - img[..., :-2])
    dx[..., 0] = 0.5 * (img[..., 1] - img[..., 0])
    dx[..., -1] = 0.5 * (img[..., -1] - img[..., -2])
    dy[..., 1:-1, :] = 0.5 * (img[..., 2:, :] - img[..., :-2, :])
    dy[..., 0, :] = 0.5 * (img[..., 1, :] - img[..., 0, :])
    dy[..., -1, :] = 0.5 * (img[..., -1, :] - img[..., -2, :])
    return dx, dy


def _warp(torch, src, u, base_x, base_y, quantize: bool):
    """Bicubic samples of src (B, 3, H, W) at (x + u[:,0], y + u[:,1]); 0 outside."""
    _, _, h, w = src.shape
    mx = base_x + u[:, 0]
    my = base_y + u[:, 1]
    if quantize:  # OpenCV remap's 1/32-pixel fixed point (off by default)
        mx = torch.round(mx * 32.0) / 32.0
        my = torch.round(my * 32.0) / 32.0
    gx = mx * (2.0 / max(w - 1, 1)) - 1.0
    gy = my * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return torch.nn.functional.grid_sample(
        src, grid, mode="bicubic", padding_mode="zeros", align_corners=True
    )


# --------------------------------------------------------------------------
# the inner iteration


def _step_functional(torch, U, P, G, rho_c, grad_safe, l_t: float, theta: float, taut: float):
    """One inner iteration, pure (used under torch.compile).

    U (b, C, H, W) flow (+ u3), P (b, C, 2, H, W) duals, G (b, C, H, W) = (I1wx,
    I1wy[, gamma]), rho_c and grad_safe (b, H, W). Returns (U', P', err (b,) float64).
    """
    F = torch.nn.functional
    rho = G[:, 0] * U[:, 0] + G[:, 1] * U[:, 1]
    rho = rho_c + rho
    if U.shape[1] == 3:
        rho = rho + G[:, 2] * U[:, 2]
    coef = torch.clamp(rho / grad_safe, -l_t, l_t)
    V = U - coef[:, None] * G
    px, py = P[:, :, 0], P[:, :, 1]
    div = (px - F.pad(px[..., :-1], (1, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))
    Un = V + theta * div
    D = Un - U
    err = (D * D).flatten(1).sum(1, dtype=torch.float64)
    ux = F.pad(Un[..., 1:] - Un[..., :-1], (0, 1))
    uy = F.pad(Un[..., 1:, :] - Un[..., :-1, :], (0, 0, 0, 1))
    ng = 1.0 + taut * torch.sqrt(ux * ux + uy * uy)
    Pn = torch.stack(((px + taut * ux) / ng, (py + taut * uy) / ng), dim=2)
    return Un, Pn, err


class _Buffers:
    """Scratch tensors for one pyramid level, sized for the whole batch."""

    def __init__(self, torch, B: int, C: int, H: int, W: int, device) -> None:
        f = dict(dtype=torch.float32, device=device)
        self.rho = torch.empty((B, H, W), **f)
        self.V = torch.empty((B, C, H, W), **f)
        self.div = torch.empty((B, C, H, W), **f)
        self.D = torch.empty((B, C, H, W), **f)
        self.Gu = torch.zeros((B, C, 2, H, W), **f)  # last col of ux / last row of uy stay 0
        self.ng = torch.empty((B, C, H, W), **f)
        self.Pn = None  # allocated on first masked step


def _step_buffered(torch, U, Un, P, G, rho_c, grad_safe, bufs: _Buffers, mask,
                   l_t: float, theta: float, taut: float):
    """One inner iteration with preallocated scratch (eager path).

    Writes the new flow into ``Un`` and updates ``P`` in place. With ``mask``
    (b,) bool, pairs whose mask is False keep their U (copied into Un) and P.
    Returns err (b,) float64: sum of squared flow change per pair.
    """
    b, C = U.shape[:2]
    rho = bufs.rho[:b]
    V = bufs.V[:b]
    div = bufs.div[:b]
    D = bufs.D[:b]
    Gu = bufs.Gu[:b]
    ng = bufs.ng[:b]

    # thresholding: v = u - clamp(rho / |grad|^2, -l_t, l_t) * grad I1w
    torch.mul(G[:, 0], U[:, 0], out=rho)
    rho.addcmul_(G[:, 1], U[:, 1])
    rho.add_(rho_c)
    if C == 3:
        rho.addcmul_(G[:, 2], U[:, 2])
    torch.div(rho, grad_safe, out=rho)
    rho.clamp_(-l_t, l_t)
    torch.mul(G, rho[:, None], out=V)
    torch.sub(U, V, out=V)

    # divergence of p (backward differences, zero outside)
    px, py = P[:, :, 0], P[:, :, 1]
    div.copy_(px)
    div[..., 1:].sub_(px[..., :-1])
    div.add_(py)
    div[..., 1:, :].sub_(py[..., :-1, :])

    # u = v + theta * div p ; err = sum |u - u_old|^2
    torch.add(V, div, alpha=theta, out=Un)
    torch.sub(Un, U, out=D)
    D.mul_(D)
    err = D.view(b, -1).sum(1, dtype=torch.float64)

    # p = (p + taut grad u) / (1 + taut |grad u|), per flow component
    ux, uy = Gu[:, :, 0], Gu[:, :, 1]
    torch.sub(Un[..., 1:], Un[..., :-1], out=ux[..., :-1])
    torch.sub(Un[..., 1:, :], Un[..., :-1, :], out=uy[..., :-1, :])
    torch.mul(ux, ux, out=ng)
    ng.addcmul_(uy, uy)
    ng.sqrt_()
    ng.mul_(taut).add_(1.0)
    if mask is None:
        P.add_(Gu, alpha=taut)
        P.div_(ng[:, :, None])
    else:
        if bufs.Pn is None:
            bufs.Pn = torch.empty_like(bufs.Gu)
        Pn = bufs.Pn[:b]
        torch.add(P, Gu, alpha=taut, out=Pn)
        Pn.div_(ng[:, :, None])
        m = mask.view(b, 1, 1, 1)
        torch.where(m[..., None], Pn, P, out=P)
        torch.where(m, Un, U, out=Un)
    return err


# --------------------------------------------------------------------------
# one level, the pyramid, the public function


class _Options:
    def __init__(self, device, compile_step: bool, sync_every: int, quantize_warp: bool) -> None:
        self.device = device
        self.compile_step = compile_step
        self.sync_every = max(1, int(sync_every))
        self.quantize_warp = quantize_warp
        self.compiled = None


def _solve_level(torch, I0, I1, U, p: Dict[str, Any], opts: _Options):
    """Run all warps of one level. I0, I1 (B, H, W); U (B, C, H, W). Returns U."""
    B, C, H, W = U.shape
    dev = U.device
    l_t = float(np.float32(p["lambda"] * p["theta"]))
    theta = float(np.float32(p["theta"]))
    taut = float(np.float32(p["tau"] / p["theta"]))
    gamma = float(np.float32(p["gamma"]))
    eps = float(np.float32(p["epsilon"] * p["epsilon"] * H * W))
    kmed = p["median_filtering"]
    I1x, I1y = _centered_gradient(torch, I1)
    src = torch.stack((I1, I1x, I1y), dim=1)
    del I1x, I1y
    base_x = torch.arange(W, dtype=torch.float32, device=dev).view(1, 1, W)
    base_y = torch.arange(H, dtype=torch.float32, device=dev).view(1, H, 1)
    P = torch.zeros((B, C, 2, H, W), dtype=torch.float32, device=dev)
    bufs = None if opts.compile_step else _Buffers(torch, B, C, H, W, dev)
    spare = torch.empty_like(U)  # double buffer for U

    for _warp_i in range(p["warps"]):
        warped = _warp(torch, src, U, base_x, base_y, opts.quantize_warp)
        I1w, I1wx, I1wy = warped[:, 0], warped[:, 1], warped[:, 2]
        grad = I1wx * I1wx + I1wy * I1wy
        rho_c = I1w - I1wx * U[:, 0] - I1wy * U[:, 1] - I0
        planes = [I1wx, I1wy]
        if C == 3:
            planes.append(torch.full_like(I1wx, gamma))
        G = torch.stack(planes, dim=1)
        grad_safe = grad.clamp_min(1e-30)
        del warped, I1w, grad, planes
        U, P, spare = _iterate_warp(torch, U, P, spare, G, rho_c, grad_safe, bufs,
                                    p, opts, eps, l_t, theta, taut, kmed)
    return U


def _iterate_warp(torch, U, P, spare, G, rho_c, grad_safe, bufs, p, opts, eps, l_t, theta, taut, kmed):
    """Outer/inner iterations of one warp with the per-pair stopping rule.

    The working set holds the pairs not yet converged; converged pairs are
    written back to the full tensors and left alone, exactly as if each pair
    ran by itself.
    """
    B = U.shape[0]
    full_U, full_P = U, P
    idx = None  # None: working set is the whole batch (and aliases full_U/full_P)
    Uw, Pw, Sw, Gw, Rw, Hw = U, P, spare, G, rho_c, grad_safe
    alive = None  # device bool (b,), None: all alive (known on the host)

    def compact(alive_host):
        nonlocal idx, Uw, Pw, Sw, Gw, Rw, Hw, full_U, full_P
        keep = torch.nonzero(alive_host).squeeze(1)
        if idx is None:
            # working set aliases the full tensors; just pick the survivors
            full_U, full_P = Uw, Pw
            idx = keep.to(Uw.device)
            sel = idx
        else:
            full_U.index_copy_(0, idx, Uw)
            full_P.index_copy_(0, idx, Pw)
            sel = keep.to(Uw.device)
            idx = idx.index_select(0, sel)
        Uw = Uw.index_select(0, sel)
        Pw = Pw.index_select(0, sel)
        Sw = torch.empty_like(Uw)
        Gw = Gw.index_select(0, sel)
        Rw = Rw.index_select(0, sel)
        Hw = Hw.index_select(0, sel)

    done = False
    for _outer in range(p["outer_iterations"]):
        if kmed > 1:
            Uw[:, :2] = _median_filter(torch, Uw[:, :2], kmed)
        for inner in range(p["inner_iterations"]):
            masked = alive is not None
            if opts.compile_step:
                Un, Pn, err = opts.compiled(Uw, Pw, Gw, Rw, Hw, l_t, theta, taut)
                if masked:
                    m = alive.view(-1, 1, 1, 1)
                    Un = torch.where(m, Un, Uw)
                    Pn = torch.where(m[..., None], Pn, Pw)
                Uw, Sw = Un, Uw
                Pw = Pn
            else:
                err = _step_buffered(torch, Uw, Sw, Pw, Gw, Rw, Hw, bufs,
                                     alive if masked else None, l_t, theta, taut)
                Uw, Sw = Sw, Uw
            still = err > eps
            alive = still if alive is None else (alive & still)
            last = inner == p["inner_iterations"] - 1
            if (inner + 1) % opts.sync_every == 0 or last:
                alive_host = alive.cpu()
                n_alive = int(alive_host.sum())
                if n_alive == 0:
                    done = True
                    break
                if n_alive < alive_host.numel():
                    compact(alive_host)
                alive = None
        if done:
            break

    if idx is None:
        return Uw, Pw, Sw
    if Uw.shape[0] > 0:
        full_U.index_copy_(0, idx, Uw)
        full_P.index_copy_(0, idx, Pw)
    return full_U, full_P, torch.empty_like(full_U)


def _tvl1_tensors(torch, I0, I1, p: Dict[str, Any], opts: _Options):
    """TV-L1 on float32 (B, H, W) tensors in [0, 255] on one device -> (B, H, W, 2)."""
    B, H, W = I0.shape
    C = 3 if p["gamma"] != 0 else 2
    sizes = _pyramid_sizes(H, W, p["nscales"], p["scale_step"])
    inv = 1.0 / p["scale_step"]
    I0s, I1s = [I0], [I1]
    for size in sizes[1:]:
        I0s.append(_resize_linear(torch, I0s[-1], size, (inv, inv)))
        I1s.append(_resize_linear(torch, I1s[-1], size, (inv, inv)))
    U = torch.zeros((B, C) + sizes[-1], dtype=torch.float32, device=I0.device)
    for s in range(len(sizes) - 1, -1, -1):
        U = _solve_level(torch, I0s[s], I1s[s], U, p, opts)
        if s == 0:
            break
        (h, w), (dh, dw) = sizes[s], sizes[s - 1]
        scale = (1.0 / (dh / h), 1.0 / (dw / w))  # cv::resize with an explicit dsize
        U = _resize_linear(torch, U, (dh, dw), scale).contiguous()
        U[:, :2] *= float(np.float32(inv))
    return U[:, :2].permute(0, 2, 3, 1).contiguous()


@lru_cache(maxsize=None)
def _compiled_step():
    torch = _torch()

    def step(U, P, G, rho_c, grad_safe, l_t, theta, taut):
        return _step_functional(torch, U, P, G, rho_c, grad_safe, l_t, theta, taut)

    return torch.compile(step, dynamic=True)


def _as_frames(torch, x, name: str, device):
    """(B, H, W) float32 tensor on ``device`` from a numpy array or tensor."""
    if isinstance(x, np.ndarray):
        if x.ndim != 3:
            raise ConfigError(f"{name} must have shape (B, H, W), got {x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ConfigError(f"{name} must hold grey values in [0, 255], got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    elif isinstance(x, torch.Tensor):
        if x.dim() != 3:
            raise ConfigError(f"{name} must have shape (B, H, W), got {tuple(x.shape)}")
        if x.is_complex() or x.dtype == torch.bool:
            raise ConfigError(f"{name} must hold grey values in [0, 255], got dtype {x.dtype}")
        t = x.detach()
    else:
        raise ConfigError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    return t.to(device=device, dtype=torch.float32).contiguous()


def tvl1_batch(prev, nxt, params: Optional[Mapping[str, Any]] = None, device: Any = "cpu", *,
               compile: bool = False, sync_every: Optional[int] = None):
    """TV-L1 flow for a batch of frame pairs, all in one set of tensors.

    Args:
        prev, nxt: (B, H, W) grey frames with values in [0, 255]: numpy arrays
            (any real dtype) or torch tensors.
        params: TV-L1 parameters, merged over ``TVL1_DEFAULTS``.
        device: torch device to compute on ("cpu", "cuda", "cuda:N").
        compile: run the inner iteration through ``torch.compile`` (off by
            default; see docs/torch_tvl1.md).
        sync_every: inner iterations between host checks of the stopping rule
            (default 1 on CPU, 10 elsewhere); between checks converged pairs are
            masked on the device, so the result does not depend on it.
    Returns:
        (B, H, W, 2) float32 flow in pixels, [..., 0] = dx, [..., 1] = dy, with
        nxt(x + d(x)) ~ prev(x). A numpy array when ``prev`` is one, else a
        tensor on ``device``.
    Raises:
        ConfigError: bad parameters, shapes or device string.
        BackendUnavailable: torch or the device is missing.
    """
    p = tvl1_params(params)  # checked here unless the backend checked them already
    torch = _torch()
    dev = _resolve_device(device)
    numpy_in = isinstance(prev, np.ndarray)
    I0 = _as_frames(torch, prev, "prev", dev)
    I1 = _as_frames(torch, nxt, "nxt", dev)
    if I0.shape != I1.shape:
        raise ConfigError(f"prev and nxt must have the same shape, got {tuple(I0.shape)} and {tuple(I1.shape)}")
    B, H, W = I0.shape
    if H < 3 or W < 3:
        raise ConfigError(f"frames must be at least 3x3 pixels, got {H}x{W}")
    if B == 0:
        out = torch.zeros((0, H, W, 2), dtype=torch.float32, device=dev)
        return out.cpu().numpy() if numpy_in else out
    if sync_every is None:
        sync_every = 1 if dev.type == "cpu" else 10
    opts = _Options(dev, bool(compile), sync_every, quantize_warp=False)
    if opts.compile_step:
        opts.compiled = _compiled_step()
    with torch.inference_mode():
        flow = _tvl1_tensors(torch, I0, I1, p, opts)
    if numpy_in:
        return flow.cpu().numpy()
    return flow


# --------------------------------------------------------------------------
# the backend


class TorchTVL1Backend(FlowBackend):
    """TV-L1 (OpenCV's DualTVL1 algorithm) in PyTorch, batched, on any torch device.

    Args:
        params: TV-L1 parameters (keys of ``TVL1_DEFAULTS``), merged over the defaults.
        device: "cpu", "cuda" or "cuda:N".
        batch_size: pairs per batch in ``compute_batch``; None picks it from the
            frame size and the device's memory (``auto_batch_size``).
        compile: run the inner iteration through torch.compile (default off).
        threads: CPU threads torch may use during this backend's calls (None:
            torch's process-wide setting, by default all cores). Give it when
            several worker processes share the CPU: torch's OpenMP threads
            slow down badly when there are more of them than free cores.
    Raises:
        ConfigError: unknown parameter key (the valid ones are listed) or bad value.
        BackendUnavailable: torch not installed, or the device does not exist.
    """

    algo = "tvl1"
    implementation = "torch"

    def __init__(self, params: Optional[Dict[str, Any]] = None, device: str = "cpu",
                 batch_size: Optional[int] = None, *, compile: bool = False,
                 threads: Optional[int] = None) -> None:
        merged = tvl1_params(params)  # a run's params come checked (flow.merge_params)
        torch = _torch()
        dev = _resolve_device(device)
        super().__init__(merged, str(dev))
        self.params = merged  # kept as TVL1Params: tvl1_batch does not check them again
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
                raise ConfigError(f"batch_size must be a positive integer or None, got {batch_size!r}")
            batch_size = int(batch_size)
        self._fixed_batch = batch_size
        self._auto_batch: Dict[Tuple[int, int], int] = {}  # frame size -> batch, fixed once chosen
        # without frames yet, advertise the batch for 340x256 (the usual TSN size)
        self.batch_size = batch_size or auto_batch_size(256, 340, dev)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                    or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        self._threads = None if threads is None else int(threads)
        self._dev = dev
        self._compile = bool(compile)
        self._torch_version = torch.__version__

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["torch"] = self._torch_version
        return info

    @staticmethod
    def _check_pair(prev: np.ndarray, nxt: np.ndarray, i: int) -> None:
        for name, a in (("prev", prev), ("next", nxt)):
            if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 2:
                desc = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ConfigError(
                    f"pair {i}: {name} frame must be a uint8 (H, W) greyscale array, got {desc}"
                )
        if prev.shape != nxt.shape:
            raise ConfigError(f"pair {i}: frames differ in size: {prev.shape} vs {nxt.shape}")

    def compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from ``prev`` to ``nxt``: uint8 (H, W) in, float32 (H, W, 2) pixels out."""
        return self.compute_batch([(prev, nxt)])[0]

    def compute_batch(self, pairs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Flow for B same-size pairs of uint8 (H, W) frames -> float32 (B, H, W, 2)."""
        pairs = list(pairs)
        if not pairs:
            raise ConfigError("compute_batch needs at least one (prev, next) pair")
        for i, (a, b) in enumerate(pairs):
            self._check_pair(a, b, i)
            if a.shape != pairs[0][0].shape:
                raise ConfigError(
                    f"pair {i}: frame size {a.shape} differs from pair 0's {pairs[0][0].shape}; "
                    "compute_batch needs frames of one size"
                )
        h, w = pairs[0][0].shape
        chunk = self._fixed_batch
        if chunk is None:
            if (h, w) not in self._auto_batch:
                self._auto_batch[(h, w)] = auto_batch_size(h, w, self._dev)
            chunk = self._auto_batch[(h, w)]
        out = np.empty((len(pairs), h, w, 2), dtype=np.float32)
        torch = _torch()
        saved = torch.get_num_threads()
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        try:
            for start in range(0, len(pairs), chunk):
                part = pairs[start:start + chunk]
                prev = np.stack([a for a, _ in part])
                nxt = np.stack([b for _, b in part])
                out[start:start + len(part)] = tvl1_batch(
                    prev, nxt, self.params, self._dev, compile=self._compile
                )
        finally:
            if self._threads is not None:
                torch.set_num_threads(saved)
        return out
