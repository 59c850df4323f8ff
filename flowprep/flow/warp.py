"""TSN's warped optical flow: the camera's motion removed by a homography.

For a flow pair (frame t = ``prev``, frame t+step = ``nxt``) with its forward
flow ``d`` (from any backend):

1. correspondences, frame t -> frame t+step, all in pixels (x, y):
   a. Shi-Tomasi corners p of frame t (up to ``max_corners``), each carried by the
      flow sampled bilinearly at p: p -> p + d(p), where d[..., 0] is dx and
      d[..., 1] is dy read at row y, column x;
   b. SIFT (or ORB) keypoints detected on both frames of *this* pair, matched by
      descriptor among the keypoints of frame t+step lying within a window
      (``match_window`` x the frame diagonal) of each keypoint of frame t, with
      Lowe's ratio test;
2. H = cv2.findHomography(RANSAC, ``ransac_threshold`` px) on (a) + (b), refit
   by least squares on the points within the threshold of it (twice); H is kept only when there are at least ``min_points`` correspondences, more than
   ``min_inliers`` RANSAC inliers, and H is plausible (finite, frame corners in
   front of the camera, area ratio within [1/2, 2]); otherwise H = identity and
   the pair is recorded as a fallback (iDT's and TSN's rule: 50 points, 25 inliers);
3. frame t+step warped back onto frame t: warped(p) = nxt(H p), bilinear;
   pixels p whose H p falls outside frame t+step are taken from frame t;
4. the warped flow = the same backend's flow from frame t to the warped frame.

The three bugs of TSN's dense_flow (src/dense_warp_flow_gpu.cpp,
include/warp_flow.h) are avoided: corners are taken on frame t (the frame the
flow starts from), the flow at a corner is read as d[y, x] for both components
(TSN reads f_y[y], so rotation is lost), and keypoints are detected on both
frames of every pair (TSN matches every frame against frame 0's keypoints).

The homography H maps pixel (x, y, 1) of frame t to frame t+step (as
``cv2.findHomography(src=frame t points, dst=frame t+step points)``). With
``backward``, the backward warped flow uses H's inverse: frame t is warped onto
frame t+step (warped(q) = prev(H^-1 q)) and the flow is from frame t+step to it.

Everything here but :class:`WarpStage` is a pure function. All frames are
uint8 (H, W) greyscale; point arrays are float32 (N, 2), (x, y) pixels.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import ConfigError

FEATURES = ("sift", "orb", "none")


@dataclass(frozen=True)
class WarpSettings:
    """The warp stage's parameters (recorded in store.config["warped"], hashed).

    Attributes:
        features: "sift" (cv2.SIFT, OpenCV >= 4.4), "orb", or "none" (flow corners only).
        max_corners: Shi-Tomasi corners of frame t (cv2.goodFeaturesToTrack).
        corner_quality: goodFeaturesToTrack's qualityLevel (relative to the best corner).
        corner_min_distance: goodFeaturesToTrack's minDistance, pixels.
        corner_min_eigen: absolute floor on a corner's smaller structure-tensor eigenvalue
            (cv2.cornerMinEigenVal, blockSize 3, Sobel 3); about an X-corner of 7 grey
            levels' contrast. Without it a textureless frame still yields 1000 "corners"
            (the quality level is relative), whose flow is noise.
        max_features: keypoints per frame for SIFT / ORB.
        match_ratio: Lowe's ratio test for descriptor matches.
        match_window: a keypoint of frame t is matched only to keypoints of frame
            t+step within match_window x frame diagonal pixels of it.
        ransac_threshold: RANSAC reprojection threshold, pixels.
        min_points: fewest correspondences (corners + matches) to estimate H at all.
        min_inliers: H is kept only with more RANSAC inliers than this.
    """

    features: str = "sift"
    max_corners: int = 1000
    corner_quality: float = 0.001
    corner_min_distance: float = 3.0
    corner_min_eigen: float = 5e-5
    max_features: int = 1000
    match_ratio: float = 0.8
    match_window: float = 0.1
    ransac_threshold: float = 1.0
    min_points: int = 50
    min_inliers: int = 25

    def validate(self) -> "WarpSettings":
        if self.features not in FEATURES:
            raise ConfigError(f"warp features must be one of {', '.join(FEATURES)}, "
                              f"got {self.features!r}")
        if self.max_corners < 0 or self.max_features < 0:
            raise ConfigError("warp max_corners and max_features must be >= 0")
        if not 0 < self.match_ratio <= 1 or not 0 < self.match_window <= 1:
            raise ConfigError("warp match_ratio and match_window must be in (0, 1]")
        if self.ransac_threshold <= 0:
            raise ConfigError(f"warp ransac_threshold must be positive, got {self.ransac_threshold}")
        if self.min_points < 4 or self.min_inliers < 4:
            raise ConfigError("warp min_points and min_inliers must be at least 4 "
                              "(a homography needs 4 points)")
        return self

    def describe(self) -> Dict[str, Any]:
        """The dict stored in store.config["warped"] and in each video's meta["warped"]."""
        d = asdict(self)
        d["method"] = ("homography from flow at Shi-Tomasi corners + windowed feature matches, "
                       "RANSAC; frame t+step warped onto frame t")
        return d


