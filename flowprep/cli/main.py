"""The Click application behind the ``flowprep`` command.

Exit codes: 0 every video published; 1 some videos failed (each is listed in
the store with its reason, the rest are published); 2 bad usage, or the run
could not start (backend unavailable, store locked).
"""
from __future__ import annotations

import importlib
import os
import sys

import click

from flowprep._version import __version__
from flowprep.errors import FlowprepError, StoreError

#: every command, attached here in one place (the command modules never import this one):
#: name -> (module of flowprep.cli, attribute). Imported when click asks for the command,
#: so that `flowprep extract` can start its workers' fork server before the heavy imports.
COMMANDS = {
    "extract": ("extract_cmd", "extract"), "index": ("extract_cmd", "index_cmd"),
    "inspect": ("store_cmds", "inspect"), "verify": ("store_cmds", "verify"),
    "convert": ("store_cmds", "convert"), "show": ("store_cmds", "show"),
    "report": ("report_cmd", "report"),
}


class _Group(click.Group):
    """Turns project errors into one-line messages: exit 2 for usage, never a traceback.
    Commands (COMMANDS) are imported on first use."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(f"{__package__}.{module}"), attr),
                             cmd_name)
        return self.commands.get(cmd_name)

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


def main() -> None:
    if sys.argv[1:2] == ["extract"]:
        # workers' fork server: its imports overlap this process's (flowprep/run/starter.py)
        from flowprep.run.starter import begin_early
        begin_early()
        # this process plans, supervises and publishes: no BLAS thread pool to start (NumPy's
        # and OpenCV's OpenBLAS each start one on import and spin it, ~0.1 CPU-s)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cli(prog_name="flowprep")


if __name__ == "__main__":  # python -m flowprep.cli.main
    main()
