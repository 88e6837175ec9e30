"""Feeding a graph input at a shape (``--input-shape``) binds the symbolic dims it replaces,
wherever else they occur: in the shapes the model stores for its other tensors (value_info,
which the engine takes for the outputs of an op it cannot model) and in the counts.

Before, the input took the sizes but a stored [batch, 4, 8, 8] kept ``batch``, bound to the
default 1: the conv after an unmodelled op was counted at batch 1 when fed at batch 8.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from archcalc.cli.main import cli
from archcalc.core.errors import GraphError
from archcalc.engine.inference import analyze
from archcalc.readers.load import load_model


def _model(tmp_path: Path, second_input: bool = False) -> str:
    """x [batch, 3, 8, 8] -> Conv 3->4 -> an op archcalc does not know (its output's shape only
    in value_info: [batch, 4, 8, 8]) -> Conv 4->4 (3x3, pad 1)."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Mystery", ["c"], ["m"], name="mystery", domain="com.example"),
             helper.make_node("Conv", ["m", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    if second_input:
        inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4, 8, 8]))
        nodes.append(helper.make_node("Add", ["y", "z"], ["s"], name="add"))
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"),
         numpy_helper.from_array(np.zeros((4, 4, 3, 3), np.float32), "w2")],
        value_info=[helper.make_tensor_value_info("m", TensorProto.FLOAT, ["batch", 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 10
    path = str(tmp_path / "model.onnx")
    onnx.save(model, path)
    return path


def test_input_shape_binds_the_dims_it_replaces_everywhere(tmp_path):
    path = _model(tmp_path)
    fed = analyze(load_model(path, {"x": (8, 3, 8, 8)}))
    assert {name: tuple(fed.tensors[name].shape) for name in ("x", "c", "m", "y")} == {
        "x": (8, 3, 8, 8), "c": (8, 4, 8, 8), "m": (8, 4, 8, 8), "y": (8, 4, 8, 8)}
    # conv: 8 * 4 * 8*8 outputs * 3*3*3; conv2: 8 * 4 * 8*8 * 4*3*3
    assert fed.totals.macs == 8 * 4 * 64 * 27 + 8 * 4 * 64 * 36 == 129_024
    assert fed.totals.macs == analyze(load_model(path), {"batch": 8}).totals.macs


def test_two_inputs_fed_two_sizes_of_one_dim_are_refused(tmp_path):
    path = _model(tmp_path, second_input=True)
    with pytest.raises(GraphError, match="'batch' two sizes: 8 and 4"):
        load_model(path, {"x": (8, 3, 8, 8), "z": (4, 4, 8, 8)})
    assert analyze(load_model(path, {"x": (8, 3, 8, 8), "z": (8, 4, 8, 8)})).totals.macs == 129_024


@pytest.mark.parametrize("option", [["--batch", "2"], ["--dim", "batch=2"]])
def test_the_fed_size_wins_over_another_for_its_dim(tmp_path, option):
    """The input is fed at batch 8: a --batch or --dim for the dim it replaced binds nothing (as
    tests/cli/test_cli.py's warning for --batch on a fixed-size input), and counts stay at 8."""
    path = _model(tmp_path)
    result = CliRunner().invoke(cli, ["analyze", path, "--input-shape", "x=8,3,8,8", *option, "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["totals"]["macs"] == 129_024
    assert document["tensors"]["m"] == [8, 4, 8, 8]
    assert any("binds nothing" in warning for warning in document["warnings"])
