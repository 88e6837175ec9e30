"""`archcalc devices` lists the device catalogue with each number's source;
`archcalc device calibrate -o cpu-local.yaml` measures this machine as a device file."""

from __future__ import annotations

import click


@click.command()
@click.argument("files", nargs=-1, type=click.Path(), metavar="[DEVICE.yaml]...")
@click.option("--sources/--no-sources", default=True, show_default=True, help="Print where each number comes from.")
def devices(files: tuple[str, ...], sources: bool) -> None:
    """The devices `analyze --device` knows (and any device FILES given, checked): peak TFLOPS per
    dtype, memory bandwidth and capacity, per-op overhead, each with its source."""
    from archcalc.hardware.device import catalogue, load_device
    from archcalc.report.roofline import device_listing

    chosen = catalogue() + [load_device(path) for path in files]
    click.echo(device_listing(chosen, sources), nl=False)
    if not files:
        click.echo("\nyour own: `archcalc device calibrate -o cpu-local.yaml` measures this machine; "
                   "pass any device file as --device FILE")


@click.group()
def device() -> None:
    """Device files for `analyze --device`."""


@device.command()
@click.option("-o", "--output", required=True, type=click.Path(), help="The device file to write (YAML).")
@click.option("--name", default="cpu-local", show_default=True, help="The device's name in the file.")
@click.option("--threads", type=click.IntRange(min=0), default=0,
              help="onnxruntime intra-op threads (0: its default, one per core, as `verify` runs).")
def calibrate(output: str, name: str, threads: int) -> None:
    """Measure this machine with onnxruntime (a few seconds): peak fp32 FLOP/s, memory and cache
    bandwidth, per-op overhead, conv efficiency, depthwise-conv efficiency by plane size; write them
    as a device file."""
    from archcalc.core.errors import ArchcalcError
    from archcalc.core.files import atomic_write
    from archcalc.hardware.device import parse_device
    from archcalc.runtime.calibrate import Sizes, device_yaml, measure

    text = device_yaml(measure(Sizes(threads=threads)) if threads else measure(), name)
    parse_device(text, output)  # what is written must load: a bad --name fails here, before writing
    try:
        with atomic_write(output) as handle:
            handle.write(text)
    except OSError as error:
        raise ArchcalcError(f"cannot write {output}: {error.strerror or error}",
                            fix="give -o a file path in an existing, writable directory") from None
    click.echo(f"wrote {output}: use it with `archcalc analyze MODEL --device {output}`")
