"""Issue 21 part 3: --start seeks; one long video split into time chunks and joined.

Real decodes of real encodes: an H.264 file with short open groups of pictures
(B-frames that reference the previous group, so a seek lands on frames that must
be dropped) and lossless FFV1 files of a moving texture. A chunked video is
compared with the unsplit one byte for byte: every JPEG file and meta.json of the
JPEG store; the blob, payload tables and meta of the HDF5 store.
"""
import os
from fractions import Fraction

import cv2
import numpy as np
import pytest

import flowprep

from flowprep.run.chunks import (ChunkMismatch, ChunkSpec, chunk_setting, compute_chunk, join_parts,
                             part_path, plan_chunks, publish_parts, save_part, write_order)
from flowprep.decode import Resize, open_reader
from flowprep.decode.select import select
from flowprep.errors import ConfigError
from synth import sample_videos, translated_frames, write_video

FPS = 25


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory):
    """48 frames of H.264 at 25 frames/s, a keyframe every 8, open GOPs with B-frames."""
    d = tmp_path_factory.mktemp("gop")
    frames = translated_frames(48, 48, 64, 1.3, -0.7, seed=3)
    return write_video(str(d / "gop.mp4"), frames, fps=FPS, codec="libx264", pix_fmt="yuv420p",
                       extra=["-g", "8", "-bf", "3", "-x264-params",
                              "open-gop=1:keyint=8:min-keyint=8:scenecut=0"])


@pytest.fixture(scope="module")
def moving_video(tmp_path_factory):
    """40 lossless (FFV1) frames of a texture moving (1.5, -1) px a frame, 25 frames/s."""
    d = tmp_path_factory.mktemp("moving")
    return write_video(str(d / "moving.mkv"), translated_frames(40, 40, 56, 1.5, -1.0, seed=1),
                       fps=FPS)


def _decode(path, seek=None, **sel):
    r = open_reader(path, "pyav", Resize(0), seek=seek)
    got = [(Fraction(t).limit_denominator(10**6), f) for t, f in
           select(r.frames(), end_time=lambda _t: r.end_time, **sel)]
    return got, r


def _same(a, b):
    return len(a) == len(b) and all(x[0] == y[0] and np.array_equal(x[1], y[1])
                                    for x, y in zip(a, b))


# --------------------------------------------------------------------------------------
# seeking


@pytest.mark.parametrize("fps", [None, 10, 30])
def test_a_seek_keeps_exactly_the_frames_of_a_decode_from_the_start(gop_video, fps):
    full, r0 = _decode(gop_video, fps=fps)
    assert r0.seeked_to is None
    landed = set()
    for s in (0.05, 0.3, 0.32, 0.33, 0.5, 0.97, 1.28, 1.5, 1.9):
        got, r = _decode(gop_video, seek=s, fps=fps, start=s)
        want, _ = _decode(gop_video, fps=fps, start=s)
        assert _same(got, want), s
        assert r.seeked_to is not None and r.seeked_to <= Fraction(s).limit_denominator(10**6)
        landed.add(float(r.seeked_to))
        if s >= 0.5:  # it did not decode from the first frame
            assert r.frames_read <= r0.frames_read - 8
    assert len(landed) > 3  # several keyframes were landed on


def test_a_seek_on_the_sample_clips_keeps_the_same_frames():
    for path in sample_videos()[:3]:
        for s in (1.1, 3.3):
            got, _ = _decode(path, seek=s, start=s, end=s + 1.0)
            want, _ = _decode(path, start=s, end=s + 1.0)
            assert _same(got, want) and got, (path, s)


def test_a_seek_past_the_end_gives_no_selected_frame(gop_video):
    got, r = _decode(gop_video, seek=5.0, start=5.0)
    assert got == [] and r.frames_read >= 1


