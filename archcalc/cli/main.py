"""The `archcalc` command line. Heavy imports happen inside commands so `--help` is instant."""

from __future__ import annotations

import errno
import gc
import os
import sys

import click

from archcalc import __version__
from archcalc.cli.analyze import analyze
from archcalc.cli.check import check
from archcalc.cli.completion import completion
from archcalc.cli.devices import device, devices
from archcalc.cli.diff import diff
from archcalc.cli.explain import explain
from archcalc.cli.export import export
from archcalc.cli.layers import layers
from archcalc.cli.verify import verify
from archcalc.core.errors import ArchcalcError

# A full disk is the machine's state, not a bug: a message, not a traceback.
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class _Group(click.Group):
    """Turns every ArchcalcError (bad input) into a message on stderr and exit code 2,
    and so a full disk too."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ArchcalcError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(2)
        except OSError as error:
            if error.errno not in _DISK_FULL:
                raise
            where = f" writing {error.filename}" if error.filename else ""
            click.echo(f"error: no space left on the device{where}. Free some space, or point TMPDIR "
                       "at a folder with room: verify and calibrate write a model's weights there", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True,
             epilog="""\b
Examples:
  archcalc analyze specs/resnet50.yaml            # the table of layers and totals
  archcalc check model.onnx --budget budget.yaml  # exit 1 over budget, for CI
  archcalc diff specs/resnet18.yaml specs/resnet34.yaml --depth 1

`archcalc COMMAND --help` has each command's options and examples.""")
@click.version_option(__version__, prog_name="archcalc")
@click.option("--no-color", is_flag=True, help="No colour in tables and messages (also when NO_COLOR is set).")
@click.pass_context
def cli(ctx: click.Context, no_color: bool) -> None:
    """Shapes, parameters, MACs/FLOPs, memory and receptive fields of a neural-network
    architecture, from a YAML spec or an ONNX file, before you train or ship it."""
    if ctx.invoked_subcommand is None:  # `archcalc` alone asks what it does: help, on stdout, exit 0
        click.echo(ctx.get_help())
        ctx.exit(0)


for command in (analyze, explain, export, verify, layers, check, diff, completion, devices, device):
    cli.add_command(command)


def main() -> None:
    # One short-lived run, building results without reference cycles: the cyclic collector
    # would only walk them (a tenth of a big model's time) and free nothing.
    gc.disable()
    try:
        cli(prog_name="archcalc")
    except RecursionError:
        click.echo("error: the model nests too deeply to analyse", err=True)
        sys.exit(2)


def program() -> None:
    """The `archcalc` program (its console script and `python3 -m archcalc`): `main`, then
    the process ends without the interpreter's teardown. `main` itself ends in SystemExit,
    as callers that run it in-process (the fuzz driver) expect."""
    try:
        main()
    except SystemExit as done:  # how click ends every run
        if done.code is None or isinstance(done.code, int):
            _end(done.code or 0)
        raise


def _end(status: int) -> None:
    """Exit at once, once the output is flushed: the interpreter's own exit frees every object
    one by one (a big model's graph and results: 5% of a 50k-layer run), which the OS does for
    free. An output that cannot be flushed (a closed pipe) is left to the usual exit to report."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # AttributeError: no stdout at all (None)
        return
    os._exit(status)


if __name__ == "__main__":
    main()
