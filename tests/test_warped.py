"""TSN's warped flow (--warped): the camera homography removed, done right.

Synthetic scenes are written losslessly (FFV1) with a known camera motion per
frame: a rich texture seen by a camera that turns 0.8 degrees, zooms in 1 % and
pans (1.5, -1) texture pixels per frame (``synth.camera_frames``), and a square
object that moves (3, 2) px per frame on its own. The true homography H_t maps
pixel (x, y, 1) of frame t to frame t+1; on the object the warped flow must be
H_t^-1(p + v) - p, on the background ~0.

Most tests use DIS (fast on the CPU); one uses TV-L1 on a tiny frame.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.errors import ConfigError, StoreError
from flowprep.run.extract import ExtractOptions, prepare
from flowprep.flow import make_backend, merge_params, resolve
from flowprep.flow import warp as wp
from flowprep.verify import verify_store
from synth import camera_frames, texture, translated_frames, write_video

H, W, N = 144, 192, 6
OBJ_STEP = (3, 2)
FLOWPREP = os.path.join(os.path.dirname(sys.executable), "flowprep")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTS = dict(algo="dis", short_side=0, jobs=1)


def corners_of(h, w):
    return np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64).T


def apply(Hm, pts):
    """float64 (3, 3) applied to (3, N) homogeneous columns -> (2, N) pixels."""
    q = Hm @ pts
    return q[:2] / q[2]


def corner_error(Ha, Hb, h=H, w=W):
    c = corners_of(h, w)
    return float(np.abs(apply(Ha, c) - apply(Hb, c)).max())


def angle_deg(Hm):
    return float(np.degrees(np.arctan2(Hm[1, 0] - Hm[0, 1], Hm[0, 0] + Hm[1, 1])))


def grey(frames):
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]


@pytest.fixture(scope="module")
def scene():
    return camera_frames(N, H, W, obj_step=OBJ_STEP)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory, scene):
    d = tmp_path_factory.mktemp("camera")
    frames, _, _ = scene
    os.makedirs(d / "Cam")
    write_video(str(d / "Cam" / "pan.mkv"), frames)
    return str(d)


_stores: dict = {}


def warped_store(scene_dir, tmp_path_factory, fmt, **opts):
    key = (fmt, tuple(sorted(opts.items())))
    if key not in _stores:
        out = str(tmp_path_factory.mktemp(f"warped-{fmt}"))
        options = dict(OPTS, format=fmt, warped=True)
        options.update(opts)
        report = flowprep.extract([scene_dir], out, **options)
        assert report.published == ["Cam/pan"], report.failed
        _stores[key] = out
    return _stores[key]


def background_mask(box, h=H, w=W, margin=8, border=10):
    """bool (h, w): away from the object (whose flow also spreads a few px) and the borders."""
    m = np.ones((h, w), bool)
    x0, y0, s = box
    m[max(0, y0 - margin): y0 + s + margin + 4, max(0, x0 - margin): x0 + s + margin + 4] = False
    m[:border], m[-border:], m[:, :border], m[:, -border:] = False, False, False, False
    return m


# --------------------------------------------------------------------------------------
# pure functions: TSN's three bugs are not repeated


def test_flow_is_sampled_at_x_y_with_both_components():
    """dy depends on x here: reading it at row y, column y (TSN's f_y[y]) gives other values."""
    ys, xs = np.mgrid[0:40, 0:60].astype(np.float32)
    flow = np.stack([0.1 * xs + 0.02 * ys, 0.2 * xs - 0.05 * ys], axis=-1)
    pts = np.array([[10.25, 5.5], [47.75, 30.0], [3.0, 38.5]], np.float32)
    got = wp.sample_flow(flow, pts)
    want = np.stack([0.1 * pts[:, 0] + 0.02 * pts[:, 1], 0.2 * pts[:, 0] - 0.05 * pts[:, 1]], 1)
    np.testing.assert_allclose(got, want, atol=2e-3)  # bilinear of a linear field is exact
    tsn = flow[pts[:, 1].astype(int), pts[:, 1].astype(int), 1]  # f_y[y] at column y
    assert np.abs(tsn - want[:, 1]).max() > 1.0


def test_rotation_is_recovered_from_the_flow_at_corners():
    """A pure rotation (2 degrees about the centre): H from flow corners alone has its angle;
    TSN's reading of dy (row y, column y) loses it."""
    h, w = 120, 160
    img = np.clip(texture(h, w, 3, 1.5), 0, 255).astype(np.uint8)
    a = np.deg2rad(2.0)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    R = np.array([[np.cos(a), -np.sin(a), cx - np.cos(a) * cx + np.sin(a) * cy],
                  [np.sin(a), np.cos(a), cy - np.sin(a) * cx - np.cos(a) * cy], [0, 0, 1]])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    q = apply(R, np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]))
    flow = np.stack([q[0] - xs.ravel(), q[1] - ys.ravel()], 1).reshape(h, w, 2).astype(np.float32)
    s = wp.WarpSettings(features="none")
    src, dst = wp.flow_correspondences(img, flow, s)
    est = wp.estimate_homography(src, dst, h, w)
    assert not est.fallback and est.inliers > 100
    assert angle_deg(est.H) == pytest.approx(2.0, abs=0.01)
    assert corner_error(est.H, R, h, w) < 0.05
    # the bug: dy read at (row y, column y)
    yi = np.clip(np.rint(src[:, 1]).astype(int), 0, w - 1)
    xi = np.clip(np.rint(src[:, 0]).astype(int), 0, w - 1)
    bug_dst = np.stack([src[:, 0] + flow[yi, xi, 0], src[:, 1] + flow[yi, np.minimum(yi, w - 1), 1]], 1)
    bug = wp.estimate_homography(src, bug_dst.astype(np.float32), h, w, min_inliers=4)
    assert bug.fallback or abs(angle_deg(bug.H) - 2.0) > 0.3 or corner_error(bug.H, R, h, w) > 2


