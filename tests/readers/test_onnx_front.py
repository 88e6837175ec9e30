"""The ONNX front end: models built with onnx.helper, read by load_onnx, analysed, and
every inferred tensor shape checked against what onnxruntime actually produces."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import (
    const,
    dtype_mismatches,
    feeds_for,
    float_initializer_elements,
    floats,
    ints,
    make_model,
    ort_shapes,
    ort_shapes_and_dtypes,
    shape_mismatches,
    tensor_input,
    weight,
)

from archcalc.core.dims import Sym, bind
from archcalc.core.errors import ModelFileError, ShapeError
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx

INT64_MAX = 2**63 - 1
BATCH = 3


def check(model: onnx.ModelProto, tmp_path, dims: dict[str, int] | None = None, name: str = "model.onnx"):
    """Save, load with archcalc, analyse with `dims`, and compare every shape with onnxruntime."""
    dims = {"batch": BATCH, **(dims or {})}
    path = str(tmp_path / name)
    onnx.save(model, path)
    graph = load_onnx(path)
    analysis = analyze(graph, dims)
    actual = ort_shapes(model, feeds_for(model, dims))
    assert shape_mismatches(analysis, actual, dims) == []
    produced = {o for node in model.graph.node for o in node.output if o}
    assert produced <= set(actual)  # every intermediate tensor was compared
    return graph, analysis


# ---------------------------------------------------------------------------------------
# whole models


def cnn_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["b1"],
                         name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.w"], ["c2"], name="conv2", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    inits = [weight("conv1.w", [8, 3, 3, 3]), weight("conv1.b", [8]), weight("bn1.scale", [8]),
             weight("bn1.bias", [8]), weight("bn1.mean", [8]), floats("bn1.var", [1.0] * 8),
             weight("conv2.w", [16, 8, 3, 3]), weight("fc.w", [10, 16]), weight("fc.b", [10])]
    return make_model(nodes, [tensor_input("x", ["batch", 3, 32, 32])], ["y"], inits, opset=17, name="cnn")


CNN_PARAMS = ["conv1.w", "conv1.b", "bn1.scale", "bn1.bias", "conv2.w", "fc.w", "fc.b"]


def test_small_cnn(tmp_path):
    model = cnn_model()
    graph, analysis = check(model, tmp_path)
    assert graph.format == "onnx"
    assert graph.opset == 17
    assert graph.metadata["name"] == "cnn"
    assert graph.metadata["producer"] == "archcalc-tests"
    assert graph.batch_dims == ("batch",)
    assert [layer.name for layer in analysis.layers] == [n.name for n in model.graph.node]
    assert analysis.tensors["y"].shape == (Sym.symbol("batch"), 10)
    assert analysis.totals.params == float_initializer_elements(model, CNN_PARAMS) == 1562
    assert analysis.totals.buffers == 16
    macs = BATCH * (8 * 32 * 32 * 27 + 16 * 8 * 8 * 72 + 10 * 16)
    assert analysis.totals.macs == macs
    assert not analysis.totals.partial and analysis.warnings == ()
    assert graph.tensors["x"].kind == "input" and graph.tensors["x"].dtype == "float32"
    assert graph.tensors["conv1.w"].kind == "weight" and graph.tensors["conv1.w"].value is None


@pytest.mark.parametrize("graph_name, expected", [("cnn", "cnn"), ("", "resnet_v2"), ("main_graph", "resnet_v2"),
                                                  ("tf2onnx", "resnet_v2"),
                                                  # skl2onnx: a uuid4's hex; others a dashed UUID
                                                  ("3c59201b940f410fa29dc71ea9d5767d", "resnet_v2"),
                                                  ("123e4567-e89b-12d3-a456-426614174000", "resnet_v2"),
                                                  ("deadbeef", "deadbeef"), ("resnet50_v1", "resnet50_v1")])
def test_model_name_is_the_graphs_unless_an_exporters_default(tmp_path, graph_name, expected):
    """PyTorch names every exported graph main_graph and tf2onnx every one tf2onnx: the
    file name tells models apart in tables and diffs; a graph's own name is kept."""
    model = cnn_model()
    model.graph.name = graph_name
    graph, analysis = check(model, tmp_path, name="resnet_v2.onnx")
    assert analysis.name == expected
    assert graph.metadata["graph_name"] == graph_name


@pytest.mark.parametrize("opset", [11, 13])
def test_torch_style_reshape_chain(tmp_path, opset):
    """x.view(x.size(0), -1) as torch.onnx writes it, with a symbolic batch."""
    unsqueeze = (helper.make_node("Unsqueeze", ["b", "axes0"], ["bu"], name="/Unsqueeze") if opset >= 13
                 else helper.make_node("Unsqueeze", ["b"], ["bu"], name="/Unsqueeze", axes=[0]))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"], name="/Shape"),
        const("i0", 0),
        helper.make_node("Gather", ["s", "i0"], ["b"], name="/Gather", axis=0),
        unsqueeze,
        const("minus1", [-1]),
        helper.make_node("Concat", ["bu", "minus1"], ["target"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["flat"], name="/Reshape"),
        helper.make_node("Gemm", ["flat", "fc.w"], ["y"], name="/fc/Gemm", transB=1),
    ]
    inits = [weight("w", [8, 3, 3, 3]), weight("fc.w", [5, 512])] + ([ints("axes0", [0])] if opset >= 13 else [])
    model = make_model(nodes, [tensor_input("x", ["batch", 3, 8, 8])], ["y"], inits, opset=opset)
    _, analysis = check(model, tmp_path)
    batch = Sym.symbol("batch")
    assert analysis.tensors["target"].shape == (2,)
    assert analysis.tensors["flat"].shape == (batch, 512)
    assert analysis.tensors["y"].shape == (batch, 5)
    assert analysis.totals.params == 8 * 27 + 5 * 512
    assert analysis.warnings == ()


