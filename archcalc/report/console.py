"""The one rich console every command prints through."""

from __future__ import annotations

import os
import sys
from typing import IO, cast

from rich.console import Console

# Piped or captured output has no terminal width to fit: wide enough for every column,
# unless COLUMNS says otherwise.
PIPED_WIDTH = 140


class _TrimmedLines:
    """A text stream that drops the spaces rich pads each line with up to the console's
    width: piped output (a file, `| less`, a diff of two runs) has no trailing blanks."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.pending = ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        if lines:
            self.stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(self.pending.rstrip(" "))
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def make_console(file: IO[str] | None = None, *, stderr: bool = False, no_color: bool = False) -> Console:
    """A console that prints data as it is: markup and highlighting off, so a shape like
    [1, 3, 224, 224] is not read as rich markup or coloured as a list. Colour goes with
    `no_color` (--no-color) or a set NO_COLOR (https://no-color.org); piped output is
    COLUMNS wide (else PIPED_WIDTH) and carries no trailing spaces."""
    no_color = no_color or bool(os.environ.get("NO_COLOR"))
    probe = Console(file=file, stderr=stderr)
    if probe.is_terminal:  # no_color: no escape codes at all, bold and dim too, so the text is plain
        return Console(file=file, markup=False, highlight=False, soft_wrap=False, stderr=stderr, no_color=no_color,
                       color_system=None if no_color else "auto")
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) >= 20 else PIPED_WIDTH
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    return Console(file=cast(IO[str], _TrimmedLines(stream)), markup=False, highlight=False, soft_wrap=False,
                   width=width, no_color=no_color, force_terminal=False)