def test_corners_are_taken_on_frame_t():
    """Only frame t (the flow's start) has texture: corners come from it, not from t+step."""
    prev = np.full((80, 100), 128, np.uint8)
    prev[:, :50] = np.clip(texture(80, 50, 1, 1.5), 0, 255).astype(np.uint8)
    nxt = np.full((80, 100), 128, np.uint8)
    flow = np.zeros((80, 100, 2), np.float32)
    src, dst = wp.flow_correspondences(prev, flow, wp.WarpSettings())
    assert len(src) > 100 and src[:, 0].max() < 52
    assert len(wp.flow_correspondences(nxt, flow, wp.WarpSettings())[0]) == 0


def test_keypoints_are_detected_on_both_frames_of_every_pair(scene):
    """Feature matches alone (no flow corners) give each pair's own homography, not the
    motion since frame 0 (TSN matched every frame against frame 0's keypoints)."""
    frames, homs, _ = scene
    g = grey(frames)
    stage = wp.WarpStage(wp.WarpSettings(max_corners=0))
    zero = np.zeros((H, W, 2), np.float32)  # no flow corners: max_corners=0
    for t in (0, 3, 4):
        est = stage.estimate(g[t], g[t + 1], zero)
        assert est.corners == 0 and est.matches > 100 and not est.fallback
        assert corner_error(est.H, homs[t]) < 0.5
    since_0 = homs[3] @ homs[2] @ homs[1] @ homs[0]
    assert corner_error(since_0, homs[3]) > 5  # the bug's answer would be far off


def test_matches_stay_within_the_window():
    frames = translated_frames(2, 96, 128, 12.0, 0.0, seed=5, sigma=1.5)
    a, b = grey(frames)
    det, norm = wp.make_detector("sift", 500)
    p0, d0 = wp.detect_features(a, det)
    p1, d1 = wp.detect_features(b, det)
    src, dst = wp.match_features(p0, d0, p1, d1, window=20.0, norm=norm)
    assert len(src) > 30
    assert np.all(np.abs(dst - src) <= 20.0)
    assert np.median(dst[:, 0] - src[:, 0]) == pytest.approx(12.0, abs=0.3)
    # a 6 px window cannot reach the true match 12 px away: what it keeps is within 6 px
    src6, dst6 = wp.match_features(p0, d0, p1, d1, window=6.0, norm=norm)
    assert len(src6) < len(src) / 4
    assert np.all(np.abs(dst6 - src6) <= 6.0)


def test_orb_features_work_too(scene):
    frames, homs, _ = scene
    g = grey(frames)
    alone = wp.WarpStage(wp.WarpSettings(features="orb", max_corners=0))
    est = alone.estimate(g[1], g[2], np.zeros((H, W, 2), np.float32))
    assert not est.fallback and est.matches > 100
    assert corner_error(est.H, homs[1]) < 3.0  # ORB keypoints are coarse (pyramid positions)
    flow = make_backend(resolve("dis", "cpu"), merge_params("dis")).compute(g[1], g[2])
    both = wp.WarpStage(wp.WarpSettings(features="orb")).estimate(g[1], g[2], flow)
    assert both.corners > 500 and corner_error(both.H, homs[1]) < 0.5


def test_warp_samples_frame_t_plus_step_at_H_p_and_fills_from_frame_t():
    h, w = 60, 80
    src = np.clip(texture(h, w, 2, 1.5), 0, 255).astype(np.uint8)
    fill = np.full((h, w), 7, np.uint8)
    Hm = np.array([[1, 0, 3.5], [0, 1, -2.25], [0, 0, 1]], np.float64)
    out = wp.warp_onto(src, Hm, fill)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ref = cv2.remap(src, xs + 3.5, ys - 2.25, cv2.INTER_LINEAR)
    inside = wp.inside_mask(Hm, h, w)
    assert inside[10:50, 5:70].all() and not inside[:, w - 3:].any() and not inside[:2].any()
    assert np.abs(out[inside].astype(int) - ref[inside].astype(int)).max() <= 1
    assert np.all(out[~inside] == 7)
    assert wp.warp_onto(src, np.eye(3), fill) is src  # identity: the frame itself