def settings_from(value: Any) -> WarpSettings:
    """WarpSettings from ExtractOptions.warped: True, a WarpSettings, or a dict of overrides."""
    if isinstance(value, WarpSettings):
        return value.validate()
    if value is True:
        return WarpSettings()
    if isinstance(value, dict):
        known = set(WarpSettings.__dataclass_fields__)
        bad = sorted(set(value) - known)
        if bad:
            raise ConfigError(f"unknown warp setting(s) {', '.join(bad)}; valid: "
                              f"{', '.join(sorted(known))}")
        return WarpSettings(**value).validate()
    raise ConfigError(f"warped must be true/false, a dict of warp settings or WarpSettings, "
                      f"got {value!r}")


# --------------------------------------------------------------------------------------
# correspondences


def shi_tomasi_corners(grey: np.ndarray, max_corners: int = 1000, quality: float = 0.001,
                       min_distance: float = 3.0, min_eigen: float = 5e-5) -> np.ndarray:
    """Shi-Tomasi corners of one frame.

    Args:
        grey: uint8 (H, W).
        max_corners, quality, min_distance: cv2.goodFeaturesToTrack's parameters.
        min_eigen: absolute floor on cv2.cornerMinEigenVal (blockSize 3, ksize 3).
    Returns:
        float32 (N, 2) corner positions (x, y) in pixels, N <= max_corners.
    """
    if max_corners <= 0:
        return np.zeros((0, 2), np.float32)
    pts = cv2.goodFeaturesToTrack(grey, int(max_corners), float(quality), float(min_distance))
    if pts is None:
        return np.zeros((0, 2), np.float32)
    pts = pts.reshape(-1, 2).astype(np.float32)
    if min_eigen > 0 and len(pts):
        eig = cv2.cornerMinEigenVal(grey, 3, 3)
        xi = np.clip(np.rint(pts[:, 0]).astype(int), 0, grey.shape[1] - 1)
        yi = np.clip(np.rint(pts[:, 1]).astype(int), 0, grey.shape[0] - 1)
        pts = pts[eig[yi, xi] >= min_eigen]
    return pts


