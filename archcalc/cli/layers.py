"""`archcalc layers`: the layer types a spec may use."""

from __future__ import annotations

import click

from archcalc.cli.options import examples


@click.command(epilog=examples(
    "archcalc layers",
))
def layers() -> None:
    """The layer types a YAML spec may use, with their fields and defaults."""
    from archcalc.readers.spec.catalogue import LAYER_TYPES, REQUIRED

    seen = set()
    for name, layer_type in sorted(LAYER_TYPES.items()):
        if layer_type.name != name or name in seen:
            continue
        seen.add(name)
        fields = ", ".join(f"{k}" if v is REQUIRED else f"{k}={v}" for k, v in layer_type.fields.items())
        aliases = f" (also: {', '.join(layer_type.aliases)})" if layer_type.aliases else ""
        click.echo(f"{name}{aliases}: {layer_type.summary}")
        if fields:
            click.echo(f"    {fields}")
    from archcalc.readers.spec.builtin_blocks import builtin_blocks

    for name, block in builtin_blocks().items():  # blocks any spec may use, like a layer type
        click.echo(f"{name} (built-in block): {block.get('description', '')}")
        click.echo("    " + ", ".join(k if v is None else f"{k}={v}" for k, v in block["args"].items()))