def test_fallback_rules():
    rng = np.random.default_rng(0)
    few = rng.random((30, 2)).astype(np.float32) * 100
    e = wp.estimate_homography(few, few + 1, 100, 100)
    assert e.fallback.startswith("30 correspondences") and np.array_equal(e.H, np.eye(3))
    noise = rng.random((200, 2)).astype(np.float32) * 100
    e = wp.estimate_homography(noise, rng.random((200, 2)).astype(np.float32) * 100, 100, 100)
    assert e.fallback and np.array_equal(e.H, np.eye(3))  # random points: no consensus
    good = wp.estimate_homography(noise, noise + np.float32([2, -1]), 100, 100)
    assert not good.fallback and good.inliers == 200
    np.testing.assert_allclose(good.H, [[1, 0, 2], [0, 1, -1], [0, 0, 1]], atol=1e-6)
    assert not wp.homography_is_plausible(np.diag([3.0, 3.0, 1.0]), 100, 100)
    assert not wp.homography_is_plausible(np.array([[1, 0, 0], [0, 1, 0], [-0.02, 0, 1.0]]), 100, 100)


def test_settings_are_validated_and_recorded():
    assert wp.settings_from(True) == wp.WarpSettings()
    assert wp.settings_from({"features": "orb"}).features == "orb"
    with pytest.raises(ConfigError, match="unknown warp setting.*nope"):
        wp.settings_from({"nope": 1})
    with pytest.raises(ConfigError, match="features"):
        wp.settings_from({"features": "surf"})
    with pytest.raises(ConfigError, match="min_points"):
        wp.settings_from({"min_points": 2})
    d = wp.WarpSettings().describe()
    assert d["ransac_threshold"] == 1.0 and d["min_inliers"] == 25 and d["features"] == "sift"


# --------------------------------------------------------------------------------------
# the CUDA path, without a GPU


class _FakeGpuMat:
    def __init__(self, a=None):
        self.a = a

    def upload(self, a):
        self.a = np.array(a)

    def download(self):
        return self.a


def _fake_cuda(monkeypatch, calls):
    """cv2.cuda as a CUDA build has it, computed by the CPU functions with the same arguments."""
    def warp_perspective(src, M, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT):
        calls.append(("warpPerspective", np.array(M), tuple(dsize), flags, borderMode))
        return _FakeGpuMat(cv2.warpPerspective(src.a, M, dsize, flags=flags, borderMode=borderMode))

    class FakeFarneback:
        def __init__(self, args):
            self.args = args

        def calc(self, g0, g1, flow):
            calls.append(("calc",))
            n, pyr, _, win, it, poly_n, sigma, fl = self.args
            return _FakeGpuMat(cv2.calcOpticalFlowFarneback(g0.a, g1.a, None, pyr, n, win, it,
                                                            poly_n, sigma, fl))

    class Factory:
        @staticmethod
        def create(*args):
            return FakeFarneback(args)

    monkeypatch.setattr(cv2.cuda, "getCudaEnabledDeviceCount", lambda: 1)
    monkeypatch.setattr(cv2.cuda, "setDevice", lambda i: None, raising=False)
    monkeypatch.setattr(cv2.cuda, "FarnebackOpticalFlow", Factory, raising=False)
    monkeypatch.setattr(cv2.cuda, "warpPerspective", warp_perspective, raising=False)
    monkeypatch.setattr(cv2, "cuda_GpuMat", _FakeGpuMat, raising=False)


def test_cuda_warp_arguments_give_the_cpu_warp(monkeypatch, scene):
    calls = []
    _fake_cuda(monkeypatch, calls)
    frames, homs, _ = scene
    a, b = grey(frames[:2])
    M, dsize, kw = wp.cuda_warp_args(homs[0], H, W)
    assert dsize == (W, H) and kw["flags"] == cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    assert np.array_equal(M, homs[0])  # WARP_INVERSE_MAP: dst(p) = src(H p), H not inverted
    cuda = wp.warp_onto_cuda(b, homs[0], a)
    assert np.array_equal(cuda, wp.warp_onto(b, homs[0], a))
    assert calls and calls[0][0] == "warpPerspective"


