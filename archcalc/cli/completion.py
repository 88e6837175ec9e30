"""`archcalc completion bash|zsh|fish`: the shell script that completes archcalc's commands,
options and file arguments (click's own completion, printed for the shell's startup file)."""

from __future__ import annotations

import click

from archcalc.cli.options import examples

SHELLS = ("bash", "zsh", "fish")


@click.command(epilog=examples(
    "archcalc completion bash >> ~/.bashrc",
    "archcalc completion zsh >> ~/.zshrc",
    "archcalc completion fish > ~/.config/fish/completions/archcalc.fish",
))
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the script that makes SHELL complete archcalc's commands and options."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # every shell in SHELLS is one click knows
    root = ctx.find_root()
    script = completer(root.command, {}, root.info_name or "archcalc", "_ARCHCALC_COMPLETE")
    click.echo(script.source())
