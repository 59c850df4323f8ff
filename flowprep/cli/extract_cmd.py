"""flowprep extract, and flowprep index."""
from __future__ import annotations

import os
import sys

import click
from click.core import ParameterSource

from flowprep.errors import ConfigError
from flowprep.run.options import OPTIONS, Option


def _click_option(o: Option):
    """The click option of ``o`` (flowprep.run.options.OPTIONS): flag, type, default,
    choices and help from the one source; its text parsed by ``o.parse``, its value
    checked by ``o.validate`` (a ConfigError becomes click's BadParameter)."""
    kw = dict(help=o.help, metavar=o.metavar, show_default=False)
    default = o.cli_default if o.cli_default is not None else o.default
    if o.type is bool:
        if "/" in o.cli_flag:  # --progress/--no-progress: None when not given
            kw.update(default=None)
        else:
            kw.update(is_flag=True, default=False)
    elif o.multiple:
        kw.update(multiple=True)
    else:
        if o.choices is not None:
            kw["type"] = click.Choice(o.choices)
        elif o.parse is not None:  # text, parsed (and its range checked) by the callback
            pass
        elif o.type in (int, float) and (o.min is not None or o.max is not None):
            rng = click.IntRange if o.type is int else click.FloatRange
            kw["type"] = rng(min=o.min, max=o.max)
        elif o.type in (int, float) and o.parse is None:
            kw["type"] = o.type
        kw.update(default=default, show_default=default is not None)

    def callback(ctx, param, value, _o=o):
        if value is None or (o.multiple and not value):
            return value
        try:
            value = _o.parse(value) if _o.parse is not None else value
            if not _o.multiple and _o.type is not bool:
                _o.validate(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
        return value
    return click.option(o.cli_flag, o.name, callback=callback, **kw)


def extract_options(f):
    """Every option of OPTIONS as a click option, in their order."""
    for o in reversed(OPTIONS):
        if o.cli_flag is not None:
            f = _click_option(o)(f)
    return f


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
                   "URL (--format wds or hdf5).")
@extract_options
@click.pass_context
def extract(ctx, inputs, out, **values):
    """Extract RGB frames and optical flow of INPUT videos into a store.

    INPUT is a video file, a folder (searched recursively; class folders give
    labels), a frame folder (images, no videos: one video) or a .txt list of
    videos (lines "path [label] [start end]"); any of them may be an s3://, gs://
    ... URL. A rerun skips published videos with the same configuration and
    redoes the rest. --preset NAME starts from a
    published setup (tsn, i3d, denseflow: docs/presets.md); the options given
    here replace its values.
    """
    from flowprep.run.extract import extract as run_extract
    # only what was given: a preset's values replace the defaults, not explicit options
    options = {name: value for name, value in values.items()
               if ctx.get_parameter_source(name) != ParameterSource.DEFAULT}
    options.pop("progress", None)
    options["progress"] = sys.stderr.isatty() if values["progress"] is None else values["progress"]
    decoder = options.get("decoder", "auto")
    from flowprep.decode import AUTO_NOTE, have_pyav
    if decoder == "auto" and not have_pyav():
        click.echo(f"note: {AUTO_NOTE}", err=True)
    try:
        report = run_extract(list(inputs), out, **options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
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


@click.command("index")
@click.argument("out", type=StorePath(exists=True, file_okay=False))
@storage_option
def index_cmd(out, storage_opts):
    """Rewrite OUT's annotation lists from its published videos (OUT may be a URL)."""
    from flowprep.remote import Remote, is_url
    if is_url(out):
        from flowprep.store.remote import write_lists as write_remote_lists
        remote = Remote(out, storage_opts)
        n = write_remote_lists(remote)
        click.echo(f"{n} videos listed in {remote.where('rgb_list.txt')} and flow_list.txt")
        return
    from flowprep.store.lists import write_lists
    n = write_lists(out)
    click.echo(f"{n} videos listed in {os.path.join(out, 'rgb_list.txt')} and flow_list.txt")
