"""The Click application behind the ``flowprep`` command.

Exit codes: 0 every video published; 1 some videos failed (each is listed in
the store with its reason, the rest are published); 2 bad usage, or the run
could not start (backend unavailable, store locked).
"""
from __future__ import annotations

import sys

import click

from flowprep._version import __version__
from flowprep.errors import FlowprepError, StoreError

from . import extract_cmd, report_cmd, store_cmds


class _Group(click.Group):
    """Turns project errors into one-line messages: exit 2 for usage, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StoreError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1 if ctx.invoked_subcommand in ("verify",) else 2)
        except FlowprepError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowprep")
def cli() -> None:
    """Precompute dense optical flow for two-stream video models, and serve it."""


# every command is attached here, in one place (the command modules never import this one)
for _cmd in (extract_cmd.extract, extract_cmd.index_cmd, store_cmds.inspect, store_cmds.verify,
             store_cmds.convert, store_cmds.show, report_cmd.report):
    cli.add_command(_cmd)


def main() -> None:
    cli(prog_name="flowprep")


if __name__ == "__main__":  # python -m flowprep.cli.main
    main()
