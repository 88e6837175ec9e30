"""onnx's own operator test cases (``onnx.backend.test.case.node``) run through archcalc.

Each case is a small model with reference outputs computed by onnx's reference
implementation. The model's declared output types and value_info are stripped, so
archcalc infers everything from the inputs; its shape for each output is then compared
with the reference output's shape, and its dtype with the case's declared output type.
onnx's own C++ inference with data propagation (`infer_shapes(..., data_prop=True)`) runs on
the same stripped model: a case where onnx finds a fully static output shape and
archcalc does not is "behind".

Used by tests/rules/test_onnx_node_suite.py and by `python3 tests/node_suite.py`, which prints
the counts and every case that is not static and right.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from archcalc.core.dtypes import ONNX_DTYPES
from archcalc.core.errors import ArchcalcError

# Outcomes, best first. A case's outcome is the worst of its outputs'.
RIGHT = "right"  # every tensor output static, with the reference's shape and dtype
BEHIND = "behind"  # some output not static in archcalc, static in onnx's inference
UNKNOWN = "unknown"  # some output not static in archcalc nor in onnx's inference
WRONG = "wrong"  # some output static with a shape or dtype other than the reference's
ABORTED = "aborted"  # archcalc refused the model (an ArchcalcError: exit 2 in the CLI)
CRASHED = "crashed"  # any other exception: a bug
OUTCOMES = (RIGHT, UNKNOWN, BEHIND, WRONG, ABORTED, CRASHED)


@dataclass(frozen=True)
class CaseResult:
    name: str
    outcome: str
    detail: str = ""


@functools.cache
def cases() -> list:
    """onnx's node test cases (model and reference outputs), in onnx's order (collected once:
    several tests read them, and collecting takes seconds)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # the generators cast out-of-range floats on purpose
        warnings.simplefilter("ignore")
        return collect_testcases(None)


def stripped(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` without what would tell archcalc (or onnx) the answer: value_info and the
    graph outputs' types."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.value_info[:]
    for output in copy.graph.output:
        output.ClearField("type")
    return copy


def _onnx_static_outputs(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Outputs whose shape onnx's inference (with data propagation) finds fully static."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # onnx refuses some of its own cases (e.g. missing optional types)
        return {}
    static = {}
    for output in inferred.graph.output:
        if output.type.WhichOneof("value") != "tensor_type" or not output.type.tensor_type.HasField("shape"):
            continue
        dims = output.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            static[output.name] = tuple(d.dim_value for d in dims)
    return static


def _reference_outputs(case) -> list:
    return list(case.data_sets[0][1]) if case.data_sets else []


def run_case(case, folder: str) -> CaseResult:
    """Analyse one case with archcalc and judge its outputs."""
    from archcalc.api import analyze

    model = stripped(case.model)
    path = os.path.join(folder, case.name + ".onnx")
    onnx.save(model, path)
    try:
        analysis = analyze(path)
    except ArchcalcError as error:
        return CaseResult(case.name, ABORTED, str(error).splitlines()[0][:300])
    except Exception as error:  # noqa: BLE001  (a crash is what this harness looks for)
        return CaseResult(case.name, CRASHED, f"{type(error).__name__}: {error}"[:300])
    declared = {o.name: o.type for o in case.model.graph.output}
    outcome, details = RIGHT, []
    onnx_static: dict[str, tuple[int, ...]] | None = None
    for output, reference in zip(case.model.graph.output, _reference_outputs(case)):
        if not isinstance(reference, np.ndarray) or declared[output.name].WhichOneof("value") != "tensor_type":
            continue  # a sequence or optional output: archcalc models tensors
        result = analysis.tensors.get(output.name)
        shape = result.shape if result is not None else None
        want_dtype = ONNX_DTYPES.get(declared[output.name].tensor_type.elem_type)
        if shape is not None and all(isinstance(d, int) for d in shape):
            if tuple(shape) != reference.shape or (want_dtype and result.dtype != want_dtype):
                outcome = WRONG
                details.append(f"{output.name}: {list(shape)} {result.dtype}, reference "
                               f"{list(reference.shape)} {want_dtype}")
            continue
        if onnx_static is None:
            onnx_static = _onnx_static_outputs(model)
        shown = "unknown" if shape is None else str(list(shape))
        if output.name in onnx_static:
            details.append(f"{output.name}: {shown}, onnx infers {list(onnx_static[output.name])}")
            if outcome in (RIGHT, UNKNOWN):
                outcome = BEHIND
        else:
            details.append(f"{output.name}: {shown}, onnx infers no static shape either")
            if outcome == RIGHT:
                outcome = UNKNOWN
    return CaseResult(case.name, outcome, "; ".join(details))


def run_all(name_contains: str = "") -> Iterator[CaseResult]:
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cases():
            if name_contains in case.name:
                yield run_case(case, folder)


def main() -> None:
    import time

    start = time.perf_counter()
    results = list(run_all(sys.argv[1] if len(sys.argv) > 1 else ""))
    counts = Counter(r.outcome for r in results)
    for result in results:
        if result.outcome != RIGHT:
            print(f"{result.outcome:8} {result.name}: {result.detail}")
    print(f"{len(results)} cases: " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)
          + f" ({time.perf_counter() - start:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
