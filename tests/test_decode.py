"""Issue 12: decoders by name (PyAV, OpenCV, frame folders), timestamps, --fps and time ranges.

Inputs are real encodes made with the ffmpeg of imageio-ffmpeg. For the frame-rate
tests every frame is a flat grey level that encodes its index (``LEVEL * k``),
written losslessly (FFV1), so each stored frame names the source frame it came
from, and the ffmpeg command line's own fps filter on the same file is the
reference.
"""
import os
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from flowprep.decode import Resize, open_reader, resolve_decoder
from flowprep.decode.folder import natural_key
from flowprep.decode.select import resample_indices, round_near_inf, select
from flowprep.errors import ConfigError, DecodeError
from synth import ffmpeg_exe, translated_frames, write_video

LEVEL = 4  # grey step between consecutive frame indices
H, W = 24, 32
DECODERS = ["pyav", "opencv"]


def ffmpeg(*args, **kw):
    return subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, args)],
                          check=True, capture_output=True, **kw)


def index_frames(n, h=H, w=W):
    """n RGB uint8 frames; frame k is flat grey LEVEL * k."""
    assert LEVEL * (n - 1) <= 255
    return [np.full((h, w, 3), LEVEL * k, np.uint8) for k in range(n)]


def index_of(frame):
    """The source index a (decoded) frame encodes."""
    return int(round(float(np.mean(frame)) / LEVEL))


def index_video(path, n, fps):
    return write_video(str(path), index_frames(n), fps=fps)


def vfr_times(n):
    """Presentation times (s) of vfr_video's frames: 0.03 k + 0.005 k^2, gaps 30 ms .. 125 ms."""
    return [round(0.03 * k + 0.005 * k * k, 3) for k in range(n)]


def vfr_video(tmp_path, n=10):
    """A variable-frame-rate FFV1 mkv: frame k shown at vfr_times (setpts in Matroska's 1 ms ticks)."""
    src = index_video(tmp_path / "cfr.mkv", n, 25)
    out = tmp_path / "vfr.mkv"
    ffmpeg("-i", src, "-vf", "setpts='30*N+5*N*N'", "-fps_mode", "passthrough",
           "-enc_time_base", "1:1000", "-c:v", "ffv1", "-pix_fmt", "bgr0", out)
    return str(out)


def ffmpeg_fps_indices(path, fps):
    """Source index of each frame the ffmpeg command line's fps filter outputs."""
    p = ffmpeg("-i", path, "-vf", f"fps={fps}", "-f", "rawvideo", "-pix_fmt", "gray", "-")
    raw = np.frombuffer(p.stdout, np.uint8).reshape(-1, H, W)
    return [index_of(f) for f in raw]


def decoded(path, decoder, **sel):
    r = open_reader(str(path), decoder, Resize(0))
    out = list(select(r.frames(), end_time=lambda _t: r.end_time, **sel))
    return [float(t) for t, _ in out], [index_of(f) for _, f in out], r


# --------------------------------------------------------------------------------------
# the rounding rule itself


def test_round_near_inf_rounds_halves_away_from_zero():
    assert [round_near_inf(Fraction(x, 2)) for x in (-3, -1, 1, 3, 5)] == [-2, -1, 1, 2, 3]
    assert round_near_inf(2.4999) == 2 and round_near_inf(-2.5) == -3


def test_resample_indices_30_to_25_drops_one_in_six_and_25_to_30_repeats_one_in_five():
    t30 = [Fraction(k, 30) for k in range(30)]
    got = resample_indices(t30, Fraction(1), 25)
    assert len(got) == 25
    assert sorted(set(range(30)) - set(got)) == [3, 9, 15, 21, 27]
    t25 = [Fraction(k, 25) for k in range(25)]
    got = resample_indices(t25, Fraction(1), 30)
    assert len(got) == 30 and sorted(set(got)) == list(range(25))
    assert [k for k in range(25) if got.count(k) == 2] == [2, 7, 12, 17, 22]


# --------------------------------------------------------------------------------------
# --fps against the ffmpeg command line, frame by frame


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("src,dst,n", [(30, 25, 45), (25, 30, 40), (30, 12.5, 45), (25, 7, 50)])
def test_fps_picks_the_same_source_frame_as_ffmpegs_fps_filter(tmp_path, decoder, src, dst, n):
    path = index_video(tmp_path / "idx.mkv", n, src)
    times, got, _ = decoded(path, decoder, fps=dst)
    want = ffmpeg_fps_indices(path, dst)
    assert got == want
    assert times == pytest.approx([k / dst for k in range(len(want))], abs=1e-9)
    # and the documented rule on the exact source times gives the same
    assert got == resample_indices([Fraction(k, src) for k in range(n)], Fraction(n, src), dst)


