"""If, Loop and Scan bodies and model-local functions, analysed like any other layers.

Each model is built with onnx.helper, run in onnxruntime with every main-graph tensor as
an output, and every shape compared with archcalc's; MACs and FLOPs are written as the
hand formula; the layers of a body are listed right after the layer that holds it.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import AttributeProto, TensorProto, helper
from onnx_models import (
    body,
    feeds_for,
    ints,
    loop_model,
    make_model,
    ort_shapes,
    shape_mismatches,
    tensor_input,
    value,
    weight,
)

from archcalc.core.dims import Sym
from archcalc.core.errors import ModelFileError
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx

BATCH = 3
OPSET = [helper.make_opsetid("", 17)]


def check(model: onnx.ModelProto, tmp_path, feeds: dict | None = None, bindings: dict | None = None):
    """Save, load, analyse (batch 3 plus `bindings`) and compare every main-graph tensor's
    shape with onnxruntime's, on random inputs overridden by `feeds`."""
    dims = {"batch": BATCH, **(bindings or {})}
    path = str(tmp_path / "model.onnx")
    onnx.save(model, path)
    graph = load_onnx(path)
    analysis = analyze(graph, dims)
    actual = ort_shapes(model, {**feeds_for(model, dims), **(feeds or {})})
    assert shape_mismatches(analysis, actual, dims) == []
    produced = {o for node in model.graph.node for o in node.output if o}
    assert produced <= set(actual)
    return graph, analysis


def listing(analysis) -> list[tuple[str, str, str]]:
    return [(layer.name, layer.block, layer.parent) for layer in analysis.layers]


def assert_totals_leave_sublayers_out(analysis) -> None:
    top = [layer for layer in analysis.layers if not layer.parent]
    assert analysis.totals.macs == sum(layer.macs for layer in top)
    assert analysis.totals.flops == sum(layer.flops for layer in top)
    assert analysis.totals.params == sum(layer.params for layer in top)


# ---------------------------------------------------------------------------------------
# If


def if_model(then_pads=(1, 1, 1, 1), cond=None) -> onnx.ModelProto:
    """stem conv -> If (then: conv reading the stem's output and weight W from the main
    graph, with a bias of its own; else: relu) -> relu."""
    then_branch = body([helper.make_node("Conv", ["s", "W", "B"], ["t"], name="conv", pads=list(then_pads))],
                       "then", [], [value("t")], [weight("B", [4], 1)])
    else_branch = body([helper.make_node("Relu", ["s"], ["e"], name="relu")], "else", [], [value("e")])
    nodes = [helper.make_node("Conv", ["x", "W"], ["s"], name="stem", pads=[1, 1, 1, 1]),
             helper.make_node("If", ["cond"], ["chosen"], name="branch", then_branch=then_branch,
                              else_branch=else_branch),
             helper.make_node("Relu", ["chosen"], ["y"], name="post")]
    inputs = [tensor_input("x", ["batch", 4, 8, 8])]
    initializers = [weight("W", [4, 4, 3, 3])]
    if cond is None:
        inputs.append(tensor_input("cond", [], TensorProto.BOOL))
    else:
        initializers.append(onnx.numpy_helper.from_array(np.array(cond), "cond"))
    return make_model(nodes, inputs, ["y"], initializers, opset=17)


@pytest.mark.parametrize("cond", [True, False])
def test_if_counts_the_larger_branch(tmp_path, cond):
    _, analysis = check(if_model(), tmp_path, feeds={"cond": np.array(cond)})
    conv_macs = BATCH * 4 * 8 * 8 * 4 * 3 * 3
    branch = analysis.layer("branch")
    assert (branch.macs, branch.flops) == (conv_macs, 2 * conv_macs + BATCH * 4 * 8 * 8)
    explanation = "\n".join(branch.explain())
    assert "counted the larger, then_branch" in explanation
    assert listing(analysis) == [("stem", "", ""), ("branch", "", ""),
                                 ("branch/then_branch/conv", "branch", "branch"),
                                 ("branch/else_branch/relu", "branch", "branch"), ("post", "", "")]
    assert analysis.layer("branch/then_branch/conv").macs == conv_macs
    assert analysis.layer("branch/else_branch/relu").flops == BATCH * 4 * 8 * 8
    # W is the stem's and the branch's: counted once; the branch's own bias once.
    assert (analysis.layer("stem").params, branch.params, analysis.totals.params) == (144, 4, 148)
    assert analysis.totals.macs == 2 * conv_macs
    assert_totals_leave_sublayers_out(analysis)
    conv = analysis.layer("branch/then_branch/conv")
    assert [t.name for t in conv.inputs] == ["s", "W", "branch/then_branch/B"]  # main-graph names kept
    assert [t.name for t in conv.outputs] == ["branch/then_branch/t"]
    assert analysis.to_json()["layers"][2]["parent"] == "branch"