def test_reshape_target_from_shape_arithmetic(tmp_path):
    """x.view(b, c, h * w): Gather, Mul of two gathered dims, Concat, Reshape."""
    def pick(index: int) -> list[onnx.NodeProto]:
        return [const(f"i{index}", index), helper.make_node("Gather", ["s", f"i{index}"], [f"d{index}"])]

    nodes = [helper.make_node("Shape", ["x"], ["s"]), *pick(0), *pick(1), *pick(2), *pick(3),
             helper.make_node("Mul", ["d2", "d3"], ["hw"]),
             const("ax", [0]),
             helper.make_node("Unsqueeze", ["d0", "ax"], ["u0"]),
             helper.make_node("Unsqueeze", ["d1", "ax"], ["u1"]),
             helper.make_node("Unsqueeze", ["hw", "ax"], ["u2"]),
             helper.make_node("Concat", ["u0", "u1", "u2"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"]),
             helper.make_node("Size", ["x"], ["numel"]),
             helper.make_node("Div", ["numel", "d0"], ["per_sample"])]
    model = make_model(nodes, [tensor_input("x", ["batch", 4, 5, 6])], ["y", "per_sample"], opset=17)
    graph, analysis = check(model, tmp_path)
    assert analysis.tensors["y"].shape == (Sym.symbol("batch"), 4, 30)
    assert [layer.op for layer in analysis.layers if layer.name == "Mul_9"] == ["Mul"]  # generated names


@pytest.mark.parametrize("op, expected", [("Max", ("batch", 4, 5)), ("Min", (1, 4, 1))])
def test_expand_target_from_variadic_shape_arithmetic(tmp_path, op, expected):
    """tf2onnx's Einsum broadcasting: the target shape is the Max of shape vectors, one of
    them symbolic (a bound dim is at least 1, so Min(batch, 1) is 1)."""
    third = {"Max": ("ones", [1, 1, 1]), "Min": ("fives", [5, 5, 5])}[op]
    operands = ["s", "t", third[0]]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Shape", ["y"], ["t"]),
             helper.make_node(op, operands, ["target"], name="broadcast"),
             helper.make_node("Expand", ["y", "target"], ["wide"])]
    inputs = [tensor_input("x", ["batch", 4, 5]), tensor_input("y", [1, 4, 1])]
    model = make_model(nodes, inputs, ["wide"], [ints(*third)], opset=17)
    _, analysis = check(model, tmp_path)
    assert analysis.tensors["wide"].shape == tuple(Sym.symbol(d) if isinstance(d, str) else d for d in expected)
    assert analysis.warnings == ()


def test_a_weight_only_measured_by_shape_is_no_param(tmp_path):
    """tf2onnx keeps a copy of each attention kernel just to take its shape: it holds no
    value any output depends on; the reshaped copy the product uses is the param."""
    nodes = [helper.make_node("Shape", ["kernel"], ["kernel_shape"]),
             helper.make_node("Reshape", ["x", "kernel_shape"], ["xr"]),
             helper.make_node("MatMul", ["x", "kernel_2d"], ["y"])]
    inits = [weight("kernel", [2, 4, 16]), weight("kernel_2d", [64, 64])]
    model = make_model(nodes, [tensor_input("x", [2, 64])], ["y", "xr"], inits, opset=17)
    _, analysis = check(model, tmp_path)
    assert analysis.totals.params == 64 * 64
    assert analysis.param_tensors == ("kernel_2d",)


def test_a_clamped_stored_tensor_is_a_param(tmp_path):
    """Swin V2's per-head logit_scale (heads x 1 x 1, learned) reaches the attention as
    exp(clamp(logit_scale, max=log 100)) in the TorchScript export: its 4 values are params,
    the clamp bound (one value) is not."""
    nodes = [helper.make_node("Clip", ["logit_scale", "", "bound"], ["clamped"]),
             helper.make_node("Exp", ["clamped"], ["scale"]),
             helper.make_node("Mul", ["x", "scale"], ["y"])]
    inits = [weight("logit_scale", [4, 1, 1]),
             numpy_helper.from_array(np.array(4.6052, np.float32), "bound")]
    model = make_model(nodes, [tensor_input("x", [2, 4, 3, 3])], ["y"], inits, opset=17)
    _, analysis = check(model, tmp_path)
    assert analysis.totals.params == 4
    assert analysis.param_tensors == ("logit_scale",)


def test_attention_block_with_two_symbolic_dims(tmp_path):
    """Multi-head attention as exporters write it: head split and merge by Shape arithmetic."""
    def dims(prefix: str, source: str) -> list[onnx.NodeProto]:
        return [helper.make_node("Shape", [source], [f"{prefix}_s"]),
                helper.make_node("Gather", [f"{prefix}_s", "i0"], [f"{prefix}_b"]),
                helper.make_node("Gather", [f"{prefix}_s", "i1"], [f"{prefix}_t"]),
                helper.make_node("Unsqueeze", [f"{prefix}_b", "ax0"], [f"{prefix}_bu"]),
                helper.make_node("Unsqueeze", [f"{prefix}_t", "ax0"], [f"{prefix}_tu"])]

    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q0"], name="q_proj"),
             helper.make_node("Add", ["q0", "bq"], ["q"]),
             *dims("a", "q"),
             helper.make_node("Concat", ["a_bu", "a_tu", "heads"], ["split_shape"], axis=0),
             helper.make_node("Reshape", ["q", "split_shape"], ["qh0"]),
             helper.make_node("Transpose", ["qh0"], ["qh"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["qh"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["qh", "kt"], ["scores0"], name="scores"),
             helper.make_node("Div", ["scores0", "sqrt_d"], ["scores1"]),
             helper.make_node("Softmax", ["scores1"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["probs", "qh"], ["ctx0"], name="context"),
             helper.make_node("Transpose", ["ctx0"], ["ctx"], perm=[0, 2, 1, 3]),
             *dims("m", "ctx"),
             helper.make_node("Concat", ["m_bu", "m_tu", "width"], ["merge_shape"], axis=0),
             helper.make_node("Reshape", ["ctx", "merge_shape"], ["merged"]),
             helper.make_node("LayerNormalization", ["merged", "gamma", "beta"], ["y"], axis=-1)]
    inits = [weight("wq", [32, 32]), weight("bq", [32]), ints("i0", 0), ints("i1", 1), ints("ax0", [0]),
             ints("heads", [4, 8]), ints("width", [32]), floats("sqrt_d", [8 ** 0.5]), weight("gamma", [32]),
             weight("beta", [32])]
    model = make_model(nodes, [tensor_input("x", ["batch", "seq", 32])], ["y"], inits, opset=17)
    _, analysis = check(model, tmp_path, {"seq": 5})
    batch, seq = Sym.symbol("batch"), Sym.symbol("seq")
    assert analysis.tensors["qh"].shape == (batch, 4, seq, 8)
    assert analysis.tensors["y"].shape == (batch, seq, 32)
    assert analysis.layer("scores").macs == BATCH * 4 * 5 * 5 * 8
    assert analysis.totals.params == 32 * 32 + 32 + 64  # the scalar divisor is a constant, as in torch


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(tmp_path, opset):
    def op(kind: str, source: str, out: str, axes: list[int]) -> list[onnx.NodeProto]:
        if opset < 13:
            return [helper.make_node(kind, [source], [out], axes=axes)]
        return [const(f"{out}_axes", axes), helper.make_node(kind, [source, f"{out}_axes"], [out])]

    nodes = [*op("Squeeze", "x", "sq", [1, -1]),          # [B, 1, 4, 1] -> [B, 4]
             *op("Unsqueeze", "sq", "un", [0, -1]),        # -> [1, B, 4, 1]
             *op("Unsqueeze", "un", "un2", [2, 4]),        # -> [1, B, 1, 4, 1, 1]
             helper.make_node("Squeeze", ["w"], ["all"])]  # [1, 5, 1] -> [5], no axes
    model = make_model(nodes, [tensor_input("x", ["batch", 1, 4, 1]), tensor_input("w", [1, 5, 1])],
                       ["un2", "all"], opset=opset)
    _, analysis = check(model, tmp_path)
    assert analysis.tensors["un"].shape == (1, Sym.symbol("batch"), 4, 1)


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split(tmp_path, opset):
    x = tensor_input("x", ["batch", 8, 6])
    if opset == 11:
        nodes = [helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[2, 6]),
                 helper.make_node("Split", ["x"], ["c", "d", "e"], axis=2)]
    elif opset == 13:
        nodes = [const("sizes", [3, 5]), helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
                 helper.make_node("Split", ["x"], ["c", "d", "e"], axis=-1)]
    else:
        nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),  # 3, 3, 2
                 helper.make_node("Split", ["x"], ["d", "e", "f", "g"], axis=2, num_outputs=4)]  # 2, 2, 2, 0
    # split a shape tensor and rebuild a Reshape target from its pieces
    nodes += [helper.make_node("Shape", ["x"], ["s"]),
              const("halves", [1, 2]),
              helper.make_node("Split", ["s", "halves"] if opset >= 13 else ["s"], ["s0", "s12"], axis=0,
                               **({"split": [1, 2]} if opset < 13 else {})),
              const("m1", [-1]),
              helper.make_node("Concat", ["s0", "m1"], ["target"], axis=0),
              helper.make_node("Reshape", ["x", "target"], ["flat"])]
    outputs = [o for n in nodes for o in n.output]
    model = make_model(nodes, [x], outputs, opset=opset)
    _, analysis = check(model, tmp_path)
    assert analysis.tensors["flat"].shape == (Sym.symbol("batch"), 48)


