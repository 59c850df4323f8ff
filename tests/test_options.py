"""The extract options have one source (flowprep/run/options.py): the dataclass, the checks
and the CLI's click options all come from OPTIONS."""
import click
import pytest

import flowprep
from flowprep.cli.extract_cmd import extract as extract_cmd
from flowprep.errors import ConfigError
from flowprep.run.options import BY_NAME, OPTIONS, ExtractOptions, make_options, parse_bytes


def test_the_dataclass_is_the_table():
    fields = ExtractOptions.__dataclass_fields__
    assert list(fields) == [o.name for o in OPTIONS]
    opts = ExtractOptions()
    for o in OPTIONS:
        assert getattr(opts, o.name) == o.default_value(), o.name
    assert "bound: Quantization bound B" in ExtractOptions.__doc__


def test_the_cli_options_are_generated_from_the_table():
    params = {p.name: p for p in extract_cmd.params if isinstance(p, click.Option)}
    assert set(params) == {o.name for o in OPTIONS if o.cli_flag} | {"out"}
    for o in OPTIONS:
        p = params[o.name]
        assert o.cli_flag.split("/")[0] in p.opts and p.help == o.help, o.name
        if o.choices is not None:
            assert tuple(p.type.choices) == o.choices, o.name
        if o.type not in (bool, dict):
            want = o.cli_default if o.cli_default is not None else o.default
            assert p.default == want, o.name


@pytest.mark.parametrize("options, message", [
    ({"jobs": 0}, "jobs must be at least 1, got 0"),
    ({"jpeg_quality": 101}, "jpeg quality must be at least 1 and at most 100, got 101"),
    ({"format": "zarr"}, "format must be one of jpeg, hdf5"),
    ({"task": "depth"}, "task must be one of both, rgb, flow, got 'depth'"),
    ({"timeout": 0}, "timeout must be a positive number of seconds"),
    ({"device": "tpu"}, "device must be auto, cpu, cuda"),
    ({"shard": "4/4"}, r"--shard 4/4: need N >= 1 and 0 <= I < N"),
    ({"fps": -1.0}, "--fps must be positive"),
    ({"warped": True, "task": "rgb"}, "--warped computes flow, but --task rgb stores none"),
    ({"algorithm": "dis"}, "unknown extract option"),
])
def test_flowprep_extract_checks_through_the_table(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        make_options(options)
    with pytest.raises(ConfigError, match=message):
        flowprep.extract([str(tmp_path / "none")], str(tmp_path / "out"), **options)
    assert not (tmp_path / "out").exists()


def test_the_cli_reports_a_bad_value_as_bad_usage():
    from click.testing import CliRunner
    from flowprep.cli.main import cli
    r = CliRunner().invoke(cli, ["extract", "x.mp4", "-o", "o", "--shard-size", "lots"])
    assert r.exit_code == 2 and "size must be bytes or a number with KiB/MiB/GiB" in r.output
    r = CliRunner().invoke(cli, ["extract", "x.mp4", "-o", "o", "--input-fps", "0"])
    assert r.exit_code == 2 and "--input-fps" in r.output


def test_parse_bytes():
    assert parse_bytes("1GiB") == 1 << 30 and parse_bytes("500 MB") == 500 * 10 ** 6
    assert parse_bytes("4096") == 4096
    with pytest.raises(ConfigError):
        parse_bytes("-1k")
    assert BY_NAME["shard_size"].parse is parse_bytes
