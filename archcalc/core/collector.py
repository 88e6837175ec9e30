"""The cyclic garbage collector, paused while a model is read or analysed."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def pause_gc() -> Iterator[None]:
    """Run without the cyclic garbage collector: converting a model and inferring its shapes
    allocate many small objects and no cycles, and the collections their allocations trigger
    (each walking every live object) cost a third of a large model's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # What the pause allocated would all sit in the youngest generation, so the first
            # collection after it would walk every object once more (7% of a 10k-layer
            # inference). Freezing and unfreezing moves them to the oldest generation unwalked;
            # unlike a freeze alone, a later full collection still frees any cycle among them.
            gc.freeze()
            gc.unfreeze()
            gc.enable()
