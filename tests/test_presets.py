"""--preset tsn|i3d|denseflow: bundles of options, explicit options over them, recorded
in the store's config (not hashed), and the loader recipe that goes with each."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import flowprep
from flowprep.cli.main import cli
from flowprep.errors import ConfigError
from flowprep.run.options import ExtractOptions, make_options
from flowprep.run.presets import PRESETS, apply_preset
from flowprep.store.base import config_key
from synth import translated_frames, write_video


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("name, expected", [
    ("tsn", dict(algo="tvl1", size=(340, 256), bound=20.0, fps=None, short_side=256)),
    ("i3d", dict(algo="tvl1", size=None, bound=20.0, fps=25.0, short_side=256)),
    ("denseflow", dict(algo="tvl1", size=None, bound=32.0, fps=None, short_side=0)),
])
def test_each_preset_is_its_published_setup(name, expected):
    opts = make_options({"preset": name})
    assert {k: getattr(opts, k) for k in expected} == expected
    assert PRESETS[name].source  # every preset names where its setup is written down


def test_explicit_options_replace_the_preset_and_resize_is_one_choice():
    opts = make_options({"preset": "tsn", "bound": 15.0})
    assert (opts.bound, opts.size, opts.algo) == (15.0, (340, 256), "tvl1")
    # --short-side given: the preset's --size is dropped with it (one resize choice)
    opts = make_options({"preset": "tsn", "short_side": 128})
    assert (opts.short_side, opts.size) == (128, None)
    assert apply_preset("i3d", {"fps": 10.0})["fps"] == 10.0


def test_an_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="preset must be one of tsn, i3d, denseflow"):
        make_options({"preset": "c3d"})
    r = CliRunner().invoke(cli, ["extract", "x.mp4", "-o", "o", "--preset", "c3d"])
    assert r.exit_code == 2 and "tsn" in r.output and "denseflow" in r.output


def test_the_preset_is_recorded_but_not_hashed():
    from flowprep.flow import FlowChoice, merge_params
    from flowprep.run.extract import build_config
    choice = FlowChoice("tvl1", "native", "cpu")
    params = merge_params("tvl1")
    plain = build_config(ExtractOptions(), choice, params)
    assert "preset" not in plain  # stores made without a preset keep their key
    spelled = build_config(ExtractOptions(size=(340, 256)), choice, params)
    preset = build_config(make_options({"preset": "tsn"}), choice, params)
    assert preset["preset"]["name"] == "tsn" and "dense_flow" in preset["preset"]["source"]
    assert preset["preset"]["options"]["size"] == [340, 256]
    assert config_key(preset) == config_key(spelled) != config_key(plain)


def test_a_preset_through_the_cli_on_a_real_video(tmp_path):
    """--preset i3d with --algo dis and --short-side 32 given: 25 fps kept, the rest replaced;
    flowprep.json records the preset and the options it set; I3D's loader recipe serves
    the flow in [-1, 1]."""
    src = tmp_path / "in" / "Move" / "v.mkv"
    src.parent.mkdir(parents=True)
    write_video(str(src), translated_frames(12, 48, 64, 2.0, 1.0), fps=50)
    out = tmp_path / "out"
    r = run_cli("extract", src.parent.parent, "-o", out, "--preset", "i3d", "--algo", "dis",
                "--short-side", "32", "--jobs", "1")
    assert r.exit_code == 0, r.output
    with open(out / "flowprep.json") as fh:
        info = json.load(fh)
    rec = info["config"]["preset"]
    assert rec["name"] == "i3d" and "kinetics-i3d" in rec["source"]
    assert rec["options"] == {"fps": 25.0, "bound": 20.0, "quant": "fixed", "step": 1}
    assert info["config"]["algo"] == "dis" and info["config"]["fps"] == 25.0
    store = flowprep.open_store(out)
    v = store["Move/v"]
    assert v.fps == 25.0 and v.num_frames == 6 and min(v.width, v.height) == 32
    # the same command again: published, skipped (the key is stable)
    r = run_cli("extract", src.parent.parent, "-o", out, "--preset", "i3d", "--algo", "dis",
                "--short-side", "32", "--jobs", "1")
    assert "0 published, 1 already published" in r.output, r.output
    assert "preset     i3d (I3D (Carreira" in run_cli("inspect", out).output
    from flowprep.loader import TwoStreamDataset
    loader = dict(PRESETS["i3d"].loader, crop_size=32, length=4)
    ds = TwoStreamDataset(store, mode="val", **loader)
    flow = ds[0]["flow"]
    assert flow.dtype == np.float32 and flow.shape[-4:] == (2, 4, 32, 32)
    assert -1.0 <= float(flow.min()) and float(flow.max()) <= 1.0
    assert float(np.abs(flow).max()) > 0.02  # motion is there, scaled by 1/20
    assert not os.path.exists(out / "rgb_list.txt.tmp")
