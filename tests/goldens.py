"""Golden-output files: compare, or refresh them after an intended change with
ARCHCALC_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ARCHCALC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