@pytest.fixture(scope="module")
def moving_folder(tmp_path_factory):
    """A frame folder: the 40 frames of moving_video as PNG images (frame_1.png ...)."""
    d = tmp_path_factory.mktemp("folder") / "moving"
    d.mkdir()
    for k, f in enumerate(translated_frames(40, 40, 56, 1.5, -1.0, seed=1)):
        cv2.imwrite(str(d / f"frame_{k + 1}.png"), f[:, :, ::-1])
    return str(d)


def _decode_folder(path, seek=None, **sel):
    r = open_reader(path, "auto", Resize(0), input_fps=FPS, seek=seek)
    got = [(Fraction(t), f) for t, f in select(r.frames(), end_time=lambda _t: r.end_time, **sel)]
    return got, r


@pytest.mark.parametrize("fps", [None, 10, 30])
def test_a_frame_folder_seeks_exactly_and_keeps_the_same_frames(moving_folder, fps):
    full, r0 = _decode_folder(moving_folder, fps=fps)
    assert r0.seeked_to is None and r0.frames_read == 40 and r0.seekable
    for s in (0.03, 0.04, 0.3, 0.33, 0.5, 0.97, 1.28, 1.5):
        got, r = _decode_folder(moving_folder, seek=s, fps=fps, start=s)
        want, _ = _decode_folder(moving_folder, fps=fps, start=s)
        assert _same(got, want) and got, s
        first = int(Fraction(s).limit_denominator(10**6) * FPS)  # the image shown at s
        assert r.seeked_to == Fraction(first, FPS) and r.frames_skipped == first
        assert r.frames_read == 40 - first  # the images before it were not read
        assert r.warnings() == [] and not r.truncated
    got, r = _decode_folder(moving_folder, seek=5.0, start=5.0)  # past the end
    assert got == [] and r.frames_read == 1 and r.frames_skipped == 39 and not r.truncated


def test_a_folder_seek_into_unusable_images_decodes_from_the_start(moving_folder, tmp_path):
    """Nothing usable after the seek point: the outcome is a decode from the start's (the
    frames before it decode, the skipped images are counted over the whole folder)."""
    import shutil
    d = tmp_path / "f"
    shutil.copytree(moving_folder, d)
    for k in range(31, 41):
        (d / f"frame_{k}.png").write_bytes(b"not a png")
    got, r = _decode_folder(str(d), seek=1.3, start=1.3)
    want, r0 = _decode_folder(str(d), start=1.3)
    assert got == want == [] and r.seeked_to is None and r.frames_skipped == 0
    assert r.frames_read == r0.frames_read == 30 and r.decode_errors == r0.decode_errors == 10
    assert r.skipped_summary() == r0.skipped_summary()


def test_a_seek_is_not_reported_as_a_truncated_file(gop_video):
    """A seek decodes fewer frames than the container claims: not a cut-short file."""
    _, r = _decode(gop_video, seek=1.0, start=1.0)
    assert r.seeked_to > 0 and r.frames_skipped == round(float(r.seeked_to) * FPS)
    assert r.frames_read + r.frames_skipped == 48 and r.warnings() == [] and not r.truncated
    from flowprep.decode.base import decode_warnings  # skipped frames count as present
    assert decode_warnings(28, 48, True, 0, skipped=20) == []
    assert decode_warnings(20, 48, True, 0, skipped=20)[0].startswith(
        "truncated: 20 frames decoded after a seek past 20, the container claims 48")


def test_a_run_with_start_on_a_real_clip_publishes_without_a_truncation_warning(tmp_path):
    bikes = [p for p in sample_videos() if os.path.basename(p) == "bikes.mp4"][0]
    rep = flowprep.extract([bikes], str(tmp_path / "out"), algo="farneback", start=9.0,
                           short_side=64, jobs=1)
    assert rep.ok and not rep.warnings
    meta = flowprep.open_store(rep.root)["bikes"].meta
    assert "warnings" not in meta and meta["num_frames"] == 25
    assert meta["decoded_frames"] < meta["container_frames"] - 25  # it did seek


