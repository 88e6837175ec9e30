"""How a table fits the terminal: every command's tables (analyze, check, diff) lay out here.

A table is a list of :class:`Column` (header, numeric or text, priority) and rows of cell
texts. The rule, in order, until the table fits the width:

1. every column whole, in a boxed table;
2. leave out optional columns (priority below ``OPTIONAL``), least important first;
3. the same in a plain table (no box: a rule under the header, two spaces between columns);
4. leave out the columns below ``UNFOLDED`` too, so each row still takes one line;
5. without those, write text cells tighter where a column says how (``[batch,64,56,56]``),
   fold text columns down to their ``min_width``, and leave out the other columns below
   ``ESSENTIAL``, least important first.

A number is never cut or folded: number columns keep their natural width, and callers give
them compact units (``118.01 M``) unless asked for exact figures. The columns left out are
named in a footer line, so nothing goes missing in silence. Another report adds a column by
adding a :class:`Column` with a priority: the layout needs nothing else.

Renders through rich; imported only by the table renderers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

OPTIONAL = 50    # below: left out before the table loses its box or a text column folds
UNFOLDED = 70    # below: left out rather than fold the text columns (rows of two lines read badly)
ESSENTIAL = 100  # at or above: never left out


@dataclass(frozen=True)
class Column:
    header: str
    numeric: bool = False
    priority: int = ESSENTIAL
    min_width: int = 8     # narrowest a text column folds to (its header wraps at spaces)
    style: str | None = None
    short: str | None = None  # the header once text columns fold ("Room" for "Headroom")
    squeeze: Callable[[str], str] | None = None  # a text cell written tighter once columns fold

    def cell(self, text: str, folded: bool) -> str:
        return self.squeeze(text) if folded and self.squeeze else text

    def title(self, folded: bool) -> str:
        return self.short if folded and self.short else self.header


@dataclass(frozen=True)
class Layout:
    """What to draw: the columns kept (index, width or None for natural), whether boxed, and
    the headers of the columns left out, most important first."""

    kept: tuple[tuple[int, int | None], ...]
    boxed: bool
    dropped: tuple[str, ...]
    folded: bool = False


def _frame(count: int, boxed: bool) -> int:
    """Characters a table spends besides its cells: boxed, a space either side of each cell and
    a border around and between them; plain, two spaces between columns."""
    return 3 * count + 1 if boxed else max(0, 2 * (count - 1))


def plan(columns: Sequence[Column], cells: Sequence[Sequence[str]], width: int) -> Layout:
    """The layout of `cells` under `columns` in `width` characters (see the module's rule)."""
    def widest(i: int, folded: bool) -> int:
        return max([0, *(len(line) for row in cells for line in columns[i].cell(row[i], folded).split("\n"))])

    natural = [max(len(c.header), widest(i, False)) for i, c in enumerate(columns)]
    tight = [max(len(c.title(True)) if c.numeric else max(map(len, c.header.split() or [""])), widest(i, True))
             for i, c in enumerate(columns)]
    # Folded: numbers keep their width under a short header; text folds, its header at spaces.
    least = [tight[i] if c.numeric else min(tight[i], max(c.min_width, max(map(len, c.header.split() or [""]))))
             for i, c in enumerate(columns)]
    by_priority = sorted(range(len(columns)), key=lambda i: (columns[i].priority, -i))

    def leave_out(kept: list[int], below: int) -> int | None:
        return next((i for i in by_priority if i in kept and columns[i].priority < below), None)

    def dropped(kept: list[int]) -> tuple[str, ...]:
        return tuple(columns[i].header for i in sorted(set(range(len(columns))) - set(kept),
                                                        key=lambda i: (-columns[i].priority, i)))

    for boxed, below in ((True, OPTIONAL), (False, OPTIONAL), (False, UNFOLDED)):
        kept = list(range(len(columns)))
        while True:
            if sum(natural[i] for i in kept) + _frame(len(kept), boxed) <= width:
                return Layout(tuple((i, None) for i in kept), boxed, dropped(kept))
            out = leave_out(kept, below)
            if out is None:
                break
            kept.remove(out)
    kept = [i for i in range(len(columns)) if columns[i].priority >= UNFOLDED]
    while sum(least[i] for i in kept) + _frame(len(kept), False) > width:
        out = leave_out(kept, ESSENTIAL)
        if out is None:
            break
        kept.remove(out)
    widths = {i: least[i] for i in kept}
    room = width - _frame(len(kept), False) - sum(widths.values())
    wanting = [i for i in kept if widths[i] < tight[i]]
    while room > 0 and wanting:  # share what is left among the folded columns
        for i in list(wanting):
            if room <= 0:
                break
            widths[i] += 1
            room -= 1
            if widths[i] == tight[i]:
                wanting.remove(i)
    return Layout(tuple((i, None if columns[i].numeric else widths[i]) for i in kept), False, dropped(kept), True)


def dropped_note(layout: Layout, width: int) -> str | None:
    """The footer naming the columns left out, or None when all are shown."""
    if not layout.dropped:
        return None
    return f"not shown at {width} columns: {', '.join(layout.dropped)} (a wider COLUMNS or --format shows them)"


def grid(columns: Sequence[Column], cells: Sequence[Sequence[str]], width: int,
         styles: Sequence[str | None] = (), show_lines: bool = False):
    """A rich table of `cells` laid out to `width`, and the footer naming what it left out."""
    from rich import box
    from rich.table import Table

    layout = plan(columns, cells, width)
    if layout.boxed:
        table = Table(header_style="bold", show_lines=show_lines)
    else:  # plain: a rule under the header, columns two spaces apart (a space after each cell, then the gap)
        table = Table(header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      padding=(0, 1, 0, 0), show_lines=show_lines)
    for i, fixed in layout.kept:
        column = columns[i]
        table.add_column(column.title(layout.folded), justify="right" if column.numeric else "left", width=fixed,
                         no_wrap=fixed is None, overflow="fold", style=column.style)
    for index, row in enumerate(cells):
        table.add_row(*(columns[i].cell(row[i], layout.folded) for i, _ in layout.kept),
                      style=styles[index] if styles else None)
    return table, dropped_note(layout, width)
