"""The one rich console every command prints through."""

from __future__ import annotations

from typing import IO

from rich.console import Console

# Piped or captured output has no terminal width to fit: wide enough for every column.
PIPED_WIDTH = 140


def make_console(file: IO[str] | None = None, *, stderr: bool = False) -> Console:
    """A console that prints data as it is: markup and highlighting off, so a shape like
    [1, 3, 224, 224] is not read as rich markup or coloured as a list."""
    console = Console(file=file, markup=False, highlight=False, soft_wrap=False, stderr=stderr)
    if not console.is_terminal:
        console.width = PIPED_WIDTH
    return console