@pytest.mark.parametrize("opset", [9, 13])
def test_slice(tmp_path, opset):
    x = tensor_input("x", ["batch", 10, 12])
    cases = [  # (starts, ends, axes, steps)
        ([1, -4], [INT64_MAX, -1], [1, 2], None),
        ([-100], [100], [2], None),                        # clamped to the axis
        ([1], [INT64_MAX], [0], None),                     # symbolic axis: batch - 1
        ([0], [1], [0], None),
        ([-1], [-INT64_MAX], [2], [-2]),                   # reversed, every other
        ([8, 2], [1, 9], [1, -1], [-3, 3]),
        ([5], [2], [1], None),                             # empty
        ([-1], [-INT64_MAX], [0], [-1]),                   # symbolic axis reversed: batch
        ([0, 1], [2147483647, -1], [0, 1], [2, 1]),        # symbolic axis, step 2; INT_MAX end
    ]
    nodes = []
    for i, (starts, ends, axes, steps) in enumerate(cases):
        if opset < 10:
            if steps:
                continue
            nodes.append(helper.make_node("Slice", ["x"], [f"y{i}"], starts=starts, ends=ends, axes=axes))
            continue
        names = [f"st{i}", f"en{i}", f"ax{i}"] + ([f"sp{i}"] if steps else [])
        for name, values in zip(names, (starts, ends, axes, steps)):
            nodes.append(const(name, values))
        nodes.append(helper.make_node("Slice", ["x", *names], [f"y{i}"]))
    # a slice of a shape tensor as Resize/Reshape targets use
    nodes += [helper.make_node("Shape", ["x"], ["s"])]
    if opset >= 10:
        nodes += [const("z", [0]), const("two", [2]),
                  helper.make_node("Slice", ["s", "z", "two"], ["first2"]),
                  const("m1", [-1]), helper.make_node("Concat", ["first2", "m1"], ["t"], axis=0),
                  helper.make_node("Reshape", ["x", "t"], ["r"])]
    outputs = [o for n in nodes for o in n.output]
    model = make_model(nodes, [x], outputs, opset=opset)
    _, analysis = check(model, tmp_path)
    assert analysis.tensors["y2"].shape == (Sym.symbol("batch") - 1, 10, 12)