def test_if_branches_of_different_shapes_give_a_symbol(tmp_path):
    dims = {"branch_out0_dim2": 6, "branch_out0_dim3": 6}
    _, analysis = check(if_model(then_pads=(0, 0, 0, 0)), tmp_path, feeds={"cond": np.array(True)}, bindings=dims)
    shape = analysis.tensors["chosen"].shape
    assert shape == (Sym.symbol("batch"), 4, Sym.symbol("branch_out0_dim2"), Sym.symbol("branch_out0_dim3"))
    assert "8 in else_branch" in "\n".join(analysis.layer("branch").explain())


def test_if_with_a_constant_condition_counts_the_branch_that_runs(tmp_path):
    _, analysis = check(if_model(then_pads=(0, 0, 0, 0), cond=False), tmp_path)
    branch = analysis.layer("branch")
    assert analysis.tensors["chosen"].shape == (Sym.symbol("batch"), 4, 8, 8)  # the relu's
    assert (branch.macs, branch.flops) == (0, BATCH * 4 * 8 * 8)
    assert "only else_branch runs" in "\n".join(branch.explain())
    assert branch.params == 4  # the other branch's bias is still in the model


def test_unmodelled_op_in_a_branch_makes_totals_partial(tmp_path):
    then_branch = body([helper.make_node("Relu", ["x"], ["t"], name="relu")], "then", [], [value("t")])
    else_branch = body([helper.make_node("Mystery", ["x"], ["e"], name="mystery", domain="custom")], "else", [],
                       [value("e", shape=["batch", 4])])
    nodes = [helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch)]
    model = make_model(nodes, [tensor_input("x", ["batch", 4]), tensor_input("cond", [], TensorProto.BOOL)], ["y"],
                       opset=17, domains={"custom": 1})
    onnx.save(model, str(tmp_path / "m.onnx"))
    analysis = analyze(load_onnx(str(tmp_path / "m.onnx")), {"batch": BATCH})
    assert analysis.tensors["y"].shape == (Sym.symbol("batch"), 4)  # from the branch's declared output
    assert analysis.layer("branch").modelled and not analysis.layer("branch/else_branch/mystery").modelled
    assert analysis.totals.partial
    assert any("branch/else_branch/mystery" in w and "not modelled" in w for w in analysis.warnings)


# ---------------------------------------------------------------------------------------
# Loop


BODY_MACS = BATCH * 4 * 4
BODY_FLOPS = 2 * BODY_MACS + BATCH * 4 + BATCH * 4  # matmul, bias add, relu


@pytest.mark.parametrize("cond", ["", "go"], ids=["no-condition", "constant-true-condition"])
def test_loop_with_a_constant_trip_count(tmp_path, cond):
    initializers = [ints("M", 3)] + ([onnx.numpy_helper.from_array(np.array(True), "go")] if cond else [])
    _, analysis = check(loop_model("M", cond, initializers=initializers), tmp_path)
    loop = analysis.layer("loop")
    assert analysis.tensors["steps"].shape == (3, Sym.symbol("batch"), 4)
    assert analysis.tensors["h_final"].shape == (Sym.symbol("batch"), 4)
    assert (loop.macs, loop.flops) == (3 * BODY_MACS, 3 * BODY_FLOPS)
    assert loop.repeats == 3  # what verify's --max-work multiplies the body by
    assert (loop.params, analysis.layer("head").params, analysis.totals.params) == (16 + 4, 0, 20)
    assert listing(analysis)[1:6] == [("loop/body/mm", "loop", "loop"), ("loop/body/bias", "loop", "loop"),
                                      ("loop/body/act", "loop", "loop"), ("loop/body/keep", "loop", "loop"),
                                      ("head", "", "")]
    assert analysis.layer("loop/body/mm").macs == 3 * BODY_MACS  # the body's layers over all iterations
    assert "x 3 runs of the body" in "\n".join(analysis.layer("loop/body/mm").explain())
    assert_totals_leave_sublayers_out(analysis)
    assert not analysis.warnings