def test_cuda_backend_selects_the_cuda_warp_and_runs_there(monkeypatch, scene):
    calls = []
    _fake_cuda(monkeypatch, calls)
    choice = resolve("farneback", "cuda", "opencv")
    assert choice.implementation == "opencv-cuda"
    wp.check_supported(choice)  # cv2.cuda.warpPerspective "exists"
    be = make_backend(choice, merge_params("farneback"), "cuda:0")
    stage = wp.WarpStage.for_backend(True, be)
    assert stage.cuda
    cpu_be = make_backend(resolve("farneback", "cpu"), merge_params("farneback"))
    assert not wp.WarpStage.for_backend(True, cpu_be).cuda
    frames, homs, _ = scene
    g = grey(frames[:3])
    pairs = [(g[0], g[1]), (g[1], g[2])]
    flows = be.compute_batch(pairs)
    got = []
    stage.process(be, pairs, flows, False, lambda f, backward, warped: got.append(f))
    assert len(got) == 2 and sum(c[0] == "warpPerspective" for c in calls) == 2
    assert corner_error(stage.estimates[0].H, homs[0]) < 0.5
    assert stage.meta()["warp_backend"] == "opencv-cuda"


def test_cuda_without_cudawarping_is_refused_before_the_run(tmp_path, scene_dir):
    assert not wp.cuda_warp_available()  # PyPI OpenCV
    choice = resolve("farneback", "cuda", "opencv", opencv_gpus=1)
    with pytest.raises(ConfigError, match="cudawarping"):
        prepare([scene_dir], str(tmp_path / "o"), ExtractOptions(algo="farneback", warped=True),
                choice)
    prepare([scene_dir], str(tmp_path / "o"), ExtractOptions(algo="farneback"), choice)
    assert not os.path.exists(tmp_path / "o")


# --------------------------------------------------------------------------------------
# extract --warped: the camera is removed


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5"])
def test_warped_flow_removes_the_camera(scene, scene_dir, tmp_path_factory, fmt):
    frames, homs, boxes = scene
    out = warped_store(scene_dir, tmp_path_factory, fmt)
    store = flowprep.open_store(out)
    v = store["Cam/pan"]
    assert v.has_warped and v.num_flows == N - 1
    assert store.config["warped"]["features"] == "sift"
    for t in range(N - 1):
        Ht = v.homography(t)
        assert Ht.dtype == np.float64 and Ht.shape == (3, 3)
        assert corner_error(Ht, homs[t]) < 0.5, t
        assert angle_deg(Ht) == pytest.approx(angle_deg(homs[t]), abs=0.05)  # rotation kept
        assert not v.homography_fallback(t)
        bg = background_mask(boxes[t])
        wf, pf = v.flow(t, warped=True), v.flow(t)
        assert wf.dtype == np.float32 and wf.shape == (H, W, 2)
        assert np.abs(np.median(wf[bg], axis=0)).max() < 0.2
        assert np.median(np.hypot(wf[bg][:, 0], wf[bg][:, 1])) < 0.25
        assert np.median(np.hypot(pf[bg][:, 0], pf[bg][:, 1])) > 1.0  # the camera was moving
        # on the object: H^-1 (p + v) - p
        x0, y0, s = boxes[t]
        ys, xs = np.mgrid[y0 + 6: y0 + s - 6, x0 + 6: x0 + s - 6]
        p = np.stack([xs.ravel() + OBJ_STEP[0], ys.ravel() + OBJ_STEP[1], np.ones(xs.size)])
        q = apply(np.linalg.inv(homs[t]), p)
        want = np.stack([q[0] - xs.ravel(), q[1] - ys.ravel()], 1)
        got = wf[ys.ravel(), xs.ravel()]
        assert np.median(np.abs(got - want)) < 0.4, t
    m = v.meta
    assert len(m["homographies"]) == len(m["homography_inliers"]) == N - 1
    assert min(m["homography_inliers"]) > 500
    assert v.mean_flow_warped.shape == (N - 1, 2) and v.mean_flow_warped.dtype == np.float32
    assert np.abs(v.mean_flow_warped).max() < np.abs(v.mean_flow).max()
    assert len(m["clipped_fraction_warped"]) == N - 1
    assert v.flow_quantized(0, warped=True).dtype == np.uint8
    x, y = v.flow_payload(0, warped=True)
    assert bytes(x)[:2] == b"\xff\xd8"
    assert verify_store(out) == []


