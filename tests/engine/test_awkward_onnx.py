"""Awkward but valid ONNX that archcalc once got wrong (issue 19): one test per class.

Each expected shape is worked by hand beside the case and checked against onnxruntime's
actual run of the same model; each expected count by hand (params as torch counts them).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from onnx_models import const, feeds_for, floats, ints, make_model, ort_shapes, tensor_input, weight

from archcalc.cli.main import cli
from archcalc.core.dims import Sym, bind_shape
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx


def _analyse(tmp_path, model, bindings=None):
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return analyze(load_onnx(str(path)), bindings or {}), str(path)


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args), terminal_width=200, catch_exceptions=False)


def _agrees(ours, actual) -> bool:
    """Same rank, every static dim equal to onnxruntime's (symbolic ones stand for any size)."""
    return ours is not None and len(ours) == len(actual) and all(
        not isinstance(a, int) or a == b for a, b in zip(ours, actual))


# -- Resize: opset 18's axes and keep_aspect_ratio_policy ------------------------------------

RESIZE_CASES = [
    # x [1, 1, 2, 2], sizes (7, 8) on H, W, not_larger: scale = min(7/2, 8/2) = 3.5,
    # out = floor(3.5 * 2 + 1/2) = 7 on both axes.
    pytest.param([1, 1, 2, 2], "sizes", [7, 8], [2, 3], "not_larger", (1, 1, 7, 7), id="sizes-not_larger"),
    # not_smaller: scale = max(3.5, 4) = 4, out = floor(4 * 2 + 1/2) = 8 on both.
    pytest.param([1, 1, 2, 2], "sizes", [7, 8], [2, 3], "not_smaller", (1, 1, 8, 8), id="sizes-not_smaller"),
    # x [1, 1, 4, 6], sizes (3, 3), not_larger: scale = min(3/4, 3/6) = 1/2: H = floor(2 + 1/2) = 2, W = 3.
    pytest.param([1, 1, 4, 6], "sizes", [3, 3], [2, 3], "not_larger", (1, 1, 2, 3), id="sizes-down-not_larger"),
    # sizes for a subset of axes, listed W then H: W = 9, H = 10, N and C untouched.
    pytest.param([1, 1, 2, 2], "sizes", [9, 10], [3, 2], "stretch", (1, 1, 10, 9), id="sizes-axes-3-2"),
    # one axis, counted from the end: W = 5.
    pytest.param([2, 3, 4, 4], "sizes", [5], [-1], "stretch", (2, 3, 4, 5), id="sizes-last-axis"),
    # scales for W then H: W = 2 * 2 = 4, H = 2 * 3 = 6.
    pytest.param([1, 1, 2, 2], "scales", [2.0, 3.0], [3, 2], "stretch", (1, 1, 6, 4), id="scales-axes-3-2"),
    # scales on the channel axis alone: C = floor(3 * 0.5) = 1.
    pytest.param([1, 3, 2, 2], "scales", [0.5], [1], "stretch", (1, 1, 2, 2), id="scales-channels"),
]


@pytest.mark.parametrize("shape, given, values, axes, policy, expected", RESIZE_CASES)
def test_resize_axes_and_keep_aspect_ratio(tmp_path, shape, given, values, axes, policy, expected):
    inputs = ["x", "", "scales", ""] if given == "scales" else ["x", "", "", "sizes"]
    init = floats("scales", values) if given == "scales" else ints("sizes", values)
    node = helper.make_node("Resize", inputs, ["y"], name="resize", mode="nearest", axes=axes,
                            keep_aspect_ratio_policy=policy)
    model = make_model([node], [tensor_input("x", shape)], ["y"], [init], opset=19)
    analysis, _ = _analyse(tmp_path, model)
    assert analysis.tensors["y"].shape == expected
    assert ort_shapes(model, feeds_for(model, {}))["y"] == expected