def test_loop_with_an_unknown_trip_count_counts_one_iteration(tmp_path):
    n = tensor_input("n", [], TensorProto.INT64)
    model = loop_model("n", "", scan_output=False, extra_inputs=[n])
    _, analysis = check(model, tmp_path, feeds={"n": np.array(5)})
    assert analysis.layer("loop").macs == BODY_MACS
    assert analysis.layer("loop").repeats is None  # not known: verify cannot bound its run time
    assert any("loop" in w and "one iteration" in w and "--dim loop_trip_count=N" in w for w in analysis.warnings)
    bound = analyze(load_onnx(str(tmp_path / "model.onnx")), {"batch": BATCH, "loop_trip_count": 5})
    assert bound.layer("loop").macs == 5 * BODY_MACS and not bound.warnings
    assert bound.layer("loop").repeats == 5


def test_loop_scan_output_of_an_unknown_trip_count_is_a_symbol(tmp_path):
    n = tensor_input("n", [], TensorProto.INT64)
    _, analysis = check(loop_model("n", "", extra_inputs=[n]), tmp_path, feeds={"n": np.array(4)},
                        bindings={"loop_trip_count": 4})
    assert analysis.tensors["steps"].shape == (Sym.symbol("loop_trip_count"), Sym.symbol("batch"), 4)
    assert analysis.layer("loop").macs == 4 * BODY_MACS


# ---------------------------------------------------------------------------------------
# Scan


@pytest.mark.parametrize("axes", [0, 1])
def test_scan(tmp_path, axes):
    """A running sum of x_t @ W over the sequence; the products are stacked at `axes`."""
    scan_body = body([helper.make_node("MatMul", ["x_t", "W"], ["p"], name="mm"),
                      helper.make_node("Add", ["s", "p"], ["s_out"], name="acc")],
                     "scan_body", [value("s"), value("x_t")], [value("s_out"), value("p")])
    nodes = [helper.make_node("Scan", ["s0", "xs"], ["total", "products"], name="scan", body=scan_body,
                              num_scan_inputs=1, scan_input_axes=[axes], scan_output_axes=[axes])]
    xs = ["seq", 3] if axes == 0 else [3, "seq"]
    model = make_model(nodes, [tensor_input("s0", [4]), tensor_input("xs", xs)], ["total", "products"],
                       [weight("W", [3, 4])], opset=17)
    _, analysis = check(model, tmp_path, bindings={"seq": 5})
    seq = Sym.symbol("seq")
    assert analysis.tensors["products"].shape == ((seq, 4) if axes == 0 else (4, seq))
    assert analysis.tensors["total"].shape == (4,)
    scan = analysis.layer("scan")
    assert (scan.macs, scan.flops, scan.params) == (5 * 3 * 4, 5 * (2 * 3 * 4 + 4), 12)
    assert [name for name, _, _ in listing(analysis)] == ["scan", "scan/body/mm", "scan/body/acc"]
    assert_totals_leave_sublayers_out(analysis)


# ---------------------------------------------------------------------------------------
# model-local functions


def functions() -> list[onnx.FunctionProto]:
    """Block(X, W; stride) = Act(Conv(X, W, strides=stride)); Act(X; slope=0.2) = LeakyRelu."""
    lrelu = helper.make_node("LeakyRelu", ["X"], ["Y"], name="lrelu")
    lrelu.attribute.append(AttributeProto(name="alpha", ref_attr_name="slope", type=AttributeProto.FLOAT))
    act = helper.make_function("local", "Act", ["X"], ["Y"], [lrelu], OPSET,
                               attribute_protos=[helper.make_attribute("slope", 0.2)])
    conv = helper.make_node("Conv", ["X", "W"], ["c"], name="conv", pads=[1, 1, 1, 1])
    conv.attribute.append(AttributeProto(name="strides", ref_attr_name="stride", type=AttributeProto.INTS))
    block = helper.make_function("local", "Block", ["X", "W"], ["Y"],
                                 [conv, helper.make_node("Act", ["c"], ["Y"], name="act", domain="local")],
                                 OPSET + [helper.make_opsetid("local", 1)], attributes=["stride"])
    return [act, block]


