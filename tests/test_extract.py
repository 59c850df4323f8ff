"""flowprep extract end to end, on synthetic videos with known motion and on real videos."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import flowprep
from flowprep.cli.main import cli
from synth import translated_frames, translated_video, write_video

FAST = ["--algo", "farneback", "--jobs", "1"]


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def interior_mean(flow, m=16):
    return flow[m:-m, m:-m].reshape(-1, 2).mean(axis=0)


@pytest.mark.parametrize("algo", ["tvl1", "farneback"])
def test_translation_through_the_cli_pins_sign_units_and_resize(tmp_path, algo):
    # 512x384 source moving (+3.0, -1.5) px/frame, resized to short side 256: x 2/3 -> (2.0, -1.0)
    src = tmp_path / "in" / "Move" / "v_move.mkv"
    src.parent.mkdir(parents=True)
    write_video(str(src), translated_frames(4, 384, 512, 3.0, -1.5, sigma=3.0))
    out = tmp_path / "out"
    r = run_cli("extract", tmp_path / "in", "-o", out, "--algo", algo, "--jobs", "1")
    assert r.exit_code == 0, r.output
    store = flowprep.open_store(out)
    v = store["Move/v_move"]
    assert (v.width, v.height) == (341, 256)
    assert (v.num_frames, v.num_flows) == (4, 3)
    for i in range(v.num_flows):
        f = v.flow(i)
        assert f.dtype == np.float32 and f.shape == (256, 341, 2)
        np.testing.assert_allclose(interior_mean(f), [2.0, -1.0], atol=0.15)
        # the stored mean vector is the float flow's mean over the whole frame
        np.testing.assert_allclose(v.mean_flow[i], f.reshape(-1, 2).mean(0), atol=0.2)
    # uint8 as stored, on disk as greyscale JPEGs, 1-based
    q = v.flow_quantized(0)
    assert q.dtype == np.uint8 and q.shape == (256, 341, 2)
    on_disk = cv2.imread(str(out / "Move/v_move/flow_x_00001.jpg"), cv2.IMREAD_UNCHANGED)
    assert on_disk.ndim == 2
    np.testing.assert_array_equal(on_disk, q[..., 0])
    assert os.path.exists(out / "Move/v_move/img_00004.jpg")
    assert not os.path.exists(out / "Move/v_move/flow_x_00004.jpg")


def test_step_and_backward_flow(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=5, h=96, w=128, dx=1.0, dy=0.5)
    out = tmp_path / "out"
    r = run_cli("extract", src, "-o", out, "--short-side", 0, "--step", 2, "--backward", *FAST)
    assert r.exit_code == 0, r.output
    v = flowprep.open_store(out)["v"]
    assert (v.num_frames, v.num_flows, v.step) == (5, 3, 2)
    np.testing.assert_allclose(interior_mean(v.flow(0)), [2.0, 1.0], atol=0.15)
    np.testing.assert_allclose(interior_mean(v.flow(0, backward=True)), [-2.0, -1.0], atol=0.15)
    assert v.mean_flow_backward.shape == (3, 2)
    assert os.path.exists(out / "v" / "bflow_x_00003.jpg")


def test_adaptive_quantization_keeps_small_motion(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=3, h=96, w=128, dx=0.3, dy=-0.2)
    out = tmp_path / "out"
    r = run_cli("extract", src, "-o", out, "--short-side", 0, "--quant", "adaptive", "--algo", "tvl1",
                "--jobs", "1")
    assert r.exit_code == 0, r.output
    store = flowprep.open_store(out)
    v = store["v"]
    assert v.quant == {"scheme": "adaptive"}
    assert v.flow_ranges(0).shape == (2, 2)
    np.testing.assert_allclose(interior_mean(v.flow(0)), [0.3, -0.2], atol=0.05)
    assert store.config["quant"] == {"scheme": "adaptive"}


def test_real_videos_counts_come_from_decoding(tmp_path, small_dataset):
    out = tmp_path / "out"
    r = run_cli("extract", small_dataset, "-o", out, "--short-side", 128, "--algo", "dis",
                "--jobs", "2")
    assert r.exit_code == 0, r.output
    store = flowprep.open_store(out)
    assert store.video_ids == ["Biking/v_Biking_g01_c01", "Phone/v_Phone_g01_c01",
                               "Phone/v_Phone_g01_c02"]
    for vid in store.video_ids:
        v = store[vid]
        cap = cv2.VideoCapture(v.meta["source"])
        n = 0
        while cap.read()[0]:
            n += 1
        assert v.num_frames == n and v.num_flows == n - 1
        assert min(v.width, v.height) == 128
        assert v.rgb(n - 1).shape == (v.height, v.width, 3)
        assert v.fps > 0
    # annotation lists: "<video dir> <count> <label>", flows counted for the flow list
    rgb = (out / "rgb_list.txt").read_text().split("\n")
    flow = (out / "flow_list.txt").read_text().split("\n")
    assert rgb[0] == "Biking/v_Biking_g01_c01 250 0"
    assert flow[0] == "Biking/v_Biking_g01_c01 249 0"
    assert flow[1].endswith(" 1") and flow[2].endswith(" 1")
    assert (out / "classes.txt").read_text() == "0 Biking\n1 Phone\n"
    info = json.loads((out / "flowprep.json").read_text())
    assert info["format"] == "jpeg"
    assert info["config"]["algo"] == "dis" and info["config"]["quant"] == {"scheme": "fixed", "bound": 20.0}
    assert info["config"]["params"]["preset"] == "medium"
    assert "opencv" in info["versions"] and "flowprep" in info["versions"]


def test_rgb_frames_are_rgb_order(tmp_path):
    frames = [np.zeros((64, 64, 3), np.uint8) for _ in range(2)]
    for f in frames:
        f[..., 0] = 200  # red
    src = write_video(str(tmp_path / "red.mkv"), frames)
    out = tmp_path / "out"
    assert run_cli("extract", src, "-o", out, "--short-side", 0, *FAST).exit_code == 0
    px = flowprep.open_store(out)["red"].rgb(0)[32, 32]
    assert px[0] > 190 and px[1] < 10 and px[2] < 10


def _mtimes(d):
    return {f: os.stat(os.path.join(d, f)).st_mtime_ns for f in os.listdir(d)}


def test_resume_skips_published_and_redoes_half_written(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for k in range(3):
        translated_video(str(inp / f"v{k}.mkv"), n=4, h=64, w=80, dx=1, dy=0, seed=k)
    out = tmp_path / "out"
    assert run_cli("extract", inp, "-o", out, "--short-side", 0, *FAST).exit_code == 0
    before = {k: _mtimes(out / f"v{k}") for k in range(3)}
    # v1: half-written (meta.json missing); v2: a frame file missing
    os.unlink(out / "v1" / "meta.json")
    os.unlink(out / "v2" / "flow_y_00002.jpg")
    r = run_cli("extract", inp, "-o", out, "--short-side", 0, *FAST)
    assert r.exit_code == 0, r.output
    assert "2 published, 1 already published, 0 failed" in r.output
    assert _mtimes(out / "v0") == before[0]
    assert os.path.exists(out / "v1" / "meta.json") and os.path.exists(out / "v2" / "flow_y_00002.jpg")
    # a third run does nothing
    r = run_cli("extract", inp, "-o", out, "--short-side", 0, *FAST)
    assert "0 published, 3 already published" in r.output
    # a config change is not mistaken for done; --force recomputes
    r = run_cli("extract", inp, "-o", out, "--short-side", 0, "--bound", 15, *FAST)
    assert "3 published, 0 already published" in r.output
    assert flowprep.open_store(out)["v0"].quant["bound"] == 15.0
    r = run_cli("extract", inp, "-o", out, "--short-side", 0, "--bound", 15, "--force", *FAST)
    assert "3 published, 0 already published" in r.output
    assert not os.listdir(out / ".flowprep" / "tmp")  # nothing left staged


def test_bad_inputs_fail_with_reasons_and_good_ones_publish(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    translated_video(str(inp / "good.mkv"), n=3, h=64, w=80)
    (inp / "empty.mp4").write_bytes(b"")
    (inp / "notes.avi").write_text("this is not a video\n" * 50)
    write_video(str(inp / "single.mkv"), translated_frames(1, 64, 80, 1, 0))
    out = tmp_path / "out"
    r = run_cli("extract", inp, "-o", out, "--short-side", 0, *FAST)
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    store = flowprep.open_store(out)
    assert store.video_ids == ["good"]
    fails = {os.path.basename(k): v for k, v in store.failures.items()}
    assert set(fails) == {"empty.mp4", "notes.avi", "single.mkv"}
    assert "empty file" in fails["empty.mp4"]
    assert "not a readable video" in fails["notes.avi"] or "no video frames" in fails["notes.avi"]
    assert "1 frame decoded" in fails["single.mkv"] and "at least 2" in fails["single.mkv"]
    assert "FAILED" in r.output
    assert not [p for p in os.listdir(out) if p.startswith(("empty", "notes", "single"))]


def test_python_api_extract(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=3, h=64, w=80)
    report = flowprep.extract(src, tmp_path / "out", algo="dis", short_side=0, jobs=1)
    assert report.ok and report.published == ["v"] and report.frames == 3
    with pytest.raises(flowprep.FlowprepError, match="unknown extract option"):
        flowprep.extract(src, tmp_path / "out", algorithm="dis")


def test_usage_errors_exit_2(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=2, h=64, w=80)
    r = CliRunner().invoke(cli, ["extract", src, "-o", str(tmp_path / "o"), "--algo", "brox", "--device", "cpu"])
    assert r.exit_code == 2 and "brox runs only on CUDA" in r.output
    r = CliRunner().invoke(cli, ["extract", src, "-o", str(tmp_path / "o"), "--device", "cuda"])
    assert r.exit_code == 2 and "no CUDA" in r.output
    r = CliRunner().invoke(cli, ["extract", src, "-o", str(tmp_path / "o"), "--size", "big"])
    assert r.exit_code == 2 and "WIDTHxHEIGHT" in r.output
    r = CliRunner().invoke(cli, ["extract", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(cli, ["extract", src, "-o", str(tmp_path / "o"), "--param", "wraps=2"])
    assert r.exit_code == 2 and "unknown parameter 'wraps'" in r.output


def test_cli_as_a_real_subprocess(tmp_path):
    src = translated_video(str(tmp_path / "v 'quoted' name.mkv"), n=3, h=64, w=80)
    out = tmp_path / "out"
    exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
    p = subprocess.run([exe, "extract", src, "-o", str(out), "--size", "96x64", "--algo", "dis",
                        "--jobs", "1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "1 published" in p.stdout
    v = flowprep.open_store(out)["v 'quoted' name"]
    assert (v.width, v.height) == (96, 64)


def test_torch_backend_through_the_cli(tmp_path):
    pytest.importorskip("torch")
    src = translated_video(str(tmp_path / "v.mkv"), n=4, h=80, w=96, dx=1.25, dy=-0.5)
    out = tmp_path / "out"
    r = run_cli("extract", src, "-o", out, "--short-side", 0, "--backend", "torch",
                "--device", "cpu", "--batch-size", 2, "--jobs", "1")
    assert r.exit_code == 0, r.output
    store = flowprep.open_store(out)
    assert store.config["implementation"] == "torch" and store.config["algo"] == "tvl1"
    v = store["v"]
    assert v.num_flows == 3 and v.meta["flow"]["implementation"] == "torch"
    for i in range(3):
        np.testing.assert_allclose(interior_mean(v.flow(i), 12), [1.25, -0.5], atol=0.1)