def test_resize_axes_in_onnx_node_tests(tmp_path):
    """onnx's own Resize cases with axes or keep_aspect_ratio_policy, their scales or sizes
    made initializers (the node tests feed them as inputs): the reference output's shape."""
    import node_suite

    cases = [c for c in node_suite.cases() if c.name.startswith("test_resize")
             and any(a.name in ("axes", "keep_aspect_ratio_policy") for a in c.model.graph.node[0].attribute)]
    assert len(cases) >= 10
    for case in cases:
        model = node_suite.stripped(case.model)
        fed = dict(zip([i.name for i in model.graph.input], case.data_sets[0][0]))
        for info in list(model.graph.input)[1:]:
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(fed[info.name]), info.name))
        del model.graph.input[1:]
        analysis, _ = _analyse(tmp_path, model)
        assert analysis.tensors["Y"].shape == case.data_sets[0][1][0].shape, case.name


# -- data-dependent dims: the analysis goes on ------------------------------------------------

def _data_dependent_model() -> onnx.ModelProto:
    """NonZero of x [2, 3] gives [2, nz_count] indices; GatherND reads x at them: [nz_count];
    Compress keeps the rows where `keep` (a graph input) is true: [keep_rows_count, 3];
    NonMaxSuppression keeps [nms_count, 3] box indices."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="nz"),
             helper.make_node("Transpose", ["nz"], ["nz_t"], name="nz_t"),
             helper.make_node("GatherND", ["x", "nz_t"], ["picked"], name="picked"),
             helper.make_node("Compress", ["x", "keep"], ["rows"], name="keep_rows", axis=0),
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_boxes"], ["selected"], name="nms")]
    inputs = [tensor_input("x", [2, 3]), tensor_input("keep", [2], TensorProto.BOOL),
              tensor_input("boxes", [1, 5, 4]), tensor_input("scores", [1, 2, 5])]
    return make_model(nodes, inputs, ["picked", "rows", "selected"], [ints("max_boxes", [3])], opset=17)


def test_data_dependent_dims_are_named_and_the_analysis_goes_on(tmp_path):
    model = _data_dependent_model()
    analysis, path = _analyse(tmp_path, model)
    count = Sym.symbol("nz_count")
    assert analysis.tensors["nz"].shape == (2, count)
    assert analysis.tensors["picked"].shape == (count,)
    assert analysis.tensors["rows"].shape == (Sym.symbol("keep_rows_count"), 3)
    assert analysis.tensors["selected"].shape == (Sym.symbol("nms_count"), 3)
    assert analysis.totals.partial
    for name in ("nz_count", "keep_rows_count", "nms_count"):
        assert any(f"dim '{name}' is known only at run time" in w and f"--dim {name}=N" in w
                   for w in analysis.warnings), name
    # onnxruntime agrees on every known dim.
    actual = ort_shapes(model, feeds_for(model, {}))
    assert all(_agrees(analysis.tensors[n].shape, actual[n]) for n in ("nz", "picked", "rows", "selected"))

    result = _cli("analyze", path, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["tensors"]["picked"] == ["nz_count"] and document["totals"]["partial"]
    assert "known only at run time" in result.output
    explained = " ".join(_cli("explain", path, "picked").output.split())
    assert "output picked: [nz_count] float32" in explained
    assert "(nz_count left out: known only at run time)" in explained


def test_a_data_dependent_dim_binds_with_dim(tmp_path):
    """--dim nz_count=4: the NonZero output is [2, 4] int64, 64 bytes; GatherND's [4] float32, 16 bytes."""
    _, path = _analyse(tmp_path, _data_dependent_model())
    result = _cli("analyze", path, "--format", "json", "--dim", "nz_count=4", "--dim", "keep_rows_count=1",
                  "--dim", "nms_count=2")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    layers = {layer["name"]: layer for layer in document["layers"]}
    assert layers["nz"]["activation_bytes"] == 2 * 4 * 8 and layers["picked"]["activation_bytes"] == 4 * 4
    assert layers["keep_rows"]["activation_bytes"] == 1 * 3 * 4 and layers["nms"]["activation_bytes"] == 2 * 3 * 8
    assert not document["totals"]["partial"]
    assert not any("known only at run time" in w for w in document["warnings"])