@pytest.mark.parametrize("seq", [5, 70])
def test_slice_of_a_table_by_a_symbolic_length_is_clamped_exactly(tmp_path, seq):
    """Learned positions (GPT-2's wpe): rows [0:seq] of a table of 64 rows, seq read from the
    input's shape, hold min(seq, 64) rows (ONNX clamps an end past the axis), checked against
    onnxruntime below and above the table's length."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), const("one", [1]), const("two", [2]), const("zero", [0]),
             helper.make_node("Slice", ["shape", "one", "two"], ["end"]),  # [seq]
             helper.make_node("Slice", ["table", "zero", "end", "zero"], ["rows"])]
    table = numpy_helper.from_array(np.zeros((64, 8), np.float32), "table")
    model = make_model(nodes, [tensor_input("x", ["batch", "seq", 8])], ["rows"], initializers=[table])
    _, analysis = check(model, tmp_path, {"seq": seq})
    rows = analysis.tensors["rows"].shape[0]
    assert str(rows) == "min(seq, 64)" and bind(rows, {"seq": seq}) == min(seq, 64)


def test_resize(tmp_path):
    nodes = [const("scales", [1.0, 1.0, 2.0, 2.0], np.float32),
             helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Shape", ["x"], ["s"]),
             const("z", [0]), const("two", [2]),
             helper.make_node("Slice", ["s", "z", "two"], ["nc"]),
             const("hw", [5, 7]),
             helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["sized"], mode="linear")]
    model = make_model(nodes, [tensor_input("x", ["batch", 3, 8, 8])], ["up", "sized"], opset=13)
    _, analysis = check(model, tmp_path)
    assert analysis.tensors["up"].shape == (Sym.symbol("batch"), 3, 16, 16)
    # linear resize of two axes: 3 FLOPs per axis per output element
    assert analysis.layer("Resize_8").flops == 6 * BATCH * 3 * 5 * 7


def custom_op_model(op: str, domain: str, with_value_info: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c1"], ["act"], name="custom", domain=domain),
             helper.make_node("Conv", ["act", "w2"], ["c2"], name="conv2"),
             helper.make_node("Relu", ["c2"], ["y"], name="relu")]
    info = [helper.make_tensor_value_info("act", TensorProto.FLOAT, ["batch", 4, 8, 8])] if with_value_info else []
    return make_model(nodes, [tensor_input("x", ["batch", 3, 8, 8])], ["y"],
                      [weight("w1", [4, 3, 3, 3]), weight("w2", [6, 4, 3, 3])], opset=17, value_info=info,
                      domains={domain: 1} if domain else None)


def test_custom_domain_op_in_the_middle(tmp_path):
    model = custom_op_model("FancyAct", "com.example", with_value_info=True)
    path = str(tmp_path / "custom.onnx")
    onnx.save(model, path)
    analysis = analyze(load_onnx(path), {"batch": BATCH})
    (warning,) = analysis.warnings
    assert "custom" in warning and "FancyAct" in warning and "com.example" in warning
    assert "not counted" in warning
    assert analysis.totals.partial
    assert not analysis.layer("custom").modelled
    conv2 = analysis.layer("conv2")
    assert conv2.modelled and conv2.macs == BATCH * 6 * 6 * 6 * 4 * 9
    assert analysis.totals.params == 4 * 27 + 6 * 36
    # the same graph with a standard op in its place runs in onnxruntime: same shapes
    runnable = custom_op_model("Relu", "", with_value_info=False)
    actual = ort_shapes(runnable, feeds_for(runnable, {"batch": BATCH}))
    assert shape_mismatches(analysis, actual, {"batch": BATCH}) == []


def test_custom_op_without_known_shape_leaves_the_rest_unknown(tmp_path):
    model = custom_op_model("FancyAct", "com.example", with_value_info=False)
    path = str(tmp_path / "custom.onnx")
    onnx.save(model, path)
    analysis = analyze(load_onnx(path), {"batch": BATCH})
    assert analysis.tensors["act"].shape is None and analysis.tensors["y"].shape is None
    assert analysis.tensors["c1"].shape == (Sym.symbol("batch"), 4, 8, 8)
    assert len(analysis.warnings) == 3 and "FancyAct" in analysis.warnings[0]
    assert analysis.totals.params == 4 * 27  # conv2 is not modelled, so its weight is not seen


def test_missing_external_data_still_analyses(tmp_path):
    model = cnn_model()
    actual = ort_shapes(model, feeds_for(model, {"batch": BATCH}))  # before the weights go
    path = tmp_path / "cnn.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="cnn.onnx.data", size_threshold=0)
    os.remove(tmp_path / "cnn.onnx.data")
    assert path.stat().st_size < 4000  # the weights really are elsewhere
    analysis = analyze(load_onnx(str(path)), {"batch": BATCH})
    assert shape_mismatches(analysis, actual, {"batch": BATCH}) == []
    assert analysis.totals.params == float_initializer_elements(model, CNN_PARAMS)
    assert analysis.totals.buffers == 16
    assert analysis.warnings == ()


def test_initializers_listed_as_inputs_opset7(tmp_path):
    inits = [weight("W", [4, 3, 3, 3]), weight("B", [4]), ints("shape", [1, -1]), weight("W2", [2, 144]),
             weight("B2", [2])]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W2", "B2"], ["y"], transB=1)]
    inputs = [tensor_input("x", [1, 3, 8, 8])] + [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    model = make_model(nodes, inputs, [tensor_input("y", [1, 2])], inits, opset=7, ir_version=3)
    graph, analysis = check(model, tmp_path)
    assert graph.tensors["W"].kind == "weight"
    assert graph.tensors["shape"].kind == "constant" and graph.tensors["shape"].value == (1, -1)
    assert [name for name, t in graph.tensors.items() if t.kind == "input"] == ["x"]
    assert analysis.totals.params == 4 * 27 + 4 + 2 * 144 + 2


def test_shape_ops(tmp_path):
    """Shape arithmetic of exported graphs, with its values followed to concrete shapes."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Size", ["x"], ["numel"]),
        helper.make_node("Shape", ["x"], ["tail"], start=-2),
        # x.expand(batch, -1, 6) as torch writes it: Where(Equal(t, -1), 1, t)
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[2], keepdims=1),          # [B, 4, 1]
        const("i0", [0]), helper.make_node("Gather", ["s", "i0"], ["b"]),
        const("rest", [-1, 6]), helper.make_node("Concat", ["b", "rest"], ["t"], axis=0),
        helper.make_node("Shape", ["t"], ["ts"]),
        helper.make_node("ConstantOfShape", ["ts"], ["ones"],
                         value=helper.make_tensor("one", TensorProto.INT64, [1], [1])),
        const("neg", -1), helper.make_node("Mul", ["ones", "neg"], ["minus"]),
        helper.make_node("Equal", ["t", "minus"], ["is_free"]),
        helper.make_node("Where", ["is_free", "ones", "t"], ["target"]),
        helper.make_node("Expand", ["m", "target"], ["expanded"]),                   # [B, 4, 6]
        const("reps", [1, 2, 3]), helper.make_node("Tile", ["m", "reps"], ["tiled"]),  # [B, 8, 3]
        const("i2", 2), helper.make_node("Gather", ["s", "i2"], ["width"]),
        const("zero", 0), const("one", 1),
        helper.make_node("Range", ["zero", "width", "one"], ["positions"]),         # [6]
        helper.make_node("Cast", ["positions"], ["positions_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "positions_f"], ["shifted"]),
        helper.make_node("ConstantOfShape", ["s"], ["zeros"]),                       # float zeros [B, 4, 6]
        const("pick", [[0, 1], [2, 3]]), helper.make_node("Gather", ["x", "pick"], ["gathered"], axis=-1),
        helper.make_node("Gather", ["x", "zero"], ["first"], axis=0),
        const("mask", [0, 3, 0, 1, 1], np.int32), helper.make_node("NonZero", ["mask"], ["nz"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("Einsum", ["x", "xt"], ["gram"], name="gram", equation="bij,bjk->bik"),  # [B, 4, 4]
        helper.make_node("Einsum", ["x", "proj"], ["projected"], name="proj", equation="...j,jk->...k"),
        helper.make_node("Einsum", ["x"], ["summed"], equation="bij->b"),
        helper.make_node("Einsum", ["x", "x"], ["outer"], equation="bij,bkl"),           # implicit output
        helper.make_node("ReduceSum", ["x", "axis1"], ["rs"], name="rs", keepdims=0),
        helper.make_node("ReduceSum", ["x"], ["rs_all"]),
        helper.make_node("ReduceSum", ["x"], ["rs_noop"], noop_with_empty_axes=1),
        helper.make_node("ReduceMax", ["x"], ["rmax"], axes=[-1, 0], keepdims=0),
        helper.make_node("ReduceMin", ["x"], ["rmin"]),
        helper.make_node("ReduceProd", ["x"], ["rprod"], axes=[1]),
        helper.make_node("ReduceL2", ["x"], ["rl2"], axes=[2]),
        helper.make_node("ReduceSumSquare", ["x"], ["rss"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceLogSumExp", ["x"], ["rlse"], axes=[0]),
        helper.make_node("ArgMax", ["x"], ["amax"], axis=-1, keepdims=0),
        helper.make_node("ArgMin", ["x"], ["amin"], axis=1),
        helper.make_node("ReduceProd", ["s"], ["numel2"], keepdims=0),
        helper.make_node("Cast", ["s"], ["s_f"], to=TensorProto.FLOAT),
    ]
    inits = [ints("axis1", [1]), weight("proj", [6, 5])]
    outputs = [o for n in nodes for o in n.output]
    model = make_model(nodes, [tensor_input("x", ["batch", 4, 6])], outputs, inits, opset=17)
    graph, analysis = check(model, tmp_path)
    batch = Sym.symbol("batch")
    assert analysis.tensors["expanded"].shape == (batch, 4, 6)
    assert analysis.tensors["positions"].shape == (6,)
    assert analysis.tensors["nz"].shape == (1, 3)
    assert analysis.tensors["rs"].shape == (batch, 6)
    assert analysis.tensors["outer"].shape == (4, 6, 4, 6)
    assert analysis.layer("gram").macs == BATCH * 4 * 6 * 4
    assert analysis.layer("proj").macs == BATCH * 4 * 6 * 5
    assert analysis.layer("rs").flops == BATCH * 24
    assert analysis.totals.params == 30  # proj, through the Einsum
    assert analysis.warnings == ()


def test_reduce_axes_as_input_opset18(tmp_path):
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["mean"]),
             helper.make_node("ReduceMax", ["x", "neg_axes"], ["max"], keepdims=0),
             helper.make_node("ReduceL2", ["x"], ["l2"]),
             helper.make_node("ReduceMin", ["x", "no_axes"], ["noop"], noop_with_empty_axes=1),
             helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2)]
    inits = [ints("axes", [2, 3]), ints("neg_axes", [-1]), ints("no_axes", np.zeros(0, np.int64))]
    model = make_model(nodes, [tensor_input("x", ["batch", 5, 4, 4])], [o for n in nodes for o in n.output],
                       inits, opset=18)
    _, analysis = check(model, tmp_path)
    assert analysis.tensors["mean"].shape == (Sym.symbol("batch"), 5, 1, 1)
    assert analysis.tensors["noop"].shape == (Sym.symbol("batch"), 5, 4, 4)


def test_data_dependent_nonzero_is_a_named_symbol(tmp_path):
    nodes = [const("zero", 0.0, np.float32),
             helper.make_node("Greater", ["x", "zero"], ["positive"], name="gt"),
             helper.make_node("NonZero", ["positive"], ["where"], name="/model/NonZero"),
             helper.make_node("Transpose", ["where"], ["coords"])]
    model = make_model(nodes, [tensor_input("x", [2, 5])], ["coords"], opset=17)
    path = str(tmp_path / "nz.onnx")
    onnx.save(model, path)
    graph = load_onnx(path)
    count = Sym.symbol("model_NonZero_count")
    feeds = feeds_for(model, {})
    actual = ort_shapes(model, feeds)
    analysis = analyze(graph, {"model_NonZero_count": int((feeds["x"] > 0).sum())})
    assert analysis.tensors["coords"].shape == (count, 2)
    assert shape_mismatches(analysis, actual) == []


@pytest.mark.parametrize("with_bias", [False, True])
def test_quantised_weights_are_params(tmp_path, with_bias):
    """A uint8 conv weight is learned (8 x 3 x 3 x 3 values), and so is its int32 bias (8),
    though integer tensors are otherwise constants; the scalar zero points and scales are not."""
    floats = {"xs": 0.1, "ws": 0.05, "ys": 0.2}
    zeros = {"xz": 128, "wz": 128, "yz": 128}
    inits = [numpy_helper.from_array(np.full((8, 3, 3, 3), 130, np.uint8), "w"),
             *[numpy_helper.from_array(np.array(v, np.float32), n) for n, v in floats.items()],
             *[numpy_helper.from_array(np.array(v, np.uint8), n) for n, v in zeros.items()]]
    inputs = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    if with_bias:
        inits.append(numpy_helper.from_array(np.arange(8, dtype=np.int32), "bias"))
        inputs.append("bias")
    node = helper.make_node("QLinearConv", inputs, ["y"], name="qconv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    model = make_model([node], [tensor_input("x", ["batch", 3, 6, 6], TensorProto.UINT8)], ["y"], inits, opset=17)
    _, analysis = check(model, tmp_path)
    assert analysis.totals.params == 8 * 3 * 3 * 3 + (8 if with_bias else 0)
    assert analysis.totals.weight_bytes == 8 * 3 * 3 * 3 + (8 * 4 if with_bias else 0)
    assert analysis.param_tensors == (("bias", "w") if with_bias else ("w",))
    assert analysis.layer("qconv").macs == BATCH * 8 * 6 * 6 * 3 * 3 * 3


def test_weights_in_constant_nodes_are_params(tmp_path):
    """Constant / ConstantOfShape nodes that write float tensors are weights; scalars are not
    (they are constants, as a one-value initializer is: folded into a tensor, not a layer)."""
    nodes = [const("w", np.ones((4, 3, 3, 3)), np.float32),
             helper.make_node("ConstantOfShape", ["b_shape"], ["b"], name="bias_fill",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.1])),
             helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             const("half", 0.5, np.float32),
             helper.make_node("Mul", ["c", "half"], ["scaled"], name="scale")]
    model = make_model(nodes, [tensor_input("x", ["batch", 3, 5, 5])], ["scaled"], [ints("b_shape", [4])], opset=17)
    graph, analysis = check(model, tmp_path)
    assert graph.metadata["constant_weights"] == ["w", "b", "half"]
    assert graph.tensors["half"].kind == "constant" and graph.tensors["half"].value == (0.5,)
    assert [layer.name for layer in analysis.layers] == ["conv", "scale"]
    assert analysis.totals.params == 4 * 27 + 4


def test_unnamed_and_duplicate_node_names(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Relu", ["a"], ["b"], name="Relu_0"),  # clashes with a generated name
             helper.make_node("Neg", ["b"], ["c"], name="dup"),
             helper.make_node("Neg", ["c"], ["d"], name="dup")]
    model = make_model(nodes, [tensor_input("x", [2, 3])], ["d"], opset=17)
    path = str(tmp_path / "names.onnx")
    onnx.save(model, path)
    graph = load_onnx(path)
    analysis = analyze(graph)
    assert [layer.outputs[0].shape for layer in analysis.layers] == [(2, 3)] * 4
    names = [node.name for node in graph.nodes]
    assert len(set(names)) == 4 and names[1] == "Relu_0" and names[2] == "dup"
    assert any("dup" in w for w in graph.metadata["warnings"])


def test_unknown_input_dims_become_named_symbols(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, "height"])
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [x], ["y"], opset=17)
    path = str(tmp_path / "dims.onnx")
    onnx.save(model, path)
    graph = load_onnx(path)
    assert graph.tensors["x"].shape == (Sym.symbol("x_dim0"), 3, Sym.symbol("height"))
    analysis = analyze(graph, {"x_dim0": 2, "height": 5})
    assert analysis.layers[0].flops == 30