def test_model_local_functions_expand_under_their_call(tmp_path):
    nodes = [helper.make_node("Block", ["x", "W1"], ["b1"], name="block1", domain="local", stride=[1, 1]),
             helper.make_node("Block", ["b1", "W2"], ["b2"], name="block2", domain="local", stride=[2, 2]),
             helper.make_node("Act", ["b2"], ["y"], name="act", domain="local", slope=0.1)]
    model = make_model(nodes, [tensor_input("x", ["batch", 3, 8, 8])], ["y"],
                       [weight("W1", [4, 3, 3, 3]), weight("W2", [5, 4, 3, 3])], opset=17, domains={"local": 1},
                       functions=functions())
    graph, analysis = check(model, tmp_path)
    assert [(n.name, n.block) for n in graph.nodes] == [
        ("block1/conv", "block1"), ("block1/act/lrelu", "block1/act"),
        ("block2/conv", "block2"), ("block2/act/lrelu", "block2/act"), ("act/lrelu", "act")]
    by_name = {n.name: n for n in graph.nodes}
    assert by_name["block1/conv"].inputs == ("x", "W1") and by_name["block1/conv"].outputs == ("block1/c",)
    assert by_name["block2/conv"].attrs["strides"] == (2, 2)  # from the call
    assert by_name["block1/act/lrelu"].attrs["alpha"] == pytest.approx(0.2)  # the function's default
    assert by_name["act/lrelu"].attrs["alpha"] == pytest.approx(0.1)
    assert graph.metadata["functions"] == ["local.Act", "local.Block"] and not graph.metadata["warnings"]
    assert analysis.layer("block1/conv").macs == BATCH * 4 * 8 * 8 * 3 * 9
    assert analysis.layer("block2/conv").macs == BATCH * 5 * 4 * 4 * 4 * 9
    assert analysis.totals.params == 4 * 27 + 5 * 36 and not analysis.totals.partial


def test_recursive_function_is_bad_input(tmp_path):
    loop_fn = helper.make_function("local", "Again", ["X"], ["Y"],
                                   [helper.make_node("Again", ["X"], ["Y"], domain="local")],
                                   OPSET + [helper.make_opsetid("local", 1)])
    model = make_model([helper.make_node("Again", ["x"], ["y"], name="call", domain="local")],
                       [tensor_input("x", [2])], ["y"], opset=17, domains={"local": 1}, functions=[loop_fn])
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelFileError, match="calls itself"):
        load_onnx(str(tmp_path / "m.onnx"))


# ---------------------------------------------------------------------------------------
# nesting: a function call and an If inside a Loop body


def test_function_and_if_inside_a_loop_body(tmp_path):
    """The If inside the loop body reads the body's tensor `h_act`, the main graph's weight W
    and the main graph's input `flag`."""
    then_branch = body([helper.make_node("MatMul", ["h_act", "W"], ["t"], name="mm")], "then", [], [value("t")])
    else_branch = body([helper.make_node("Neg", ["h_act"], ["e"], name="neg")], "else", [], [value("e")])
    loop_nodes = [helper.make_node("Act", ["h"], ["h_act"], name="act", domain="local"),
                  helper.make_node("If", ["flag"], ["h_out"], name="choose", then_branch=then_branch,
                                   else_branch=else_branch),
                  helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep")]
    loop_body_graph = body(loop_nodes, "loop_body", [value("i", TensorProto.INT64, []),
                                                     value("cond_in", TensorProto.BOOL, []), value("h")],
                           [value("cond_out", TensorProto.BOOL, []), value("h_out"), value("h_act")])
    nodes = [helper.make_node("Loop", ["M", "", "x"], ["h_final", "acts"], name="loop", body=loop_body_graph)]
    model = make_model(nodes, [tensor_input("x", ["batch", 4]), tensor_input("flag", [], TensorProto.BOOL)],
                       ["h_final", "acts"], [weight("W", [4, 4]), ints("M", 2)], opset=17, domains={"local": 1},
                       functions=functions())
    _, analysis = check(model, tmp_path, feeds={"flag": np.array(True)})
    assert analysis.tensors["acts"].shape == (2, Sym.symbol("batch"), 4)
    assert listing(analysis) == [
        ("loop", "", ""),
        ("loop/body/act/lrelu", "loop/body/act", "loop"),
        ("loop/body/choose", "loop", "loop"),
        ("loop/body/choose/then_branch/mm", "loop/body/choose", "loop/body/choose"),
        ("loop/body/choose/else_branch/neg", "loop/body/choose", "loop/body/choose"),
        ("loop/body/keep", "loop", "loop"),
    ]
    loop = analysis.layer("loop")
    body_flops = 2 * BATCH * 4 + 2 * BATCH * 16  # leaky relu, then the larger branch (matmul)
    assert (loop.macs, loop.flops, loop.params) == (2 * BATCH * 16, 2 * body_flops, 16)
    assert analysis.layer("loop/body/choose/then_branch/mm").macs == 2 * BATCH * 16
    assert analysis.totals.macs == loop.macs and analysis.totals.params == 16
