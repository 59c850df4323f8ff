"""flowprep inspect, verify, convert and show: the store tools."""
from __future__ import annotations

import json
import sys

import click

from flowprep.errors import ConfigError
from flowprep.store.registry import names as _format_names

from .extract_cmd import StorePath, storage_option

FORMAT_NAMES = list(_format_names())  # the registered store formats: jpeg, hdf5, wds


def _bytes_option(ctx, param, value):
    from flowprep.run.options import parse_bytes
    try:
        return parse_bytes(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("out", type=StorePath(exists=True, file_okay=False))
@click.option("--videos", is_flag=True,
              help="One row per video: counts, motion (mean |d| px), motion_p95, clipped "
                   "fraction, camera motion, warnings; failed inputs with their reason.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for machines).")
@click.option("--csv", "as_csv", is_flag=True, help="With --videos: print CSV.")
@storage_option
def inspect(out, videos, as_json, as_csv, storage_opts):
    """Show what is in the store OUT (a folder or an s3://, gs://... URL): format, config,
    counts, bytes, failures.

    With --videos, one row per video instead (the motion score to filter by).
    """
    if as_csv and not videos:
        raise click.UsageError("--csv needs --videos")
    if as_csv and as_json:
        raise click.UsageError("choose one of --json and --csv")
    if videos:
        from flowprep.report.stats import format_rows, json_ready, write_csv
        from flowprep.store import open_store
        rows = open_store(out, storage_opts).video_stats()
        if as_json:
            click.echo(json.dumps([json_ready(r) for r in rows], indent=1))
        elif as_csv:
            write_csv(rows, sys.stdout)
        else:
            click.echo(format_rows(rows))
        return
    from flowprep.verify import describe_store, format_description
    d = describe_store(out, storage_opts)
    if as_json:
        click.echo(json.dumps(d, indent=1, sort_keys=True))
    else:
        click.echo(format_description(d))


@click.command()
@click.argument("out", type=StorePath(exists=True, file_okay=False))
@click.option("--quick", is_flag=True,
              help="Check files, counts and checksums only; do not decode every frame.")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as a JSON list.")
@storage_option
def verify(out, quick, as_json, storage_opts):
    """Check the store OUT: every frame present and decodable, counts, checksums, index.

    Prints each problem with the video and frame it concerns; exits 1 if there are any.
    """
    from flowprep.store import open_store
    from flowprep.verify import verify_store
    problems = verify_store(out, decode=not quick, storage_options=storage_opts)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in problems], indent=1))
    else:
        for p in problems:
            click.echo(str(p))
        n = len(open_store(out, storage_opts).video_ids)
        if problems:
            click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found "
                       f"in {out} ({n} video{'' if n == 1 else 's'})", err=True)
        else:
            click.echo(f"OK: {n} video{'' if n == 1 else 's'} verified in {out}"
                       + (" (frames not decoded)" if quick else ""))
    if problems:
        sys.exit(1)


@click.command()
@click.argument("src", type=StorePath(exists=True, file_okay=False))
@click.argument("dst", type=StorePath(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), required=True,
              help="Format of the new store DST.")
@click.option("--shard-size", default="1GiB", show_default=True, callback=_bytes_option,
              help="Shard size limit of hdf5 and wds (bytes, or with KiB/MiB/GiB).")
@click.option("--progress/--no-progress", default=None,
              help="Print each video as it is copied (default: when stderr is a terminal).")
@storage_option
@click.option("--staging", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="With a DST URL: local folder where shards are built before upload "
                   "(default: a temporary folder).")
def convert(src, dst, fmt, shard_size, progress, storage_opts, staging):
    """Copy the store SRC into a new store DST of another format.

    SRC and DST may be s3://, gs://... URLs (DST: --format hdf5 or wds).

    JPEG bytes are copied as stored (no re-encoding); metadata, configuration,
    failures and lists are kept. Rerun the same command to resume.
    """
    from flowprep.convert import convert as run_convert
    show = sys.stderr.isatty() if progress is None else progress
    try:
        rep = run_convert(src, dst, fmt, shard_size=shard_size,
                          progress=(lambda vid: click.echo(vid, err=True)) if show else None,
                          storage_options=storage_opts, staging=staging)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{rep['videos']} videos copied, {rep['skipped']} already there, "
               f"{rep['failures']} failure records -> {dst} ({fmt}, {rep['seconds']:.1f} s)")


@click.command()
@click.argument("out", type=StorePath(exists=True, file_okay=False))
@click.argument("video_id")
@click.option("--frame", type=int, default=None,
              help="Flow index to show (default: a contact sheet of evenly spaced flows).")
@click.option("--count", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Flows on the contact sheet.")
@click.option("--backward", is_flag=True, help="Show the backward flow.")
@click.option("--warped", is_flag=True,
              help="Show the warped flow (camera motion removed; extracted with --warped).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="PNG file to write.")
@storage_option
def show(out, video_id, frame, count, backward, warped, output, storage_opts):
    """Draw VIDEO_ID of the store OUT as a PNG: RGB, colour-coded flow, dx, dy, legend.

    Flow colours follow the Middlebury coding (hue = direction, saturation =
    magnitude; the wheel's rim is the quantization bound).
    """
    from flowprep.store import open_store
    from flowprep.visualize import render_video, write_png
    store = open_store(out, storage_opts)
    if video_id not in store:
        ids = store.video_ids
        hint = f"; it has {len(ids)} videos, e.g. {', '.join(ids[:3])}" if ids else "; it is empty"
        raise click.BadParameter(f"no video {video_id!r} in {out}{hint}", param_hint="VIDEO_ID")
    video = store[video_id]
    count_of, what = ((video.num_frames, "frames (--task rgb: no flow)") if video.task == "rgb"
                      else (video.num_flows, "flows"))
    if frame is not None and not -count_of <= frame < count_of:
        raise click.BadParameter(f"{frame} is out of range: {video_id} has {count_of} {what} "
                                 f"(0..{count_of - 1})", param_hint="--frame")
    if backward and video.task == "rgb":
        raise click.BadParameter(f"{video_id} has no flow (the store was extracted with --task rgb)",
                                 param_hint="--backward")
    if backward and not video.has_backward:
        raise click.BadParameter(f"{video_id} has no backward flow (extract with --backward)",
                                 param_hint="--backward")
    if warped and not video.has_warped:
        raise click.BadParameter(f"{video_id} has no warped flow (extract with --warped)",
                                 param_hint="--warped")
    img = render_video(video, frame, count, backward, warped)
    write_png(output, img)
    what = ("warped " if warped else "") + "flow"
    click.echo(f"{output}: {img.shape[1]}x{img.shape[0]} "
               + (f"{what} {frame}" if frame is not None else f"contact sheet of {video_id}")
               + (f" (homography {'identity, fallback' if video.homography_fallback(frame) else 'estimated'})"
                  if warped and frame is not None else ""))