def test_chunk_size_setting():
    assert chunk_setting("") is None and chunk_setting("auto") is None
    assert chunk_setting("0") == 0 and chunk_setting("12") == 12
    for bad in ("-1", "1", "x", "2.5"):
        with pytest.raises(ConfigError, match="FLOWPREP_CHUNK_FRAMES"):
            chunk_setting(bad)


# --------------------------------------------------------------------------------------
# chunks computed and joined in this process, against process_video


def _job(tmp_path, name, inputs, chunk_frames=None, **options):
    from flowprep.run.extract import ExtractOptions, _write_store_info, prepare
    from flowprep.run.pipeline import Job
    from flowprep.store.base import config_key
    opts = ExtractOptions(jobs=1, short_side=0, **options)
    choice, params, config, videos = prepare(inputs, str(tmp_path / name), opts)
    root = str(tmp_path / name)
    os.makedirs(root, exist_ok=True)
    key = config_key(config)
    _write_store_info(root, opts.format, config, key, [])
    tmp_root = os.path.join(root, ".flowprep", "tmp", "test")
    job = Job(opts, choice, params, config, key, root, tmp_root, 1)
    job.chunk_frames = chunk_frames
    return job, videos


def _backend(job):
    from flowprep.run.pipeline import make_job_backend
    return make_job_backend(job, "cpu", 1)


def _unsplit(tmp_path, inputs, **options):
    from flowprep.run.pipeline import process_video
    job, videos = _job(tmp_path, "unsplit", inputs, **options)
    backend = _backend(job)
    with job.writer("w0") as w:
        for v in videos:
            assert process_video(v, job, backend, w).published
    return job.root


def _chunked(tmp_path, inputs, specs_of, **options):
    job, videos = _job(tmp_path, "chunked", inputs, **options)
    backend = _backend(job)
    with job.writer("w0") as w:
        for v in videos:
            specs = specs_of(v)
            paths = []
            for spec in specs:
                paths.append(part_path(job, v.video_id, spec.index))
                save_part(compute_chunk(v, job, backend, spec), paths[-1])
            res = publish_parts(v, job, backend, w, paths)
            assert res.published, res
    return job.root


def _even_specs(n_chunks, t_end, start=0.0):
    edges = [None] + [Fraction(start) + (Fraction(t_end) - Fraction(start)) * c / n_chunks
                      for c in range(1, n_chunks)] + [None]
    return lambda _v: [ChunkSpec(i, n_chunks, edges[i], edges[i + 1]) for i in range(n_chunks)]


def store_bytes(root):
    """Every stored byte of every video, by a name that does not depend on shard names."""
    from flowprep import open_store
    store = open_store(root)
    out = {}
    if store.format == "jpeg":
        for vid in store.video_ids:
            d = os.path.join(root, vid)
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as fh:
                    out[f"{vid}/{name}"] = fh.read()
    elif store.format == "hdf5":
        for vid in store.video_ids:
            v = store[vid]
            g = v._group()
            for name in sorted(g.keys()):
                out[f"{vid}/{name}"] = g[name][()].tobytes()
    else:  # every payload and the meta, through the reader
        import json
        from flowprep.store.base import stored_streams
        for vid in store.video_ids:
            v = store[vid]
            out[f"{vid}/meta"] = json.dumps(v.meta, sort_keys=True).encode()
            if v.task != "flow":
                for i in range(v.num_frames):
                    out[f"{vid}/rgb{i}"] = bytes(v.rgb_bytes(i))
            for b, w in stored_streams(v.meta):
                for i in range(v.num_flows):
                    x, y = v.flow_payload(i, b, w)
                    out[f"{vid}/flow{i}{b}{w}"] = bytes(x) + b"|" + bytes(y)
    assert out
    return out


def assert_same_store(a, b):
    sa, sb = store_bytes(a), store_bytes(b)
    assert sorted(sa) == sorted(sb)
    diff = [k for k in sa if sa[k] != sb[k]]
    assert not diff, diff[:5]