def test_jpeg_layout_and_lists(scene_dir, tmp_path_factory):
    out = warped_store(scene_dir, tmp_path_factory, "jpeg")
    names = set(os.listdir(os.path.join(out, "Cam", "pan")))
    assert {f"wflow_{a}_{i:05d}.jpg" for a in "xy" for i in range(1, N)} <= names
    assert not any(n.startswith("bwflow") for n in names)
    with open(os.path.join(out, "wflow_list.txt")) as fh:
        assert fh.read() == f"Cam/pan {N - 1} 0\n"
    meta = json.load(open(os.path.join(out, "Cam", "pan", "meta.json")))
    assert isinstance(meta["homographies"][0][0], list) and len(meta["homographies"][0]) == 3


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5"])
def test_backward_warped_flow_and_adaptive_quantization(scene, scene_dir, tmp_path_factory, fmt):
    frames, homs, boxes = scene
    out = warped_store(scene_dir, tmp_path_factory, fmt, backward=True, quant="adaptive")
    v = flowprep.open_store(out)["Cam/pan"]
    for t in (0, 3):
        bg = background_mask(boxes[t + 1])
        bw = v.flow(t, backward=True, warped=True)
        assert np.abs(np.median(bw[bg], axis=0)).max() < 0.2
        b = v.flow(t, backward=True)
        assert np.median(np.hypot(b[bg][:, 0], b[bg][:, 1])) > 1.0
        assert v.flow_ranges(t, warped=True).shape == (2, 2)
        assert v.flow_ranges(t, backward=True, warped=True).shape == (2, 2)
    assert v.mean_flow_warped_backward.shape == (N - 1, 2)
    for key in ("ranges_warped", "ranges_warped_backward", "mean_flow_warped_backward"):
        assert len(v.meta[key]) == N - 1
    assert verify_store(out) == []


def test_textureless_frames_fall_back_to_the_identity(tmp_path):
    """No corners and no keypoints on a smooth image: identity, and the warped flow is the
    plain flow, byte for byte, in both stores."""
    d = tmp_path / "in"
    os.makedirs(d)
    write_video(str(d / "smooth.mkv"), translated_frames(4, 96, 128, 1.0, 0.5, seed=4, sigma=40))
    for fmt in ("jpeg", "hdf5"):
        out = str(tmp_path / fmt)
        rep = flowprep.extract([str(d)], out, format=fmt, warped=True, backward=True, **OPTS)
        assert rep.published == ["smooth"]
        v = flowprep.open_store(out)["smooth"]
        for t in range(v.num_flows):
            assert v.homography_fallback(t)
            assert np.array_equal(v.homography(t), np.eye(3))
            assert np.array_equal(v.flow_quantized(t, warped=True), v.flow_quantized(t))
            assert np.array_equal(v.flow_quantized(t, True, True), v.flow_quantized(t, True))
        assert v.meta["homography_fallback_reason"][0].startswith("0 correspondences")
        assert v.meta["homography_inliers"] == [0] * v.num_flows
        r = subprocess.run([FLOWPREP, "inspect", out], capture_output=True, text=True)
        assert r.returncode == 0 and f"{v.num_flows} with the identity homography" in r.stdout


def test_tvl1_on_a_tiny_frame(tmp_path):
    frames, homs, boxes = camera_frames(3, 64, 88, rot_deg=0.5, zoom=1.005, pan=(1.0, 0.5),
                                        obj=14, obj_start=(10, 16), obj_step=(2, 1), seed=7)
    os.makedirs(tmp_path / "in")
    write_video(str(tmp_path / "in" / "t.mkv"), frames)
    out = str(tmp_path / "o")
    rep = flowprep.extract([str(tmp_path / "in")], out, algo="tvl1", short_side=0, jobs=1,
                           warped=True)
    assert rep.published == ["t"]
    v = flowprep.open_store(out)["t"]
    assert v.meta["flow"]["algo"] == "tvl1"
    for t in range(2):
        assert corner_error(v.homography(t), homs[t], 64, 88) < 0.5
        bg = background_mask(boxes[t], 64, 88, margin=6, border=8)
        assert np.abs(np.median(v.flow(t, warped=True)[bg], axis=0)).max() < 0.2


def test_config_records_the_warp_and_resume_tells_them_apart(scene_dir, tmp_path):
    out = str(tmp_path / "s")
    plain = flowprep.extract([scene_dir], out, **OPTS)
    assert plain.published == ["Cam/pan"]
    store = flowprep.open_store(out)
    assert "warped" not in store.config and not store["Cam/pan"].has_warped
    with pytest.raises(StoreError, match="--warped"):
        store["Cam/pan"].flow(0, warped=True)
    with pytest.raises(StoreError, match="--warped"):
        store["Cam/pan"].homography(0)
    assert not os.path.exists(os.path.join(out, "wflow_list.txt"))
    plain_key = store.info["config_key"]
    again = flowprep.extract([scene_dir], out, warped=True, **OPTS)
    assert again.published == ["Cam/pan"] and again.skipped == []  # not mistaken for done
    store = flowprep.open_store(out)
    assert store.info["config_key"] != plain_key
    assert store.config["warped"]["min_inliers"] == 25 and store["Cam/pan"].has_warped
    assert flowprep.extract([scene_dir], out, warped=True, **OPTS).skipped == ["Cam/pan"]
    back = flowprep.extract([scene_dir], out, **OPTS)
    assert back.published == ["Cam/pan"]
    assert flowprep.open_store(out).info["config_key"] == plain_key
    assert verify_store(out) == []


