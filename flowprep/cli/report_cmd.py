"""flowprep report: one self-contained HTML page about a whole store."""
from __future__ import annotations

import click

from .extract_cmd import StorePath, storage_option


@click.command()
@click.argument("out", type=StorePath(exists=True, file_okay=False))
@click.option("-o", "--output", default="report.html", show_default=True,
              type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--sample", type=click.IntRange(0, 200), default=6, show_default=True,
              help="Videos drawn large (outliers first, then random with --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random sample.")
@click.option("--top", type=click.IntRange(0, 100), default=8, show_default=True,
              help="Rows of each outlier table.")
@click.option("--static-motion", type=click.FloatRange(0, None), default=0.2, show_default=True,
              help="Pixels: videos moving less (mean |d|) are listed as near-static.")
@storage_option
def report(out, output, sample, seed, top, static_motion, storage_opts):
    """Write one HTML page about the store OUT (a folder or an s3://, gs://... URL):
    summary, plots, outliers, flow pictures.

    The page is self-contained (pictures inline, no network): open it from disk.
    """
    from flowprep.report.page import write_report
    rep = write_report(out, output, sample=sample, seed=seed, top=top,
                       static_motion=static_motion, storage_options=storage_opts)
    c = rep.content["counts"]
    click.echo(f"{output}: {len(rep.html.encode('utf-8')) / 1e6:.2f} MB, {c['published']} videos, "
               f"{c['failed']} failed, {c['unreadable']} unreadable, "
               f"{len(rep.content['samples'])} sampled ({rep.seconds:.1f} s)")