CASES = {
    "step1": dict(),
    "step2-backward": dict(step=2, backward=True),
    "warped": dict(warped=True, backward=True),
    "fps-range": dict(fps=20, start=0.22, end=1.5),
    "adaptive-flow": dict(quant="adaptive", task="flow", step=3),
}


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5", "wds"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_chunked_video_is_the_unsplit_video_byte_for_byte(tmp_path, moving_video, fmt, case):
    opts = dict(CASES[case], format=fmt, algo="dis")
    a = _unsplit(tmp_path, [moving_video], **opts)
    b = _chunked(tmp_path, [moving_video], _even_specs(4, 1.6, opts.get("start") or 0), **opts)
    assert_same_store(a, b)


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5", "wds"])
@pytest.mark.parametrize("case", ["step2-backward", "fps-range"])
def test_a_chunked_frame_folder_is_the_unsplit_folder_byte_for_byte(tmp_path, moving_folder,
                                                                    fmt, case):
    opts = dict(CASES[case], format=fmt, algo="dis")
    a = _unsplit(tmp_path, [moving_folder], **opts)
    b = _chunked(tmp_path, [moving_folder], _even_specs(3, 1.6, opts.get("start") or 0), **opts)
    assert_same_store(a, b)


def test_hdf5_raw_payload_and_uneven_and_empty_chunks(tmp_path, moving_video):
    opts = dict(format="hdf5", payload="raw", algo="dis", step=2)
    a = _unsplit(tmp_path, [moving_video], **opts)
    edges = [None, Fraction(3, 25), Fraction(13, 100), Fraction(1), Fraction(5), None]
    specs = [ChunkSpec(i, 5, edges[i], edges[i + 1]) for i in range(5)]  # two empty chunks
    b = _chunked(tmp_path, [moving_video], lambda _v: specs, **opts)
    assert_same_store(a, b)


def test_chunks_of_an_open_gop_h264_video_join_to_the_unsplit_one(tmp_path, gop_video):
    opts = dict(algo="dis", step=2, backward=True)
    a = _unsplit(tmp_path, [gop_video], **opts)
    b = _chunked(tmp_path, [gop_video], _even_specs(5, 1.92), **opts)  # bounds off keyframes
    assert_same_store(a, b)


def test_the_native_tvl1_chunked_equals_unsplit(tmp_path, moving_video):
    from flowprep.flow import resolve
    if resolve("tvl1", "cpu", "native").implementation != "native":
        pytest.skip("native TV-L1 not built")
    opts = dict(algo="tvl1", backend="native", step=1, size=(48, 32))
    a = _unsplit(tmp_path, [moving_video], **opts)
    b = _chunked(tmp_path, [moving_video], _even_specs(3, 1.6), **opts)
    assert_same_store(a, b)


def test_parts_that_do_not_line_up_are_refused(tmp_path, moving_video):
    job, videos = _job(tmp_path, "x", [moving_video], algo="dis")
    backend = _backend(job)
    specs = _even_specs(3, 1.6)(videos[0])
    parts = [compute_chunk(videos[0], job, backend, s) for s in specs]
    assert join_parts(parts, 1).n_flows == 39
    with pytest.raises(ChunkMismatch, match="out of order"):
        join_parts([parts[0], parts[2], parts[1]], 1)
    with pytest.raises(ChunkMismatch, match="out of order"):
        join_parts(parts[:2], 1)
    bad = parts[1].__class__(**{**parts[1].__dict__, "head": [(parts[1].head[0][0], b"x" * 16)]})
    with pytest.raises(ChunkMismatch, match="overlap"):
        join_parts([parts[0], bad, parts[2]], 1)
    dirty = parts[2].__class__(**{**parts[2].__dict__, "decode_errors": 1})
    with pytest.raises(ChunkMismatch, match="corrupt"):
        join_parts([parts[0], parts[1], dirty], 1)