def sample_flow(flow: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The flow at subpixel points, bilinear (border pixels replicated).

    Args:
        flow: float32 (H, W, 2), [..., 0] = dx, [..., 1] = dy, pixels.
        pts: float32 (N, 2), (x, y) pixels.
    Returns:
        float32 (N, 2): (dx, dy) at each point, both read at row y, column x
        (TSN's dense_flow reads dy at row y, column y).
    """
    pts = np.asarray(pts, np.float32).reshape(-1, 2)
    if not len(pts):
        return np.zeros((0, 2), np.float32)
    mx = np.ascontiguousarray(pts[:, 0].reshape(1, -1))
    my = np.ascontiguousarray(pts[:, 1].reshape(1, -1))
    out = cv2.remap(np.ascontiguousarray(flow, dtype=np.float32), mx, my, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 2)


def flow_correspondences(prev: np.ndarray, flow: np.ndarray,
                         settings: WarpSettings = WarpSettings()) -> Tuple[np.ndarray, np.ndarray]:
    """Corners of frame t and where the flow carries them in frame t+step.

    Args:
        prev: uint8 (H, W), frame t (the flow's start).
        flow: float32 (H, W, 2), the flow from frame t to frame t+step, pixels.
    Returns:
        (src, dst): float32 (N, 2) each, (x, y) pixels in frame t and frame t+step;
        points carried outside frame t+step are dropped.
    """
    src = shi_tomasi_corners(prev, settings.max_corners, settings.corner_quality,
                             settings.corner_min_distance, settings.corner_min_eigen)
    dst = src + sample_flow(flow, src)
    h, w = prev.shape[:2]
    ok = (dst[:, 0] >= 0) & (dst[:, 0] <= w - 1) & (dst[:, 1] >= 0) & (dst[:, 1] <= h - 1)
    return src[ok], dst[ok]


def make_detector(features: str, max_features: int):
    """(cv2 detector-extractor, descriptor norm) for "sift" or "orb"; (None, None) for "none"."""
    if features == "none" or max_features <= 0:
        return None, None
    if features == "sift":
        if not hasattr(cv2, "SIFT_create"):  # pragma: no cover - OpenCV < 4.4
            raise ConfigError("this OpenCV has no SIFT (needs OpenCV >= 4.4); use warp features 'orb'")
        return cv2.SIFT_create(nfeatures=int(max_features)), cv2.NORM_L2
    if features == "orb":
        return cv2.ORB_create(nfeatures=int(max_features)), cv2.NORM_HAMMING
    raise ConfigError(f"warp features must be one of {', '.join(FEATURES)}, got {features!r}")


def detect_features(grey: np.ndarray, detector) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Keypoints and descriptors of one frame.

    Args:
        grey: uint8 (H, W).
        detector: from :func:`make_detector` (None: no features).
    Returns:
        (pts float32 (N, 2) (x, y) pixels, descriptors (N, D) or None when N == 0).
    """
    if detector is None:
        return np.zeros((0, 2), np.float32), None
    kps, desc = detector.detectAndCompute(grey, None)
    if not kps or desc is None:
        return np.zeros((0, 2), np.float32), None
    return np.array([k.pt for k in kps], np.float32).reshape(-1, 2), desc


def match_features(pts0: np.ndarray, desc0: Optional[np.ndarray], pts1: np.ndarray,
                   desc1: Optional[np.ndarray], window: float, ratio: float = 0.8,
                   norm: int = cv2.NORM_L2) -> Tuple[np.ndarray, np.ndarray]:
    """Descriptor matches from frame t to frame t+step, within a window.

    A keypoint i of frame t may match keypoint j of frame t+step only when
    |pts1[j] - pts0[i]| <= window on both axes (iDT's windowed matching); the best
    allowed match is kept when it passes Lowe's ratio test against the second
    best allowed one.

    Args:
        pts0, pts1: float32 (N0, 2), (N1, 2) keypoint positions (x, y), pixels.
        desc0, desc1: their descriptors (N0, D), (N1, D), or None.
        window: pixels.
        ratio: best distance must be below ratio x the second best.
        norm: cv2.NORM_L2 (SIFT) or cv2.NORM_HAMMING (ORB).
    Returns:
        (src, dst): float32 (M, 2) matched positions in frame t and frame t+step.
    """
    empty = (np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
    if desc0 is None or desc1 is None or not len(pts0) or not len(pts1):
        return empty
    delta = np.abs(pts1[None, :, :] - pts0[:, None, :])
    mask = np.all(delta <= window, axis=2).astype(np.uint8)
    if not mask.any():
        return empty
    matcher = cv2.BFMatcher(norm)
    knn = matcher.knnMatch(desc0, desc1, k=2, mask=mask)
    src, dst = [], []
    for m in knn:
        if not m:
            continue
        if len(m) == 2 and not m[0].distance < ratio * m[1].distance:
            continue
        src.append(pts0[m[0].queryIdx])
        dst.append(pts1[m[0].trainIdx])
    if not src:
        return empty
    return np.asarray(src, np.float32), np.asarray(dst, np.float32)


# --------------------------------------------------------------------------------------
# the homography


@dataclass
class HomographyEstimate:
    """One pair's camera homography.

    Attributes:
        H: float64 (3, 3), pixel (x, y, 1) of frame t -> frame t+step, H[2, 2] = 1;
            the identity when ``fallback``.
        points: correspondences given to RANSAC (flow corners + feature matches).
        corners, matches: how many of them came from each source.
        inliers: RANSAC inliers of the estimate (0 when none was made).
        fallback: "" when H was kept, else why the identity is used.
    """

    H: np.ndarray
    points: int = 0
    corners: int = 0
    matches: int = 0
    inliers: int = 0
    fallback: str = ""


def homography_is_plausible(H: np.ndarray, height: int, width: int) -> bool:
    """True when H is finite, keeps the frame's corners in front (w > 0) and its area
    ratio (det of the affine part) is within [1/2, 2]: a camera's motion between two
    nearby frames, not a degenerate RANSAC fit."""
    H = np.asarray(H, np.float64)
    if H.shape != (3, 3) or not np.all(np.isfinite(H)) or abs(H[2, 2]) < 1e-12:
        return False
    H = H / H[2, 2]
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1],
                        [width - 1, height - 1, 1]], np.float64)
    if np.any(corners @ H[2] <= 0):
        return False
    det = float(np.linalg.det(H[:2, :2]))
    return 0.5 <= det <= 2.0


def refine_homography(src: np.ndarray, dst: np.ndarray, H: np.ndarray, threshold: float = 1.0,
                      rounds: int = 2) -> Tuple[np.ndarray, int]:
    """Refit H by least squares (Levenberg-Marquardt) on the points within ``threshold`` px
    of it, ``rounds`` times: RANSAC's answer depends on which minimal sample won (and
    so on the order of the points) by up to half a pixel at the frame corners with
    coarse keypoints (ORB); the refit converges to the consensus set's own fit.

    Args:
        src, dst: float32 (N, 2) points (x, y) of frame t and frame t+step.
        H: float64 (3, 3), RANSAC's homography.
    Returns:
        (H float64 (3, 3) with H[2, 2] = 1, number of points within threshold of it).
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    H = np.asarray(H, np.float64) / H[2, 2]
    inliers = 0
    for _ in range(rounds + 1):
        proj = cv2.perspectiveTransform(src.reshape(-1, 1, 2), H).reshape(-1, 2)
        keep = np.hypot(*(proj - dst).T) <= threshold
        inliers = int(keep.sum())
        if _ == rounds or inliers < 4:
            break
        H2, _m = cv2.findHomography(src[keep], dst[keep], 0)
        if H2 is None or not np.all(np.isfinite(H2)) or abs(H2[2, 2]) < 1e-12:
            break
        H = H2 / H2[2, 2]
    return H, inliers


def estimate_homography(src: np.ndarray, dst: np.ndarray, height: int, width: int,
                        threshold: float = 1.0, min_points: int = 50,
                        min_inliers: int = 25) -> HomographyEstimate:
    """RANSAC homography from frame t points to frame t+step points, or the identity.

    Args:
        src, dst: float32 (N, 2), (x, y) pixels in frame t and frame t+step.
        height, width: the frames' size in pixels (for the plausibility check).
        threshold: RANSAC reprojection threshold, pixels.
        min_points: fewer correspondences than this: identity.
        min_inliers: H kept only with more inliers than this (else identity).
    Returns:
        a HomographyEstimate (H float64 (3, 3) normalized to H[2, 2] = 1).
    """
    n = int(len(src))
    ident = np.eye(3, dtype=np.float64)
    if n < max(4, min_points):
        return HomographyEstimate(ident, n, fallback=f"{n} correspondences (fewer than {min_points})")
    H, mask = cv2.findHomography(np.asarray(src, np.float32).reshape(-1, 1, 2),
                                 np.asarray(dst, np.float32).reshape(-1, 1, 2),
                                 cv2.RANSAC, float(threshold))
    inliers = int(mask.sum()) if mask is not None else 0
    if H is None:
        return HomographyEstimate(ident, n, inliers=0, fallback="RANSAC found no homography")
    H, inliers = refine_homography(src, dst, H, threshold)
    if inliers <= min_inliers:
        return HomographyEstimate(ident, n, inliers=inliers,
                                  fallback=f"{inliers} RANSAC inliers (need more than {min_inliers})")
    if not homography_is_plausible(H, height, width):
        return HomographyEstimate(ident, n, inliers=inliers,
                                  fallback="implausible homography (degenerate fit)")
    return HomographyEstimate(np.asarray(H, np.float64) / H[2, 2], n, inliers=inliers)


# --------------------------------------------------------------------------------------
# the warp


def inside_mask(H: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool (height, width): pixel p whose H p lies inside a (height, width) frame
    ([0, width - 1] x [0, height - 1], pixels).

    Args:
        H: float64 (3, 3), maps output pixel (x, y, 1) to the source frame.
    """
    H = np.asarray(H, np.float64)
    ys, xs = np.mgrid[0:height, 0:width]
    w = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (H[0, 0] * xs + H[0, 1] * ys + H[0, 2]) / w
        v = (H[1, 0] * xs + H[1, 1] * ys + H[1, 2]) / w
    return (w > 0) & (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)


#: cv2.warpPerspective flags: bilinear, and M maps *output* pixels into the source
#: (dst(p) = src(M p)), so M is H itself, never its inverse.
WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
WARP_BORDER = cv2.BORDER_REPLICATE  # only pixels later replaced by the fill frame see it


def is_identity(H: np.ndarray) -> bool:
    return bool(np.array_equal(np.asarray(H, np.float64), np.eye(3)))


def warp_onto(src: np.ndarray, H: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Warp ``src`` onto the frame of ``fill`` through H (CPU).

    Args:
        src: uint8 (h, w), the frame sampled (frame t+step for the forward warp).
        H: float64 (3, 3), maps pixel p of the output to src: out(p) = src(H p), bilinear.
        fill: uint8 (h, w), the frame whose pixels are used where H p falls outside src.
    Returns:
        uint8 (h, w). With H the identity, ``src`` itself (bit-exact).
    """
    if is_identity(H):
        return src
    h, w = fill.shape[:2]
    warped = cv2.warpPerspective(src, np.asarray(H, np.float64), (w, h), flags=WARP_FLAGS,
                                 borderMode=WARP_BORDER)
    return np.where(inside_mask(H, h, w), warped, fill)


def cuda_warp_args(H: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, Tuple[int, int], Dict[str, int]]:
    """Arguments of cv2.cuda.warpPerspective(src, M, dsize, flags=, borderMode=) giving the
    same warp as :func:`warp_onto` (pure; tested without a GPU).

    Returns:
        (M float64 (3, 3) = H, dsize (width, height), {"flags", "borderMode"}).
    """
    return (np.asarray(H, np.float64), (int(width), int(height)),
            {"flags": WARP_FLAGS, "borderMode": WARP_BORDER})


def cuda_warp_available() -> bool:
    """True when this OpenCV has cv2.cuda.warpPerspective (the cudawarping module)."""
    return hasattr(getattr(cv2, "cuda", None), "warpPerspective")


def warp_onto_cuda(src: np.ndarray, H: np.ndarray, fill: np.ndarray, gpu_mat=None) -> np.ndarray:
    """:func:`warp_onto` with the warp on the current CUDA device (cv2.cuda.warpPerspective).

    ``gpu_mat``: a reusable cv2.cuda_GpuMat for the upload. The fill of pixels mapping
    from outside uses the same :func:`inside_mask` as the CPU path.
    """
    if is_identity(H):
        return src
    h, w = fill.shape[:2]
    g = gpu_mat if gpu_mat is not None else cv2.cuda_GpuMat()
    g.upload(np.ascontiguousarray(src))
    M, dsize, kw = cuda_warp_args(H, h, w)
    warped = cv2.cuda.warpPerspective(g, M, dsize, **kw).download()
    return np.where(inside_mask(H, h, w), warped, fill)


# --------------------------------------------------------------------------------------
# the stage


def check_supported(choice, cuda_warp: Optional[bool] = None) -> None:
    """Refuse, before a run, a backend the warp stage cannot run with.

    Args:
        choice: the resolved FlowChoice.
        cuda_warp: whether cv2.cuda.warpPerspective exists (default: this OpenCV's answer).
    Raises:
        ConfigError naming the backend and the fix.
    """
    if choice.implementation == "opencv-cuda":
        ok = cuda_warp_available() if cuda_warp is None else cuda_warp
        if not ok:
            raise ConfigError(
                f"--warped with {choice.algo} on OpenCV CUDA needs cv2.cuda.warpPerspective "
                f"(opencv_contrib's cudawarping module), which this OpenCV lacks; rebuild OpenCV "
                f"with cudawarping, or use --device cpu")


class WarpStage:
    """Estimates each pair's homography and computes the warped flow with a backend.

    Keeps the keypoints of the frames it last saw (by identity), so frame t+step of
    one pair is not described again as frame t of the next; every pair still matches
    its own two frames.

    Args:
        settings: WarpSettings.
        cuda: warp on the current CUDA device (cv2.cuda) instead of the CPU; chosen by
            :meth:`for_backend` for the OpenCV CUDA backends.
    """

    def __init__(self, settings: WarpSettings = WarpSettings(), cuda: bool = False) -> None:
        self.settings = settings.validate()
        self.cuda = bool(cuda)
        self._detector, self._norm = make_detector(settings.features, settings.max_features)
        self._cache: List[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]] = []
        self._gpu = None
        self.estimates: List[HomographyEstimate] = []
        #: seconds spent: "homography", "warp", "flow" (the second flow)
        self.timings: Dict[str, float] = {"homography": 0.0, "warp": 0.0, "flow": 0.0}

    @classmethod
    def for_backend(cls, warped: Any, backend) -> "WarpStage":
        """The stage for ExtractOptions.warped (True or settings) and a flow backend."""
        return cls(settings_from(warped), cuda=backend.implementation == "opencv-cuda")

    def _features(self, grey: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        for frame, pts, desc in self._cache:
            if frame is grey:
                return pts, desc
        pts, desc = detect_features(grey, self._detector)
        self._cache.append((grey, pts, desc))
        del self._cache[:-16]  # frame t+step comes back as frame t of a later pair
        return pts, desc

    def estimate(self, prev: np.ndarray, nxt: np.ndarray, flow: np.ndarray) -> HomographyEstimate:
        """The homography of one pair from its forward flow and feature matches.

        Args:
            prev, nxt: uint8 (H, W), frames t and t+step.
            flow: float32 (H, W, 2), the flow from prev to nxt, pixels.
        """
        s = self.settings
        h, w = prev.shape[:2]
        src_c, dst_c = flow_correspondences(prev, flow, s)
        p0, d0 = self._features(prev)
        p1, d1 = self._features(nxt)
        window = s.match_window * float(np.hypot(h, w))
        src_m, dst_m = match_features(p0, d0, p1, d1, window, s.match_ratio,
                                      self._norm or cv2.NORM_L2)
        src = np.concatenate([src_c, src_m])
        dst = np.concatenate([dst_c, dst_m])
        est = estimate_homography(src, dst, h, w, s.ransac_threshold, s.min_points, s.min_inliers)
        est.corners, est.matches = len(src_c), len(src_m)
        return est

    def warp(self, src: np.ndarray, H: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """out(p) = src(H p), bilinear; ``fill`` where H p is outside (CPU or CUDA)."""
        if self.cuda:
            if self._gpu is None:
                self._gpu = cv2.cuda_GpuMat()
            return warp_onto_cuda(src, H, fill, self._gpu)
        return warp_onto(src, H, fill)

    def process(self, backend, pairs: Sequence[Tuple[np.ndarray, np.ndarray]], flows: np.ndarray,
                backward: bool, add: Callable[..., None]) -> None:
        """Warped flow of a batch of pairs, handed to ``add`` as the plain flow is.

        Args:
            backend: the FlowBackend that computed ``flows`` (computes the warped flow too).
            pairs: k pairs (frame t, frame t+step), uint8 (H, W) each.
            flows: float32 (k or 2k, H, W, 2): the forward flows of ``pairs`` first
                (then the backward ones, unused here).
            backward: also the backward warped flow (frame t+step -> frame t warped by H^-1).
            add: called as add(flow, backward=b, warped=True) for each pair, forward then
                backward (the sink's signature).
        """
        k = len(pairs)
        t0 = time.perf_counter()
        ests = [self.estimate(a, b, flows[j]) for j, (a, b) in enumerate(pairs)]
        t1 = time.perf_counter()
        todo = [(a, self.warp(b, e.H, a)) for (a, b), e in zip(pairs, ests)]
        if backward:
            # the identity of a fallback stays exactly the identity (no warp at all)
            todo += [(b, self.warp(a, e.H if e.fallback else np.linalg.inv(e.H), b))
                     for (a, b), e in zip(pairs, ests)]
        t2 = time.perf_counter()
        wflows = backend.compute_batch(todo)
        t3 = time.perf_counter()
        self.timings["homography"] += t1 - t0
        self.timings["warp"] += t2 - t1
        self.timings["flow"] += t3 - t2
        self.estimates.extend(ests)
        for j in range(k):
            add(wflows[j], backward=False, warped=True)
            if backward:
                add(wflows[k + j], backward=True, warped=True)

    def meta(self) -> Dict[str, Any]:
        """Per-video metadata of the warp: settings, and per flow the homography (3x3
        float64 as nested lists), its correspondences, inliers and fallback flag."""
        return {
            "warped": self.settings.describe(),
            "homographies": [e.H.tolist() for e in self.estimates],
            "homography_inliers": [int(e.inliers) for e in self.estimates],
            "homography_points": [[int(e.corners), int(e.matches)] for e in self.estimates],
            "homography_fallback": [bool(e.fallback) for e in self.estimates],
            "homography_fallback_reason": [e.fallback for e in self.estimates],
            "warp_backend": "opencv-cuda" if self.cuda else "opencv-cpu",
        }