def test_an_unbound_input_dim_still_needs_binding(tmp_path):
    """A dim of a graph input is the user's to give: left unbound, the analysis stops (exit 2)
    (a leading one is a batch dim, bound by --batch, 1 by default)."""
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    model = make_model([node], [tensor_input("x", [3, "n"])], ["y"], opset=17)
    path = str(tmp_path / "input_dim.onnx")
    onnx.save(model, path)
    result = _cli("analyze", path)
    assert result.exit_code == 2 and "symbolic dim 'n' has no value" in result.output


# -- learned values however they are stored ---------------------------------------------------

def test_float_constants_and_identity_weights_are_params(tmp_path):
    """Gemm: B [4, 3] reaches it through Identity, C [3] is a Constant written with
    value_floats: 4*3 + 3 = 15 params (nn.Linear(4, 3)). A second Gemm to one unit whose bias
    is a Constant written with value_float: 3*1 + 1 = 4 (nn.Linear(3, 1)). A Conv with one
    output channel, its bias a one-value value_floats Constant: 1*2*3*3 + 1 = 19
    (nn.Conv2d(2, 1, 3)). torch counts every one: 15 + 4 + 19 = 38."""
    nodes = [helper.make_node("Identity", ["b_stored"], ["b"], name="b_through"),
             helper.make_node("Constant", [], ["c"], name="c_const", value_floats=[0.1, 0.2, 0.3]),
             helper.make_node("Gemm", ["x", "b", "c"], ["y"], name="gemm"),
             helper.make_node("Constant", [], ["c2"], name="c2_const", value_float=0.5),
             helper.make_node("Gemm", ["y", "b2", "c2"], ["y2"], name="gemm2"),
             helper.make_node("Constant", [], ["bias"], name="bias_const", value_floats=[0.5]),
             helper.make_node("Conv", ["image", "w", "bias"], ["z"], name="conv")]
    model = make_model(nodes, [tensor_input("x", [2, 4]), tensor_input("image", [1, 2, 5, 5])], ["y2", "z"],
                       [weight("b_stored", [4, 3]), weight("b2", [3, 1]), weight("w", [1, 2, 3, 3])], opset=17)
    analysis, _ = _analyse(tmp_path, model)
    assert analysis.totals.params == (4 * 3 + 3) + (3 * 1 + 1) + (1 * 2 * 3 * 3 + 1)
    assert set(analysis.param_tensors) == {"b_stored", "c", "b2", "c2", "w", "bias"}
    actual = ort_shapes(model, feeds_for(model, {}))
    assert actual["y2"] == analysis.tensors["y2"].shape == (2, 1)
    assert actual["z"] == analysis.tensors["z"].shape == (1, 1, 3, 3)


