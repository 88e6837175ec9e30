"""Build single-node ONNX models, run them with onnxruntime, and call archcalc's rule on
the same inputs, so a test can compare the two output shapes.

An input is an :class:`Arg`: a runtime data input (random values fed to the session), an
initializer (weights, or constants such as Reshape's shape, Pad's pads, Resize's
scales, whose values the rule also sees), or omitted (an empty name in ONNX, None for
the rule).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures.onnx.fixture_tools import ort_run
from onnx import TensorProto, helper, numpy_helper

from archcalc.rules.base import RuleResult, TensorState, get_rule

DTYPES = {
    "float32": (np.float32, TensorProto.FLOAT),
    "int64": (np.int64, TensorProto.INT64),
    "int32": (np.int32, TensorProto.INT32),
    "uint32": (np.uint32, TensorProto.UINT32),
    "uint8": (np.uint8, TensorProto.UINT8),
    "int8": (np.int8, TensorProto.INT8),
    "bool": (np.bool_, TensorProto.BOOL),
}


@dataclass(frozen=True)
class Arg:
    """One node input. kind: 'data' (fed at run time), 'weight' (random initializer whose
    values the rule does not see), 'const' (initializer whose values the rule sees) or
    'omitted' (an optional input left out)."""

    kind: str
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    values: tuple | None = None


def data(*shape: int, dtype: str = "float32") -> Arg:
    return Arg("data", tuple(shape), dtype)


def weight(*shape: int) -> Arg:
    return Arg("weight", tuple(shape))


def const(values: Sequence[Any], dtype: str = "int64") -> Arg:
    return Arg("const", (len(values),), dtype, tuple(values))


def scalar(value: Any, dtype: str = "float32") -> Arg:
    return Arg("const", (), dtype, (value,))


OMITTED = Arg("omitted")

_RNG = np.random.default_rng(0)
ort.set_default_logger_severity(3)  # expected failures (bad shapes) need not print errors


def _array(arg: Arg) -> np.ndarray:
    np_dtype = DTYPES[arg.dtype][0]
    if arg.values is not None:
        return np.array(arg.values if arg.shape else arg.values[0], dtype=np_dtype).reshape(arg.shape)
    if np.issubdtype(np_dtype, np.floating):
        return _RNG.standard_normal(arg.shape).astype(np_dtype)
    if np_dtype is np.bool_:
        return _RNG.integers(0, 2, size=arg.shape).astype(np_dtype)
    return _RNG.integers(1, 5, size=arg.shape).astype(np_dtype)


def single_node_model(op: str, args: Sequence[Arg], attrs: dict[str, Any], *, opset: int = 17,
                      outputs: int = 1) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model of one `op` node (constants and weights as initializers) and its feeds."""
    names, graph_inputs, initializers, feeds = [], [], [], {}
    for i, arg in enumerate(args):
        if arg.kind == "omitted":
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        array = _array(arg)
        if arg.kind == "data":
            graph_inputs.append(helper.make_tensor_value_info(name, DTYPES[arg.dtype][1], list(arg.shape)))
            feeds[name] = array
        else:
            initializers.append(numpy_helper.from_array(array, name))
    output_names = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op, names, output_names, **attrs)
    graph = helper.make_graph([node], f"single_{op}", graph_inputs,
                              [helper.make_empty_tensor_value_info(n) for n in output_names], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model, feeds


def run_onnxruntime(op: str, args: Sequence[Arg], attrs: dict[str, Any], *, opset: int = 17,
                    outputs: int = 1) -> list[tuple[int, ...]]:
    """Run one `op` node in onnxruntime; return the shapes of its first `outputs` outputs."""
    return [tuple(r.shape) for r in onnxruntime_outputs(op, args, attrs, opset=opset, outputs=outputs)]


def onnxruntime_outputs(op: str, args: Sequence[Arg], attrs: dict[str, Any], *, opset: int = 17,
                        outputs: int = 1) -> list[np.ndarray]:
    """Run one `op` node in onnxruntime; its first `outputs` outputs."""
    model, feeds = single_node_model(op, args, attrs, opset=opset, outputs=outputs)
    _, values = ort_run(model, feeds)
    return [values[output.name] for output in model.graph.output]


def onnx_inferred_shapes(op: str, args: Sequence[Arg], attrs: dict[str, Any], *, opset: int = 17,
                         outputs: int = 1) -> list[tuple[int, ...]]:
    """The output shapes onnx's own shape inference gives (for cases onnxruntime cannot run)."""
    model, _ = single_node_model(op, args, attrs, opset=opset, outputs=outputs)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    shapes = []
    for name in [o.name for o in model.graph.output]:
        dims = known[name].type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), f"onnx could not infer {name}"
        shapes.append(tuple(d.dim_value for d in dims))
    return shapes


def tensor_states(args: Sequence[Arg]) -> list[TensorState | None]:
    """The rule's view of the same inputs: shapes, dtypes, and values of constants as the
    float32/int64 tensors hold them."""
    states: list[TensorState | None] = []
    for arg in args:
        if arg.kind == "omitted":
            states.append(None)
        elif arg.kind == "const":
            states.append(TensorState(arg.shape, arg.dtype, tuple(_array(arg).reshape(-1).tolist())))
        else:
            states.append(TensorState(arg.shape, arg.dtype))
    return states


def run_rule(op: str, args: Sequence[Arg], attrs: dict[str, Any]) -> RuleResult:
    rule = get_rule(op)
    assert rule is not None, f"archcalc has no rule for {op}"
    return rule(tensor_states(args), dict(attrs))


def rule_shapes(result: RuleResult, outputs: int = 1) -> list[tuple[int, ...]]:
    return [tuple(o.shape) for o in result.outputs[:outputs]]


def rule_dtypes(result: RuleResult, args: Sequence[Arg], outputs: int = 1) -> list[str]:
    """The dtypes the engine gives the outputs: the rule's, or its first input's (the engine's default)."""
    first = next((a.dtype for a in args if a.kind != "omitted"), "float32")
    return [o.dtype or first for o in result.outputs[:outputs]]


@functools.cache
def missing_nchwc_kernels() -> str | None:
    """Why this onnxruntime cannot run com.microsoft.nchwc ops, or None when it can. Its
    channel-blocked kernels are MLAS' x86 ones (SSE, AVX2, AVX-512): elsewhere (ARM, a build
    without them) neither the ops run nor ORT_ENABLE_ALL writes them, and a test of either is
    skipped with this reason, never passed."""
    x = np.zeros((1, 16, 2, 2), np.float32)
    node = helper.make_node("ReorderInput", ["x"], ["y"], domain="com.microsoft.nchwc")
    graph = helper.make_graph([node], "nchwc_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft.nchwc", 1)])
    model.ir_version = min(model.ir_version, 10)
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    except Exception as error:  # noqa: BLE001 (any failure: the kernel is not there)
        return (f"onnxruntime {ort.__version__} on {platform.machine()} has no com.microsoft.nchwc kernels "
                f"({str(error).splitlines()[0][:120]})")
    return None


needs_nchwc = pytest.mark.skipif(missing_nchwc_kernels() is not None, reason=missing_nchwc_kernels() or "")