def test_bad_warp_options_are_config_errors(scene_dir, tmp_path):
    with pytest.raises(ConfigError, match="warp setting"):
        flowprep.extract([scene_dir], str(tmp_path / "x"), warped={"bogus": 1}, **OPTS)
    assert not os.path.exists(tmp_path / "x")


def test_task_rgb_with_warped_is_refused(scene_dir, tmp_path):
    with pytest.raises(ConfigError, match="--task rgb"):
        ExtractOptions(warped=True, task="rgb").validate()
    ExtractOptions(warped=True, task="flow").validate()
    with pytest.raises(ConfigError, match="--task rgb"):
        flowprep.extract([scene_dir], str(tmp_path / "x"), warped=True, task="rgb", **OPTS)
    out = str(tmp_path / "cli")
    r = subprocess.run([FLOWPREP, "extract", scene_dir, "-o", out, "--algo", "dis", "--task",
                        "rgb", "--warped", "--jobs", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--task rgb" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(out)  # before the run


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5"])
def test_task_flow_with_warped_stores_both_flows_and_no_rgb(scene_dir, tmp_path_factory, fmt):
    out = warped_store(scene_dir, tmp_path_factory, fmt, task="flow")
    store = flowprep.open_store(out)
    v = store["Cam/pan"]
    assert store.config["task"] == "flow" and v.has_warped
    assert v.num_frames == N and v.num_flows == N - 1
    with pytest.raises(StoreError, match="--task flow"):
        v.rgb(0)
    both = flowprep.open_store(warped_store(scene_dir, tmp_path_factory, fmt))["Cam/pan"]
    for t in (0, N - 2):  # the same flows as a --task both store's
        assert np.array_equal(v.flow_quantized(t, warped=True),
                              both.flow_quantized(t, warped=True))
        assert np.array_equal(v.homography(t), both.homography(t))
    assert not os.path.exists(os.path.join(out, "rgb_list.txt"))
    for name in ("flow_list.txt", "wflow_list.txt"):
        with open(os.path.join(out, name)) as fh:
            assert fh.read() == f"Cam/pan {N - 1} 0\n", name
    if fmt == "jpeg":
        names = os.listdir(os.path.join(out, "Cam", "pan"))
        assert not any(n.startswith("img_") for n in names)
        assert sum(n.startswith("wflow_") for n in names) == 2 * (N - 1)
    assert verify_store(out) == []
    os.unlink(os.path.join(out, "wflow_list.txt"))
    assert any("wflow_list.txt missing" in str(p) for p in verify_store(out))
    from flowprep.store.lists import write_lists
    write_lists(out)
    assert verify_store(out) == []


# --------------------------------------------------------------------------------------
# a real clip through the command line; inspect, verify, convert, show


def test_real_clip_end_to_end_through_the_cli(tmp_path):
    # a hand-held camera (the Biking clips film a moving board from a fixed camera)
    clip = os.path.join(REPO, "data", "samples", "Talking", "v_Talking_g01_c01.mp4")
    out = str(tmp_path / "bikes")
    r = subprocess.run([FLOWPREP, "extract", clip, "-o", out, "--algo", "dis", "--short-side",
                        "128", "--warped", "--jobs", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    store = flowprep.open_store(out)
    (vid,) = store.video_ids
    v = store[vid]
    assert v.has_warped and v.num_flows == v.num_frames - 1
    kept = [t for t in range(v.num_flows) if not v.homography_fallback(t)]
    assert len(kept) >= v.num_flows * 0.8  # real footage has texture
    # the camera's share of the motion is gone: the warped flow's mean is far smaller
    mw = np.abs(v.mean_flow_warped[kept]).mean()
    mp = np.abs(v.mean_flow[kept]).mean()
    assert mw < 0.5 * mp, (mw, mp)

    r = subprocess.run([FLOWPREP, "inspect", out], capture_output=True, text=True)
    assert r.returncode == 0 and "warped (sift homography)" in r.stdout
    assert f"+ {v.num_flows} warped" in r.stdout
    r = subprocess.run([FLOWPREP, "inspect", out, "--json"], capture_output=True, text=True)
    d = json.loads(r.stdout)
    assert d["warped_flows"] == v.num_flows and d["config"]["warped"]["features"] == "sift"
    assert subprocess.run([FLOWPREP, "verify", out], capture_output=True).returncode == 0

    png = str(tmp_path / "w.png")
    r = subprocess.run([FLOWPREP, "show", out, vid, "--frame", "3", "--warped", "-o", png],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    img = cv2.imread(png)
    from flowprep.visualize import panel_size, GAP
    rows, cols = panel_size(v.height, v.width)
    assert img.shape[:2] == (rows, cols + v.width + GAP)  # the plain flow beside the warped one
    r = subprocess.run([FLOWPREP, "show", out, vid, "--warped", "-o", png],
                       capture_output=True, text=True)
    assert r.returncode == 0

    h5 = str(tmp_path / "bikes_h5")
    r = subprocess.run([FLOWPREP, "convert", out, h5, "--format", "hdf5"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    w = flowprep.open_store(h5)[vid]
    for t in (0, v.num_flows - 1):
        assert w.flow_payload(t, warped=True) == v.flow_payload(t, warped=True)
        assert np.array_equal(w.homography(t), v.homography(t))
    assert subprocess.run([FLOWPREP, "verify", h5], capture_output=True).returncode == 0
    with open(os.path.join(h5, "wflow_list.txt")) as fh:
        assert fh.read().split()[:2] == [vid, str(v.num_flows)]

    os.unlink(os.path.join(out, vid, "wflow_y_00002.jpg"))
    r = subprocess.run([FLOWPREP, "verify", out], capture_output=True, text=True)
    assert r.returncode == 1 and "warped flow 1 y" in r.stdout and "file missing" in r.stdout


def test_show_warped_on_a_plain_store_is_a_usage_error(scene_dir, tmp_path):
    out = str(tmp_path / "p")
    flowprep.extract([scene_dir], out, **OPTS)
    r = subprocess.run([FLOWPREP, "show", out, "Cam/pan", "--warped", "-o", str(tmp_path / "a.png")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "extract with --warped" in r.stderr


def test_verify_checks_the_homography_records(scene_dir, tmp_path_factory, tmp_path):
    import shutil
    src = warped_store(scene_dir, tmp_path_factory, "jpeg")
    out = str(tmp_path / "s")
    shutil.copytree(src, out)
    path = os.path.join(out, "Cam", "pan", "meta.json")
    meta = json.load(open(path))
    meta["homographies"] = meta["homographies"][:-1]
    meta["homographies"][1] = [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    del meta["mean_flow_warped"]
    json.dump(meta, open(path, "w"))
    msgs = [p.message for p in verify_store(out)]
    assert f"homographies has {N - 2} entries for {N - 1} flows" in msgs
    assert "homography 1 is singular" in msgs
    assert "metadata lacks mean_flow_warped" in msgs


def test_step_two_homography_spans_both_frames(scene, scene_dir, tmp_path_factory):
    """With --step 2 flow i (and its homography) goes from frame i to frame i+2."""
    frames, homs, boxes = scene
    out = warped_store(scene_dir, tmp_path_factory, "jpeg", step=2)
    v = flowprep.open_store(out)["Cam/pan"]
    assert v.num_flows == N - 2
    for t in range(N - 2):
        assert corner_error(v.homography(t), homs[t + 1] @ homs[t]) < 0.5
        bg = background_mask(boxes[t + 2], margin=12)
        bg &= background_mask(boxes[t], margin=12)
        assert np.abs(np.median(v.flow(t, warped=True)[bg], axis=0)).max() < 0.2


# --------------------------------------------------------------------------------------
# the loader: modality "warped-flow"


def warped_ref(video, i, backward=False, box=None, flip=False, mean=False):
    """Expected float32 (2, h, w) of warped flow i through crop ``box`` and flip."""
    from test_loader import ref_flow
    return ref_flow(video, i, backward, box, flip, mean, warped=True)


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5"])
def test_loader_warped_flow_stacks_are_the_stored_warped_planes(scene_dir, tmp_path_factory, fmt):
    from flowprep.loader import TwoStreamDataset
    out = warped_store(scene_dir, tmp_path_factory, fmt)
    kw = dict(length=4, num_segments=2, crop_size=48, crop="random", seed=5)
    ds = TwoStreamDataset(out, modality="warped-flow", **kw)
    plain = TwoStreamDataset(out, modality="flow", **kw)
    q8 = TwoStreamDataset(out, modality="warped-flow", dtype="uint8", **kw)
    v = flowprep.open_store(out)["Cam/pan"]
    flips = set()
    for epoch in range(6):
        s, p, u = ds[(0, epoch)], plain[(0, epoch)], q8[(0, epoch)]
        assert s["flow"].shape == (2, 8, 48, 48) and s["flow"].dtype == np.float32
        for k in ("tau", "crop_box", "flip", "flow_indices", "flow_backward"):
            np.testing.assert_array_equal(s[k], p[k])  # the same draws as modality "flow"
        box, fl = tuple(int(x) for x in s["crop_box"][0]), bool(s["flip"][0])
        assert box[2:] == (48, 48)  # no resize: the stored values exactly
        flips.add(fl)
        for k in range(2):
            for j, i in enumerate(s["flow_indices"][k]):
                np.testing.assert_array_equal(s["flow"][k, 2 * j:2 * j + 2],
                                              warped_ref(v, i, box=box, flip=fl))
                q = v.flow_quantized(int(i), warped=True)[box[1]:box[1] + 48, box[0]:box[0] + 48]
                q = q.transpose(2, 0, 1)
                if fl:  # a flip in uint8 space: mirrored, 255 - q for dx
                    q = q[:, :, ::-1].copy()
                    q[0] = 255 - q[0]
                np.testing.assert_array_equal(u["flow"][k, 2 * j:2 * j + 2], q)
        want_mean = v.mean_flow_warped[s["flow_indices"]]
        want_mean[..., 0] *= -1 if fl else 1
        np.testing.assert_array_equal(s["flow_mean"], want_mean)
        assert not np.allclose(s["flow"], p["flow"], atol=0.5)  # the camera's motion is gone
    assert flips == {False, True}  # both branches checked


def test_loader_warped_flow_clips_and_unit_scale(scene_dir, tmp_path_factory):
    from flowprep.loader import TwoStreamDataset, clip_to_stack, stack_to_clip
    out = warped_store(scene_dir, tmp_path_factory, "hdf5")
    v = flowprep.open_store(out)["Cam/pan"]
    for kw in (dict(crop_size=40, num_segments=2), dict(crop_size=None, flow_scale="unit"),
               dict(crop_size=48, mode="test", test_crops=10, test_snippets=2)):
        s = TwoStreamDataset(out, modality="warped-flow", layout="stack", length=4, seed=1, **kw)
        c = TwoStreamDataset(out, modality="warped-flow", layout="clip", length=4, seed=1, **kw)
        for item in ((0, 0), (0, 1)):
            a, b = s[item], c[item]
            assert b["flow"].shape[1:3] == (2, 4)
            np.testing.assert_array_equal(b["flow"], stack_to_clip(a["flow"]))
            np.testing.assert_array_equal(clip_to_stack(b["flow"]), a["flow"])
            np.testing.assert_array_equal(a["flow_indices"], b["flow_indices"])
    u = TwoStreamDataset(out, modality="warped-flow", layout="clip", length=4, crop_size=None,
                         flow_scale="unit", mode="val", seed=0)[0]
    bound = float(v.quant["bound"])
    for j, i in enumerate(u["flow_indices"][0]):
        q = v.flow_quantized(int(i), warped=True).transpose(2, 0, 1).astype(np.float32)
        np.testing.assert_array_equal(u["flow"][0, :, j], (2 * q - 255) / np.float32(255))
        np.testing.assert_allclose(u["flow"][0, :, j] * bound, warped_ref(v, i), atol=2e-5, rtol=0)
    assert np.abs(u["flow"]).max() <= 1.0


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5"])
def test_loader_bidirectional_mean_subtracted_warped_flow(scene_dir, tmp_path_factory, fmt):
    from flowprep.loader import TwoStreamDataset
    out = warped_store(scene_dir, tmp_path_factory, fmt, backward=True, quant="adaptive")
    v = flowprep.open_store(out)["Cam/pan"]
    ds = TwoStreamDataset(out, modality="warped-flow", length=4, bidirectional=True,
                          mean_subtract=True, crop_size=48, crop="random", seed=2)
    for epoch in range(3):
        s = ds[(0, epoch)]
        box, fl = tuple(int(x) for x in s["crop_box"][0]), bool(s["flip"][0])
        assert s["flow_backward"][0].tolist() == [False, False, True, True]
        for j, (i, b) in enumerate(zip(s["flow_indices"][0], s["flow_backward"][0])):
            # adaptive quantization: the warped flow's own per-flow ranges dequantize it
            np.testing.assert_allclose(s["flow"][0, 2 * j:2 * j + 2],
                                       warped_ref(v, i, bool(b), box, fl, mean=True),
                                       atol=1e-4, rtol=0)
            means = v.mean_flow_warped_backward if b else v.mean_flow_warped
            m = means[int(i)] * np.float32([-1 if fl else 1, 1])
            np.testing.assert_array_equal(s["flow_mean"][0, j], m)


def test_loader_refuses_warped_flow_it_cannot_serve(scene_dir, tmp_path_factory, tmp_path):
    from flowprep.loader import MODALITIES, TwoStreamDataset
    assert "warped-flow" in MODALITIES
    plain = str(tmp_path / "plain")
    flowprep.extract([scene_dir], plain, **OPTS)
    with pytest.raises(ConfigError, match="--warped") as e:
        TwoStreamDataset(plain, modality="warped-flow")
    assert plain in str(e.value)
    TwoStreamDataset(plain, modality="flow")  # the plain flow is there
    out = warped_store(scene_dir, tmp_path_factory, "jpeg")
    with pytest.raises(ConfigError, match="trajectory"):
        TwoStreamDataset(out, modality="warped-flow", stacking="trajectory")
    with pytest.raises(ConfigError, match="--backward --warped"):  # no backward warped flow
        TwoStreamDataset(out, modality="warped-flow", length=4, bidirectional=True)
    TwoStreamDataset(out, modality="flow", stacking="trajectory")  # the plain flow still can
