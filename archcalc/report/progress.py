"""The one progress bar: on stderr while a long command works, and only on a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from archcalc.core.progress import Progress
from archcalc.report.console import make_console

if TYPE_CHECKING:
    from rich.console import Console


@contextlib.contextmanager
def terminal_progress(console: Console | None = None) -> Iterator[Progress | None]:
    """A progress callback drawing a rich bar on stderr, one phase at a time; None when
    stderr is not a terminal (piped, CI logs, tests), so callers skip the bookkeeping."""
    err = console or make_console(stderr=True)
    if not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Bar(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}  # phase -> rich task id

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                for task in tasks.values():  # one phase at a time: the previous one is over
                    bar.update(task, total=1, completed=1)
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update