def test_a_one_value_bias_initializer_is_a_param(tmp_path):
    """nn.Conv2d(3, 1, 1) and nn.PReLU(): the bias [1] and the slope [1] are learned, 3 + 1 + 1 = 5."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv"),
             helper.make_node("PRelu", ["y", "slope"], ["z"], name="prelu")]
    model = make_model(nodes, [tensor_input("x", [1, 3, 4, 4])], ["z"],
                       [weight("w", [1, 3, 1, 1]), floats("b", [0.1]), floats("slope", [0.25])], opset=17)
    analysis, _ = _analyse(tmp_path, model)
    assert analysis.totals.params == 3 + 1 + 1


# -- values through Not and float arithmetic -----------------------------------------------

def test_values_follow_not_and_float_shape_arithmetic(tmp_path):
    """torch computes sizes in float: n = Shape(x)[1] = 6, float(n) / 2.0 = 3.0, Cast back to 3;
    Not(Equal(3, 6)) is true, so Where picks 3: y = Reshape(x [2, 6, 3], [2, 3, 6]) has shape
    [2, 3, 6] (onnxruntime agrees), where a lost value would leave it unknown."""
    nodes = [helper.make_node("Shape", ["x"], ["n"], name="n", start=1, end=2),
             helper.make_node("Cast", ["n"], ["n_float"], name="n_float", to=TensorProto.FLOAT),
             const("two", [2.0], np.float32),
             helper.make_node("Div", ["n_float", "two"], ["half_float"], name="half_float"),
             helper.make_node("Cast", ["half_float"], ["half"], name="half", to=TensorProto.INT64),
             helper.make_node("Equal", ["half", "n"], ["same"], name="same"),
             helper.make_node("Not", ["same"], ["differ"], name="differ"),
             helper.make_node("Where", ["differ", "half", "n"], ["picked"], name="picked"),
             const("batch", [2]),
             helper.make_node("Concat", ["batch", "picked", "n"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="y")]
    model = make_model(nodes, [tensor_input("x", [2, 6, 3])], ["y"], opset=17)
    analysis, _ = _analyse(tmp_path, model)
    assert analysis.tensors["y"].shape == (2, 3, 6)
    assert ort_shapes(model, feeds_for(model, {}))["y"] == (2, 3, 6)


def test_float_values_keep_their_precision(tmp_path):
    """Cast(0.1) to float16 is 0.0999755859375 (float16's nearest); times 10 that is
    0.999755859375, halfway between float16's 0.99951171875 and 1.0, so it rounds to 1.0 (the
    even one); Cast to int64 gives 1, the length of the ConstantOfShape. Double arithmetic would
    truncate 0.99975... to 0."""
    nodes = [const("tenth", [0.1], np.float32),
             helper.make_node("Cast", ["tenth"], ["tenth16"], name="tenth16", to=TensorProto.FLOAT16),
             const("ten", [10.0], np.float16),
             helper.make_node("Mul", ["tenth16", "ten"], ["length16"], name="length16"),
             helper.make_node("Cast", ["length16"], ["length"], name="length", to=TensorProto.INT64),
             helper.make_node("ConstantOfShape", ["length"], ["y"], name="y")]
    model = make_model(nodes, [], ["y"], opset=17)
    analysis, _ = _analyse(tmp_path, model)
    assert analysis.tensors["y"].shape == (1,)
    assert ort_shapes(model, {})["y"] == (1,)


def test_onnx_attention_expansion_resolves_its_kv_expand(tmp_path):
    """onnx's Attention-23 function, expanded (test_attention_4d_gqa_expanded): Q [2, 9, 4, 8],
    K and V [2, 3, 6, 8]. The K/V Expand repeats each of the 3 KV heads 9 / 3 = 3 times, a count
    computed through Equal, Not, And and Where: KExpanded = [2, 3, 3, 6, 8]."""
    import node_suite

    (case,) = [c for c in node_suite.cases() if c.name == "test_attention_4d_gqa_expanded"]
    analysis, _ = _analyse(tmp_path, node_suite.stripped(case.model))
    expanded = [name for name in analysis.tensors if name.endswith(("_KExpanded", "_VExpanded"))]
    assert len(expanded) == 2
    assert all(analysis.tensors[name].shape == (2, 3, 3, 6, 8) for name in expanded)
    assert analysis.tensors["Y"].shape == case.data_sets[0][1][0].shape == (2, 9, 4, 8)
    assert not analysis.totals.partial


# -- shapes given at run time ------------------------------------------------------------------

RUN_TIME_CASES = [
    # Resize scales fed at run time: rank 4, every axis resized (unknown).
    pytest.param("Resize", ["x", "", "scales"], {}, [tensor_input("scales", [4])], [1, 2, 3, 4],
                 [("y", 4, {})], id="resize-scales"),
    # Resize sizes for H, W only (axes): N and C stay.
    pytest.param("Resize", ["x", "", "", "sizes"], {"axes": [2, 3]}, [tensor_input("sizes", [2], TensorProto.INT64)],
                 [1, 2, 3, 4], [("y", 4, {0: 1, 1: 2})], id="resize-sizes-axes"),
    # Pad pads fed at run time: every axis may grow.
    pytest.param("Pad", ["x", "pads"], {}, [tensor_input("pads", [8], TensorProto.INT64)], [1, 2, 3, 4],
                 [("y", 4, {})], id="pad"),
    # Reshape to a target of 3 values: rank 3.
    pytest.param("Reshape", ["x", "target"], {}, [tensor_input("target", [3], TensorProto.INT64)], [2, 3, 4],
                 [("y", 3, {})], id="reshape"),
    # Expand x [3, 1] to a shape of 3 values: rank 3, the 3 stays (broadcasting keeps every dim but 1).
    pytest.param("Expand", ["x", "shape"], {}, [tensor_input("shape", [3], TensorProto.INT64)], [3, 1],
                 [("y", 3, {1: 3})], id="expand"),
    # ReduceSum over axes fed at run time, keepdims: rank 3, the dim of 1 stays 1.
    pytest.param("ReduceSum", ["x", "axes"], {}, [tensor_input("axes", [1], TensorProto.INT64)], [2, 1, 4],
                 [("y", 3, {1: 1})], id="reduce-keepdims"),
    # keepdims 0, two axes: rank 3 - 2 = 1.
    pytest.param("ReduceSum", ["x", "axes"], {"keepdims": 0}, [tensor_input("axes", [2], TensorProto.INT64)],
                 [2, 1, 4], [("y", 1, {})], id="reduce-two-axes"),
    # Split [6, 4] along 0 into 2 parts of sizes fed at run time: [?, 4] each.
    pytest.param("Split", ["x", "split"], {}, [tensor_input("split", [2], TensorProto.INT64)], [6, 4],
                 [("y", 2, {1: 4}), ("y2", 2, {1: 4})], id="split"),
    # TopK of [3, 5] with K fed at run time: values and indices [3, ?].
    pytest.param("TopK", ["x", "k"], {}, [tensor_input("k", [1], TensorProto.INT64)], [3, 5],
                 [("y", 2, {0: 3}), ("y2", 2, {0: 3})], id="topk"),
]


@pytest.mark.parametrize("op, names, attrs, extra, shape, outputs", RUN_TIME_CASES)
def test_run_time_shapes_keep_rank_and_untouched_dims(tmp_path, op, names, attrs, extra, shape, outputs):
    out_names = [name for name, _, _ in outputs]
    node = helper.make_node(op, names, out_names, name="layer", **attrs)
    model = make_model([node], [tensor_input("x", shape), *extra], out_names, opset=18 if op != "Resize" else 19)
    analysis, path = _analyse(tmp_path, model)
    assert all(layer.modelled for layer in analysis.layers)
    for name, rank, known in outputs:
        ours = analysis.tensors[name].shape
        assert len(ours) == rank
        for axis, dim in enumerate(ours):
            assert dim == known[axis] if axis in known else dim == Sym.symbol(f"layer_out0_dim{axis}") or \
                dim == Sym.symbol(f"layer_out1_dim{axis}")
    if op == "TopK":  # values and indices share the one K
        assert analysis.tensors["y"].shape == analysis.tensors["y2"].shape
        assert analysis.tensors["y2"].dtype == "int64"
    result = _cli("analyze", path)
    assert result.exit_code == 0, result.output
    assert "given at run time" in " ".join(result.output.split())  # the terminal may wrap it


def test_run_time_shapes_agree_with_onnxruntime(tmp_path):
    """Expand x [3, 1] to [2, 3, 4] fed at run time: archcalc [?, 3, ?]; ReduceSum over axes [2]
    fed at run time with keepdims: [2, 1, ?] of x [2, 1, 4] (onnxruntime: [2, 1, 1])."""
    nodes = [helper.make_node("Expand", ["a", "shape"], ["expanded"], name="expand"),
             helper.make_node("ReduceSum", ["b", "axes"], ["reduced"], name="reduce")]
    model = make_model(nodes, [tensor_input("a", [3, 1]), tensor_input("shape", [3], TensorProto.INT64),
                               tensor_input("b", [2, 1, 4]), tensor_input("axes", [1], TensorProto.INT64)],
                       ["expanded", "reduced"], opset=18)
    analysis, _ = _analyse(tmp_path, model)
    feeds = {"a": np.ones((3, 1), np.float32), "shape": np.array([2, 3, 4]), "b": np.ones((2, 1, 4), np.float32),
             "axes": np.array([2])}
    actual = ort_shapes(model, feeds)
    assert actual["expanded"] == (2, 3, 4) and _agrees(analysis.tensors["expanded"].shape, actual["expanded"])
    assert actual["reduced"] == (2, 1, 1) and _agrees(analysis.tensors["reduced"].shape, actual["reduced"])
    env = {"expand_out0_dim0": 2, "expand_out0_dim2": 4, "reduce_out0_dim0": 2, "reduce_out0_dim2": 1}
    assert bind_shape(analysis.tensors["expanded"].shape, env) == (2, 3, 4)


def test_onehot_depth_at_run_time(tmp_path):
    """OneHot of indices [2, 3] with depth fed at run time: [2, 3, ?] in the values' dtype."""
    node = helper.make_node("OneHot", ["indices", "depth", "values"], ["y"], name="layer")
    model = make_model([node], [tensor_input("indices", [2, 3], TensorProto.INT64),
                                tensor_input("depth", [1], TensorProto.INT64)], ["y"],
                       [floats("values", [0.0, 1.0])], opset=17)
    analysis, _ = _analyse(tmp_path, model)
    assert analysis.tensors["y"].shape == (2, 3, Sym.symbol("layer_out0_dim2"))
    assert analysis.tensors["y"].dtype == "float32"


