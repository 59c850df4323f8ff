"""Issue 12 end to end: `flowprep extract` on AV1/HEVC/... inputs, --task through every tool,
--fps / --start / --end and list-line segments in the store, frame folders as inputs,
bad values (exit 2, nothing written), and the OpenCV fallback without PyAV.

Real subprocesses (the installed `flowprep` command), real stores, real encodes.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import flowprep
from flowprep.errors import ConfigError, StoreError
from flowprep.inputs import discover, parse_list_line
from synth import translated_frames, write_video
from test_decode import (CODECS, H, W, _write_folder, ffmpeg, ffmpeg_fps_indices, index_of,
                         index_video)

FLOWPREP = os.path.join(os.path.dirname(sys.executable), "flowprep")
FORMATS = ["jpeg", "hdf5", "wds"]


def cli(*args, env=None, timeout=300):
    return subprocess.run([FLOWPREP, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def extract(inputs, out, *extra, env=None):
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    return cli("extract", *inputs, "-o", out, "--algo", "dis", "--short-side", "0", "--jobs", "2",
               "--no-progress", *extra, env=env)


def stored_indices(video):
    return [index_of(video.rgb(i)) for i in range(video.num_frames)]


# --------------------------------------------------------------------------------------
# codecs through the command


@pytest.fixture(scope="module")
def av1_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("av1")
    src = write_video(str(d / "src.mkv"), translated_frames(8, 64, 96, 1.0, 0.0, seed=1))
    os.makedirs(d / "in")
    for name in ("av1_mp4", "av1_webm", "hevc"):
        ext, args = CODECS[name]
        ffmpeg("-i", src, *args, d / "in" / f"{name}.{ext}")
    return d / "in"


def test_av1_and_hevc_publish_with_pyav_and_av1_fails_with_a_reason_with_opencv(av1_dir, tmp_path):
    p = extract(av1_dir, tmp_path / "a")
    assert p.returncode == 0, p.stderr
    store = flowprep.open_store(tmp_path / "a")
    assert sorted(store.video_ids) == ["av1_mp4", "av1_webm", "hevc"]
    for v in store:
        assert v.num_frames == 8 and v.num_flows == 7 and v.meta["decoder"]["name"] == "pyav"
    assert store.config["decoder"]["name"] == "pyav" and store.config["decoder"]["ffmpeg"]
    p = extract(av1_dir, tmp_path / "o", "--decoder", "opencv")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    failures = flowprep.open_store(tmp_path / "o").failures
    assert sorted(os.path.basename(k) for k in failures) == ["av1_mp4.mp4", "av1_webm.webm"]
    for reason in failures.values():
        assert "AV1" in reason and "--decoder pyav" in reason


# --------------------------------------------------------------------------------------
# --fps, --start/--end, timestamps in the store


def test_fps_in_the_store_matches_ffmpeg_and_meta_records_both_rates(tmp_path):
    os.makedirs(tmp_path / "in")
    path = index_video(tmp_path / "in" / "idx30.mkv", 45, 30)
    p = extract(path, tmp_path / "s", "--fps", "25", "--task", "rgb")
    assert p.returncode == 0, p.stderr
    v = flowprep.open_store(tmp_path / "s")["idx30"]
    assert stored_indices(v) == ffmpeg_fps_indices(path, 25)
    assert v.fps == 25.0 and v.meta["source_fps"] == 30.0 and v.meta["output_fps"] == 25.0
    assert v.timestamps.dtype == np.float64
    np.testing.assert_allclose(v.timestamps, np.arange(v.num_frames) / 25.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_start_end_boundaries_and_a_range_past_the_end(tmp_path, fmt):
    os.makedirs(tmp_path / "in")
    path = index_video(tmp_path / "in" / "idx.mkv", 40, 25)
    p = extract(path, tmp_path / "s", "--start", "0.2", "--end", "0.6", "--format", fmt)
    assert p.returncode == 0, p.stderr
    v = flowprep.open_store(tmp_path / "s")["idx"]
    assert stored_indices(v) == list(range(5, 15))  # t = 0.2 kept, t = 0.6 not
    np.testing.assert_allclose(v.timestamps, np.arange(5, 15) / 25.0)
    assert v.num_flows == 9 and v.meta["time_range"] == [0.2, 0.6]
    assert "warnings" not in v.meta  # stopping at --end is not a truncated file
    p = extract(path, tmp_path / "late", "--start", "2", "--end", "3", "--format", fmt)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    store = flowprep.open_store(tmp_path / "late")
    assert store.video_ids == []
    (reason,) = store.failures.values()
    assert "no frames in [2 s, 3 s)" in reason and path in reason


def test_timestamps_of_a_vfr_input_are_its_presentation_times(tmp_path):
    from test_decode import vfr_times, vfr_video
    path = vfr_video(tmp_path)
    p = extract(path, tmp_path / "s", "--task", "rgb")
    assert p.returncode == 0, p.stderr
    v = flowprep.open_store(tmp_path / "s")["vfr"]
    np.testing.assert_allclose(v.timestamps, vfr_times(10), atol=1e-9)
    assert stored_indices(v) == list(range(10))


# --------------------------------------------------------------------------------------
# list lines with ranges


def test_parse_list_line_forms():
    no = lambda p: False  # noqa: E731
    assert parse_list_line("a/b.mp4", no) == ("a/b.mp4", None, None, None)
    assert parse_list_line("a/b.mp4 3", no) == ("a/b.mp4", 3, None, None)
    assert parse_list_line("a/b.mp4 1.5 4", no) == ("a/b.mp4", None, 1.5, 4.0)
    assert parse_list_line("a/b c.mp4 2 1.5 4", no) == ("a/b c.mp4", 2, 1.5, 4.0)
    assert parse_list_line("clip 7.mp4 3", lambda p: p == "clip 7.mp4 3") == ("clip 7.mp4 3", None,
                                                                              None, None)
    for bad in ("a.mp4 4 1.5", "a.mp4 1.5", "a.mp4 0.5 2 3"):
        with pytest.raises(ConfigError):
            parse_list_line(bad, no)


def test_list_line_segments_are_videos_with_their_own_ids(tmp_path):
    d = tmp_path / "in"
    os.makedirs(d / "Run")
    index_video(d / "Run" / "long.mkv", 40, 25)
    lst = d / "segments.txt"
    lst.write_text("Run/long.mkv 0 0.4\nRun/long.mkv 7 0.4 0.8\nRun/long.mkv 1.2 9\n")
    vids = {v.video_id: v for v in discover([str(lst)])}
    assert sorted(vids) == ["Run/long@0-0.4", "Run/long@0.4-0.8", "Run/long@1.2-9"]
    assert vids["Run/long@0.4-0.8"].label == 7 and vids["Run/long@0-0.4"].label == 0
    p = extract(lst, tmp_path / "s", "--task", "rgb")
    assert p.returncode == 0, p.stderr
    store = flowprep.open_store(tmp_path / "s")
    assert stored_indices(store["Run/long@0-0.4"]) == list(range(0, 10))
    assert stored_indices(store["Run/long@0.4-0.8"]) == list(range(10, 20))
    assert stored_indices(store["Run/long@1.2-9"]) == list(range(30, 40))
    rgb_list = (tmp_path / "s" / "rgb_list.txt").read_text().splitlines()
    assert "Run/long@0.4-0.8 10 7" in rgb_list


# --------------------------------------------------------------------------------------
# frame folders


def test_a_root_of_frame_folders_with_class_folders(tmp_path):
    root = tmp_path / "sth"
    _write_folder(str(root / "Push" / "10023"), 6, fmt="jpg",
                  names=[f"{k:05d}.jpg" for k in range(1, 7)])
    _write_folder(str(root / "Push" / "clip.v2"), 12)  # 1.png ... 12.png, natural order
    _write_folder(str(root / "Pull" / "777"), 3, names=["img_1.png", "img_2.png", "img_10.png"])
    p = extract(root, tmp_path / "s", "--input-fps", "12")
    assert p.returncode == 0, p.stderr
    store = flowprep.open_store(tmp_path / "s")
    assert sorted(store.video_ids) == ["Pull/777", "Push/10023", "Push/clip.v2"]
    assert stored_indices(store["Push/clip.v2"]) == list(range(12))
    assert stored_indices(store["Pull/777"]) == [0, 1, 2]
    assert store["Pull/777"].label == 0 and store["Push/10023"].label == 1
    v = store["Push/10023"]
    assert v.fps == 12.0 and v.meta["decoder"]["name"] == "folder" and v.num_flows == 5
    np.testing.assert_allclose(v.timestamps, np.arange(6) / 12.0)
    assert store.config["input_fps"] == 12.0


def test_one_frame_folder_an_odd_image_and_a_single_image(tmp_path):
    import cv2
    clip = tmp_path / "clip"
    _write_folder(str(clip), 5)
    cv2.imwrite(str(clip / "3.png"), np.zeros((H, W + 4, 3), np.uint8))
    single = tmp_path / "single"
    _write_folder(str(single), 1)
    p = extract([clip, single], tmp_path / "s")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    store = flowprep.open_store(tmp_path / "s")
    v = store["clip"]
    assert stored_indices(v) == [0, 1, 3, 4] and v.num_flows == 3
    assert any("3.png is 36x24" in w for w in v.meta["warnings"])
    assert "WARNING" in p.stderr and "3.png" in p.stderr
    (reason,) = store.failures.values()
    assert str(single) in reason and "needs at least 2" in reason
    # one image is a fine RGB-only video
    p = extract(single, tmp_path / "r", "--task", "rgb")
    assert p.returncode == 0, p.stderr
    assert flowprep.open_store(tmp_path / "r")["single"].num_frames == 1


# --------------------------------------------------------------------------------------
# --task through extract, inspect, verify, convert, show, index


@pytest.fixture(scope="module")
def task_stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    os.makedirs(d / "in" / "Walk")
    write_video(str(d / "in" / "Walk" / "a.mkv"), translated_frames(6, 48, 64, 1.0, 0.5))
    write_video(str(d / "in" / "Walk" / "b.mkv"), translated_frames(5, 48, 64, -1.0, 0.0, seed=2))
    out = {}
    for task in ("rgb", "flow"):
        for fmt in FORMATS:
            o = d / f"{task}-{fmt}"
            p = extract(d / "in", o, "--task", task, "--format", fmt)
            assert p.returncode == 0, p.stderr
            out[task, fmt] = str(o)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_task_rgb_stores_frames_only(task_stores, fmt, tmp_path):
    o = task_stores["rgb", fmt]
    store = flowprep.open_store(o)
    assert store.config["task"] == "rgb"
    v = store["Walk/a"]
    assert v.num_frames == 6 and v.num_flows == 0 and v.rgb(5).shape == (48, 64, 3)
    with pytest.raises(StoreError, match="--task rgb"):
        v.flow(0)
    top = sorted(n for n in os.listdir(o) if not n.startswith("."))
    assert top == sorted(["classes.txt", "flowprep.json", "rgb_list.txt"]
                         + (["Walk"] if fmt == "jpeg" else ["index", "shards"]))
    if fmt == "jpeg":
        assert sorted(os.listdir(os.path.join(o, "Walk", "a")))[-1] == "meta.json"
        assert not any(n.startswith("flow") for n in os.listdir(os.path.join(o, "Walk", "a")))
    assert cli("verify", o).returncode == 0
    r = cli("inspect", o)
    assert r.returncode == 0 and "RGB frames only (--task rgb)" in r.stdout
    assert json.loads(cli("inspect", o, "--json").stdout)["flows"] == 0
    dst = tmp_path / "conv"
    other = "hdf5" if fmt == "jpeg" else "jpeg"
    r = cli("convert", o, dst, "--format", other)
    assert r.returncode == 0, r.stderr
    c = flowprep.open_store(dst)
    assert c.config["task"] == "rgb" and np.array_equal(c["Walk/b"].rgb(4), store["Walk/b"].rgb(4))
    assert cli("verify", dst).returncode == 0
    assert not os.path.exists(dst / "flow_list.txt")
    r = cli("show", o, "Walk/a", "-o", tmp_path / "a.png")
    assert r.returncode == 0, r.stderr
    r = cli("show", o, "Walk/a", "--frame", "5", "-o", tmp_path / "b.png")
    assert r.returncode == 0, r.stderr
    assert cli("index", o).returncode == 0 and not os.path.exists(os.path.join(o, "flow_list.txt"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_task_flow_stores_flow_only(task_stores, fmt, tmp_path):
    o = task_stores["flow", fmt]
    store = flowprep.open_store(o)
    assert store.config["task"] == "flow"
    v = store["Walk/a"]
    assert v.num_frames == 6 and v.num_flows == 5 and v.flow(4).shape == (48, 64, 2)
    assert abs(float(np.median(v.flow(2)[8:-8, 8:-8, 0])) - 1.0) < 0.3
    with pytest.raises(StoreError, match="--task flow"):
        v.rgb(0)
    assert v.timestamps.shape == (6,)
    if fmt == "jpeg":
        assert not any(n.startswith("img_") for n in os.listdir(os.path.join(o, "Walk", "a")))
    assert not os.path.exists(os.path.join(o, "rgb_list.txt"))
    assert "Walk/a 5 0" in open(os.path.join(o, "flow_list.txt")).read().splitlines()
    assert cli("verify", o).returncode == 0
    r = cli("inspect", o)
    assert r.returncode == 0 and "flow only (--task flow)" in r.stdout
    assert "decoded (RGB not stored)" in r.stdout
    dst = tmp_path / "conv"
    r = cli("convert", o, dst, "--format", "hdf5" if fmt == "jpeg" else "jpeg")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(flowprep.open_store(dst)["Walk/a"].flow_quantized(3), v.flow_quantized(3))
    assert cli("verify", dst).returncode == 0
    r = cli("show", o, "Walk/a", "--frame", "1", "-o", tmp_path / "f.png")
    assert r.returncode == 0, r.stderr


def test_verify_finds_a_stray_rgb_file_in_a_flow_store(task_stores, tmp_path):
    import shutil
    dst = tmp_path / "copy"
    shutil.copytree(task_stores["flow", "jpeg"], dst)
    shutil.copy(os.path.join(dst, "Walk", "a", "flow_x_00001.jpg"),
                os.path.join(dst, "Walk", "a", "img_00001.jpg"))
    r = cli("verify", dst)
    assert r.returncode == 1 and "img_00001.jpg" in r.stdout + r.stderr


# --------------------------------------------------------------------------------------
# bad values: exit 2, nothing written


@pytest.mark.parametrize("args,what", [
    (["--fps", "0"], "--fps must be positive"), (["--fps", "-25"], "--fps must be positive"),
    (["--input-fps", "0"], "--input-fps must be positive"),
    (["--start", "3", "--end", "2"], "--start must be before --end"),
    (["--start", "1", "--end", "1"], "--start must be before --end"),
    (["--start", "-1"], "--start must be a time in seconds >= 0"),
    (["--end", "-0.5"], "--end must be a time"),
])
def test_bad_values_exit_2_before_anything_is_written(tmp_path, args, what):
    os.makedirs(tmp_path / "in")
    path = index_video(tmp_path / "in" / "idx.mkv", 5, 25)
    p = extract(path, tmp_path / "s", *args)
    assert p.returncode == 2, p.stderr
    assert what in p.stderr and "Traceback" not in p.stderr
    assert not os.path.exists(tmp_path / "s")


def test_a_bad_list_line_names_the_file_and_line(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("a.mp4\nb.mp4 5 2\n")
    p = extract(lst, tmp_path / "s")
    assert p.returncode == 2 and f"{lst}:2" in p.stderr and "must be before end" in p.stderr
    assert not os.path.exists(tmp_path / "s")


# --------------------------------------------------------------------------------------
# without PyAV


def test_without_pyav_auto_decodes_with_opencv_and_says_so(tmp_path):
    block = tmp_path / "block"
    os.makedirs(block / "av")
    (block / "av" / "__init__.py").write_text("raise ImportError('PyAV made unimportable by the test')\n")
    os.makedirs(tmp_path / "in")
    path = index_video(tmp_path / "in" / "idx.mkv", 6, 25)
    env = {"PYTHONPATH": str(block)}
    p = extract(path, tmp_path / "s", env=env)
    assert p.returncode == 0, p.stderr
    assert "note: PyAV is not installed" in p.stderr and "pip install av" in p.stderr
    store = flowprep.open_store(tmp_path / "s")
    assert store.config["decoder"]["name"] == "opencv" and "note" in store.config["decoder"]
    v = store["idx"]
    assert v.meta["decoder"]["name"] == "opencv" and stored_indices(v) == list(range(6))
    p = extract(path, tmp_path / "p", "--decoder", "pyav", env=env)
    assert p.returncode == 2 and "pip install av" in p.stderr


def _loader_reads_the_task() -> bool:
    """Whether flowprep.loader checks store.config["task"] (issue 14 adds it to the loader)."""
    import glob
    import importlib.util
    spec = importlib.util.find_spec("flowprep.loader")
    where = spec.submodule_search_locations
    files = glob.glob(os.path.join(list(where)[0], "*.py")) if where else [spec.origin]
    return any('"task"' in open(f, encoding="utf-8").read() for f in files)


# An RGB-only store asked for flow: helper 14's loader raises ConfigError up front (it reads
# store.config["task"]); until that merges, this tree's loader fails inside the sampling.
# strict: once the loader reads the task this case must pass (the marker is then inert).
_NEEDS_LOADER_CHECK = pytest.mark.xfail(not _loader_reads_the_task(), strict=True,
                                        reason="the loader's --task check comes with issue 14")


@pytest.mark.parametrize("task,modality", [("flow", "rgb"),
                                           pytest.param("rgb", "flow", marks=_NEEDS_LOADER_CHECK)])
def test_the_loader_asked_for_a_modality_the_store_lacks_is_a_clear_error(task_stores, task,
                                                                          modality):
    from flowprep.loader import TwoStreamDataset
    store = flowprep.open_store(task_stores[task, "jpeg"])
    with pytest.raises((ConfigError, StoreError), match=f"--task {task}"):
        ds = TwoStreamDataset(store, modality=modality, length=1, mode="val", crop_size=32)
        ds[0]
    # the modality it has loads
    ds = TwoStreamDataset(store, modality=task, length=1, mode="val", crop_size=32)
    assert ds[0]["label"] == 0


def test_config_key_hashes_the_decoder_by_name_only():
    from flowprep.run.extract import ExtractOptions, build_config
    from flowprep.flow import FlowChoice, merge_params
    from flowprep.store.base import config_key

    def key(decoder_info):
        cfg = build_config(ExtractOptions(algo="dis", decoder="opencv"),
                           FlowChoice("dis", "opencv-cpu", "cpu"), merge_params("dis"))
        cfg.pop("decoder")
        if decoder_info is not None:
            cfg["decoder"] = decoder_info
        return config_key(cfg)

    before = key(None)  # a store made before --decoder existed (OpenCV's reader)
    assert key({"name": "opencv", "opencv": "4.13.0"}) == before
    assert key({"name": "opencv", "opencv": "4.14.0", "note": "x"}) == before
    pyav = key({"name": "pyav", "pyav": "18.1.0", "ffmpeg": "8.1.2"})
    assert pyav != before
    assert key({"name": "pyav", "pyav": "19.0.0", "ffmpeg": "8.2"}) == pyav
