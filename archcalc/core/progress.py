"""How a long task reports progress without printing: a callback the caller may pass."""

from __future__ import annotations

from collections.abc import Callable

# progress(phase, done, total): a new phase ends the previous one; total None is unknown.
Progress = Callable[[str, int, "int | None"], None]
