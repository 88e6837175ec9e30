"""Pick the front end for a model path: ONNX files by extension or magic, YAML specs otherwise."""

from __future__ import annotations

import os
from collections.abc import Mapping

from archcalc.core.errors import ModelFileError
from archcalc.core.graph import Graph, Shape

SPEC_SUFFIXES = (".yaml", ".yml")


def load_model(path: str, input_shapes: Mapping[str, Shape] | None = None) -> Graph:
    """The model at `path` as a Graph, its graph inputs fed at `input_shapes` where given.
    A `package.module:callable` that is no file names a PyTorch model factory: the module it
    returns is exported at `input_shapes` (see readers/torch)."""
    if not os.path.exists(path):
        from archcalc.readers.torch import is_factory_spec, load_factory

        if is_factory_spec(path):
            return load_factory(path, input_shapes)
    graph = _load(path)
    return graph.with_input_shapes(input_shapes) if input_shapes else graph


def _load(path: str) -> Graph:
    if not os.path.exists(path):
        raise ModelFileError(f"{path} does not exist", fix=_missing_fix(path))
    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a directory", fix="pass a .yaml spec or an .onnx file")
    if path.lower().endswith(SPEC_SUFFIXES):
        from archcalc.readers.spec import load_spec

        return load_spec(path)
    if path.lower().endswith(".onnx"):
        from archcalc.readers.onnx import load_onnx

        return load_onnx(path)
    raise ModelFileError(f"{path}: unknown model format",
                         fix="name specs *.yaml or *.yml and ONNX models *.onnx")


def _missing_fix(path: str) -> str:
    """A fix for a path that does not exist: the same name with the other YAML suffix, or a
    close name in the same folder, when there is one."""
    import difflib

    stem, suffix = os.path.splitext(path)
    other = {".yaml": ".yml", ".yml": ".yaml"}.get(suffix.lower())
    if other and os.path.isfile(stem + other):
        return f"did you mean {stem + other}?"
    folder = os.path.dirname(path) or "."
    try:
        names = os.listdir(folder) if os.path.isdir(folder) else []
    except OSError:
        names = []
    close = difflib.get_close_matches(os.path.basename(path), names, n=1)
    if close:
        return f"did you mean {os.path.join(os.path.dirname(path), close[0])}?"
    return "check the path (specs live in specs/)"
