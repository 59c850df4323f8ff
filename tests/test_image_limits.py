"""Issue 22: a frame folder's size is its images' most common one, read from their headers;
huge images and video streams are refused before they are decoded; failure reasons count
what was skipped.

The huge inputs are cheap to make: a PNG whose IHDR declares 20000x20000 1-bit grey
pixels and whose IDAT is zlib of zero rows (48 KB on disk, 1.2 GB once decoded to BGR),
and the same kind of PNG frames muxed, not re-encoded, into a Matroska file
(``ffmpeg -c:v copy``): a real video, decodable by both decoders, declaring
16000x12000 frames (20000x20000 is over FFmpeg's own limit of about 268 megapixels).
"""
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

import flowprep
from flowprep.decode import Resize, open_reader
from flowprep.decode.base import MAX_PIXELS
from flowprep.decode.folder import folder_size
from flowprep.decode.image_header import image_size, read_size
from flowprep.errors import DecodeError
from test_decode import DECODERS, LEVEL, ffmpeg, index_of

FLOWPREP = os.path.join(os.path.dirname(sys.executable), "flowprep")


def zero_png(width, height):
    """PNG bytes of a width x height 1-bit grey image of zeros (zlib of zero rows: tiny)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def write_frame(path, k, w=320, h=240):
    """A flat grey image that encodes index k (see test_decode.index_of)."""
    assert cv2.imwrite(str(path), np.full((h, w, 3), LEVEL * k, np.uint8))


def extract(inputs, out, *extra):
    return [FLOWPREP, "extract", *map(str, inputs), "-o", str(out), "--algo", "dis",
            "--short-side", "0", "--jobs", "1", "--no-progress", *map(str, extra)]


def run_measured(cmd, timeout=300):
    """Run ``cmd`` under a wrapper process; (returncode, stdout, stderr, peak RSS in MB).

    The peak is RUSAGE_CHILDREN's ru_maxrss of the wrapper: the largest resident set of
    any process of the command's tree (the CLI and its workers, once reaped).
    """
    code = ("import json, resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(json.dumps([p.returncode, p.stdout, p.stderr,\n"
            "                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n")
    p = subprocess.run([sys.executable, "-c", code, *map(str, cmd)], capture_output=True,
                       text=True, timeout=timeout, check=True)
    rc, out, err, kb = json.loads(p.stdout)
    return rc, out, err, kb / 1024


# --------------------------------------------------------------------------------------
# the header reader


@pytest.mark.parametrize("ext,params", [(".png", []), (".jpg", []), (".bmp", []),
                                        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # VP8L
                                        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80])])  # VP8
@pytest.mark.parametrize("w,h", [(32, 24), (341, 257), (1, 3)])
def test_header_sizes_equal_the_decoded_sizes(ext, params, w, h):
    ok, data = cv2.imencode(ext, np.zeros((h, w, 3), np.uint8), params)
    assert ok
    assert read_size(io.BytesIO(data.tobytes())) == (w, h)
    assert cv2.imdecode(data, cv2.IMREAD_COLOR).shape[:2] == (h, w)


def _exif(orientation):
    """EXIF (TIFF) bytes with one IFD0 entry: Orientation."""
    return (b"MM\x00\x2a" + struct.pack(">IH", 8, 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0))


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied_as_opencv_applies_it(orientation):
    img = np.zeros((24, 32, 3), np.uint8)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    app1 = b"Exif\x00\x00" + _exif(orientation)
    jpg = jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:]
    png = cv2.imencode(".png", img)[1].tobytes()
    ex = _exif(orientation)
    png = (png[:33] + struct.pack(">I", len(ex)) + b"eXIf" + ex
           + struct.pack(">I", zlib.crc32(b"eXIf" + ex)) + png[33:])
    for data in (jpg, png):
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert read_size(io.BytesIO(data)) == (w, h)
        assert (w, h) == ((24, 32) if orientation in (6, 8) else (32, 24))


def test_unknown_damaged_or_cut_headers_are_none_and_the_huge_png_is_read(tmp_path):
    img = np.zeros((24, 32, 3), np.uint8)
    jpg, png, bmp, webp = (cv2.imencode(e, img)[1].tobytes() for e in (".jpg", ".png", ".bmp",
                                                                        ".webp"))
    for data in (b"", b"garbage", b"GIF89a" + b"\0" * 40, jpg[:20], png[:20], bmp[:20],
                 webp[:18], webp[:22], b"\x89PNG\r\n\x1a\n" + b"\0" * 30):
        assert read_size(io.BytesIO(data)) is None, data
    assert image_size(str(tmp_path / "missing.png")) is None
    (tmp_path / "huge.png").write_bytes(zero_png(20000, 20000))
    assert image_size(str(tmp_path / "huge.png")) == (20000, 20000)
    assert os.path.getsize(tmp_path / "huge.png") < 100_000


def test_folder_size_is_the_most_common_ties_to_the_earliest():
    a, b, c = (320, 240), (64, 48), (20, 10)
    assert folder_size([b, a, a, None, a, b]) == a
    assert folder_size([b, a, a, b]) == b
    assert folder_size([None, c]) == c and folder_size([None, None]) is None


# --------------------------------------------------------------------------------------
# frame folders


@pytest.fixture()
def huge_first(tmp_path):
    """f_0001.png 20000x20000 (48 KB), f_0002.png ... f_0005.png 320x240 (indices 1-4)."""
    d = tmp_path / "in" / "clip"
    d.mkdir(parents=True)
    (d / "f_0001.png").write_bytes(zero_png(20000, 20000))
    for k in range(1, 5):
        write_frame(d / f"f_{k + 1:04d}.png", k)
    return d


def test_a_huge_first_image_does_not_sink_the_folder_nor_is_it_decoded(huge_first, tmp_path):
    rc, out, err, peak_mb = run_measured(extract([huge_first], tmp_path / "s"))
    assert rc == 0, out + err
    v = flowprep.open_store(tmp_path / "s")["clip"]
    assert v.num_frames == 4 and v.num_flows == 3 and (v.width, v.height) == (320, 240)
    assert [index_of(v.rgb(i)) for i in range(4)] == [1, 2, 3, 4]
    np.testing.assert_allclose(v.timestamps, np.arange(1, 5) / 25.0)  # its slot stays empty
    (w,) = v.meta["warnings"]
    assert "f_0001.png is 20000x20000 (400 megapixels), over the limit of 100 megapixels" in w
    assert "WARNING" in err and "f_0001.png" in err
    # decoding it would take 1.2 GB for its BGR pixels alone (2.4 GB peak measured with
    # cv2.imread); the whole run stays far below that
    assert peak_mb < 700, peak_mb


def test_images_of_another_size_are_skipped_whatever_their_position(tmp_path):
    d = tmp_path / "clip"
    d.mkdir()
    sizes = {1: (64, 48), 2: (64, 48), 3: (80, 60), 4: (80, 60), 5: (80, 60), 6: (64, 48),
             7: (80, 60)}
    for k, (w, h) in sizes.items():
        write_frame(d / f"img_{k}.jpg", k, w, h)
    r = open_reader(str(d), resize=Resize(0))
    got = list(r.frames())
    assert [index_of(f) for _, f in got] == [3, 4, 5, 7]
    assert (r.width, r.height) == (80, 60) and r.decode_errors == 3
    (w,) = r.warnings()
    for k in (1, 2, 6):
        assert f"img_{k}.jpg is 64x48, most of the folder's images are 80x60" in w
    assert r.skipped_summary() == "3 skipped (other size: img_1.jpg 64x48, img_2.jpg 64x48, " \
                                  "img_6.jpg 64x48)"


def test_a_folder_whose_every_image_has_its_own_size_fails_listing_the_sizes(tmp_path):
    d = tmp_path / "in" / "clip"
    d.mkdir(parents=True)
    for k, w in enumerate((320, 330, 340, 350), start=1):
        write_frame(d / f"f_{k}.png", k, w, 240)
    with pytest.raises(DecodeError) as e:
        open_reader(str(d))
    msg = str(e.value)
    assert msg.startswith(f"{d}: no two of its 4 images share a size (f_1.png 320x240, "
                          f"f_2.png 330x240, f_3.png 340x240, f_4.png 350x240)")
    # through the command: the folder fails with that reason, for --task rgb too
    for task in ("both", "rgb"):
        p = subprocess.run(extract([d], tmp_path / task, "--task", task), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        (reason,) = flowprep.open_store(tmp_path / task).failures.values()
        assert "no two of its 4 images share a size" in reason and "f_3.png 340x240" in reason


def test_failure_reasons_count_what_was_skipped_by_cause(tmp_path):
    d = tmp_path / "in" / "clip"
    d.mkdir(parents=True)
    write_frame(d / "f_0001.png", 1)
    (d / "f_0002.png").write_bytes(zero_png(20000, 20000))
    (d / "f_0003.png").write_bytes(b"not a png")
    (d / "f_0004.png").write_bytes(b"")
    p = subprocess.run(extract([d], tmp_path / "s"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    (reason,) = flowprep.open_store(tmp_path / "s").failures.values()
    assert reason == (f"{d}: 1 frame decoded, 3 skipped (too large: f_0002.png 20000x20000; "
                      f"unreadable: f_0003.png, f_0004.png); flow with step 1 needs at least 2")
    # a time range that holds none of the frames counts them too
    p = subprocess.run(extract([d], tmp_path / "t", "--start", "1"), capture_output=True,
                       text=True, timeout=300)
    (reason,) = flowprep.open_store(tmp_path / "t").failures.values()
    assert "(1 frames decoded, 3 skipped (too large: f_0002.png 20000x20000; " in reason
    # nothing usable at all: the reason counts by cause as well
    os.remove(d / "f_0001.png")
    with pytest.raises(DecodeError, match=r"none of its 3 images is used: 3 skipped \(too large: "
                                          r"f_0002.png 20000x20000; unreadable: "):
        open_reader(str(d))


# --------------------------------------------------------------------------------------
# video streams


@pytest.fixture(scope="module")
def absurd_video(tmp_path_factory):
    """A Matroska file of three PNG frames that declare 16000x12000 (192 megapixels): 70 KB."""
    d = tmp_path_factory.mktemp("absurd")
    for k in range(3):
        (d / f"g{k}.png").write_bytes(zero_png(16000, 12000))
    path = d / "in" / "absurd.mkv"
    path.parent.mkdir()
    ffmpeg("-framerate", "25", "-i", d / "g%d.png", "-c:v", "copy", path)
    assert os.path.getsize(path) < 200_000
    return path


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_video_with_an_absurd_declared_size_fails_before_a_frame_is_decoded(
        absurd_video, decoder, tmp_path):
    assert 16000 * 12000 > MAX_PIXELS
    with pytest.raises(DecodeError, match=r"absurd.mkv: its video stream declares 16000x12000 "
                                          r"frames \(192 megapixels\), over flowprep's limit"):
        open_reader(str(absurd_video), decoder)
    # through the command, with the process tree's peak memory: one frame converted to RGB
    # would be 576 MB
    rc, out, err, peak_mb = run_measured(extract([absurd_video], tmp_path / "s",
                                                 "--decoder", decoder))
    assert rc == 1 and "Traceback" not in err, err
    (reason,) = flowprep.open_store(tmp_path / "s").failures.values()
    assert "declares 16000x12000 frames" in reason and "not decoded" in reason
    assert peak_mb < 450, peak_mb


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_video_failure_reason_counts_its_corrupt_packets(decoder, tmp_path):
    import random
    import re

    from reliability_corpus import _boxes, _h264
    from synth import translated_frames
    base = _h264(str(tmp_path / "base.mp4"), translated_frames(30, 64, 96, 1.0, 0.5, seed=1))
    data = bytearray(open(base, "rb").read())
    off, n = _boxes(bytes(data))[b"mdat"]
    rng = random.Random(0)
    for _ in range(200):  # payload bit flips: some packets no longer decode
        pos = rng.randrange(off + 200, off + n - 64)
        data[pos] ^= 1 << rng.randrange(8)
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "flipped.mp4"
    path.write_bytes(bytes(data))
    r = open_reader(str(path), decoder, Resize(0))
    decoded = sum(1 for _ in r)
    assert r.decode_errors > 0
    p = subprocess.run(extract([path], tmp_path / "s", "--decoder", decoder, "--start", "100"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    (reason,) = flowprep.open_store(tmp_path / "s").failures.values()
    m = re.search(r"no frames in \[100 s, end\) \((\d+) frames decoded, (\d+) corrupt packets? "
                  r"skipped, the last shown until", reason)
    assert m, reason
    assert (int(m.group(1)), int(m.group(2))) == (decoded, r.decode_errors)