def test_write_order_is_the_unsplit_runs_order():
    got = list(write_order(4, 1, 2, True, True, True, True))
    assert got == [("rgb", 0), ("rgb", 1), ("rgb", 2),
                   ("flow", 0, False, False), ("flow", 0, True, False),
                   ("flow", 1, False, False), ("flow", 1, True, False),
                   ("flow", 0, False, True), ("flow", 0, True, True),
                   ("flow", 1, False, True), ("flow", 1, True, True),
                   ("rgb", 3), ("flow", 2, False, False), ("flow", 2, True, False),
                   ("flow", 2, False, True), ("flow", 2, True, True)]


def test_plan_chunks_sizes(tmp_path, moving_video):
    job, videos = _job(tmp_path, "p", [moving_video], algo="dis")
    r = open_reader(moving_video, "pyav", Resize(0))
    job.chunk_frames = 8
    specs = plan_chunks(r, job, None, None)
    assert [s.index for s in specs] == list(range(5)) and specs[0].t0 is None
    assert specs[-1].t1 is None and all(a.t1 == b.t0 for a, b in zip(specs, specs[1:]))
    job.chunk_frames = 0
    assert plan_chunks(r, job, None, None) is None
    job.chunk_frames = None  # automatic: 40 frames is short
    assert plan_chunks(r, job, None, None) is None
    job.chunk_frames = 8
    specs = plan_chunks(r, job, 0.5, 1.0)  # 12.5 frames in the range: under two chunks
    assert specs is None
    r.close()


# --------------------------------------------------------------------------------------
# the runners: a split video among short ones, kill -9, a corrupt packet, a failed chunk


FLOWPREP = os.path.join(os.path.dirname(__import__("sys").executable), "flowprep")


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory, gop_video):
    """A folder: the 48-frame open-GOP H.264 video and two short FFV1 clips."""
    import shutil
    d = tmp_path_factory.mktemp("run") / "in"
    d.mkdir()
    shutil.copy(gop_video, d / "long.mp4")
    for k in range(2):
        write_video(str(d / f"short{k}.mkv"), translated_frames(7, 48, 64, 1.0, 0.5, seed=k))
    return str(d)


def _extract(monkeypatch, inputs, out, chunk, **opts):
    import flowprep
    monkeypatch.setenv("FLOWPREP_CHUNK_FRAMES", str(chunk))
    opts.setdefault("algo", "dis")
    return flowprep.extract([inputs], str(out), short_side=0, **opts)


@pytest.mark.parametrize("fmt", ["jpeg", "hdf5", "wds"])
def test_a_run_splits_the_long_video_only_and_equals_an_unsplit_run(tmp_path, monkeypatch,
                                                                     run_inputs, fmt):
    opts = dict(format=fmt, step=2, backward=True, start=0.1, end=1.8)
    ref = _extract(monkeypatch, run_inputs, tmp_path / "ref", 0, jobs=1, **opts)
    assert ref.ok and not ref.chunked and len(ref.published) == 3
    two = _extract(monkeypatch, run_inputs, tmp_path / "two", 8, jobs=2, **opts)
    assert two.ok and two.chunked == {"long": 6} and not two.chunk_fallbacks
    one = _extract(monkeypatch, run_inputs, tmp_path / "one", 12, jobs=1, **opts)
    assert one.ok and one.chunked == {"long": 4}  # other chunks, one worker
    assert_same_store(ref.root, two.root)
    assert_same_store(ref.root, one.root)
    again = _extract(monkeypatch, run_inputs, tmp_path / "two", 8, jobs=2, **opts)
    assert sorted(again.skipped) == ["long", "short0", "short1"] and not again.published
    assert not os.listdir(os.path.join(two.root, ".flowprep", "tmp"))


