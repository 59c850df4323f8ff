"""layout="clip" (3D CNNs), flow_scale="unit", the --task check and the training example.

Real stores: tests/data/loader_ref/ (real clips, --algo dis; JPEG, HDF5, adaptive), and
hand-built stores of tests/test_loader.py whose q planes and frames are known exactly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

import make_loader_ref as ref
from flowprep.errors import ConfigError
from flowprep.loader import TwoStreamDataset, clip_to_stack, stack_to_clip
from test_loader import build_store, frame_value, make_video, ref_flow, ref_rgb

REF_STORES = ["jpeg", "hdf5"]
HERE = os.path.dirname(os.path.abspath(__file__))


def _pair(store, items, **kw):
    """The same samples in both layouts: [(stack sample, clip sample)]."""
    s = TwoStreamDataset(store, layout="stack", **kw)
    c = TwoStreamDataset(store, layout="clip", **kw)
    return [(s[it], c[it]) for it in items]


SAME_KEYS = ("tau", "crop_box", "flip", "flow_indices", "flow_backward", "flow_scale",
             "flow_mean", "label", "video_id")


# --------------------------------------------------------------------------------------
# clip == stack rearranged


@pytest.mark.parametrize("store", REF_STORES)
@pytest.mark.parametrize("kw", [
    dict(crop_size=40, num_segments=2),                                      # multiscale + flip
    dict(crop_size=48, crop="random", mean_subtract=True),
    dict(crop_size=40, dtype="uint8", num_segments=2),
    dict(crop_size=40, stacking="trajectory"),
    dict(crop_size=48, mode="test", test_crops=10, test_snippets=3),
    dict(crop_size=None, flow_scale="unit"),
], ids=["multiscale", "random-mean", "uint8", "trajectory", "tencrop", "unit-whole"])
def test_flow_clip_is_the_stack_rearranged(store, kw):
    items = [(i, e) for i in (0, 1) for e in range(4)]
    flips = set()
    for s, c in _pair(ref.store_path(store), items, modality="flow", length=5, seed=3, **kw):
        R, twoL, S1, S2 = s["flow"].shape
        assert c["flow"].shape == (R, 2, 5, S1, S2) and c["flow"].dtype == s["flow"].dtype
        assert c["flow"].flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(c["flow"], stack_to_clip(s["flow"]))
        np.testing.assert_array_equal(clip_to_stack(c["flow"]), s["flow"])
        for j in range(5):  # by hand: clip[:, c, j] is stack channel 2j + c
            np.testing.assert_array_equal(c["flow"][:, 0, j], s["flow"][:, 2 * j])
            np.testing.assert_array_equal(c["flow"][:, 1, j], s["flow"][:, 2 * j + 1])
        for k in SAME_KEYS:
            np.testing.assert_array_equal(np.asarray(c[k]), np.asarray(s[k]))
        flips.update(bool(f) for f in s["flip"])
        assert np.abs(s["flow"].astype(np.float32)).max() > 0
    assert flips == {True, False}


def test_two_stream_clips_share_tau_crop_and_flip(tmp_path):
    # ramp frames: the green channel codes the frame index; every clip frame is frame tau+j
    st = build_store(tmp_path / "r", {"A/r0": make_video(20, pattern="ramp", backward=True)})
    v = st["A/r0"]
    ds = TwoStreamDataset(st, modality="two-stream", layout="clip", length=6, num_segments=2,
                          crop_size=40, crop="random", seed=5)
    flips = set()
    for e in range(12):
        s = ds[(0, e)]
        assert s["rgb"].shape == (2, 3, 6, 40, 40) and s["flow"].shape == (2, 2, 6, 40, 40)
        box, fl = tuple(int(x) for x in s["crop_box"][0]), bool(s["flip"][0])
        flips.add(fl)
        np.testing.assert_array_equal(s["frame_indices"], s["tau"][:, None] + np.arange(6))
        np.testing.assert_array_equal(s["flow_indices"], s["tau"][:, None] + np.arange(6))
        for k, tau in enumerate(s["tau"]):
            for j in range(6):
                # RGB frame tau+j through the sample's one crop and flip
                np.testing.assert_array_equal(s["rgb"][k, :, j],
                                              ref_rgb(v, tau + j, box, fl).astype(np.float32) / 255)
                assert abs(s["rgb"][k, 1, j].mean() * 255 - frame_value(tau + j)) < 3
                # flow tau+j (frame tau+j -> tau+j+1) through the same crop and flip
                np.testing.assert_array_equal(s["flow"][k, :, j], ref_flow(v, tau + j, box=box, flip=fl))
        # the clip's first frame is the stack layout's RGB of the same sample
        st_s = TwoStreamDataset(st, modality="two-stream", length=6, num_segments=2,
                                crop_size=40, crop="random", seed=5)[(0, e)]
        np.testing.assert_array_equal(st_s["tau"], s["tau"])
        np.testing.assert_array_equal(st_s["rgb"], s["rgb"][:, :, 0])
        np.testing.assert_array_equal(stack_to_clip(st_s["flow"]), s["flow"])
    assert flips == {True, False}


@pytest.mark.parametrize("store", REF_STORES)
def test_rgb_clips_are_consecutive_frames_of_one_crop(store):
    root = ref.store_path(store)
    ds = TwoStreamDataset(root, modality="rgb", layout="clip", length=8, crop_size=40,
                          dtype="uint8", seed=1)
    assert ds.length == 8
    default = TwoStreamDataset(root, modality="rgb", layout="clip", crop_size=40)
    assert default.length == 16  # the clip layout's default L
    v = ds.video(ds.video_ids[0])
    for e in range(6):
        s = ds[(0, e)]
        (x0, y0, w, h), fl = s["crop_box"][0], bool(s["flip"][0])
        tau = int(s["tau"][0])
        assert 0 <= tau <= v.num_frames - 8
        assert s["frame_indices"].tolist() == [list(range(tau, tau + 8))]
        for j in range(8):
            img = v.rgb(tau + j)[y0:y0 + h, x0:x0 + w]
            if (h, w) != (40, 40):
                img = cv2.resize(img, (40, 40), interpolation=cv2.INTER_LINEAR)
            if fl:
                img = img[:, ::-1]
            np.testing.assert_array_equal(s["rgb"][0, :, j], img.transpose(2, 0, 1))


def test_frame_interval(tmp_path):
    st = build_store(tmp_path / "fi", {"A/v": make_video(30, backward=True)})
    ds = TwoStreamDataset(st, modality="two-stream", layout="clip", length=4, frame_interval=3,
                          mode="val", crop_size=None)
    s = ds[0]
    # 29 flows; flows tau + 3j need tau + 9 <= 28: starts 0..19 (M = 20), centre 10
    assert s["tau"].tolist() == [10]
    assert s["flow_indices"].tolist() == [[10, 13, 16, 19]]
    assert s["frame_indices"].tolist() == [[10, 13, 16, 19]]
    v = st["A/v"]
    for j, i in enumerate((10, 13, 16, 19)):
        np.testing.assert_array_equal(s["flow"][0, :, j], ref_flow(v, i))
        assert (s["rgb"][0, :, j] == np.float32(frame_value(i)) / np.float32(255)).all()
    # step 2 stores: flows chain (tau + j*f*step), RGB frames tau + j*f
    st2 = build_store(tmp_path / "s2", {"A/w": make_video(30, step=2)})
    s = TwoStreamDataset(st2, modality="two-stream", layout="clip", length=3, frame_interval=2,
                         mode="val", crop_size=None)[0]
    t = int(s["tau"][0])
    assert s["flow_indices"].tolist() == [[t, t + 4, t + 8]]
    assert s["frame_indices"].tolist() == [[t, t + 2, t + 4]]


def test_short_video_clips_are_padded(tmp_path):
    st = build_store(tmp_path / "sh", {"A/s": make_video(7)})
    s = TwoStreamDataset(st, modality="two-stream", layout="clip", length=10, mode="val",
                         crop_size=None)[0]
    assert s["flow_indices"].tolist() == [[0, 1, 2, 3, 4, 5, 5, 5, 5, 5]]
    assert s["frame_indices"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 6, 6, 6]]
    np.testing.assert_array_equal(s["flow"][0, :, 9], s["flow"][0, :, 5])
    loop = TwoStreamDataset(st, modality="rgb", layout="clip", length=10, mode="val",
                            crop_size=None, pad="loop")[0]
    assert loop["frame_indices"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 0, 1, 2]]


# --------------------------------------------------------------------------------------
# flow_scale="unit"


def test_unit_scale_is_d_over_bound_exactly_in_range(tmp_path):
    spec = make_video(6, pattern="ramp")
    spec["flows"][0][..., 0] = 0      # q = 0 -> exactly -1
    spec["flows"][0][..., 1] = 255    # q = 255 -> exactly +1
    st = build_store(tmp_path / "u", {"A/u": spec}, bound=20.0)
    v = st["A/u"]
    kw = dict(length=5, mode="val", crop_size=None)
    u = TwoStreamDataset(st, flow_scale="unit", **kw)[0]
    p = TwoStreamDataset(st, **kw)[0]
    assert u["flow_indices"].tolist() == [[0, 1, 2, 3, 4]]
    f = u["flow"][0]
    assert f.dtype == np.float32 and f.min() == -1.0 and f.max() == 1.0
    assert (f[0] == -1.0).all() and (f[1] == 1.0).all()
    for j in range(5):
        q = v.flow_quantized(j).transpose(2, 0, 1).astype(np.float32)
        np.testing.assert_array_equal(f[2 * j:2 * j + 2], (2 * q - 255) / np.float32(255))
    np.testing.assert_allclose(f * 20.0, p["flow"][0], atol=2e-5, rtol=0)


@pytest.mark.parametrize("store", REF_STORES)
def test_unit_scale_flips_negate_and_skip_the_resize_scale(store):
    root = ref.store_path(store)
    t = TwoStreamDataset(root, layout="clip", flow_scale="unit", length=4, mode="test",
                         test_crops=10, test_snippets=2, crop_size=48)[0]
    f = t["flow"]                                        # (20, 2, 4, 48, 48)
    assert f.shape == (20, 2, 4, 48, 48) and -1 <= f.min() and f.max() <= 1
    for view in range(5):
        a, b = f[view * 2:(view + 1) * 2], f[(view + 5) * 2:(view + 6) * 2]
        np.testing.assert_array_equal(b[:, 0], -a[:, 0][..., ::-1])   # dx negated, exactly
        np.testing.assert_array_equal(b[:, 1], a[:, 1][..., ::-1])
    # a resized (multiscale) crop: pixels carry sx, sy; unit is d/B without them
    kw = dict(length=4, crop_size=40, seed=2)
    pix = TwoStreamDataset(root, **kw)
    uni = TwoStreamDataset(root, flow_scale="unit", **kw)
    seen_resize = False
    for e in range(6):
        a, b = pix[(0, e)], uni[(0, e)]
        np.testing.assert_array_equal(a["crop_box"], b["crop_box"])
        sx, sy = a["flow_scale"][0]
        seen_resize |= bool(sx != 1)
        np.testing.assert_allclose(b["flow"][0, 0::2] * 20 * sx, a["flow"][0, 0::2], atol=1e-4)
        np.testing.assert_allclose(b["flow"][0, 1::2] * 20 * sy, a["flow"][0, 1::2], atol=1e-4)
        assert -1 <= b["flow"].min() and b["flow"].max() <= 1
    assert seen_resize
    # mean subtraction and trajectory stacks in unit scale
    m = TwoStreamDataset(root, flow_scale="unit", mean_subtract=True, **kw)[(0, 1)]
    pm = TwoStreamDataset(root, mean_subtract=True, **kw)[(0, 1)]
    sx, sy = pm["flow_scale"][0]
    np.testing.assert_allclose(m["flow"][0, 0::2] * 20 * sx, pm["flow"][0, 0::2], atol=1e-4)
    tr = TwoStreamDataset(root, flow_scale="unit", stacking="trajectory", **kw)[(0, 1)]
    tp = TwoStreamDataset(root, stacking="trajectory", **kw)[(0, 1)]
    assert -1 <= tr["flow"].min() and tr["flow"].max() <= 1
    np.testing.assert_allclose(tr["flow"][0, 1::2] * 20 * sy, tp["flow"][0, 1::2], atol=1e-4)


def test_rgb_in_minus_one_to_one(tmp_path):
    st = build_store(tmp_path / "g", {"A/g": make_video(6, pattern="ramp")})
    s = TwoStreamDataset(st, modality="rgb", layout="clip", length=4, mode="val", crop_size=None,
                         rgb_mean=(0.5,) * 3, rgb_std=(0.5,) * 3)[0]
    raw = TwoStreamDataset(st, modality="rgb", layout="clip", length=4, mode="val",
                           crop_size=None, dtype="uint8")[0]
    np.testing.assert_allclose(s["rgb"], raw["rgb"].astype(np.float32) / 127.5 - 1, atol=1e-6)
    assert -1 <= s["rgb"].min() < -0.5 and 0.1 < s["rgb"].max() <= 1


# --------------------------------------------------------------------------------------
# errors


def test_nonsense_combinations_are_config_errors(tmp_path):
    root = ref.store_path("jpeg")
    cases = [
        (dict(modality="rgbdiff", layout="clip"), "layout='stack'"),
        (dict(layout="clip", bidirectional=True, length=4), "layout='stack'"),
        (dict(frame_interval=2), "layout='clip'"),
        (dict(layout="clip", frame_interval=0), "positive integer"),
        (dict(layout="clip", frame_interval=1.5), "positive integer"),
        (dict(layout="cube"), "layout must be one of stack, clip"),
        (dict(flow_scale="unit", dtype="uint8"), "dtype='float32'"),
        (dict(flow_scale="unit", modality="rgb"), "rgb_mean=rgb_std"),
        (dict(flow_scale="meters"), "flow_scale must be one of pixels, unit"),
    ]
    for kw, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            TwoStreamDataset(root, **kw)
    with pytest.raises(ConfigError, match=r"adaptive.*--quant fixed"):
        TwoStreamDataset(ref.store_path("adaptive"), flow_scale="unit")


def _with_task(tmp_path, task):
    dst = tmp_path / f"task-{task}"
    shutil.copytree(ref.store_path("jpeg"), dst)
    info = json.loads((dst / "flowprep.json").read_text())
    info["config"]["task"] = task
    (dst / "flowprep.json").write_text(json.dumps(info))
    return str(dst)


def test_modality_the_store_lacks_is_a_config_error(tmp_path):
    rgb_only, flow_only = _with_task(tmp_path, "rgb"), _with_task(tmp_path, "flow")
    for modality in ("flow", "two-stream"):
        with pytest.raises(ConfigError, match=r"task-rgb.*--task rgb.*modality='rgb'"):
            TwoStreamDataset(rgb_only, modality=modality)
    for modality in ("rgb", "rgbdiff", "two-stream"):
        with pytest.raises(ConfigError, match=r"task-flow.*--task flow.*modality='flow'"):
            TwoStreamDataset(flow_only, modality=modality)
    # what the store holds is served
    assert TwoStreamDataset(rgb_only, modality="rgb", crop_size=32)[0]["rgb"].shape == (1, 3, 32, 32)
    assert TwoStreamDataset(flow_only, modality="flow", crop_size=32, length=3)[0]["flow"].shape \
        == (1, 6, 32, 32)
    both = _with_task(tmp_path, "both")
    TwoStreamDataset(both, modality="two-stream")
    bad = _with_task(tmp_path, "depth")
    with pytest.raises(ConfigError, match="unknown task 'depth'"):
        TwoStreamDataset(bad)


# --------------------------------------------------------------------------------------
# DataLoader workers, and the training example


def test_dataloader_workers_give_the_same_clips():
    torch = pytest.importorskip("torch")
    ds = TwoStreamDataset(ref.store_path("jpeg"), modality="two-stream", layout="clip",
                          length=6, crop_size=32, flow_scale="unit", rgb_mean=(0.5,) * 3,
                          rgb_std=(0.5,) * 3, seed=4)

    def collect(workers):
        out = []
        for e in (0, 1):
            ds.set_epoch(e)
            dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers,
                                             multiprocessing_context="fork" if workers else None)
            out += [b for b in dl]
        return out

    a, b = collect(0), collect(2)
    assert len(a) == len(b) == 2
    assert a[0]["flow"].shape == (2, 1, 2, 6, 32, 32) and a[0]["rgb"].shape == (2, 1, 3, 6, 32, 32)
    for x, y in zip(a, b):
        for k in ("flow", "rgb", "tau", "crop_box", "flip", "frame_indices"):
            assert torch.equal(x[k], y[k]), k
    assert not torch.equal(a[0]["crop_box"], a[1]["crop_box"]) or not torch.equal(a[0]["tau"], a[1]["tau"])


@pytest.mark.parametrize("layout", ["stack", "clip"])
def test_training_example_runs(tmp_path, layout):
    pytest.importorskip("torch")
    store = tmp_path / "store"
    shutil.copytree(ref.store_path("hdf5" if layout == "clip" else "jpeg"), store)
    script = os.path.join(HERE, "..", "examples", "train_flow_stream.py")
    r = subprocess.run([sys.executable, script, str(store), "--layout", layout, "--iters", "3",
                        "--crop", "32", "--length", "6", "--batch", "2", "--workers", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    losses = [float(line.rsplit(" ", 1)[1]) for line in r.stdout.splitlines()
              if line.startswith("iter ")]
    assert len(losses) == 3 and all(np.isfinite(losses)) and all(x > 0 for x in losses)
    shape = "(2, 3, 12, 32, 32)" if layout == "stack" else "(2, 1, 2, 6, 32, 32)"
    assert f"input {shape}" in r.stdout


# --------------------------------------------------------------------------------------
# every flow-plane read goes through FlowSource (so warped planes are a change there only)


@pytest.mark.parametrize("kw", [dict(), dict(layout="clip"), dict(stacking="trajectory"),
                                dict(mode="test", test_crops=10, test_snippets=2)],
                         ids=["stack", "clip", "trajectory", "tencrop"])
def test_flow_planes_are_read_through_flow_source_only(monkeypatch, kw):
    from flowprep.loader import source
    root = ref.store_path("jpeg")
    base = dict(modality="two-stream", length=4, crop_size=40, crop="random", dtype="uint8",
                seed=3, **kw)  # 40 x 40 boxes: no resize, the stored q compare exactly
    fwd = TwoStreamDataset(root, **base)[(0, 1)]
    real = source.FlowSource.payloads
    asked = []

    def backward_planes(self, items):  # serve another kind of plane: the backward flows
        asked.extend(items)
        return real(self, [(i, True) for i, _ in items])

    monkeypatch.setattr(source.FlowSource, "payloads", backward_planes)
    got = TwoStreamDataset(root, **base)[(0, 1)]
    assert asked and all(not b for _, b in asked)
    np.testing.assert_array_equal(got["rgb"], fwd["rgb"])        # RGB untouched
    assert not np.array_equal(got["flow"], fwd["flow"])
    v = TwoStreamDataset(root, **base).video(got["video_id"])
    if kw.get("stacking") == "trajectory":
        return  # the points follow other flows: checked only to differ
    flow = got["flow"] if kw.get("layout") != "clip" else clip_to_stack(got["flow"])
    (x0, y0, w, h), fl = got["crop_box"][0], bool(got["flip"][0])
    for j, i in enumerate(got["flow_indices"][0]):
        q = v.flow_quantized(int(i), backward=True)[y0:y0 + h, x0:x0 + w].transpose(2, 0, 1)
        if fl:
            q = q[:, :, ::-1].copy()
            q[0] = 255 - q[0]
        assert (h, w) == (40, 40)
        np.testing.assert_array_equal(flow[0, 2 * j:2 * j + 2], q)


@pytest.mark.parametrize("store", REF_STORES)
def test_ten_crop_two_stream_clips(store):
    kw = dict(modality="two-stream", length=4, mode="test", test_crops=10, test_snippets=3,
              crop_size=48)
    s = TwoStreamDataset(ref.store_path(store), **kw)[1]
    c = TwoStreamDataset(ref.store_path(store), layout="clip", **kw)[1]
    assert c["rgb"].shape == (30, 3, 4, 48, 48) and c["flow"].shape == (30, 2, 4, 48, 48)
    np.testing.assert_array_equal(c["rgb"][:, :, 0], s["rgb"])     # frame tau, every view
    np.testing.assert_array_equal(c["flow"], stack_to_clip(s["flow"]))
    np.testing.assert_array_equal(c["frame_indices"], c["tau"][:, None] + np.arange(4))
    for view in range(5):                                           # views 5-9 mirror 0-4
        np.testing.assert_array_equal(c["rgb"][(view + 5) * 3:(view + 6) * 3],
                                      c["rgb"][view * 3:(view + 1) * 3][..., ::-1])
