"""One contract suite, run against every store format: the Video API, metadata, failures, resume.

The stores are extracted (farneback, original size) from tiny lossless
synthetic videos whose motion is known:

    MoveRight/a   8 frames 48 x 64, texture moving (+2, 0) px per frame
    MoveUpLeft/b  6 frames 48 x 64, texture moving (-1.5, -1) px per frame
    Broken/bad    not a video (fails with a reason)

Helpers here (``make_dataset``, ``make_store``, ``unpublish``) are imported by
test_hdf5.py and test_tools_cli.py; ``make_store`` memoizes per session.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import tempfile

import numpy as np
import pytest

import flowprep
from flowprep import quantize as qz
from synth import translated_frames, write_video

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

FORMATS = list(flowprep.store.registry.names())  # every registered format
H, W = 48, 64
MOTION = {"MoveRight/a": (2.0, 0.0, 8, 1), "MoveUpLeft/b": (-1.5, -1.0, 6, 2)}
BOUND = 5.0
BASE_OPTS = dict(algo="farneback", short_side=0, bound=BOUND, jobs=1)

_cache: dict = {}
_tmp_root: list = []


def _tmpdir(name: str) -> str:
    if not _tmp_root:
        _tmp_root.append(tempfile.mkdtemp(prefix="flowprep-contract-"))
    path = os.path.join(_tmp_root[0], name)
    return path


def make_dataset() -> str:
    """The synthetic dataset folder (made once per session)."""
    if "dataset" in _cache:
        return _cache["dataset"]
    root = _tmpdir("dataset")
    for vid, (dx, dy, n, seed) in MOTION.items():
        os.makedirs(os.path.join(root, os.path.dirname(vid)), exist_ok=True)
        write_video(os.path.join(root, vid + ".mkv"), translated_frames(n, H, W, dx, dy, seed=seed))
    os.makedirs(os.path.join(root, "Broken"), exist_ok=True)
    with open(os.path.join(root, "Broken", "bad.mp4"), "wb") as fh:
        fh.write(b"this is not a video" * 50)
    _cache["dataset"] = root
    return root


def make_store(fmt: str, name: str = "", **opts):
    """Extract the dataset into a store of ``fmt`` (memoized); returns (path, report).

    Treat the result as read-only; copy it (``copy_store``) before changing it.
    """
    key = (fmt, name, tuple(sorted(opts.items())))
    if key not in _cache:
        out = _tmpdir(f"store-{fmt}-{name or 'base'}-{len(_cache)}")
        options = dict(BASE_OPTS, format=fmt)
        options.update(opts)
        report = flowprep.extract([make_dataset()], out, **options)
        _cache[key] = (out, report)
    return _cache[key]


def copy_store(src: str, dst) -> str:
    dst = str(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tmp", "locks"))
    return dst


def unpublish(root: str, fmt: str, video_id: str) -> None:
    """Make ``video_id`` unpublished as a crash before its last step would leave it."""
    if fmt == "jpeg":
        os.unlink(os.path.join(root, video_id, "meta.json"))  # a half-written directory
        return
    from flowprep.store import hdf5 as h5
    parts, _ = h5.read_index_parts(root)
    for p in parts:
        if video_id in p["videos"]:
            # crash between the shard's rename and its index part: the part never appeared
            os.unlink(os.path.join(h5.index_dir(root), p["_part"]))


def signature(store) -> dict:
    """Everything a reader sees of every video (bytes and arrays as bytes)."""
    out = {}
    for vid in store.video_ids:
        v = store[vid]
        items = [("meta", repr(sorted(v.meta.items())))]
        items += [("rgb", i, v.rgb_bytes(i)) for i in range(v.num_frames)]
        for b in ([False, True] if v.has_backward else [False]):
            for w in ([False, True] if v.has_warped else [False]):
                items += [("flow", b, w, i, v.flow_quantized(i, b, w).tobytes())
                          for i in range(v.num_flows)]
        out[vid] = items
    return out


def _cleanup():  # pragma: no cover - called by atexit
    for d in _tmp_root:
        shutil.rmtree(d, ignore_errors=True)


import atexit  # noqa: E402

atexit.register(_cleanup)


@pytest.fixture(params=FORMATS)
def fmt(request):
    return request.param


@pytest.fixture
def built(fmt):
    path, report = make_store(fmt)
    return fmt, path, report


# --------------------------------------------------------------------------------------
# the store


def test_extract_report(built):
    fmt, path, report = built
    assert sorted(report.published) == sorted(MOTION)
    assert list(report.failed) == [os.path.join(make_dataset(), "Broken", "bad.mp4")]


def test_open_store_reads_format_from_store(built):
    fmt, path, _ = built
    store = flowprep.open_store(path)
    assert store.format == fmt
    assert store.info["format"] == fmt
    assert repr(store).endswith("videos=2>")


def test_video_ids_len_contains_iter(built):
    _, path, _ = built
    store = flowprep.open_store(path)
    assert store.video_ids == sorted(MOTION)
    assert len(store) == 2
    assert "MoveRight/a" in store and "Broken/bad" not in store
    assert [v.video_id for v in store] == sorted(MOTION)
    with pytest.raises(KeyError):
        store["nope/x"]


def test_config(built):
    _, path, _ = built
    store = flowprep.open_store(path)
    c = store.config
    assert c["algo"] == "farneback"
    assert c["quant"] == {"scheme": "fixed", "bound": BOUND}
    assert c["step"] == 1 and c["backward"] is False
    assert "format" not in c  # the format is not output-affecting; flowprep.json records it
    assert store.info["config_key"] == flowprep.store.base.config_key(c)


# --------------------------------------------------------------------------------------
# the Video API


def test_counts_and_geometry(built):
    _, path, _ = built
    store = flowprep.open_store(path)
    for vid, (dx, dy, n, _) in MOTION.items():
        v = store[vid]
        assert (v.num_frames, v.num_flows) == (n, n - 1)
        assert (v.height, v.width) == (H, W)
        assert v.fps == pytest.approx(25.0)
        assert v.step == 1 and not v.has_backward
        assert v.video_id == vid


def test_rgb_matches_drawn_frames(built):
    _, path, _ = built
    v = flowprep.open_store(path)["MoveRight/a"]
    frames = translated_frames(8, H, W, 2.0, 0.0, seed=1)
    for i in (0, 3, 7):
        img = v.rgb(i)
        assert img.dtype == np.uint8 and img.shape == (H, W, 3)
        assert np.abs(img.astype(int) - frames[i].astype(int)).mean() < 3  # JPEG q95
    assert np.array_equal(v.rgb(-1), v.rgb(7))


def test_payloads_are_jpeg(built):
    _, path, _ = built
    v = flowprep.open_store(path)["MoveRight/a"]
    b = v.rgb_bytes(0)
    assert isinstance(b, bytes) and b[:2] == b"\xff\xd8" and b[-2:] == b"\xff\xd9"
    x, y = v.flow_payload(0)
    assert x[:2] == b"\xff\xd8" and y[:2] == b"\xff\xd8"


def test_index_errors(built):
    _, path, _ = built
    v = flowprep.open_store(path)["MoveRight/a"]
    with pytest.raises(IndexError):
        v.rgb(8)
    with pytest.raises(IndexError):
        v.flow(7)
    with pytest.raises(flowprep.FlowprepError, match="backward"):
        v.flow(0, backward=True)


@pytest.mark.parametrize("vid", sorted(MOTION))
def test_flow_has_the_known_motion(built, vid):
    _, path, _ = built
    dx, dy, n, _ = MOTION[vid]
    v = flowprep.open_store(path)[vid]
    for i in range(v.num_flows):
        f = v.flow(i)
        assert f.dtype == np.float32 and f.shape == (H, W, 2)
        inner = f[12:-12, 12:-12].reshape(-1, 2)
        assert np.median(inner[:, 0]) == pytest.approx(dx, abs=0.3)
        assert np.median(inner[:, 1]) == pytest.approx(dy, abs=0.3)
    m = v.mean_flow
    assert m.shape == (n - 1, 2) and m.dtype == np.float32
    assert np.median(m[:, 0]) == pytest.approx(dx, abs=0.4)


def test_flow_is_dequantized_flow_quantized(built):
    _, path, _ = built
    v = flowprep.open_store(path)["MoveUpLeft/b"]
    q = v.flow_quantized(2)
    assert q.dtype == np.uint8 and q.shape == (H, W, 2)
    assert np.array_equal(v.flow(2), qz.dequantize_fixed(q, BOUND))


def test_meta(built):
    _, path, _ = built
    store = flowprep.open_store(path)
    m = store.meta("MoveRight/a")
    assert m == store["MoveRight/a"].meta
    for k in ("num_frames", "num_flows", "fps", "width", "height", "quant", "mean_flow",
              "clipped_fraction", "source", "config_key", "label", "class_name"):
        assert k in m, k
    assert m["config_key"] == store.info["config_key"]
    assert m["source"] == os.path.join(make_dataset(), "MoveRight", "a.mkv")
    assert m["class_name"] == "MoveRight"
    classes = store.info["classes"]
    assert classes[m["label"]] == "MoveRight"
    assert len(m["clipped_fraction"]) == m["num_flows"]


def test_failures(built):
    _, path, _ = built
    store = flowprep.open_store(path)
    bad = os.path.join(make_dataset(), "Broken", "bad.mp4")
    assert list(store.failures) == [bad]
    assert "bad.mp4" in store.failures[bad]


def test_lists(built):
    _, path, _ = built
    with open(os.path.join(path, "flow_list.txt")) as fh:
        lines = fh.read().splitlines()
    store = flowprep.open_store(path)
    want = [f"{vid} {MOTION[vid][2] - 1} {store[vid].label}" for vid in sorted(MOTION)]
    assert lines == want


def test_verify_clean(built):
    from flowprep.verify import verify_store
    _, path, _ = built
    assert verify_store(path) == []


# --------------------------------------------------------------------------------------
# options that change the layout: backward flow, adaptive quantization


@pytest.fixture
def backward_store(fmt):
    return make_store(fmt, "backward", backward=True, quant="adaptive")[0]


def test_backward_and_adaptive(backward_store):
    store = flowprep.open_store(backward_store)
    v = store["MoveRight/a"]
    assert v.has_backward and v.quant == {"scheme": "adaptive"}
    fwd, bwd = v.flow(3), v.flow(3, backward=True)
    assert np.median(fwd[12:-12, 12:-12, 0]) == pytest.approx(2.0, abs=0.3)
    assert np.median(bwd[12:-12, 12:-12, 0]) == pytest.approx(-2.0, abs=0.3)
    assert v.flow_ranges(3).shape == (2, 2)
    assert v.mean_flow_backward.shape == (7, 2)
    from flowprep.verify import verify_store
    assert verify_store(backward_store) == []


# --------------------------------------------------------------------------------------
# resume


def test_rerun_skips_everything_published(built, tmp_path):
    fmt, path, _ = built
    out = copy_store(path, tmp_path / "s")
    before = signature(flowprep.open_store(out))
    report = flowprep.extract([make_dataset()], out, format=fmt, **BASE_OPTS)
    assert report.published == [] and sorted(report.skipped) == sorted(MOTION)
    assert list(report.failed) == [os.path.join(make_dataset(), "Broken", "bad.mp4")]
    assert signature(flowprep.open_store(out)) == before


def test_resume_redoes_exactly_the_unpublished(built, tmp_path):
    fmt, path, _ = built
    out = copy_store(path, tmp_path / "s")
    before = signature(flowprep.open_store(out))
    unpublish(out, fmt, "MoveUpLeft/b")
    store = flowprep.open_store(out)
    # hdf5: with one worker both videos may share a shard, so both may be unpublished
    gone = sorted(set(MOTION) - set(store.video_ids))
    assert "MoveUpLeft/b" in gone
    report = flowprep.extract([make_dataset()], out, format=fmt, **BASE_OPTS)
    assert sorted(report.published) == gone
    assert sorted(report.skipped) == sorted(set(MOTION) - set(gone))
    assert signature(flowprep.open_store(out)) == before
    assert "MoveUpLeft/b" not in store.video_ids  # an open store keeps its view ...
    store.refresh()
    assert store.video_ids == sorted(MOTION)      # ... until refreshed


def test_force_republishes(built, tmp_path):
    fmt, path, _ = built
    out = copy_store(path, tmp_path / "s")
    before = signature(flowprep.open_store(out))
    report = flowprep.extract([make_dataset()], out, format=fmt, force=True, **BASE_OPTS)
    assert sorted(report.published) == sorted(MOTION)
    store = flowprep.open_store(out)
    assert signature(store) == before
    from flowprep.verify import verify_store
    assert verify_store(out) == []


def test_new_config_redoes_everything(built, tmp_path):
    fmt, path, _ = built
    out = copy_store(path, tmp_path / "s")
    opts = dict(BASE_OPTS, bound=8.0)
    report = flowprep.extract([make_dataset()], out, format=fmt, **opts)
    assert sorted(report.published) == sorted(MOTION)
    store = flowprep.open_store(out)
    assert store.config["quant"]["bound"] == 8.0
    assert all(store[v].quant["bound"] == 8.0 for v in store.video_ids)
    assert all(store.meta(v)["config_key"] == store.info["config_key"] for v in store.video_ids)


# --------------------------------------------------------------------------------------
# readers in other processes


def _read_some(store, ids):
    return [(vid, store[vid].rgb_bytes(1), store[vid].flow_quantized(1).tobytes()) for vid in ids]


def test_store_pickles_and_reads_in_a_forked_child(built):
    _, path, _ = built
    store = flowprep.open_store(path)
    serial = _read_some(store, store.video_ids)  # handles now open in this process
    clone = pickle.loads(pickle.dumps(store))
    assert _read_some(clone, clone.video_ids) == serial
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        got = pool.starmap(_read_some, [(store, [vid]) for vid in store.video_ids])
    assert [x for part in got for x in part] == serial


def test_video_objects_pickle(built):
    _, path, _ = built
    v = flowprep.open_store(path)["MoveUpLeft/b"]
    want = (v.rgb_bytes(2), v.flow_quantized(3).tobytes())
    clone = pickle.loads(pickle.dumps(v))
    assert (clone.rgb_bytes(2), clone.flow_quantized(3).tobytes()) == want
    assert clone.meta == v.meta


@pytest.mark.parametrize("raw", [False, True], ids=["jpeg payload", "raw payload"])
def test_flow_payloads_equal_one_flow_payload_at_a_time(fmt, raw, monkeypatch):
    if raw and fmt != "hdf5":
        pytest.skip("raw payloads are an HDF5 option")
    path, _ = make_store(fmt, "backward", backward=True, **({"payload": "raw"} if raw else {}))
    store = flowprep.open_store(path)
    v = store["MoveRight/a"]
    n = v.num_flows
    # out of order, repeated, both directions, negative indices
    items = [(3, False), (0, True), (n - 1, False), (3, False), (1, True), (-1, True), (0, False)]
    want = [v.flow_payload(i, b) for i, b in items]

    def as_bytes(p):
        return p.tobytes() if isinstance(p, np.ndarray) else bytes(p)

    def check():
        got = v.flow_payloads(items)
        assert len(got) == len(items)
        for (gx, gy), (wx, wy) in zip(got, want):
            assert as_bytes(gx) == as_bytes(wx) and as_bytes(gy) == as_bytes(wy)

    check()
    if fmt == "hdf5":  # also when every payload is its own read: no span merging at all
        from flowprep.store.hdf5 import store as h5
        monkeypatch.setattr(h5, "SPAN_GAP", -1)
        check()
        monkeypatch.setattr(h5, "SPAN_MAX", 1)
        check()
    with pytest.raises(IndexError):
        v.flow_payloads([(n, False)])
    # the per-item accessors take negative indices and refuse out-of-range ones alike
    assert as_bytes(v.flow_payload(-1, True)[0]) == as_bytes(v.flow_payload(n - 1, True)[0])
    assert v.rgb_bytes(-1) == v.rgb_bytes(v.num_frames - 1)
    for bad in (lambda: v.flow_payload(n), lambda: v.rgb_bytes(v.num_frames)):
        with pytest.raises(IndexError):
            bad()


# --------------------------------------------------------------------------------------
# --warped: TSN's warped flow beside the plain flow (docs/warped.md)
#
# In these videos the whole frame translates, as if the camera panned: the homography
# is that translation and the warped flow is ~0 everywhere.


@pytest.fixture
def warped_store(fmt):
    return make_store(fmt, "warped", warped=True, backward=True)[0]


def test_warped_streams(warped_store):
    store = flowprep.open_store(warped_store)
    assert store.config["warped"]["features"] == "sift"
    for vid, (dx, dy, n, _) in MOTION.items():
        v = store[vid]
        assert v.has_warped and v.has_backward
        for i in range(v.num_flows):
            Hm = v.homography(i)
            assert Hm.dtype == np.float64 and Hm.shape == (3, 3)
            assert not v.homography_fallback(i)
            np.testing.assert_allclose(Hm[:2, 2], [dx, dy], atol=0.3)
            for b in (False, True):
                f = v.flow(i, backward=b, warped=True)
                assert f.dtype == np.float32 and f.shape == (H, W, 2)
                inner = f[12:-12, 12:-12].reshape(-1, 2)
                assert np.abs(np.median(inner, axis=0)).max() < 0.2, (vid, i, b)
                plain = v.flow(i, backward=b)[12:-12, 12:-12].reshape(-1, 2)
                assert np.median(plain[:, 0]) == pytest.approx(-dx if b else dx, abs=0.3)
        assert v.mean_flow_warped.shape == (n - 1, 2)
        assert v.mean_flow_warped_backward.shape == (n - 1, 2)
        assert np.abs(v.mean_flow_warped).max() < 0.5
        assert len(v.meta["clipped_fraction_warped"]) == n - 1
        assert np.array_equal(v.flow(2, warped=True),
                              qz.dequantize_fixed(v.flow_quantized(2, warped=True), BOUND))
    from flowprep.verify import verify_store
    assert verify_store(warped_store) == []


def test_warped_payloads_and_lists(warped_store):
    store = flowprep.open_store(warped_store)
    v = store["MoveRight/a"]
    x, y = v.flow_payload(1, warped=True)
    assert x[:2] == b"\xff\xd8" and y[:2] == b"\xff\xd8"
    assert bytes(x) != bytes(v.flow_payload(1)[0])
    items = [(3, False, True), (0, True, True), (3, False), (-1, True, True), (2, True, False)]
    got = v.flow_payloads(items)
    want = [v.flow_payload(*it) for it in items]
    assert [(bytes(a), bytes(b)) for a, b in got] == [(bytes(a), bytes(b)) for a, b in want]
    with open(os.path.join(warped_store, "wflow_list.txt")) as fh:
        wl = fh.read()
    with open(os.path.join(warped_store, "flow_list.txt")) as fh:
        assert wl == fh.read()


def test_warped_raw_hdf5_payload():
    path, _ = make_store("hdf5", "warped-raw", warped=True, payload="raw")
    v = flowprep.open_store(path)["MoveUpLeft/b"]
    x, y = v.flow_payload(0, warped=True)
    assert isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.shape == (H, W)
    assert np.array_equal(v.flow_quantized(0, warped=True), np.stack([x, y], -1))
    assert np.abs(np.median(v.flow(0, warped=True)[12:-12, 12:-12].reshape(-1, 2), 0)).max() < 0.2
    got = v.flow_payloads([(1, False, True), (1, False)])
    assert np.array_equal(got[0][0], v.flow_payload(1, warped=True)[0])
    from flowprep.verify import verify_store
    assert verify_store(path) == []


def test_plain_store_refuses_warped_reads(built):
    _, path, _ = built
    v = flowprep.open_store(path)["MoveRight/a"]
    assert not v.has_warped
    assert not os.path.exists(os.path.join(path, "wflow_list.txt"))
    for read in (lambda: v.flow(0, warped=True), lambda: v.flow_quantized(0, warped=True),
                 lambda: v.flow_payload(0, warped=True), lambda: v.homography(0),
                 lambda: v.mean_flow_warped, lambda: v.flow_payloads([(0, False, True)])):
        with pytest.raises(flowprep.FlowprepError, match="extract with --warped"):
            read()


def test_warped_resume_and_convert(warped_store, fmt, tmp_path):
    out = copy_store(warped_store, tmp_path / "s")
    before = signature(flowprep.open_store(out))
    unpublish(out, fmt, "MoveUpLeft/b")
    opts = dict(BASE_OPTS, format=fmt, warped=True, backward=True)
    report = flowprep.extract([make_dataset()], out, **opts)
    assert "MoveUpLeft/b" in report.published
    assert signature(flowprep.open_store(out)) == before
    from flowprep.convert import convert
    other = "hdf5" if fmt == "jpeg" else "jpeg"
    dst = str(tmp_path / "c")
    convert(out, dst, other)
    assert signature(flowprep.open_store(dst)) == before
    from flowprep.verify import verify_store
    assert verify_store(dst) == []