def test_a_run_splits_a_long_frame_folder_and_equals_an_unsplit_run(tmp_path, monkeypatch,
                                                                    moving_folder):
    import shutil
    inputs = tmp_path / "in"
    shutil.copytree(moving_folder, inputs / "cls" / "folder")
    opts = dict(format="wds", step=2, start=0.3, input_fps=FPS)
    ref = _extract(monkeypatch, str(inputs), tmp_path / "ref", 0, jobs=1, **opts)
    assert ref.ok and not ref.chunked
    two = _extract(monkeypatch, str(inputs), tmp_path / "two", 8, jobs=2, **opts)
    assert two.ok and two.chunked == {"cls/folder": 5} and not two.chunk_fallbacks
    assert_same_store(ref.root, two.root)
    meta = flowprep.open_store(two.root)["cls/folder"].meta
    assert meta["decoded_frames"] == 40 - 7 and "warnings" not in meta  # from image 7 (0.28 s)


def test_a_bad_chunk_size_is_refused_before_anything_runs(tmp_path, monkeypatch, run_inputs):
    with pytest.raises(ConfigError, match="FLOWPREP_CHUNK_FRAMES must be"):
        _extract(monkeypatch, run_inputs, tmp_path / "out", "lots", jobs=2)
    assert not (tmp_path / "out").exists()


def test_a_failed_chunk_fails_its_video_with_the_reason(tmp_path, monkeypatch, run_inputs):
    monkeypatch.setenv("FLOWPREP_TEST_HOOK", "segfault:long#chunk2")
    rep = _extract(monkeypatch, run_inputs, tmp_path / "out", 8, jobs=2)
    assert sorted(rep.published) == ["short0", "short1"]
    (path, reason), = rep.failed.items()
    assert path.endswith("long.mp4")
    assert "crashed (SIGSEGV)" in reason and "time chunk 3 of 6" in reason, reason
    import flowprep
    assert list(flowprep.open_store(rep.root).failures) == [path]
    monkeypatch.delenv("FLOWPREP_TEST_HOOK")
    rep = _extract(monkeypatch, run_inputs, tmp_path / "out", 8, jobs=2)  # the rerun redoes it
    assert rep.published == ["long"] and rep.chunked == {"long": 6} and rep.ok
    ref = _extract(monkeypatch, run_inputs, tmp_path / "ref", 0, jobs=1)
    assert_same_store(ref.root, rep.root)


def _corrupt_one_packet(src, dst, at_time):
    """Copy ``src`` with the NAL length of the first packet shown after ``at_time``
    overwritten: the decoder rejects that packet (InvalidDataError)."""
    import av
    with av.open(src) as c:
        st = c.streams.video[0]
        pos = min(p.pos for p in c.demux(st)
                  if p.pts is not None and p.pts * st.time_base > at_time and p.size
                  and not p.is_keyframe)
    data = bytearray(open(src, "rb").read())
    data[pos:pos + 4] = b"\x7f\xff\xff\xff"
    open(dst, "wb").write(bytes(data))
    return dst


def test_a_corrupt_packet_inside_one_chunk_gives_the_unsplit_result(tmp_path, monkeypatch,
                                                                    gop_video):
    d = tmp_path / "in"
    d.mkdir()
    _corrupt_one_packet(gop_video, str(d / "long.mp4"), 1.05)
    ref = _extract(monkeypatch, str(d), tmp_path / "ref", 0, jobs=1)
    assert ref.published == ["long"] and "decode errors: 1 corrupt packet" in str(ref.warnings)
    rep = _extract(monkeypatch, str(d), tmp_path / "out", 8, jobs=2)
    # the chunk that met it did not line up with an unsplit decode: computed whole
    assert rep.published == ["long"] and "corrupt packets" in rep.chunk_fallbacks["long"]
    assert rep.warnings == ref.warnings
    assert_same_store(ref.root, rep.root)


