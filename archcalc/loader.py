"""Pick the front end for a model path: ONNX files by extension or magic, YAML specs otherwise."""

from __future__ import annotations

import os

from archcalc.errors import ModelFileError
from archcalc.graph import Graph

SPEC_SUFFIXES = (".yaml", ".yml")


def load_model(path: str) -> Graph:
    if not os.path.exists(path):
        raise ModelFileError(f"{path} does not exist", fix="check the path (specs live in specs/)")
    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a directory", fix="pass a .yaml spec or an .onnx file")
    if path.lower().endswith(SPEC_SUFFIXES):
        from archcalc.spec import load_spec

        return load_spec(path)
    if path.lower().endswith(".onnx"):
        from archcalc.onnx_front import load_onnx

        return load_onnx(path)
    raise ModelFileError(f"{path}: unknown model format",
                         fix="name specs *.yaml or *.yml and ONNX models *.onnx")