def test_fps_on_a_variable_frame_rate_input_matches_ffmpeg(tmp_path):
    path = vfr_video(tmp_path)
    starts = vfr_times(10)
    times, got, r = decoded(path, "pyav")
    assert got == list(range(10))
    assert times == pytest.approx(starts, abs=1e-9)
    for fps in (10, 25):
        times, got, _ = decoded(path, "pyav", fps=fps)
        assert got == ffmpeg_fps_indices(path, fps), fps
        # the documented rule: output tick n shows the last frame j with round(t_j * F) <= n
        ticks = [round_near_inf(Fraction(t).limit_denominator(1000) * fps) for t in starts]
        assert got == [max(j for j in range(10) if ticks[j] <= round(t * fps)) for t in times]


# --------------------------------------------------------------------------------------
# time ranges


@pytest.mark.parametrize("decoder", DECODERS)
def test_start_end_keep_exactly_the_frames_shown_in_the_half_open_range(tmp_path, decoder):
    path = index_video(tmp_path / "idx.mkv", 40, 25)
    times, got, r = decoded(path, decoder, start=0.2, end=0.6)  # frames 5 (t=0.2) .. 14
    assert got == list(range(5, 15))
    assert times == pytest.approx([k / 25 for k in range(5, 15)])
    assert r.frames_read <= 17  # decoding stops at the end of the range
    assert decoded(path, decoder, start=1.5)[1] == list(range(38, 40))  # start alone
    assert decoded(path, decoder, end=0.04)[1] == [0]  # end alone, exactly at frame 1
    # with --fps the range applies to the output times
    times, got, _ = decoded(path, decoder, fps=10, start=0.3, end=0.8)
    assert times == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    assert got == ffmpeg_fps_indices(path, 10)[3:8] == [8, 11, 13, 16, 18]
    assert decoded(path, decoder, start=5.0, end=6.0)[1] == []


def test_bad_selection_values_are_config_errors():
    from flowprep.decode.select import check_selection
    for kw in ({"fps": 0}, {"fps": -1}, {"start": -1}, {"end": -0.5}, {"start": 2, "end": 1},
               {"start": 1, "end": 1}, {"fps": float("nan")}):
        with pytest.raises(ConfigError):
            check_selection(**kw)
    check_selection(fps=25, start=0, end=0.1)


# --------------------------------------------------------------------------------------
# codecs, rotation, timestamps through PyAV; the OpenCV decoder on AV1