def test_input_of_unknown_rank_and_sequence_input(tmp_path):
    no_rank = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [no_rank], ["y"], opset=17)
    path = str(tmp_path / "norank.onnx")
    onnx.save(model, path)
    with pytest.raises(ShapeError, match="graph input 'x' has no shape") as caught:
        analyze(load_onnx(path))
    assert path in str(caught.value) and "fix:" in str(caught.value)

    sequence = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    model = make_model([helper.make_node("SequenceLength", ["s"], ["n"], name="length")], [sequence], ["n"], opset=17)
    path = str(tmp_path / "sequence.onnx")
    onnx.save(model, path)
    analysis = analyze(load_onnx(path))
    assert not analysis.layer("length").modelled
    assert analysis.tensors["n"].shape == ()  # from ONNX shape inference


def test_ten_thousand_node_chain(tmp_path):
    """Deep graphs are walked without recursion; speed is measured in bench/, not here."""
    count = 10_000
    nodes = []
    source = "x"
    for i in range(count):
        op = "Relu" if i % 2 else "Add"
        inputs = [source] if op == "Relu" else [source, "bias"]
        nodes.append(helper.make_node(op, inputs, [f"t{i}"], name=f"layer{i}"))
        source = f"t{i}"
    model = make_model(nodes, [tensor_input("x", ["batch", 64])], [source], [weight("bias", [64])], opset=17)
    path = str(tmp_path / "long.onnx")
    onnx.save(model, path)
    analysis = analyze(load_onnx(path))
    assert len(analysis.layers) == count and analysis.totals.params == 64  # the shared bias, once
    assert analysis.totals.flops == count * 64  # one per element for each Add and each Relu, batch 1


