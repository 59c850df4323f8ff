"""flowprep extract, and flowprep index."""
from __future__ import annotations

import os
import sys

import click

from flowprep.decode import parse_size
from flowprep.errors import ConfigError
from flowprep.store.registry import names as _format_names
from flowprep.flow import ALGOS, parse_param_items

FORMAT_NAMES = list(_format_names())  # the registered store formats: jpeg, hdf5, wds


def _size(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_size(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def _shard(ctx, param, value):
    if value is None:
        return None
    from flowprep.inputs import parse_shard
    try:
        parse_shard(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def storage_options(ctx, param, value):
    """--storage-option KEY=VALUE (repeatable) -> dict for fsspec."""
    from flowprep.remote import parse_storage_options
    try:
        return parse_storage_options(value or ())
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


class StorePath(click.Path):
    """A store's directory (checked like click.Path) or an fsspec URL (taken as it is)."""

    def convert(self, value, param, ctx):
        from flowprep.remote import is_url
        if isinstance(value, str) and is_url(value):
            return value
        return super().convert(value, param, ctx)


#: the object-storage options, shared by the commands that take URLs
storage_option = click.option(
    "--storage-option", "storage_opts", multiple=True, metavar="KEY=VALUE",
    callback=storage_options,
    help="Passed to fsspec for s3://, gs://... URLs (e.g. endpoint_url=http://host:9000, "
         "anon=true); repeatable. Credentials come from the usual AWS_*/GOOGLE_* "
         "variables and profiles; never written anywhere.")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Store directory to write (created if missing), or an s3://, gs://... "
                   "URL (--format hdf5).")
@storage_option
@click.option("--staging", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="With an -o URL: local folder where shards are built before upload "
                   "(default: a temporary folder; needs about --jobs x --shard-size).")
@click.option("--algo", type=click.Choice(ALGOS), default="tvl1", show_default=True,
              help="Flow algorithm.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda, cuda:N or cuda:N,M (auto: CUDA when available).")
@click.option("--backend", type=click.Choice(["auto", "native", "opencv", "torch"]), default="auto",
              show_default=True,
              help="Who computes the flow (native: flowprep's compiled TV-L1, auto's choice on the "
                   "CPU; opencv: OpenCV's; torch: TV-L1 on any PyTorch device).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Algorithm parameter, repeatable (e.g. --param warps=3).")
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), default="jpeg",
              show_default=True,
              help="Store format: jpeg (a folder per video), hdf5 (shards), wds (webdataset tar "
                   "shards, one sample per video).")
@click.option("--short-side", type=click.IntRange(min=0), default=256, show_default=True,
              help="Resize so the short side has N pixels; 0 keeps the size.")
@click.option("--size", callback=_size, metavar="WxH", help="Resize to exactly W x H pixels.")
@click.option("--bound", type=float, default=20.0, show_default=True,
              help="Quantization bound B in pixels (fixed scheme).")
@click.option("--quant", type=click.Choice(["fixed", "adaptive"]), default="fixed",
              show_default=True, help="Quantization scheme.")
@click.option("--step", type=click.IntRange(min=1), default=1, show_default=True,
              help="Flow from frame t to t+K.")
@click.option("--backward", is_flag=True, help="Also store the backward flow t+K -> t.")
@click.option("--warped", is_flag=True,
              help="Also store TSN's warped flow (camera homography removed; docs/warped.md).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Parallel videos (default: number of cores).")
@click.option("--shard", callback=_shard, metavar="I/N",
              help="Process part I of N (0-based); default from SLURM_ARRAY_TASK_*.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run videos on this dask.distributed scheduler.")