def test_a_chunk_that_cannot_decode_fails_the_video_with_its_reason(tmp_path, monkeypatch):
    # two H.264 transport streams of different frame sizes, concatenated: decoding stops
    # with "size changes are not supported" in the last chunk, as in an unsplit decode
    d = tmp_path / "in"
    d.mkdir()
    parts = [write_video(str(tmp_path / f"{k}.ts"), translated_frames(30, h, w, 1.0, 0.5, seed=k),
                         codec="libx264", pix_fmt="yuv420p", extra=["-g", "8"])
             for k, (h, w) in enumerate([(48, 64), (40, 56)])]
    with open(d / "resized.ts", "wb") as fh:
        for p in parts:
            fh.write(open(p, "rb").read())
    ref = _extract(monkeypatch, str(d), tmp_path / "ref", 0, jobs=1)
    rep = _extract(monkeypatch, str(d), tmp_path / "out", 8, jobs=2)
    (why_ref,), (why,) = ref.failed.values(), rep.failed.values()
    assert "size changes are not supported" in why_ref and "time chunk" not in why_ref
    assert "size changes are not supported" in why and "(in time chunk 4 of 4" in why, why
    assert not rep.published and not os.listdir(os.path.join(rep.root, ".flowprep", "tmp"))


def test_kill_9_during_a_chunked_video_then_resume(tmp_path, run_inputs):
    import glob
    import signal
    import subprocess
    import time
    out = tmp_path / "out"
    env = dict(os.environ, FLOWPREP_CHUNK_FRAMES="8", FLOWPREP_TEST_HOOK="hang:long#chunk3")
    cmd = [FLOWPREP, "extract", run_inputs, "-o", str(out), "--algo", "dis", "--short-side",
           "0", "--jobs", "2", "--format", "hdf5", "--no-progress"]
    p = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    parts = os.path.join(str(out), ".flowprep", "tmp", "*", "chunks", "*", "part-*.pkl")
    deadline = time.monotonic() + 120
    while len(glob.glob(parts)) < 3 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert len(glob.glob(parts)) >= 3, p.communicate()  # chunks staged, chunk 3 hanging
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=30)
    import flowprep
    assert "long" not in flowprep.open_store(str(out)).video_ids
    env.pop("FLOWPREP_TEST_HOOK")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "long" in flowprep.open_store(str(out)).video_ids
    assert not glob.glob(parts)  # the killed run's staged parts are gone
    env["FLOWPREP_CHUNK_FRAMES"] = "0"
    ref = tmp_path / "ref"
    r = subprocess.run(cmd[:4] + [str(ref)] + cmd[5:], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same_store(str(ref), str(out))
    v = subprocess.run([FLOWPREP, "verify", str(out)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr


def test_a_dask_cluster_splits_the_long_video_and_equals_an_unsplit_run(tmp_path, monkeypatch,
                                                                        run_inputs):
    pytest.importorskip("distributed")
    from test_scale import dask_cluster
    ref = _extract(monkeypatch, run_inputs, tmp_path / "ref", 0, jobs=1, format="hdf5")
    with dask_cluster(tmp_path, workers=2, FLOWPREP_CHUNK_FRAMES="8") as client:
        rep = _extract(monkeypatch, run_inputs, tmp_path / "out", 8, format="hdf5",
                       scheduler=client.scheduler.address)
    assert rep.ok and rep.chunked == {"long": 6} and not rep.chunk_fallbacks
    assert_same_store(ref.root, rep.root)
    assert not os.listdir(os.path.join(rep.root, ".flowprep", "tmp"))


def test_the_automatic_chunk_count():
    from types import SimpleNamespace as NS
    opts = NS(task="both", format="jpeg", fps=None, step=1)

    def count(frames, workers, **kw):
        reader = NS(seekable=True, duration=frames / 25, fps=25.0)
        specs = plan_chunks(reader, NS(opts=NS(**{**opts.__dict__, **kw}), chunk_frames=None,
                                       workers=workers), None, None)
        return None if specs is None else len(specs)
    assert count(900, 2) == 4 and count(600, 16) == 9 and count(3600, 32) == 32
    assert count(90000, 32) == 352 and count(512, 1) == 2
    assert count(511, 2) is None  # short videos are never split automatically
    assert count(900, 2, task="rgb") is None and count(900, 2, format="zarr") is None