CODECS = {
    "av1_mp4": ("mp4", ["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "20", "-pix_fmt", "yuv420p"]),
    "av1_webm": ("webm", ["-c:v", "libsvtav1", "-preset", "12", "-crf", "20", "-pix_fmt", "yuv420p"]),
    "hevc": ("mp4", ["-c:v", "libx265", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p",
                     "-x265-params", "log-level=error"]),
    "vp9": ("webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-crf", "10", "-b:v", "0",
                     "-pix_fmt", "yuv420p"]),
    "prores": ("mov", ["-c:v", "prores_ks", "-profile:v", "2", "-pix_fmt", "yuv422p10le"]),
}


@pytest.fixture(scope="module")
def codec_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("codecs")
    frames = translated_frames(12, 64, 96, 1.0, 0.5, seed=3)
    src = write_video(str(d / "src.mkv"), frames)
    out = {}
    for name, (ext, args) in CODECS.items():
        p = d / f"{name}.{ext}"
        ffmpeg("-i", src, *args, p)
        out[name] = str(p)
    return frames, out


@pytest.mark.parametrize("name", sorted(CODECS))
def test_pyav_decodes_av1_hevc_vp9_prores_with_the_right_frames(codec_videos, name):
    frames, videos = codec_videos
    r = open_reader(videos[name], "pyav", Resize(0))
    got = list(r.frames())
    assert len(got) == len(frames) and r.frames_read == 12 and r.decode_errors == 0
    for (t, f), ref in zip(got, frames):
        assert f.shape == ref.shape and f.dtype == np.uint8
        assert np.abs(f.astype(int) - ref).mean() < 4.0  # lossy, but the same picture
    assert [float(t) for t, _ in got] == pytest.approx([k / 25 for k in range(12)], abs=1e-6)
    assert r.describe()["name"] == "pyav" and r.describe()["ffmpeg"]


@pytest.mark.parametrize("name", ["av1_mp4", "av1_webm"])
def test_opencv_decoder_on_av1_fails_naming_the_codec_and_the_fix(codec_videos, name):
    _, videos = codec_videos
    try:
        r = open_reader(videos[name], "opencv", Resize(0))
    except DecodeError as exc:
        msg = str(exc)
        assert videos[name] in msg and "AV1" in msg and "--decoder pyav" in msg
    else:  # an OpenCV built with an AV1 decoder: then it must decode it
        assert len(list(r)) == 12


@pytest.mark.parametrize("how", [["-display_rotation", "90"], ["-display_rotation", "-90"],
                                 ["-display_rotation", "180"]])
def test_pyav_applies_the_display_rotation_as_opencv_and_ffmpeg_do(tmp_path, how):
    frames = translated_frames(4, 48, 80, 1.0, 0.0, seed=5)
    src = write_video(str(tmp_path / "src.mkv"), frames)
    rot = tmp_path / "rot.mp4"
    ffmpeg(*how, "-i", src, "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", rot)
    a = [f for f in open_reader(str(rot), "pyav", Resize(0))]
    b = [f for f in open_reader(str(rot), "opencv", Resize(0))]
    p = ffmpeg("-i", rot, "-f", "rawvideo", "-pix_fmt", "rgb24", "-")  # ffmpeg's autorotate
    shape = (48, 80) if how[1] == "180" else (80, 48)
    ref = np.frombuffer(p.stdout, np.uint8).reshape(-1, *shape, 3)
    assert len(a) == len(ref) == 4
    for x, y, z in zip(a, b, ref):
        assert x.shape == (*shape, 3)
        assert np.abs(x.astype(int) - z).max() <= 2
        assert np.abs(x.astype(int) - y).max() <= 2


def test_unknown_decoder_name_is_a_config_error():
    with pytest.raises(ConfigError, match="decoder must be one of"):
        resolve_decoder("gstreamer")


# --------------------------------------------------------------------------------------
# frame folders


def test_natural_order():
    names = ["img_10.jpg", "img_2.jpg", "img_1.jpg", "IMG_3.jpg", "img_100.jpg"]
    assert sorted(names, key=natural_key) == ["img_1.jpg", "img_2.jpg", "IMG_3.jpg", "img_10.jpg",
                                              "img_100.jpg"]


def _write_folder(d, n, fmt="png", names=None):
    import cv2
    os.makedirs(d, exist_ok=True)
    for k in range(n):
        name = names[k] if names else f"{k + 1}.{fmt}"
        cv2.imwrite(os.path.join(d, name), np.full((H, W, 3), LEVEL * k, np.uint8))


def test_frame_folder_in_natural_order_with_input_fps(tmp_path):
    d = str(tmp_path / "clip")
    _write_folder(d, 12)  # 1.png .. 12.png: "10.png" sorts after "9.png"
    r = open_reader(d, resize=Resize(0), input_fps=12.5)
    got = list(r.frames())
    assert [index_of(f) for _, f in got] == list(range(12))
    assert [float(t) for t, _ in got] == pytest.approx([k / 12.5 for k in range(12)])
    assert r.fps == 12.5 and r.name == "folder"
    assert open_reader(d, resize=Resize(0)).fps == 25.0  # the documented default


def test_frame_folder_skips_an_odd_sized_and_an_unreadable_image_with_warnings(tmp_path):
    import cv2
    d = str(tmp_path / "clip")
    _write_folder(d, 6, fmt="jpg", names=[f"img_{k:05d}.jpg" for k in range(1, 7)])
    cv2.imwrite(os.path.join(d, "img_00003.jpg"), np.zeros((H + 2, W, 3), np.uint8))
    with open(os.path.join(d, "img_00005.jpg"), "wb") as fh:
        fh.write(b"not a jpeg")
    r = open_reader(d, resize=Resize(0))
    got = list(r.frames())
    assert [index_of(f) for _, f in got] == [0, 1, 3, 5]
    assert [float(t) for t, _ in got] == pytest.approx([0, 0.04, 0.12, 0.2])  # slots kept
    (w,) = r.warnings()
    assert "img_00003.jpg is 32x26" in w and "img_00005.jpg does not decode" in w
    assert r.decode_errors == 2


def test_frame_folder_where_nothing_decodes_fails_with_a_reason(tmp_path):
    d = tmp_path / "clip"
    d.mkdir()
    (d / "a.jpg").write_bytes(b"")
    (d / "b.png").write_bytes(b"garbage")
    with pytest.raises(DecodeError, match="none of its 2 images decodes"):
        open_reader(str(d))


@pytest.mark.parametrize("decoder", DECODERS)
def test_stopping_at_end_is_not_a_truncated_file(samples, decoder):
    path = [p for p in samples if p.endswith("bikes.mp4")][0]  # the container claims 250 frames
    r = open_reader(path, decoder, Resize(64))
    got = list(select(r.frames(), end=0.5, end_time=lambda _t: r.end_time))
    r.close()
    assert r.container_frames == 250 and 0 < len(got) < 20
    assert not r.truncated and r.warnings() == []
