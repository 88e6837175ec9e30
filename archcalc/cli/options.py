"""Command-line options that several commands share, their parsers, and the model loading
they feed. Imports only click at module level, so every command module can use it without
importing the others, and `--help` stays instant."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from archcalc.core.graph import Graph
    from archcalc.core.results import Analysis


def examples(*lines: str) -> str:
    """A command's help epilog: example command lines, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join("  " + line for line in lines)


def make_console(file=None):
    """The report console, without colour when `archcalc --no-color` was given."""
    from archcalc.report.console import make_console as report_console

    context = click.get_current_context(silent=True)
    no_color = bool(context and context.find_root().params.get("no_color"))
    return report_console(file, no_color=no_color)


def batch_option(help: str = "Value of the symbolic batch dim for counting (default 1)."):
    return click.option("--batch", type=click.IntRange(min=1), default=None, help=help)


def dim_option(help: str = "Bind another symbolic dim, e.g. --dim seq=128. Repeatable."):
    return click.option("--dim", "dims", multiple=True, metavar="NAME=N", help=help)


def input_shape_option(help: str = "Feed graph input NAME at this shape, e.g. --input-shape x=1,3,224,224 "
                                   "(a dim may be a name: batch,3,224,224). Repeatable."):
    return click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D1,D2,...", help=help)


def _size(text: str, least: int = 1) -> int | None:
    """A dim size typed on the command line: an ASCII integer of at least `least`, else None
    (str.isdigit alone accepts digits like '²' that int() refuses)."""
    return int(text) if text.isascii() and text.isdigit() and int(text) >= least else None


def parse_dims(dims: tuple[str, ...], batch: int | None) -> dict[str, int]:
    """``NAME=N`` items as bindings. N may be 0, as the API allows: a prefill's past is 0."""
    bindings: dict[str, int] = {}
    for item in dims:
        name, _, value = item.partition("=")
        if not name or _size(value, least=0) is None:
            raise click.BadParameter(f"'{item}' is not NAME=N with N >= 0", param_hint="--dim")
        bindings[name] = int(value)
    if batch is not None:
        bindings["batch"] = batch
    return bindings


def parse_input_shapes(items: tuple[str, ...]) -> dict[str, tuple]:
    """``NAME=1,3,224,224`` items as {name: shape}; a dim that is a name stays symbolic."""
    from archcalc.core.dims import Sym

    shapes: dict[str, tuple] = {}
    for item in items:
        name, _, dims = item.rpartition("=")  # ONNX names may hold '=' or ':'; dims never do
        parts = dims.split(",") if dims else []
        if not name or not parts or not all(_size(p) is not None or p.isidentifier() for p in parts):
            raise click.BadParameter(f"'{item}' is not NAME=D1,D2,... with each D a size >= 1 or a dim name",
                                     param_hint="--input-shape")
        shapes[name] = tuple(_size(p) or Sym.symbol(p) for p in parts)
    return shapes


def load_from_options(model: str, input_shapes: tuple[str, ...]) -> Graph:
    """MODEL read as a graph, with --input-shape applied."""
    from archcalc.readers.load import load_model

    return load_model(model, parse_input_shapes(input_shapes))


def analyse_from_options(model: str, batch: int | None, dims: tuple[str, ...],
                         input_shapes: tuple[str, ...] = ()) -> Analysis:
    """MODEL analysed with --batch, --dim and --input-shape as given."""
    from archcalc.engine.inference import analyze

    return analyze(load_from_options(model, input_shapes), parse_dims(dims, batch))


def parse_size(text: str, option: str) -> int:
    """A byte size given on the command line ('24GiB'), in the units budgets use."""
    from archcalc.core.errors import ArchcalcError
    from archcalc.core.units import BYTES

    value = _positive_quantity(text, option, BYTES, "size", "24GiB or 512MiB")
    if text.strip().replace(".", "", 1).isdigit():  # no unit: bytes, which no memory is ever quoted in
        raise ArchcalcError(f"{text!r} has no unit: {text} B? a memory size needs one",
                            where=option, fix=f"did you mean {text.strip()}GiB? write e.g. 24GiB, 512MiB or {value}B")
    return value


def parse_count(text: str, option: str) -> int:
    """A count given on the command line ('1e12', '5T'), in the units budgets use."""
    from archcalc.core.units import COUNT

    return _positive_quantity(text, option, COUNT, "count", "1e12 or 5T")


def _positive_quantity(text: str, option: str, kind: str, noun: str, examples: str) -> int:
    from archcalc.core.errors import ArchcalcError
    from archcalc.core.units import parse_quantity

    try:
        value = parse_quantity(text, kind)
    except ArchcalcError as error:
        raise error.located(option) from None
    if value <= 0:
        raise ArchcalcError(f"{text!r} is not a positive {noun}", where=option, fix=f"write e.g. {examples}")
    return value
