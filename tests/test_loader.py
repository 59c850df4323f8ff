"""TwoStreamDataset against hand-built stores with known flow and frame values.

Every store here is written with the store writers (JPEG store, HDF5 store with
JPEG payload, HDF5 store with raw payload), so the same tests run on each
format. Flow planes are constants or ramps in q; expected values come from
the store's own API (video.flow / video.rgb), which decodes the same bytes.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from flowprep import quantize as qz
from flowprep.errors import ConfigError
from flowprep.loader import TwoStreamDataset, segment_offsets
from flowprep.store import open_store, open_writer
from flowprep.store.base import STORE_VERSION, config_key, write_store_file

try:  # the HDF5 store arrived with issue 3; keep the suite usable without it
    from flowprep.store import hdf5 as _hdf5  # noqa: F401
    HAVE_HDF5 = True
except ImportError:  # pragma: no cover
    HAVE_HDF5 = False

FORMATS = [
    "jpeg",
    pytest.param("hdf5", marks=pytest.mark.skipif(not HAVE_HDF5, reason="flowprep.store.hdf5 missing")),
    pytest.param("hdf5-raw", marks=pytest.mark.skipif(not HAVE_HDF5, reason="flowprep.store.hdf5 missing")),
    "wds",
]


# --------------------------------------------------------------------------------------
# hand-built stores


def frame_value(t: int) -> int:
    """Grey level of RGB frame t (decodes exactly through JPEG: flat grey)."""
    return 5 + 10 * (t % 25)


def fwd_q(i: int):
    """Constant quantized (qx, qy) of forward flow i."""
    return 100 + 3 * i, 160 - 2 * i


def bwd_q(i: int):
    return 60 + 2 * i, 200 - 3 * i


def ramp(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 (h, w) smooth, asymmetric pattern (so flips and crops are visible)."""
    y, x = np.mgrid[0:h, 0:w]
    return (40 + (x * 1.7 + y * 0.6 + 13 * seed) % 150).astype(np.uint8)


def make_video(n_frames: int, h: int = 48, w: int = 64, step: int = 1, backward: bool = False,
               pattern: str = "const", label: int = 0, quant: str = "fixed", trajectory=None):
    n_flows = n_frames - step
    frames, flows, bflows, ranges, branges = [], [], [], [], []
    for t in range(n_frames):
        v = frame_value(t)
        if pattern == "const":
            f = np.full((h, w, 3), v, np.uint8)
        else:
            f = np.stack([ramp(h, w, t), np.full((h, w), v, np.uint8), ramp(h, w, 7 - t)[::-1]], -1)
        frames.append(np.ascontiguousarray(f))
    for i in range(n_flows):
        for q_of, out, rout in ((fwd_q, flows, ranges), (bwd_q, bflows, branges)):
            qx, qy = q_of(i)
            if pattern == "const":
                q = np.stack([np.full((h, w), qx, np.uint8), np.full((h, w), qy, np.uint8)], -1)
            else:
                q = np.stack([ramp(h, w, qx), ramp(h, w, qy)[:, ::-1]], -1)
            if trajectory is not None:  # dx constant (exact, adaptive lo == hi), dy varies along x
                dxc = trajectory
                q = np.stack([np.zeros((h, w), np.uint8),
                              np.repeat(((np.arange(w) * 37 + 11 * i) % 256).astype(np.uint8)[None], h, 0)], -1)
                rout.append([[dxc, dxc], [-2.0 - i, 2.0 + i]])
            elif quant == "adaptive":
                rout.append([[-3.0 - i, 5.0 + i], [-1.0 - 0.5 * i, 2.0]])
            out.append(q)
    spec = {"frames": frames, "flows": flows, "bflows": bflows if backward else [],
            "label": label, "step": step, "backward": backward, "h": h, "w": w,
            "means": [[0.25 * i, -0.125 * i] for i in range(n_flows)],
            "bmeans": [[-0.5 * i, 0.75 + i] for i in range(n_flows)]}
    if quant == "adaptive" or trajectory is not None:
        spec["ranges"], spec["branges"] = ranges, branges
    return spec


