"""Small ONNX models built in memory, and onnxruntime as the judge of their shapes.

`ort_shapes` runs a model with every intermediate tensor added as a graph output, so a
test can compare every shape archcalc inferred with what actually came out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from fixtures.onnx.fixture_tools import ort_outputs, ort_run
from onnx import TensorProto, helper, numpy_helper

from archcalc.core.dims import bind_shape
from archcalc.core.results import Analysis

_NP_TYPES = {
    TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16,
    TensorProto.INT64: np.int64, TensorProto.INT32: np.int32, TensorProto.INT8: np.int8,
    TensorProto.UINT8: np.uint8, TensorProto.BOOL: np.bool_,
}


def make_model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
               outputs: Sequence[onnx.ValueInfoProto | str], initializers: Sequence[TensorProto] = (),
               opset: int = 17, *, value_info: Sequence[onnx.ValueInfoProto] = (),
               domains: Mapping[str, int] | None = None, ir_version: int | None = None,
               functions: Sequence[onnx.FunctionProto] = (), name: str = "model") -> onnx.ModelProto:
    """A model; outputs given by name get no type (onnxruntime and archcalc infer it)."""
    outs = [onnx.ValueInfoProto(name=o) if isinstance(o, str) else o for o in outputs]
    graph = helper.make_graph(list(nodes), name, list(inputs), outs, initializer=list(initializers),
                              value_info=list(value_info))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions),
                              producer_name="archcalc-tests")
    model.ir_version = ir_version or _ir_version(opset)
    return model


def _ir_version(opset: int) -> int:
    for version, ir in ((21, 10), (19, 9), (15, 8), (13, 7), (11, 6), (10, 5), (9, 4), (8, 3)):
        if opset >= version:
            return ir
    return 3


def tensor_input(name: str, shape: Sequence[int | str | None], dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(shape))


def weight(name: str, shape: Sequence[int], seed: int = 0) -> TensorProto:
    """A float32 initializer of random values."""
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def ints(name: str, values: Iterable[int] | int, dtype: type = np.int64) -> TensorProto:
    """An integer initializer (a scalar when `values` is an int)."""
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def floats(name: str, values: Iterable[float]) -> TensorProto:
    return numpy_helper.from_array(np.array(list(values), dtype=np.float32), name)


def const(output: str, array: np.ndarray | Sequence | int, dtype: type = np.int64) -> onnx.NodeProto:
    """A Constant node holding `array`."""
    return helper.make_node("Constant", [], [output], name=f"const_{output}",
                            value=numpy_helper.from_array(np.array(array, dtype=dtype)))


def feeds_for(model: onnx.ModelProto, dims: Mapping[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for every graph input that is not an initializer; `dims` binds dim_params."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for info in model.graph.input:
        if info.name in initializers:
            continue
        tensor_type = info.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else dims[d.dim_param] for d in tensor_type.shape.dim]
        np_type = _NP_TYPES[tensor_type.elem_type]
        if np.issubdtype(np_type, np.floating):
            feeds[info.name] = rng.standard_normal(shape).astype(np_type)
        else:
            feeds[info.name] = rng.integers(0, 2, shape).astype(np_type)
    return feeds


def ort_shapes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Run `model` in onnxruntime; the shape of every graph input and every node output."""
    shapes, _ = ort_run(model, dict(feeds))
    return {name: tuple(shape) for name, shape in shapes.items()}


def ort_shapes_and_dtypes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
                          ) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Run `model` once in onnxruntime: the shape of every graph input and node output, and
    the numpy dtype name of every node output."""
    results = ort_outputs(model, dict(feeds))
    shapes = {name: tuple(feed.shape) for name, feed in feeds.items()}
    shapes.update({name: tuple(value.shape) for name, value in results.items()})
    return shapes, {name: str(value.dtype) for name, value in results.items()}


def onnx_inferred_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    """The element type onnx's own type inference gives every tensor it types (no run, so
    it works on stripped fixtures whose weights are absent)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    return {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
            for v in values if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}


def dtype_mismatches(analysis: Analysis, actual: Mapping[str, str]) -> list[str]:
    """Every tensor whose inferred dtype differs from the reference's."""
    problems = []
    for name, dtype in actual.items():
        ours = analysis.tensors.get(name)
        if ours is None or ours.dtype != dtype:
            problems.append(f"{name}: archcalc {ours.dtype if ours else None}, reference {dtype}")
    return problems


def shape_mismatches(analysis: Analysis, actual: Mapping[str, tuple[int, ...]],
                     env: Mapping[str, int] | None = None, rename: Mapping[str, str] | None = None) -> list[str]:
    """Every tensor whose inferred shape (bound with `env`) differs from onnxruntime's."""
    env = {**analysis.bindings, **(env or {})}
    problems = []
    for name, shape in actual.items():
        ours = analysis.tensors.get((rename or {}).get(name, name))
        if ours is None or ours.shape is None:
            problems.append(f"{name}: archcalc has no shape, onnxruntime {list(shape)}")
            continue
        bound = bind_shape(ours.shape, env)
        if bound != shape:
            problems.append(f"{name}: archcalc {list(bound)} ({list(map(str, ours.shape))}), onnxruntime {list(shape)}")
    return problems


def assert_recorded_shapes(analysis: Analysis, record: Mapping[str, Any]) -> None:
    """A fixture record's onnxruntime shapes (`shapes`, at its `dims`) are the analysis' every one."""
    recorded = {tensor: tuple(shape) for tensor, shape in record["shapes"].items()}
    problems = shape_mismatches(analysis, recorded, record["dims"])
    assert not problems, f"{len(problems)} of {len(recorded)} shapes differ:\n" + "\n".join(problems)


def float_initializer_elements(model: onnx.ModelProto, names: Iterable[str]) -> int:
    """Elements of the named float initializers (from their dims)."""
    by_name = {t.name: t for t in model.graph.initializer}
    return sum(int(np.prod(by_name[n].dims, dtype=np.int64)) for n in names)


# Control flow: a Loop over h -> relu(h @ W + B), shared by the control-flow and hostile-input tests.

def value(name: str, dtype: int = TensorProto.FLOAT, shape=None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def body(nodes, name, inputs, outputs, initializers=()) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, inputs, outputs, list(initializers))


def loop_body(scan_output: bool = True) -> onnx.GraphProto:
    """h -> relu(h @ W + B): W from the main graph, the bias B its own; the pre-activation
    as a scan output."""
    nodes = [helper.make_node("MatMul", ["h", "W"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "B"], ["a"], name="bias"),
             helper.make_node("Relu", ["a"], ["h_out"], name="act"),
             helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep")]
    outputs = [value("cond_out", TensorProto.BOOL, []), value("h_out")] + ([value("a")] if scan_output else [])
    return body(nodes, "loop_body", [value("i", TensorProto.INT64, []), value("cond_in", TensorProto.BOOL, []),
                                     value("h")], outputs, [weight("B", [4], 1)])


def loop_model(trips: str, cond: str, scan_output: bool = True, extra_inputs=(), initializers=()) -> onnx.ModelProto:
    outputs = ["h_final", "steps"] if scan_output else ["h_final"]
    nodes = [helper.make_node("Loop", [trips, cond, "x"], outputs, name="loop", body=loop_body(scan_output)),
             helper.make_node("MatMul", ["h_final", "W"], ["y"], name="head")]
    return make_model(nodes, [tensor_input("x", ["batch", 4]), *extra_inputs], ["y", *outputs[1:]],
                      [weight("W", [4, 4]), *initializers], opset=17)
