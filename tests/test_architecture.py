"""Structural promises: a lean engine, a complete registry, a runnable module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import import_graph

from archcalc.rules.base import all_rules

TESTS = Path(__file__).parent


def test_engine_and_front_ends_import_no_ui_or_runtime():
    code = ("import sys, archcalc.engine.inference, archcalc.readers.spec, archcalc.readers.onnx, "
            "archcalc.engine.training; print(sorted(m for m in ('rich', 'click', 'onnxruntime') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_runtime_prints_nothing():
    """export and verify report through return values and a progress callback: no console."""
    code = ("import sys, archcalc.runtime.export, archcalc.runtime.verify; "
            "print(sorted(m for m in ('rich', 'click') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_registered_op_is_exercised_by_some_test():
    text = "\n".join(path.read_text() for path in TESTS.rglob("test_*.py"))
    untested = sorted(op for op in all_rules() if not re.search(rf"\b{op}\b", text))
    assert untested == [], f"ops with a rule but no test mentioning them: {untested}"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "archcalc", "--version"], capture_output=True, text=True,
                            check=True)
    assert "archcalc" in result.stdout


def test_no_import_circle():
    assert import_graph.circles() == []


def test_every_import_goes_down_the_layers():
    """core <- rules <- readers <- engine <- hardware <- runtime, compare <- report <- cli <- the API:
    a module imports its own subpackage and the layers below, never one above or beside."""
    wrong = [f"{e.importer}:{e.line} imports {e.imported}" for e in import_graph.against_layering()]
    assert wrong == []


def test_every_module_is_in_a_layer():
    for module in import_graph.module_names():
        import_graph.layer_of(module)  # raises for a subpackage the layering does not name


def test_test_folders_mirror_the_package():
    package = {path.name for path in (TESTS.parent / "archcalc").iterdir() if (path / "__init__.py").exists()}
    folders = {path.name for path in TESTS.iterdir() if path.is_dir() and any(path.glob("test_*.py"))}
    assert folders <= package, f"test folders with no subpackage of that name: {sorted(folders - package)}"
