"""Crop-region JPEG decoding (flowprep._jpegcrop, the loader's fast path).

The fast path must give the pixels of a whole-image cv2.imdecode followed by
the crop, so the loader's output never depends on whether the extension is
built. Checked on the flow planes and RGB frames of a real clip (data/samples,
extracted with DIS, forward and backward, into both stores), on every box
shape that matters (block-aligned or not, touching the right and bottom
edges, 1 x 1, the whole image), on JPEG variants other encoders write
(progressive, restart markers, 4:2:0 / 4:2:2 / 4:4:4 chroma), and through
the loader in every view mode and modality.
"""
from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.errors import StoreError
from flowprep.loader import TwoStreamDataset
from flowprep.store import codec

HERE = os.path.dirname(os.path.abspath(__file__))
CLIP = os.path.join(HERE, "..", "data", "samples", "Biking", "v_Biking_g01_c01.mp4")
FAST = codec.CROP_DECODER

needs_ext = pytest.mark.skipif(FAST is None, reason="flowprep._jpegcrop is not built here")


def test_extension_is_built_where_the_build_requires_it():
    # `make test` sets FLOWPREP_REQUIRE_JPEGCROP=1 (it installs libjpeg-turbo's headers),
    # so CI fails if the fast path silently fell back to whole-plane decoding.
    if os.environ.get("FLOWPREP_REQUIRE_JPEGCROP") != "1":
        pytest.skip("FLOWPREP_REQUIRE_JPEGCROP is not set")
    assert FAST is not None, "flowprep._jpegcrop was not built (libjpeg-turbo headers missing?)"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The real clip through `extract` (DIS, forward + backward) into a JPEG and an HDF5 store."""
    work = tmp_path_factory.mktemp("jpegcrop")
    src = work / "in" / "Biking"
    src.mkdir(parents=True)
    shutil.copy(CLIP, src / "v_Biking_g01_c01.mp4")
    out = {}
    for fmt in ("jpeg", "hdf5"):
        root = str(work / fmt)
        rep = flowprep.extract([str(work / "in")], root, algo="dis", device="cpu", format=fmt,
                               backward=True, jobs=1)
        assert rep.ok, rep.failed
        out[fmt] = root
    return out


def _planes(root, n=12):
    store = flowprep.open_store(root)
    v = store[store.video_ids[0]]
    bufs = []
    for i in range(0, v.num_flows, max(1, v.num_flows // n)):
        for back in (False, True):
            bufs.extend(v.flow_payload(i, back))
    return v, bufs


def _boxes(h, w, rng, n):
    yield (0, 0, w, h)
    yield (0, 0, 1, 1)
    yield (w - 1, h - 1, 1, 1)
    yield (8, 8, 16, 16)                       # aligned to the 8x8 blocks
    yield (w - 224, h - 224, 224, 224)         # touching the right and bottom edges
    yield (3, 5, w - 7, h - 9)                 # unaligned on every side
    for _ in range(n):
        bw, bh = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
        yield (int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1)), bw, bh)


@needs_ext
def test_crop_decode_equals_whole_decode_then_crop(stores):
    v, bufs = _planes(stores["jpeg"])
    assert v.width % 8 != 0  # 341 x 256: the last block column is partial
    rng = np.random.default_rng(0)
    checked = 0
    for buf in bufs:
        full = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert full.shape == (v.height, v.width)
        for x, y, w, h in _boxes(v.height, v.width, rng, 8):
            out = np.empty((h, w), np.uint8)
            codec.decode_grey_crop(buf, (x, y, w, h), out, "plane")
            np.testing.assert_array_equal(out, full[y:y + h, x:x + w], err_msg=str((x, y, w, h)))
            checked += 1
    assert checked >= 24 * 14


@needs_ext
@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                                    [cv2.IMWRITE_JPEG_RST_INTERVAL, 3]],
                         ids=["baseline", "progressive", "restart markers"])
def test_crop_decode_of_planes_written_by_other_encoders(params):
    # sides that are not multiples of 8, and JPEG variants other tools write (a store
    # converted from another pipeline's frames need not be baseline)
    rng = np.random.default_rng(1)
    plane = cv2.GaussianBlur(rng.integers(0, 256, (237, 253), dtype=np.uint8), (0, 0), 1.5)
    ok, enc = cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, 90] + params)
    buf = enc.tobytes()
    full = codec.decode_grey(buf)
    for x, y, w, h in _boxes(237, 253, rng, 40):
        out = np.empty((h, w), np.uint8)
        codec.decode_grey_crop(buf, (x, y, w, h), out)
        np.testing.assert_array_equal(out, full[y:y + h, x:x + w], err_msg=str((x, y, w, h)))


@needs_ext
def test_rgb_crop_decode_equals_whole_decode_then_crop(stores):
    store = flowprep.open_store(stores["jpeg"])
    v = store[store.video_ids[0]]
    rng = np.random.default_rng(2)
    for t in range(0, v.num_frames, max(1, v.num_frames // 8)):
        buf = v.rgb_bytes(t)
        full = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR_RGB)
        for x, y, w, h in _boxes(v.height, v.width, rng, 12):
            out = np.empty((h, w, 3), np.uint8)
            codec.decode_rgb_crop(buf, (x, y, w, h), out, "frame")
            np.testing.assert_array_equal(out, full[y:y + h, x:x + w], err_msg=str((x, y, w, h)))


@needs_ext
@pytest.mark.parametrize("sampling", [0x221111, 0x211111, 0x111111], ids=["4:2:0", "4:2:2", "4:4:4"])
@pytest.mark.parametrize("progressive", [0, 1], ids=["baseline", "progressive"])
def test_rgb_crop_decode_for_every_chroma_subsampling(stores, sampling, progressive):
    # chroma is upsampled from neighbouring samples: the decoder's margin keeps the
    # box's edge pixels equal to a whole decode's
    store = flowprep.open_store(stores["jpeg"])
    v = store[store.video_ids[0]]
    bgr = cv2.imdecode(np.frombuffer(v.rgb_bytes(v.num_frames // 2), np.uint8), cv2.IMREAD_COLOR)
    ok, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling,
                                         cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
    buf = enc.tobytes()
    full = cv2.imdecode(enc, cv2.IMREAD_COLOR_RGB)
    rng = np.random.default_rng(sampling + progressive)
    for x, y, w, h in _boxes(v.height, v.width, rng, 40):
        out = np.empty((h, w, 3), np.uint8)
        codec.decode_rgb_crop(buf, (x, y, w, h), out)
        np.testing.assert_array_equal(out, full[y:y + h, x:x + w], err_msg=str((x, y, w, h)))


@pytest.mark.parametrize("fast", [True, False], ids=["libjpeg-turbo crop", "whole decode"])
def test_crop_decode_errors_name_the_plane(stores, monkeypatch, fast):
    if fast and FAST is None:
        pytest.skip("flowprep._jpegcrop is not built here")
    monkeypatch.setattr(codec, "CROP_DECODER", FAST if fast else None)
    v, bufs = _planes(stores["jpeg"], n=1)
    buf = bufs[0]
    out = np.empty((10, 10), np.uint8)
    with pytest.raises(StoreError, match=r"vid 3 x: .*not .*JPEG|vid 3 x: not a decodable"):
        codec.decode_grey_crop(b"\x00garbage" * 10, (0, 0, 10, 10), out, "vid 3 x")
    with pytest.raises(StoreError, match=r"vid 3 x: crop \(.*\) does not fit"):
        codec.decode_grey_crop(buf, (v.width - 5, 0, 10, 10), out, "vid 3 x")
    rgb = np.empty((10, 10, 3), np.uint8)
    with pytest.raises(StoreError, match=r"vid frame 7: .*not .*JPEG|vid frame 7: not a decodable"):
        codec.decode_rgb_crop(b"\xff\xd8garbage" * 10, (0, 0, 10, 10), rgb, "vid frame 7")
    if fast:  # libjpeg's warnings are errors on the fast path: a cut file is never patched up
        with pytest.raises(StoreError, match=r"vid 3 x: "):
            codec.decode_grey_crop(buf[:len(buf) // 2], (0, v.height - 10, 10, 10), out, "vid 3 x")
        with pytest.raises(ValueError, match="out has 100 bytes"):
            FAST(buf, 0, 0, 20, 20, out)


def _view_configs():
    return [
        dict(mode="train"),                                    # multiscale: resize
        dict(mode="train", crop="random"),                     # no resize: straight into the stack
        dict(mode="train", dtype="uint8", mean_subtract=False),
        dict(mode="train", bidirectional=True, mean_subtract=True),
        dict(mode="val"),
        dict(mode="test", test_crops=10, test_snippets=3),     # five boxes: the whole frame decoded
        dict(mode="train", crop_size=None),                    # whole frames
        dict(modality="two-stream", mode="train", num_segments=3),
        dict(modality="two-stream", mode="test", test_crops=10, test_snippets=2),
        dict(modality="rgb", mode="train", crop="random", dtype="uint8"),
        dict(modality="rgbdiff", mode="train", num_segments=2),
    ]


@needs_ext
@pytest.mark.parametrize("fmt", ["jpeg", "hdf5"])
@pytest.mark.parametrize("cfg", _view_configs(), ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_loader_output_is_the_same_with_and_without_the_extension(stores, monkeypatch, fmt, cfg):
    ds = TwoStreamDataset(stores[fmt], seed=3, **({"modality": "flow"} | cfg))
    for i in range(4):
        monkeypatch.setattr(codec, "CROP_DECODER", FAST)
        a = ds[(0, i)]
        monkeypatch.setattr(codec, "CROP_DECODER", None)
        b = ds[(0, i)]
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], np.ndarray):
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            else:
                assert a[k] == b[k], k


@needs_ext
def test_loader_names_a_corrupt_stored_plane(stores, tmp_path):
    root = str(tmp_path / "store")
    shutil.copytree(stores["jpeg"], root)
    store = flowprep.open_store(root)
    vid = store.video_ids[0]
    ds = TwoStreamDataset(root, modality="flow", mode="val", seed=0)
    idx = ds[0]["flow_indices"][0]
    path = os.path.join(root, vid, f"flow_y_{idx[2] + 1:05d}.jpg")
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[:len(data) // 3])
    with pytest.raises(StoreError, match=rf"{vid}: flow {idx[2]} y: "):
        ds[0]


@pytest.mark.parametrize("stacking", ["plain", "trajectory"])
def test_loader_names_an_undecodable_stored_plane(stores, tmp_path, stacking):
    # with or without the extension: plain stacks crop-decode, trajectory stacks decode whole
    root = str(tmp_path / "store")
    shutil.copytree(stores["jpeg"], root)
    vid = flowprep.open_store(root).video_ids[0]
    ds = TwoStreamDataset(root, modality="flow", mode="val", stacking=stacking, seed=0)
    idx = ds[0]["flow_indices"][0]
    with open(os.path.join(root, vid, f"flow_x_{idx[4] + 1:05d}.jpg"), "wb") as fh:
        fh.write(b"not a jpeg at all" * 20)
    with pytest.raises(StoreError, match=rf"{vid}: flow {idx[4]} x: "):
        ds[0]