# The ONNX package ships zoo models whose weights are ConstantOfShape nodes ("light"):
# params and MACs must match the published figures (torchvision's num_params and GFLOPS).
LIGHT_MODELS = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
ZOO = {  # file: (params, MACs)
    "light_resnet50.onnx": (25_557_032, 4_089_184_256),
    "light_vgg19.onnx": (143_667_240, 19_632_062_464),
    # Caffe2's DenseNet keeps a BatchNormalization (whose affine Caffe fixes at 1 and 0) and,
    # after it, a Scale layer (Unsqueeze + Mul + Add) holding the learned affine: torchvision's
    # 7,978,856 plus that second affine, as large as BN's (83,648 values over 121 layers).
    "light_densenet121.onnx": (7_978_856 + 83_648, 2_834_161_664),
    "light_bvlc_alexnet.onnx": (60_965_224, 654_560_384),  # the original, grouped AlexNet
    # SqueezeNet 1.1: torchvision's num_params, and its published 0.349 GFLOPS to 0.05%.
    "light_squeezenet.onnx": (1_235_496, 349_151_936),
}
LIGHT_NAMES = sorted(os.listdir(LIGHT_MODELS)) if os.path.isdir(LIGHT_MODELS) else []


@pytest.mark.parametrize("name", [n for n in LIGHT_NAMES if n.endswith(".onnx")])
def test_every_zoo_model_shape_is_onnxruntimes(name):
    """All of onnx's bundled zoo models (Inception v1/v2, ShuffleNet v1, ZFNet too): opset 9,
    weights in ConstantOfShape nodes; every tensor's shape and dtype as onnxruntime computes
    it (opset 9's Dropout mask is float32, the input's type, not bool), no warnings."""
    path = os.path.join(LIGHT_MODELS, name)
    analysis = analyze(load_onnx(path))
    assert analysis.warnings == () and not analysis.totals.partial
    model = onnx.load(path)
    shapes, dtypes = ort_shapes_and_dtypes(model, feeds_for(model, {}))
    assert shape_mismatches(analysis, shapes) == []
    assert dtype_mismatches(analysis, dtypes) == []


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_with_weights_in_constant_nodes(name):
    path = os.path.join(LIGHT_MODELS, name)
    if not os.path.exists(path):
        pytest.skip("this onnx build ships no backend test data")
    graph = load_onnx(path)
    analysis = analyze(graph)
    assert (analysis.totals.params, analysis.totals.macs) == ZOO[name]
    assert graph.metadata["constant_weights"]