def test_loop_trip_count_as_a_graph_input(tmp_path):
    """A Loop whose trip count is a graph input: scan output [trips, 2]; exit 0, a warning."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Relu", ["state"], ["next"]),
         helper.make_node("Identity", ["next"], ["step"])], "body",
        [tensor_input("i", [], TensorProto.INT64), tensor_input("cond_in", [], TensorProto.BOOL),
         tensor_input("state", [2])],
        [tensor_input("cond_out", [], TensorProto.BOOL), tensor_input("next", [2]), tensor_input("step", [2])])
    node = helper.make_node("Loop", ["trips", "", "start"], ["final", "steps"], name="loop", body=body)
    model = make_model([node], [tensor_input("trips", [], TensorProto.INT64), tensor_input("start", [2])],
                       ["final", "steps"], opset=17)
    analysis, path = _analyse(tmp_path, model)
    assert analysis.tensors["steps"].shape == (Sym.symbol("loop_trip_count"), 2)
    result = _cli("analyze", path)
    assert result.exit_code == 0 and "loop_trip_count" in result.output


def test_upsample_7_scales_attribute_scales_the_input(tmp_path):
    """Upsample-7 gives its scales as an attribute, with no scales or sizes input: [1, 3, 4, 5]
    by (1, 1, 2, 3) is [1, 3, 8, 15] (as onnxruntime runs it), not the scales read as sizes."""
    node = helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 3.0], mode="nearest")
    model = make_model([node], [tensor_input("x", [1, 3, 4, 5])], ["y"], opset=7)
    path = tmp_path / "upsample7.onnx"
    onnx.save(model, path)
    assert ort_shapes(model, feeds_for(model, {}))["y"] == (1, 3, 8, 15)
    assert analyze(load_onnx(str(path))).tensors["y"].shape == (1, 3, 8, 15)