@click.option("--force", is_flag=True, help="Recompute videos that are already published.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Per-video time limit in seconds, plus --timeout-per-frame per decoded frame.")
@click.option("--timeout-per-frame", type=click.FloatRange(min=0), default=10.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Frame pairs per flow call (torch backend).")
@click.option("--shard-size", type=str, default="1GiB", show_default=True,
              help="Shard size limit of hdf5 and wds (bytes, or with KiB/MiB/GiB).")
@click.option("--payload", type=click.Choice(["jpeg", "raw"]), default="jpeg", show_default=True,
              help="HDF5 frame payload: the JPEG store's bytes, or lossless uint8 flow.")
@click.option("--progress/--no-progress", default=None,
              help="Progress line on stderr (default: when stderr is a terminal).")
@click.option("--task", type=click.Choice(["both", "rgb", "flow"]), default="both",
              show_default=True, help="Store RGB frames and flow, or only one of them.")
@click.option("--decoder", type=click.Choice(["auto", "pyav", "opencv"]), default="auto",
              show_default=True, help="Video decoder (auto: PyAV, whose FFmpeg reads AV1/HEVC/VP9; "
                                      "OpenCV when PyAV is not installed).")
@click.option("--fps", type=float, default=None, metavar="F",
              help="Resample to F frames/s by presentation time, as FFmpeg's fps filter does.")
@click.option("--start", type=float, default=None, metavar="S",
              help="Keep the frames shown at S <= t (seconds).")
@click.option("--end", type=float, default=None, metavar="E",
              help="Keep the frames shown at t < E (seconds).")
@click.option("--input-fps", type=float, default=None, metavar="F",
              help="Frames/s of frame-folder inputs (default 25).")
def extract(inputs, out, storage_opts, staging, algo, device, backend, params, fmt, short_side, size, bound, quant, step,
            backward, warped, jpeg_quality, jobs, shard, scheduler, force, timeout, timeout_per_frame,
            batch_size, shard_size, payload, progress, task, decoder, fps, start, end, input_fps):
    """Extract RGB frames and optical flow of INPUT videos into a store.

    INPUT is a video file, a folder (searched recursively; class folders give
    labels), a frame folder (images, no videos: one video) or a .txt list of
    videos (lines "path [label] [start end]"); any of them may be an s3://, gs://
    ... URL. A rerun skips published videos with the same configuration and
    redoes the rest.
    """
    from flowprep.run.extract import extract as run_extract
    try:
        options = dict(
            algo=algo, device=device, backend=backend, params=parse_param_items(params),
            format=fmt, short_side=short_side, size=size, bound=bound, quant=quant, step=step,
            backward=backward, warped=warped, jpeg_quality=jpeg_quality, jobs=jobs, shard=shard,
            scheduler=scheduler, force=force, timeout=timeout, timeout_per_frame=timeout_per_frame,
            batch_size=batch_size, shard_size=parse_bytes(shard_size), payload=payload,
            progress=sys.stderr.isatty() if progress is None else progress,
            task=task, decoder=decoder, fps=fps, start=start, end=end, input_fps=input_fps,
            storage_options=storage_opts, staging=staging)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    from flowprep.decode import AUTO_NOTE, have_pyav
    if decoder == "auto" and not have_pyav():
        click.echo(f"note: {AUTO_NOTE}", err=True)
    report = run_extract(list(inputs), out, **options)
    n_pub, n_skip, n_fail = len(report.published), len(report.skipped), len(report.failed)
    click.echo(f"{n_pub} published, {n_skip} already published, {n_fail} failed "
               f"({report.frames} frames in {report.seconds:.1f} s) -> {report.root}")
    if report.not_in_shard:
        click.echo(f"({report.not_in_shard} inputs belong to other shards)")
    for inp, warnings in sorted(report.warnings.items()):
        click.echo(f"WARNING {inp}: published from a damaged input: {'; '.join(warnings)}", err=True)
    for inp, reason in sorted(report.failed.items()):
        click.echo(f"FAILED {inp}: {reason}", err=True)
    if report.stopped:
        click.echo(f"Stopped early: {report.stopped}", err=True)
    if n_fail or report.stopped:
        click.echo("Failed inputs are listed in the store: `flowprep inspect OUT`; "
                   "rerun the same command to retry only them.", err=True)
        sys.exit(1)


def parse_bytes(text: str) -> int:
    """'1GiB', '500MiB', '1000000' -> bytes."""
    t = text.strip()
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10 ** 3, "mb": 10 ** 6,
             "gb": 10 ** 9, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "b": 1}
    low = t.lower()
    for u in sorted(units, key=len, reverse=True):
        if low.endswith(u):
            num = low[: -len(u)].strip()
            break
    else:
        u, num = "b", low
    try:
        value = int(float(num) * units[u])
    except ValueError:
        raise ConfigError(f"size must be bytes or a number with KiB/MiB/GiB, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return value


@click.command("index")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
def index_cmd(out):
    """Rewrite OUT's annotation lists from its published videos."""
    from flowprep.store.lists import write_lists
    n = write_lists(out)
    click.echo(f"{n} videos listed in {os.path.join(out, 'rgb_list.txt')} and flow_list.txt")
