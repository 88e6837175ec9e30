"""Shared test set-up.

Test modules live in folders that mirror the package (tests/rules/, tests/readers/, ...);
this file's folder is put on sys.path by pytest, so every one of them imports the shared
helpers the same way: onnx_models (ONNX models built with onnx.helper, checked in
onnxruntime), ort_helpers (single-node runs of one rule against onnxruntime), goldens
(golden-text comparison), and fixtures.onnx.fixture_tools (the one onnxruntime session
helper, also used by the fixture generators).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _run_from_the_repository_root() -> None:
    """Tests name bundled files as users do (specs/resnet50.yaml): from the repository root."""
    os.chdir(ROOT)
