"""flowprep inspect, verify, convert and show through click's CliRunner; the PNG and its colours."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import flowprep
from flowprep.cli.main import cli
from flowprep.visualize import (CAPTION, GAP, evenly_spaced, flow_to_color, make_colorwheel,
                                panel_size, sheet_size, wheel_legend)
from test_store_contract import BOUND, H, W, copy_store, make_dataset, make_store

FORMATS = ["jpeg", "hdf5", "wds"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def read_png(path):
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------
# inspect


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_text(fmt):
    path, _ = make_store(fmt)
    r = run("inspect", path)
    assert r.exit_code == 0, r.output
    assert f"format     {fmt}" in r.output
    assert "videos     2 published, 1 failed" in r.output
    assert "frames     14 frames, 12 flows" in r.output
    assert "farneback" in r.output and f"bound {BOUND:g} px" in r.output
    assert os.path.join(make_dataset(), "Broken", "bad.mp4") in r.output


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_json(fmt):
    path, _ = make_store(fmt)
    r = run("inspect", path, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["format"] == fmt and d["videos"] == 2 and d["frames"] == 14 and d["flows"] == 12
    assert list(d["failures"]) == [os.path.join(make_dataset(), "Broken", "bad.mp4")]
    assert d["config"]["algo"] == "farneback"
    assert d["float32_bytes_per_flow"] == H * W * 2 * 4
    assert 0 < d["bytes_per_flow"] < d["float32_bytes_per_flow"]
    assert d["disk"]["bytes"] > d["payload_bytes"]["rgb"] + d["payload_bytes"]["flow"]
    if fmt in ("hdf5", "wds"):
        assert d["shards"] >= 1 and d["superseded"] == 0


def test_inspect_reports_the_same_payload_bytes_for_both_formats():
    j = json.loads(run("inspect", make_store("jpeg")[0], "--json").output)
    h = json.loads(run("inspect", make_store("hdf5")[0], "--json").output)
    assert j["payload_bytes"]["rgb"] == h["payload_bytes"]["rgb"]
    assert j["payload_bytes"]["flow"] == h["payload_bytes"]["flow"]


def test_inspect_not_a_store(tmp_path):
    r = CliRunner().invoke(cli, ["inspect", str(tmp_path)])
    assert r.exit_code == 2 and "not a flowprep store" in r.output


# --------------------------------------------------------------------------------------
# verify


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_ok(fmt):
    r = run("verify", make_store(fmt)[0])
    assert r.exit_code == 0 and r.output.startswith("OK: 2 videos verified")


def test_verify_lists_problems_and_exits_1(tmp_path):
    path = copy_store(make_store("jpeg")[0], tmp_path / "s")
    os.unlink(os.path.join(path, "MoveRight", "a", "img_00004.jpg"))
    r = CliRunner().invoke(cli, ["verify", path])
    assert r.exit_code == 1
    assert "MoveRight/a: frame 3: file missing [MoveRight/a/img_00004.jpg]" in r.output
    r = CliRunner().invoke(cli, ["verify", path, "--json", "--quick"])
    assert r.exit_code == 1
    assert json.loads(r.output) == [{"video_id": "MoveRight/a", "where": "frame 3",
                                     "message": "file missing",
                                     "path": "MoveRight/a/img_00004.jpg"}]


def test_verify_hdf5_truncated_shard_exits_1(tmp_path):
    from flowprep.store import hdf5 as h5
    path = copy_store(make_store("hdf5")[0], tmp_path / "s")
    shard = sorted(os.listdir(h5.shard_dir(path)))[0]
    with open(os.path.join(h5.shard_dir(path), shard), "r+b") as fh:
        fh.truncate(1000)
    r = CliRunner().invoke(cli, ["verify", path])
    assert r.exit_code == 1
    assert f"shard {shard}:" in r.output and "truncated" in r.output


# --------------------------------------------------------------------------------------
# convert


@pytest.mark.parametrize("src_fmt,dst_fmt", [(a, b) for a in FORMATS for b in FORMATS])
def test_convert_cli(tmp_path, src_fmt, dst_fmt):
    src, _ = make_store(src_fmt)
    dst = tmp_path / "dst"
    r = run("convert", src, dst, "--format", dst_fmt, "--shard-size", "1MiB")
    assert r.exit_code == 0, r.output
    assert "2 videos copied" in r.output and "1 failure records" in r.output
    a, b = flowprep.open_store(src), flowprep.open_store(dst)
    assert b.format == dst_fmt and b.video_ids == a.video_ids and b.failures == a.failures
    assert b.config == a.config
    for vid in a.video_ids:
        assert a[vid].rgb_bytes(3) == b[vid].rgb_bytes(3)
        assert a[vid].flow_payload(2) == b[vid].flow_payload(2)
    assert run("verify", dst).exit_code == 0
    # running it again resumes: nothing left to copy
    r = run("convert", src, dst, "--format", dst_fmt)
    assert r.exit_code == 0 and "0 videos copied, 2 already there" in r.output


def test_convert_bad_usage(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    r = CliRunner().invoke(cli, ["convert", make_store("jpeg")[0], str(tmp_path / "full"),
                                 "--format", "hdf5"])
    assert r.exit_code == 2 and "not empty" in r.output
    r = CliRunner().invoke(cli, ["convert", make_store("jpeg")[0], str(tmp_path / "x"),
                                 "--format", "zip"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["convert", make_store("jpeg")[0], str(tmp_path / "x"),
                                 "--format", "hdf5", "--shard-size", "lots"])
    assert r.exit_code == 2 and "--shard-size" in r.output


# --------------------------------------------------------------------------------------
# show, and the colour coding


def test_middlebury_wheel():
    wheel = make_colorwheel()
    assert wheel.shape == (55, 3)
    assert wheel[0].tolist() == [255, 0, 0]          # red at the start
    assert wheel[15].tolist() == [255, 255, 0]       # yellow after RY = 15
    assert wheel[21].tolist() == [0, 255, 0]         # green after YG = 6
    assert wheel[25].tolist() == [0, 255, 255]       # cyan after GC = 4
    assert wheel[36].tolist() == [0, 0, 255]         # blue after CB = 11
    assert wheel[49].tolist() == [255, 0, 255]       # magenta after BM = 13


@pytest.mark.parametrize("d,expect", [((1, 0), "red"), ((-1, 0), "cyan-blue"),
                                      ((0, 1), "yellow"), ((0, -1), "violet")])
def test_flow_to_color_directions(d, expect):
    f = np.zeros((2, 2, 2), np.float32)
    f[...] = d
    r, g, b = (int(c) for c in flow_to_color(f, 1.0)[0, 0])
    if expect == "red":        # +x, rightward: red
        assert r == 255 and g < 40 and b < 40
    elif expect == "cyan-blue":
        assert r < 40 and g > 150 and b == 255
    elif expect == "yellow":   # +y, downward
        assert r == 255 and g > 180 and b < 40
    else:                      # -y, upward: blue-violet
        assert b == 255 and r < 120 and g < 40


def test_flow_to_color_saturation_and_range():
    f = np.zeros((1, 3, 2), np.float32)
    f[0, 1] = (0.5, 0)
    f[0, 2] = (2.0, 0)
    img = flow_to_color(f, 1.0)
    assert img.dtype == np.uint8 and img.shape == (1, 3, 3)
    assert img[0, 0].tolist() == [255, 255, 255]        # no motion: white
    assert img[0, 1].tolist() == [255, 128, 128]        # half the radius: half saturated
    assert img[0, 2].tolist() == [191, 0, 0]            # beyond: darkened to 75 %


def test_legend_wheel():
    leg = wheel_legend(101, 20.0)
    assert leg.shape == (101, 101, 3)
    assert min(leg[47, 50].tolist()) > 230                    # near the centre: almost white
    r, g, b = leg[46, 90].tolist()                            # right of centre: +x
    assert r > 200 and g < 100 and b < 120
    assert leg[50, 70:95].max() == 0                          # the radius line (the bound)
    assert leg[2, 2].tolist() == [255, 255, 255]              # outside the wheel


def test_evenly_spaced():
    assert evenly_spaced(100, 8) == [0, 14, 28, 42, 57, 71, 85, 99]
    assert evenly_spaced(3, 8) == [0, 1, 2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_show_frame_png(fmt, tmp_path):
    path, _ = make_store(fmt)
    out = tmp_path / "f.png"
    r = run("show", path, "MoveRight/a", "--frame", 3, "-o", out)
    assert r.exit_code == 0, r.output
    img = read_png(out)
    assert img.shape[:2] == panel_size(H, W) == (CAPTION + H, 4 * W + H + 4 * GAP)
    # panel 1 is the RGB frame as stored
    v = flowprep.open_store(path)["MoveRight/a"]
    assert np.array_equal(img[CAPTION:, :W], v.rgb(3))
    # panel 2: the texture moves +x (rightward): reddish in the Middlebury coding
    flow_panel = img[CAPTION + 12: CAPTION + H - 12, W + GAP + 12: 2 * W + GAP - 12].reshape(-1, 3)
    r, g, b = np.median(flow_panel, axis=0)
    assert r == 255 and g < 200 and b < 200 and abs(g - b) < 20
    assert np.array_equal(img[CAPTION:, W + GAP: 2 * W + GAP], flow_to_color(v.flow(3), BOUND))
    # panels 3 and 4: dx and dy as stored, grey
    x0 = 2 * (W + GAP)
    assert np.array_equal(img[CAPTION:, x0: x0 + W, 0], v.flow_quantized(3)[..., 0])
    assert np.array_equal(img[CAPTION:, x0 + W + GAP: x0 + 2 * W + GAP, 1], v.flow_quantized(3)[..., 1])


def test_show_contact_sheet(tmp_path):
    path, _ = make_store("hdf5")
    out = tmp_path / "sheet.png"
    r = run("show", path, "MoveUpLeft/b", "-o", out)
    assert r.exit_code == 0, r.output
    img = read_png(out)
    assert img.shape[:2] == sheet_size(H, W, 5)  # 5 flows: all of them
    r = run("show", path, "MoveRight/a", "--count", 3, "-o", out)
    assert read_png(out).shape[:2] == sheet_size(H, W, 3)


def test_show_backward(tmp_path):
    path, _ = make_store("jpeg", "backward", backward=True, quant="adaptive")
    out = tmp_path / "b.png"
    r = run("show", path, "MoveRight/a", "--frame", 0, "--backward", "-o", out)
    assert r.exit_code == 0, r.output
    img = read_png(out)
    cell = img[CAPTION + 12: CAPTION + H - 12, W + GAP + 12: 2 * W + GAP - 12].reshape(-1, 3)
    r_, g, b = np.median(cell, axis=0)
    assert b == 255 and r_ < g  # backward of a rightward motion is leftward: cyan-blue


def test_show_bad_arguments(tmp_path):
    path, _ = make_store("jpeg")
    r = CliRunner().invoke(cli, ["show", path, "Nope/x", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "no video 'Nope/x'" in r.output and "MoveRight/a" in r.output
    r = CliRunner().invoke(cli, ["show", path, "MoveRight/a", "--frame", "7",
                                 "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "7 flows" in r.output
    r = CliRunner().invoke(cli, ["show", path, "MoveRight/a", "--backward",
                                 "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "--backward" in r.output
    assert not (tmp_path / "x.png").exists()