def build_store(root, videos, fmt="jpeg", bound=20.0, classes=("A", "B")):
    """Write ``videos`` {video_id: make_video(...)} into a new store at ``root``; open it."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    base = "hdf5" if fmt.startswith("hdf5") else fmt
    opts = {"payload": "raw"} if fmt == "hdf5-raw" else {}
    adaptive = any("ranges" in s for s in videos.values())
    quant = {"scheme": "adaptive"} if adaptive else {"scheme": "fixed", "bound": float(bound)}
    any_spec = next(iter(videos.values()))
    config = {"algo": "hand", "quant": quant, "step": any_spec["step"],
              "backward": any(s["backward"] for s in videos.values()), "format": base}
    if base == "hdf5":
        config["payload"] = opts.get("payload", "jpeg")
    key = config_key(config)
    tmp = os.path.join(root, ".flowprep", "tmp", "test")
    with open_writer(base, root, tmp, "w0", **opts) as writer:
        for vid, s in videos.items():
            vw = writer.begin(vid)
            for f in s["frames"]:
                vw.add_rgb(f)
            for q in s["flows"]:
                vw.add_flow(q)
            for q in s["bflows"]:
                vw.add_flow(q, backward=True)
            n = len(s["frames"])
            meta = {"video_id": vid, "source": f"/videos/{vid}.mp4", "class_name": vid.split("/")[0],
                    "label": s["label"], "num_frames": n, "num_flows": len(s["flows"]), "fps": 25.0,
                    "width": s["w"], "height": s["h"], "src_width": s["w"], "src_height": s["h"],
                    "step": s["step"], "backward": s["backward"], "quant": quant, "config_key": key,
                    "flow": {"algo": "hand"}, "flowprep_version": "test",
                    "mean_flow": s["means"], "clipped_fraction": [0.0] * len(s["flows"])}
            if s["backward"]:
                meta["mean_flow_backward"] = s["bmeans"]
                meta["clipped_fraction_backward"] = [0.0] * len(s["flows"])
            if "ranges" in s:
                meta["ranges"] = s["ranges"]
                if s["backward"]:
                    meta["ranges_backward"] = s["branges"]
            vw.commit(meta)
    write_store_file(root, {"format": base, "store_version": STORE_VERSION, "config": config,
                            "config_key": key, "classes": list(classes)})
    return open_store(root)


def ref_flow(video, i, backward=False, box=None, flip=False, mean=False, warped=False):
    """Expected float (2, h, w) of (warped) flow i through crop ``box`` (x0, y0, w, h) and flip."""
    d = video.flow(int(i), backward, warped=warped).astype(np.float32)
    if mean:
        d = d - video.mean_flows(backward, warped)[int(i)]
    if box is not None:
        x0, y0, w, h = box
        d = d[y0:y0 + h, x0:x0 + w]
    if flip:
        d = d[:, ::-1].copy()
        d[..., 0] = -d[..., 0]
    return d.transpose(2, 0, 1)


def ref_rgb(video, t, box=None, flip=False):
    img = video.rgb(int(t))
    if box is not None:
        x0, y0, w, h = box
        img = img[y0:y0 + h, x0:x0 + w]
    if flip:
        img = img[:, ::-1]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


@pytest.fixture(params=FORMATS)
def fmt(request):
    return request.param


@pytest.fixture
def const_store(tmp_path, fmt):
    return build_store(tmp_path / "s", {"A/v0": make_video(14, label=0, backward=True),
                                        "B/v1": make_video(9, label=1, backward=True)}, fmt)


@pytest.fixture
def ramp_store(tmp_path, fmt):
    return build_store(tmp_path / "r", {"A/r0": make_video(12, pattern="ramp", backward=True),
                                        "A/r1": make_video(7, pattern="ramp", backward=True, label=1)},
                       fmt)


# --------------------------------------------------------------------------------------
# the hand-built stores decode as built


def test_store_round_trip(const_store):
    v = const_store["A/v0"]
    assert v.rgb(3)[0, 0, 0] == frame_value(3)
    q = v.flow_quantized(5)
    assert (q[..., 0] == fwd_q(5)[0]).all() and (q[..., 1] == fwd_q(5)[1]).all()
    qb = v.flow_quantized(5, backward=True)
    assert (qb[..., 0] == bwd_q(5)[0]).all()


# --------------------------------------------------------------------------------------
# sampling


def test_segment_offsets_train_inside_segments_and_val_centres():
    rng = np.random.default_rng(0)
    for _ in range(50):
        o = segment_offsets(30, 3, "train", rng)
        assert 0 <= o[0] < 10 <= o[1] < 20 <= o[2] < 30
    assert segment_offsets(30, 3, "val").tolist() == [5, 15, 25]
    assert segment_offsets(100, 25, "test").tolist() == list(range(2, 100, 4))
    assert segment_offsets(2, 4, "val").tolist() == [0, 0, 1, 1]
    assert np.all(segment_offsets(2, 5, "train", rng) <= 1)


def test_flow_channel_order_and_values(const_store):
    ds = TwoStreamDataset(const_store, ["A/v0"], modality="flow", length=4, mode="val",
                          crop_size=None)
    s = ds[0]
    v = const_store["A/v0"]
    # 13 flows, L=4: valid starts 0..9 (M = 10), one segment: centre 5
    assert s["tau"].tolist() == [5]
    assert s["flow_indices"].tolist() == [[5, 6, 7, 8]]
    assert not s["flow_backward"].any()
    assert s["flow"].shape == (1, 8, 48, 64) and s["flow"].dtype == np.float32
    for j in range(4):
        qx, qy = fwd_q(5 + j)
        np.testing.assert_array_equal(s["flow"][0, 2 * j], qz.dequantize_fixed(np.uint8(qx), 20.0))
        np.testing.assert_array_equal(s["flow"][0, 2 * j + 1], qz.dequantize_fixed(np.uint8(qy), 20.0))
        np.testing.assert_array_equal(s["flow"][0, 2 * j:2 * j + 2], ref_flow(v, 5 + j))
    assert s["label"] == 0 and s["video_id"] == "A/v0"
    assert s["crop_box"].tolist() == [[0, 0, 64, 48]] and s["flip"].tolist() == [False]


def test_uint8_output_is_stored_q(const_store):
    ds = TwoStreamDataset(const_store, ["A/v0"], length=3, mode="val", crop_size=32, dtype="uint8")
    s = ds[0]
    assert s["flow"].dtype == np.uint8 and s["flow"].shape == (1, 6, 32, 32)
    t = s["flow_indices"][0]
    for j in range(3):
        assert (s["flow"][0, 2 * j] == fwd_q(t[j])[0]).all()
        assert (s["flow"][0, 2 * j + 1] == fwd_q(t[j])[1]).all()
    assert s["flow_bound"] == np.float32(20.0)
    np.testing.assert_array_equal(s["flow_mean"][0], const_store["A/v0"].mean_flow[t])


def test_rgb_and_flow_share_tau_crop_and_flip(ramp_store):
    ds = TwoStreamDataset(ramp_store, ["A/r0"], modality="two-stream", length=3, num_segments=3,
                          mode="train", crop_size=40, crop="random", dtype="float32", seed=3)
    v = ramp_store["A/r0"]
    flips = set()
    for epoch in range(6):
        s = ds[(0, epoch)]
        assert s["rgb"].shape == (3, 3, 40, 40) and s["flow"].shape == (3, 6, 40, 40)
        box, fl = tuple(s["crop_box"][0]), bool(s["flip"][0])
        flips.add(fl)
        assert s["frame_indices"][:, 0].tolist() == s["tau"].tolist() == s["flow_indices"][:, 0].tolist()
        for k, tau in enumerate(s["tau"]):
            # rgb frame tau: the green channel codes the frame index (levels 10 apart)
            assert abs(s["rgb"][k, 1].mean() * 255 - frame_value(tau)) < 3
            np.testing.assert_array_equal(s["rgb"][k], ref_rgb(v, tau, box, fl).astype(np.float32) / 255)
            for j in range(3):
                np.testing.assert_array_equal(s["flow"][k, 2 * j:2 * j + 2],
                                              ref_flow(v, tau + j, box=box, flip=fl))
    assert flips == {True, False}


def test_train_segments_cover_the_video(const_store):
    ds = TwoStreamDataset(const_store, ["A/v0"], length=2, num_segments=3, crop_size=None, seed=1)
    # 13 flows, L=2: starts 0..11, segments [0,4) [4,8) [8,12)
    seen = np.array([ds[(0, e)]["tau"] for e in range(40)])
    assert (seen[:, 0] < 4).all() and ((4 <= seen[:, 1]) & (seen[:, 1] < 8)).all()
    assert ((8 <= seen[:, 2]) & (seen[:, 2] < 12)).all()
    assert len(set(seen[:, 1].tolist())) > 1


def test_step_is_taken_into_account(tmp_path, fmt):
    st = build_store(tmp_path / "st", {"A/s": make_video(12, step=2, backward=True)}, fmt)
    ds = TwoStreamDataset(st, modality="two-stream", length=3, mode="val", crop_size=None)
    s = ds[0]
    # 10 flows (frame i -> i+2); a window needs flows tau, tau+2, tau+4: starts 0..5, centre 3
    assert s["flow_indices"].tolist() == [[3, 5, 7]]
    assert s["tau"].tolist() == [3]
    assert s["rgb"][0, 0, 0, 0] == np.float32(frame_value(3)) / np.float32(255)
    np.testing.assert_array_equal(s["flow"][0, 4:6], ref_flow(st["A/s"], 7))
    bi = TwoStreamDataset(st, length=4, bidirectional=True, mode="val", crop_size=None)
    # needs tau - 2s >= 0 and tau + s <= 9: starts 4..7 (M = 10 - 3s = 4), centre offset 2
    s = bi[0]
    assert s["flow_indices"].tolist() == [[6, 8, 4, 2]]


def test_rgb_modality_and_test_snippets(const_store):
    ds = TwoStreamDataset(const_store, ["A/v0"], modality="rgb", mode="test", crop_size=16,
                          dtype="uint8", test_snippets=7)
    s = ds[0]
    assert s["rgb"].shape == (7, 3, 16, 16) and s["rgb"].dtype == np.uint8
    assert s["frame_indices"][:, 0].tolist() == [1, 3, 5, 7, 9, 11, 13]  # 14 frames, evenly spaced
    for k, t in enumerate(s["frame_indices"][:, 0]):
        assert (s["rgb"][k] == frame_value(t)).all()


def test_rgb_mean_std(const_store):
    ds = TwoStreamDataset(const_store, ["A/v0"], modality="rgb", mode="val", crop_size=8,
                          rgb_mean=(0.5, 0.25, 0.0), rgb_std=(0.5, 0.25, 2.0))
    s = ds[0]
    t = s["frame_indices"][0, 0]
    x = np.float32(frame_value(t)) / np.float32(255)
    np.testing.assert_allclose(s["rgb"][0, :, 0, 0], [(x - 0.5) / 0.5, (x - 0.25) / 0.25, x / 2], rtol=1e-6)


def test_rgbdiff(const_store):
    ds = TwoStreamDataset(const_store, ["A/v0"], modality="rgbdiff", length=5, mode="val",
                          crop_size=8)
    s = ds[0]
    assert s["rgbdiff"].shape == (1, 12, 8, 8)
    fi = s["frame_indices"][0]
    assert fi.tolist() == list(range(fi[0], fi[0] + 5))
    for j in range(4):
        d = (np.float32(frame_value(fi[j + 1])) - np.float32(frame_value(fi[j]))) / np.float32(255)
        np.testing.assert_allclose(s["rgbdiff"][0, 3 * j:3 * j + 3], d, atol=1e-6)
    u8 = TwoStreamDataset(const_store, ["A/v0"], modality="rgbdiff", length=5, mode="val",
                          crop_size=8, dtype="uint8")[0]
    assert u8["rgbdiff"].dtype == np.int16 and (u8["rgbdiff"] == 10).all()


# --------------------------------------------------------------------------------------
# values: mean subtraction, flips


def test_mean_subtraction_and_flip_negates_the_mean(ramp_store):
    v = ramp_store["A/r1"]  # 6 flows
    ds = TwoStreamDataset(ramp_store, ["A/r1"], length=6, crop_size=None, mean_subtract=True,
                          seed=0)
    seen = set()
    for e in range(8):
        s = ds[(0, e)]
        fl = bool(s["flip"][0])
        seen.add(fl)
        assert s["flow_indices"].tolist() == [[0, 1, 2, 3, 4, 5]]  # the only start
        for j in range(6):
            np.testing.assert_allclose(s["flow"][0, 2 * j:2 * j + 2],
                                       ref_flow(v, j, flip=fl, mean=True), atol=1e-5)
        m = v.mean_flow
        want = m.copy()
        if fl:
            want[:, 0] = -want[:, 0]
        np.testing.assert_array_equal(s["flow_mean"][0], want)
    assert seen == {True, False}


def test_flip_is_exact_in_float_and_uint8(ramp_store):
    v = ramp_store["A/r1"]
    f32 = TwoStreamDataset(ramp_store, ["A/r1"], length=6, crop_size=32, crop="random", seed=5)
    u8 = TwoStreamDataset(ramp_store, ["A/r1"], length=6, crop_size=32, crop="random", seed=5,
                          dtype="uint8")
    for e in range(8):
        a, b = f32[(0, e)], u8[(0, e)]
        assert a["crop_box"].tolist() == b["crop_box"].tolist() and a["flip"] == b["flip"]
        box, fl = tuple(a["crop_box"][0]), bool(a["flip"][0])
        for j in range(6):
            np.testing.assert_array_equal(a["flow"][0, 2 * j:2 * j + 2], ref_flow(v, j, box=box, flip=fl))
            q = v.flow_quantized(j)
            x0, y0, w, h = box
            q = q[y0:y0 + h, x0:x0 + w].transpose(2, 0, 1)
            if fl:
                q = q[:, :, ::-1].copy()
                q[0] = 255 - q[0]
            np.testing.assert_array_equal(b["flow"][0, 2 * j:2 * j + 2], q)
            # and uint8 dequantized is the float output (255 - q dequantizes to -d up to
            # float32 rounding; the float path negates bit-exactly)
            np.testing.assert_allclose(qz.dequantize_fixed(b["flow"][0, 2 * j:2 * j + 2], 20.0),
                                       a["flow"][0, 2 * j:2 * j + 2], atol=1e-5, rtol=0)


def test_flip_with_adaptive_ranges(tmp_path, fmt):
    st = build_store(tmp_path / "ad", {"A/a": make_video(5, pattern="ramp", quant="adaptive")}, fmt)
    v = st["A/a"]
    f32 = TwoStreamDataset(st, length=4, crop_size=None, seed=2)
    u8 = TwoStreamDataset(st, length=4, crop_size=None, seed=2, dtype="uint8")
    seen = set()
    for e in range(8):
        a, b = f32[(0, e)], u8[(0, e)]
        fl = bool(a["flip"][0])
        seen.add(fl)
        for j in range(4):
            np.testing.assert_array_equal(a["flow"][0, 2 * j:2 * j + 2], ref_flow(v, j, flip=fl))
            r = b["flow_ranges"][0, j]
            lo, hi = v.flow_ranges(j)[0]
            assert r[0].tolist() == ([-hi, -lo] if fl else [lo, hi])
            back = qz.dequantize_adaptive(b["flow"][0, 2 * j:2 * j + 2].transpose(1, 2, 0), r)
            np.testing.assert_allclose(back.transpose(2, 0, 1), a["flow"][0, 2 * j:2 * j + 2], atol=1e-5)
    assert seen == {True, False}


def test_ten_crop(tmp_path, fmt):
    st = build_store(tmp_path / "t", {"A/big": make_video(30, h=240, w=256, pattern="ramp")}, fmt)
    v = st["A/big"]
    ds = TwoStreamDataset(st, modality="two-stream", length=2, mode="test", test_crops=10,
                          crop_size=224)
    s = ds[0]
    assert s["flow"].shape == (250, 4, 224, 224) and s["rgb"].shape == (250, 3, 224, 224)
    assert s["crop_box"].tolist() == [[16, 8, 224, 224], [0, 0, 224, 224], [32, 0, 224, 224],
                                      [0, 16, 224, 224], [32, 16, 224, 224]] * 2
    assert s["flip"].tolist() == [False] * 5 + [True] * 5
    taus = s["tau"]
    assert len(taus) == 25 and taus[0] == 0 and taus[-1] == 27  # 28 starts, evenly spaced
    for view in (1, 4):
        for k in (0, 24):
            a, b = s["flow"][view * 25 + k], s["flow"][(view + 5) * 25 + k]
            np.testing.assert_array_equal(b[0::2], -a[0::2][:, :, ::-1])   # dx negated
            np.testing.assert_array_equal(b[1::2], a[1::2][:, :, ::-1])    # dy mirrored only
            np.testing.assert_array_equal(s["rgb"][(view + 5) * 25 + k], s["rgb"][view * 25 + k][:, :, ::-1])
            box = tuple(s["crop_box"][view])
            np.testing.assert_array_equal(a[0:2], ref_flow(v, taus[k], box=box))


def test_multiscale_crop_scales_displacements(const_store):
    v = const_store["A/v0"]
    ds = TwoStreamDataset(const_store, ["A/v0"], length=2, crop_size=32, crop="multiscale", seed=0)
    sizes = set()
    for e in range(30):
        s = ds[(0, e)]
        x0, y0, w, h = s["crop_box"][0]
        sizes.add((w, h))
        assert 0 <= x0 <= 64 - w and 0 <= y0 <= 48 - h
        sx, sy = s["flow_scale"][0]
        assert sx == np.float32(32 / w) and sy == np.float32(32 / h)
        sign = -1 if s["flip"][0] else 1
        t = s["flow_indices"][0, 0]
        d = v.flow(int(t))[0, 0]
        np.testing.assert_allclose(s["flow"][0, 0], sign * d[0] * sx, rtol=1e-5)
        np.testing.assert_allclose(s["flow"][0, 1], d[1] * sy, rtol=1e-5)
    # base 48: sides 48, 42, 36, 31 (31 -> 32, within 3 of crop_size), aspect jitter <= 1 step
    assert len(sizes) > 3 and all(w in (48, 42, 36, 32) and h in (48, 42, 36, 32) for w, h in sizes)
    u8 = TwoStreamDataset(const_store, ["A/v0"], length=2, crop_size=32, seed=0, dtype="uint8")[(0, 0)]
    t = u8["flow_indices"][0, 0]
    qx = fwd_q(t)[0]
    assert (u8["flow"][0, 0] == (255 - qx if u8["flip"][0] else qx)).all()  # values not rescaled


# --------------------------------------------------------------------------------------
# trajectory and bidirectional stacks


def test_trajectory_on_constant_translation(tmp_path, fmt):
    # dx = 3 px exactly everywhere, dy varies along x only: the trajectory of pixel (x, y)
    # visits x + 3k, so channel 2k+1 at (y, x) is the plain stack's at (y, x + 3k).
    st = build_store(tmp_path / "tr", {"A/t": make_video(6, h=20, w=40, trajectory=3.0)}, fmt)
    plain = TwoStreamDataset(st, length=5, mode="val", crop_size=None)[0]
    traj = TwoStreamDataset(st, length=5, mode="val", crop_size=None, stacking="trajectory")[0]
    assert (plain["flow"][0, 0::2] == 3.0).all() and (traj["flow"][0, 0::2] == 3.0).all()
    for k in range(5):
        w = 40 - 3 * k
        np.testing.assert_allclose(traj["flow"][0, 2 * k + 1][:, :w],
                                   plain["flow"][0, 2 * k + 1][:, 3 * k:], atol=1e-5)
    assert not np.allclose(traj["flow"][0, 3], plain["flow"][0, 3])
    # flipped trajectories are the mirrored ones, dx negated
    ds = TwoStreamDataset(st, length=5, crop_size=None, stacking="trajectory", seed=0)
    got = {bool(s["flip"][0]): s["flow"][0] for s in (ds[(0, e)] for e in range(8))}
    np.testing.assert_allclose(got[True][1::2], got[False][1::2][:, :, ::-1], atol=1e-6)
    np.testing.assert_allclose(got[True][0::2], -got[False][0::2][:, :, ::-1], atol=1e-6)
    np.testing.assert_allclose(got[False], traj["flow"][0], atol=1e-6)
    # uint8 trajectory: sampled q at the same points
    u8 = TwoStreamDataset(st, length=5, mode="val", crop_size=None, stacking="trajectory",
                          dtype="uint8")[0]
    np.testing.assert_array_equal(u8["flow"][0, 3][:, :37], TwoStreamDataset(
        st, length=5, mode="val", crop_size=None, dtype="uint8")[0]["flow"][0, 3][:, 3:])


def test_trajectory_equals_plain_for_constant_fields(const_store):
    kw = dict(length=4, num_segments=2, crop_size=24, crop="random", seed=4, mean_subtract=True)
    a = TwoStreamDataset(const_store, **kw)
    b = TwoStreamDataset(const_store, stacking="trajectory", **kw)
    for i in range(2):
        np.testing.assert_allclose(a[i]["flow"], b[i]["flow"], atol=1e-5)


def test_bidirectional_order(const_store):
    v = const_store["A/v0"]
    ds = TwoStreamDataset(const_store, ["A/v0"], length=6, bidirectional=True, mode="val",
                          crop_size=None, mean_subtract=True)
    s = ds[0]
    # 13 flows; tau in [3, 13 - 2) = 3..10 (M = 8), centre offset 4 -> tau 7
    assert s["tau"].tolist() == [7]
    assert s["flow_indices"].tolist() == [[7, 8, 9, 6, 5, 4]]
    assert s["flow_backward"].tolist() == [[False] * 3 + [True] * 3]
    for j, (i, b) in enumerate(zip(s["flow_indices"][0], s["flow_backward"][0])):
        qx, qy = (bwd_q if b else fwd_q)(i)
        m = (v.mean_flow_backward if b else v.mean_flow)[i]
        np.testing.assert_allclose(s["flow"][0, 2 * j], qz.dequantize_fixed(np.uint8(qx), 20.0) - m[0],
                                   atol=1e-6)
        np.testing.assert_allclose(s["flow"][0, 2 * j + 1], qz.dequantize_fixed(np.uint8(qy), 20.0) - m[1],
                                   atol=1e-6)
    np.testing.assert_array_equal(s["flow_mean"][0, 3], v.mean_flow_backward[6])


# --------------------------------------------------------------------------------------
# padding of short videos


def test_short_video_padding(const_store):
    # B/v1 has 8 flows, 9 frames
    rep = TwoStreamDataset(const_store, ["B/v1"], length=10, num_segments=3, crop_size=None, seed=0)
    s = rep[0]
    assert s["flow"].shape == (3, 20, 48, 64)
    assert s["flow_indices"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 7, 7]] * 3
    assert np.all(s["flow"][:, 16] == s["flow"][:, 18])
    loop = TwoStreamDataset(const_store, ["B/v1"], length=10, pad="loop", mode="val", crop_size=None)
    assert loop[0]["flow_indices"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 0, 1]]
    bi = TwoStreamDataset(const_store, ["B/v1"], length=12, bidirectional=True, mode="test",
                          crop_size=None, test_snippets=4)
    s = bi[0]
    # window needs 11 flows around tau; 8 stored: tau centred (6 + (8 - 11)//2 = 4)
    assert s["tau"].tolist() == [4] * 4
    assert s["flow_indices"][0].tolist() == [4, 5, 6, 7, 7, 7, 3, 2, 1, 0, 0, 0]
    d = TwoStreamDataset(const_store, ["B/v1"], modality="rgbdiff", length=12, mode="val", crop_size=8)
    assert d[0]["frame_indices"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]]


# --------------------------------------------------------------------------------------
# inputs and labels


def test_list_file_labels_and_mapping(const_store, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"B/v1 8 5\n{os.path.join(const_store.root, 'A/v0')} 13 7\n")
    ds = TwoStreamDataset(const_store, str(lst), length=2, mode="val", crop_size=8)
    assert ds.video_ids == ["B/v1", "A/v0"] and [ds[i]["label"] for i in range(2)] == [5, 7]
    ds = TwoStreamDataset(const_store.root, length=2, mode="val", crop_size=8)
    assert ds.video_ids == ["A/v0", "B/v1"] and [ds[i]["label"] for i in range(2)] == [0, 1]
    ds = TwoStreamDataset(const_store, ["B/v1"], {"B/v1": 42}, length=2, mode="val", crop_size=8)
    assert ds[0]["label"] == 42
    with pytest.raises(ConfigError, match="not in the store"):
        TwoStreamDataset(const_store, ["A/missing"])
    lst.write_text("A/nothere 3 1\n")
    with pytest.raises(ConfigError, match="line 1"):
        TwoStreamDataset(const_store, str(lst))


def test_bad_options(tmp_path, const_store):
    with pytest.raises(ConfigError, match="modality"):
        TwoStreamDataset(const_store, modality="depth")
    with pytest.raises(ConfigError, match="even length"):
        TwoStreamDataset(const_store, length=5, bidirectional=True)
    with pytest.raises(ConfigError, match="crop_size"):
        TwoStreamDataset(const_store, mode="test", test_crops=10, crop_size=None)
    with pytest.raises(ConfigError, match="mean_subtract"):
        TwoStreamDataset(const_store, dtype="uint8", mean_subtract=True)
    st = build_store(tmp_path / "nb", {"A/x": make_video(5)})
    with pytest.raises(ConfigError, match="--backward"):
        TwoStreamDataset(st, length=2, bidirectional=True)


# --------------------------------------------------------------------------------------
# seeding and torch DataLoader workers


@pytest.fixture
def many_store(tmp_path, fmt):
    vids = {f"A/m{i}": make_video(10 + i, pattern="ramp", label=i % 2) for i in range(6)}
    return build_store(tmp_path / "m", vids, fmt)


def _collect(ds, workers, ctx=None, epochs=(0,)):
    import torch
    out = []
    for e in epochs:
        ds.set_epoch(e)
        dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers,
                                         multiprocessing_context=ctx if workers else None)
        for b in dl:
            out.append({k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in b.items()})
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["video_id"] == y["video_id"]
        for k in ("flow", "crop_box", "flip", "tau", "label"):
            np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_dataloader_workers_match_single_process(many_store, ctx, fmt):
    pytest.importorskip("torch")
    ds = TwoStreamDataset(many_store, length=3, num_segments=2, crop_size=24, crop="random",
                          seed=11)
    ref = _collect(ds, 0, epochs=(0, 1))
    if ctx == "spawn":  # slow to start (a fresh interpreter imports torch): one epoch, two formats
        if fmt == "hdf5-raw":
            pytest.skip("spawn is covered by the jpeg and hdf5 stores; raw payload by fork")
        _same(ref[3:], _collect(ds, 2, ctx, epochs=(1,)))
    else:
        _same(ref, _collect(ds, 2, ctx, epochs=(0, 1)))
    boxes0 = np.concatenate([b["crop_box"] for b in ref[:3]])
    boxes1 = np.concatenate([b["crop_box"] for b in ref[3:]])
    assert len({tuple(b.ravel()) for b in boxes0}) > 2     # crops differ across samples
    assert not np.array_equal(boxes0, boxes1)               # and across epochs
    taus0 = np.concatenate([b["tau"] for b in ref[:3]])
    taus1 = np.concatenate([b["tau"] for b in ref[3:]])
    assert not np.array_equal(taus0, taus1)


def test_seed_determinism_and_epochs(many_store):
    a = TwoStreamDataset(many_store, length=3, crop_size=24, crop="random", seed=1)
    b = TwoStreamDataset(many_store, length=3, crop_size=24, crop="random", seed=1)
    c = TwoStreamDataset(many_store, length=3, crop_size=24, crop="random", seed=2)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i]["flow"], b[i]["flow"])
    assert any(a[i]["crop_box"].tolist() != c[i]["crop_box"].tolist() for i in range(len(a)))
    a.set_epoch(3)
    np.testing.assert_array_equal(a[2]["flow"], b[(2, 3)]["flow"])
    np.testing.assert_array_equal(a[2]["flow"], a[(2, 3)]["flow"])
    # a dataset made with seed=None draws its seed once; pickled copies keep it
    import pickle
    d = TwoStreamDataset(many_store, length=3, crop_size=24, crop="random")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(d))[1]["flow"], d[1]["flow"])


def test_uint8_finished_on_the_gpu_side_equals_float_output(ramp_store):
    # the recipe of docs/loader.md: dequantize, subtract flow_mean, multiply by flow_scale
    L = 4
    kw = dict(length=L, num_segments=2, crop_size=24, crop="multiscale", seed=9)
    f = TwoStreamDataset(ramp_store, mean_subtract=True, **kw)
    u = TwoStreamDataset(ramp_store, dtype="uint8", **kw)
    for e in range(6):
        a, b = f[(0, e)], u[(0, e)]
        d = qz.dequantize_fixed(b["flow"], float(b["flow_bound"]))
        d = d - b["flow_mean"].reshape(-1, 2 * L)[:, :, None, None]
        d = d * np.tile(b["flow_scale"], (1, L))[:, :, None, None]
        np.testing.assert_allclose(d, a["flow"], atol=2e-5, rtol=0)


# --------------------------------------------------------------------------------------
# the fast plain-stack path against an independent reference (issue 4's speed work)


def _resized_q(video, i, box, size, flip, backward=False):
    """uint8 (2, S, S): stored q of flow i, cropped, resized bilinearly as uint8, mirrored."""
    import cv2
    x0, y0, w, h = box
    q = video.flow_quantized(int(i), backward)[y0:y0 + h, x0:x0 + w]
    out = []
    for c in range(2):
        p = np.ascontiguousarray(q[..., c])
        if (h, w) != (size, size):
            p = cv2.resize(p, (size, size), interpolation=cv2.INTER_LINEAR)
        out.append(p[:, ::-1] if flip else p)
    return np.stack(out)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_multiscale_resized_and_flipped_stacks_match_a_reference(ramp_store, bidirectional):
    # multiscale crops of 48x64 frames to 40: sides 48, 42 (-> 40, no resize), 36, 31, so
    # resized and unresized planes, flipped and unflipped views, K = 2 rows and both dtypes
    v = ramp_store["A/r0"]
    kw = dict(length=4, num_segments=2, crop_size=40, crop="multiscale", seed=11,
              bidirectional=bidirectional)
    f32 = TwoStreamDataset(ramp_store, ["A/r0"], mean_subtract=True, **kw)
    u8 = TwoStreamDataset(ramp_store, ["A/r0"], dtype="uint8", **kw)
    seen = set()
    for e in range(16):
        a, b = f32[(0, e)], u8[(0, e)]
        box, fl = tuple(int(x) for x in a["crop_box"][0]), bool(a["flip"][0])
        sx, sy = (float(s) for s in a["flow_scale"][0])
        seen.add((box[2:] != (40, 40), fl))
        assert a["flow"].shape == (2, 8, 40, 40) and b["flow"].shape == (2, 8, 40, 40)
        for k in range(2):
            for j in range(4):
                i, bk = a["flow_indices"][k, j], bool(a["flow_backward"][k, j])
                q = _resized_q(v, i, box, 40, fl, bk)
                want_u8 = q.copy()
                if fl:
                    want_u8[0] = 255 - want_u8[0]
                np.testing.assert_array_equal(b["flow"][k, 2 * j:2 * j + 2], want_u8)
                mean = (v.mean_flow_backward if bk else v.mean_flow)[int(i)].astype(np.float64)
                d = qz.dequantize_fixed(q, 20.0).astype(np.float64) - mean[:, None, None]
                d *= np.array([-sx if fl else sx, sy])[:, None, None]
                np.testing.assert_allclose(a["flow"][k, 2 * j:2 * j + 2], d, rtol=0, atol=1e-5)
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_ten_crop_uint8_flipped_views_mirror_the_plain_ones(tmp_path, fmt):
    st = build_store(tmp_path / "t8", {"A/big": make_video(8, h=60, w=80, pattern="ramp")}, fmt)
    s = TwoStreamDataset(st, length=3, mode="test", test_crops=10, test_snippets=3, crop_size=48,
                         dtype="uint8")[0]
    f = s["flow"]
    assert f.shape == (30, 6, 48, 48)
    for view in range(5):
        for k in range(3):
            a, b = f[view * 3 + k], f[(view + 5) * 3 + k]
            np.testing.assert_array_equal(b[0::2], 255 - a[0::2][:, :, ::-1])
            np.testing.assert_array_equal(b[1::2], a[1::2][:, :, ::-1])


def test_jpeg_reads_return_whole_files_larger_than_one_read(tmp_path, fmt):
    # a noisy RGB frame encodes to well over 64 KiB: read in more than one os.read
    spec = make_video(3, h=320, w=400)
    spec["frames"][1] = np.random.default_rng(0).integers(0, 256, (320, 400, 3), dtype=np.uint8)
    st = build_store(tmp_path / "big", {"A/n": spec}, fmt)
    v = st["A/n"]
    data = v.rgb_bytes(1)
    assert len(data) > 65536
    if fmt == "jpeg":
        with open(os.path.join(st.root, "A", "n", "img_00002.jpg"), "rb") as fh:
            assert data == fh.read()
    s = TwoStreamDataset(st, modality="rgb", mode="test", test_snippets=3, crop_size=None,
                         dtype="uint8")[0]
    assert s["frame_indices"].tolist() == [[0], [1], [2]]
    np.testing.assert_array_equal(s["rgb"][1], v.rgb(1).transpose(2, 0, 1))