def test_a_viewed_weight_belongs_to_the_layer_that_uses_it(tmp_path):
    """Caffe2's Scale layer: Unsqueeze(scale [8]) -> Mul, Unsqueeze(shift [8]) -> Add. The 8 + 8
    values are the Mul's and the Add's weights, not the Unsqueezes' (which only reshape
    them); a weight only ever viewed (a view that is a graph output) stays with its view."""
    nodes = [helper.make_node("Unsqueeze", ["scale", "axes"], ["scale4"], name="unsq_scale"),
             helper.make_node("Mul", ["x", "scale4"], ["scaled"], name="mul"),
             helper.make_node("Unsqueeze", ["shift", "axes"], ["shift4"], name="unsq_shift"),
             helper.make_node("Add", ["scaled", "shift4"], ["y"], name="add"),
             helper.make_node("Transpose", ["table"], ["table_t"], name="only_viewed")]
    model = make_model(nodes, [tensor_input("x", ["batch", 8, 4, 4])], ["y", "table_t"],
                       [weight("scale", [8]), weight("shift", [8], seed=1), weight("table", [3, 5], seed=2),
                        ints("axes", [1, 2])])
    _, analysis = check(model, tmp_path)
    params = {layer.name: layer.params for layer in analysis.layers}
    assert params == {"unsq_scale": 0, "mul": 8, "unsq_shift": 0, "add": 8, "only_viewed": 3 * 5}
    assert analysis.totals.params == 8 + 8 + 15


