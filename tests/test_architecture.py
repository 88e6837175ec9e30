"""Structural promises: a lean engine, a complete registry, a runnable module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from archcalc.rules.base import all_rules

TESTS = Path(__file__).parent


def test_engine_and_front_ends_import_no_ui_or_runtime():
    code = ("import sys, archcalc.engine.inference, archcalc.readers.spec, archcalc.readers.onnx, archcalc.engine.training; "
            "print(sorted(m for m in ('rich', 'click', 'onnxruntime') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_registered_op_is_exercised_by_some_test():
    text = "\n".join(path.read_text() for path in TESTS.glob("test_*.py"))
    untested = sorted(op for op in all_rules() if not re.search(rf"\b{op}\b", text))
    assert untested == [], f"ops with a rule but no test mentioning them: {untested}"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "archcalc", "--version"], capture_output=True, text=True,
                            check=True)
    assert "archcalc" in result.stdout