def test_zoo_densenet_scale_layers_hold_their_affine():
    """onnx's DenseNet-121: the 83,648 values of Caffe2's Scale layers (see ZOO) are the
    Mul's scales and the Add's shifts, 41,824 each (one per BatchNorm channel), none on an Unsqueeze."""
    path = os.path.join(LIGHT_MODELS, "light_densenet121.onnx")
    if not os.path.exists(path):
        pytest.skip("this onnx build ships no backend test data")
    by_op: dict[str, int] = {}
    for layer in analyze(load_onnx(path)).layers:
        by_op[layer.op] = by_op.get(layer.op, 0) + layer.params
    assert (by_op["Unsqueeze"], by_op["Mul"], by_op["Add"]) == (0, 83_648 // 2, 83_648 // 2)


# ---------------------------------------------------------------------------------------
# files that are not models


def _valid_bytes() -> bytes:
    return cnn_model().SerializeToString()


BAD_FILES = {
    "empty.onnx": b"",
    "random.onnx": bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
    "random2.onnx": bytes(np.random.default_rng(7).integers(0, 256, 333, dtype=np.uint8)),
    "text.onnx": b"layers:\n  - conv2d: {filters: 8}\n",
    "lfs.onnx": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BAD_FILES[name])
    with pytest.raises(ModelFileError) as caught:
        load_onnx(str(path))
    message = str(caught.value)
    assert str(path) in message and "fix:" in message
    assert "Traceback" not in message and len(message.splitlines()) <= 3


def test_truncated_file(tmp_path):
    data = _valid_bytes()
    for cut in (len(data) // 2, len(data) - 7, 25):
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated|not a valid|no ONNX graph"):
            load_onnx(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_onnx(str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelFileError, match="is a directory"):
        load_onnx(str(tmp_path))


def test_messages_name_the_problem(tmp_path):
    for name, expected in (("empty.onnx", "empty"), ("text.onnx", "text file"), ("lfs.onnx", "Git LFS")):
        path = tmp_path / name
        path.write_bytes(BAD_FILES[name])
        with pytest.raises(ModelFileError, match=expected):
            load_onnx(str(path))


def test_small_float_initializers_keep_values_only_where_a_rule_reads_them(tmp_path):
    """A Conv bias and BatchNorm scale (read by no rule) stay unread; Resize's scales (read
    for the output shape) are unpacked, and the shape follows them."""
    bias = numpy_helper.from_array(np.arange(4, dtype=np.float32), "bias")
    scale = numpy_helper.from_array(np.ones(4, np.float32), "scale")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32), "scales")
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "bias", "scale"], ["n"]),
             helper.make_node("Resize", ["n", "", "scales"], ["y"])]
    model = make_model(nodes, [tensor_input("x", [1, 4, 5, 5])], ["y"],
                       [weight("w", [4, 4, 1, 1]), bias, scale, scales], opset=17)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    graph = load_onnx(str(path))
    assert graph.tensors["bias"].value is None and graph.tensors["scale"].value is None
    assert graph.tensors["scales"].value == (1.0, 1.0, 2.0, 3.0)
    assert analyze(graph).tensors["y"].shape == (1, 4, 10, 15)
