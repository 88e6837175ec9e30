"""An ONNX graph's layers get their blocks from the scopes exporters write into node names
(archcalc/readers/scopes.py), once, as the graph is read: the terminal's --depth, CSV and
the HTML report then fold the same rows."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import archcalc
from archcalc.cli.main import cli
from archcalc.engine.rows import rows
from archcalc.readers.scopes import TORCH_SCOPES_KEY, name_block


@pytest.mark.parametrize(("name", "block"), [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),  # TorchScript: each scope a full module path
    ("/features/features.denseblock1/denselayer1/Relu", "features.denseblock1.denselayer1"),
    ("/Flatten", ""),  # made by forward() itself, outside any submodule
    ("model/conv1_bn/batchnorm/mul", "model/conv1_bn/batchnorm"),  # tf2onnx: the scope as written
    ("encoder/layer_0/attention/MatMul", "encoder/layer_0/attention"),  # any a/b/c name
    ("layer1.0.conv1", "layer1.0"),  # a module path (archcalc export's names)
    ("node_Conv_292", ""),  # the dynamo exporter's own names carry no scope
])
def test_the_block_each_exporters_names_give(name, block):
    assert name_block(name) == block


def conv(name: str, source: str, target: str, channels_in: int, channels_out: int, kernel: int) -> list:
    """A Conv with bias, 'same' padding, and its two initializers."""
    weight = numpy_helper.from_array(np.ones((channels_out, channels_in, kernel, kernel), np.float32), f"{name}.w")
    bias = numpy_helper.from_array(np.ones(channels_out, np.float32), f"{name}.b")
    node = helper.make_node("Conv", [source, weight.name, bias.name], [target], name=name,
                            kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4)
    return [node, weight, bias]


def model(parts: list, output: str, output_shape: list[int]) -> onnx.ModelProto:
    nodes = [p for p in parts if isinstance(p, onnx.NodeProto)]
    weights = [p for p in parts if isinstance(p, onnx.TensorProto)]
    graph = helper.make_graph(nodes, "scopes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tf2onnx_named() -> onnx.ModelProto:
    """Named as tf2onnx names a Keras functional model `model`: each layer's ops under
    `model/<layer>/`, and an op tf2onnx inserts itself (`Relu__5`) in no scope."""
    return model([
        *conv("model/conv1/Conv2D", "x", "a", 3, 4, 3),
        helper.make_node("Relu", ["a"], ["b"], name="model/conv1_relu/Relu"),
        helper.make_node("Relu", ["b"], ["c"], name="Relu__5"),
        *conv("model/block1/conv/Conv2D", "c", "d", 4, 4, 1),
        helper.make_node("Relu", ["d"], ["e"], name="model/block1/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["e"], ["y"], name="model/pool/GlobalAveragePool"),
    ], "y", [1, 4, 1, 1])


def dynamo_named() -> onnx.ModelProto:
    """Named as the dynamo exporter (torch 2.14) names `Sequential(Block(3), Block(4))` held as
    `layer1`, each Block a Conv `conv1` and a ReLU `relu`, then `x.flatten(1)`: `node_<op>`
    names, each node's module scopes in its `pkg.torch.onnx.name_scopes` metadata."""
    parts = [*conv("node_conv2d", "x", "a", 3, 4, 3), helper.make_node("Relu", ["a"], ["b"], name="node_relu"),
             *conv("node_conv2d_1", "b", "c", 4, 4, 3), helper.make_node("Relu", ["c"], ["d"], name="node_relu_1"),
             helper.make_node("Flatten", ["d"], ["y"], name="node_view")]
    scopes = {"node_conv2d": ["", "layer1", "layer1.0", "layer1.0.conv1", "conv2d"],
              "node_relu": ["", "layer1", "layer1.0", "layer1.0.relu", "relu"],
              "node_conv2d_1": ["", "layer1", "layer1.1", "layer1.1.conv1", "conv2d_1"],
              "node_relu_1": ["", "layer1", "layer1.1", "layer1.1.relu", "relu_1"],
              "node_view": ["", "view"]}
    for node in parts:
        if isinstance(node, onnx.NodeProto):
            node.metadata_props.add(key=TORCH_SCOPES_KEY, value=repr(scopes[node.name]))
    return model(parts, "y", [1, 256])


def depth_rows(tmp_path, proto: onnx.ModelProto, depth: int) -> tuple[list[tuple], list[tuple]]:
    """(name, op, params, MACs) of each row `analyze --depth` prints as CSV, and of the HTML
    report's view at that depth."""
    path = str(tmp_path / "m.onnx")
    onnx.save(proto, path)
    runner = CliRunner()
    result = runner.invoke(cli, ["analyze", path, "--format", "csv", "--depth", str(depth)])
    assert result.exit_code == 0, result.output
    assert "folds nothing" not in result.stderr
    table = csv.DictReader(io.StringIO(result.stdout))
    terminal = [(r["name"], r["op"], int(r["params"]), int(r["macs"])) for r in table]
    page = tmp_path / "m.html"
    assert runner.invoke(cli, ["analyze", path, "--format", "html", "-o", str(page)]).exit_code == 0
    data = json.loads(re.search(r'<script type="application/json" id="archcalc-data">(.*?)</script>',
                                page.read_text(encoding="utf-8"), re.S).group(1))
    [level] = [level for level in data["page"]["levels"] if level["depth"] == depth]
    return terminal, [(row[0], row[1], row[3], row[4]) for row in level["rows"]]


def test_depth_1_folds_a_tf2onnx_named_graph_as_the_html_report_does(tmp_path):
    """Convs with bias on 8x8 with 'same' padding: conv1 3 -> 4, 3x3: 4 * 3 * 9 + 4 = 112 params,
    4 * 8 * 8 * (3 * 9) = 6,912 MACs; block1's conv 4 -> 4, 1x1: 4 * 4 + 4 = 20 params,
    4 * 8 * 8 * 4 = 1,024 MACs. `model` wraps every layer, so it is no level (depth 1 would be
    one row); block1 holds two scopes (conv, relu) and is one; Relu__5 folds with its reader."""
    terminal, page = depth_rows(tmp_path, tf2onnx_named(), 1)
    assert terminal == [("model/conv1", "Conv x1", 112, 6_912), ("model/conv1_relu", "Relu x1", 0, 0),
                        ("model/block1", "block (3 layers)", 20, 1_024),
                        ("model/pool", "GlobalAveragePool x1", 0, 0)]
    assert page == terminal
    terminal, page = depth_rows(tmp_path, tf2onnx_named(), 2)
    assert [row[0] for row in terminal] == ["model/conv1", "model/conv1_relu", "model/block1/conv",
                                            "model/block1/relu", "model/pool"]
    assert page == terminal


def test_depth_1_folds_a_dynamo_named_graph_as_the_html_report_does(tmp_path):
    """layer1: conv1 3 -> 4, 3x3: 4 * 3 * 9 + 4 = 112 params, 4 * 64 * 27 = 6,912 MACs; the
    second 4 -> 4: 4 * 4 * 9 + 4 = 148 params, 4 * 64 * 36 = 9,216 MACs; together 260 and
    16,128. The flatten is forward()'s own op, in no module: its own row."""
    terminal, page = depth_rows(tmp_path, dynamo_named(), 1)
    assert terminal == [("layer1", "block (4 layers)", 112 + 148, 6_912 + 9_216), ("node_view", "Flatten", 0, 0)]
    assert page == terminal


def test_a_name_outside_any_scope_takes_its_first_readers_block():
    """TorchScript writes shape arithmetic outside any module (`Shape_7`, `Constant_8`): each
    takes the block of its first reader, so `blk` stays one run of rows instead of three."""
    shape = [1, 3, 8, 8]
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="/stem/Relu"),
             helper.make_node("Relu", ["a"], ["b"], name="/blk/Relu"),
             helper.make_node("Shape", ["b"], ["s"], name="Shape_7"),
             helper.make_node("Identity", ["s"], ["t"], name="Identity_8"),
             helper.make_node("Reshape", ["b", "t"], ["d"], name="/blk/Reshape"),
             helper.make_node("Relu", ["d"], ["y"], name="/head/Relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    analysis = archcalc.analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert [(layer.name, layer.block) for layer in analysis.layers] == [
        ("/stem/Relu", "stem"), ("/blk/Relu", "blk"), ("Shape_7", "blk"), ("Identity_8", "blk"),
        ("/blk/Reshape", "blk"), ("/head/Relu", "head")]
    assert [(row.name, row.layers) for row in rows(analysis, 1)] == [("stem", 1), ("blk", 4), ("head", 1)]


@pytest.mark.parametrize("value", ["['', 'layer1', ", "not a list", "{'a': 1}", "['']", "[1, 2]"])
def test_scope_metadata_that_is_not_the_exporters_list_leaves_the_names_scope(value):
    """Only a list of scopes ending in the module path and the op's name is read; anything
    else is some other tool's metadata, and the node's name still gives its block."""
    parts = [*conv("enc.conv", "x", "y", 3, 4, 3)]
    parts[0].metadata_props.add(key=TORCH_SCOPES_KEY, value=value)
    analysis = archcalc.analyze(model(parts, "y", [1, 4, 8, 8]))
    assert [(layer.name, layer.block) for layer in analysis.layers] == [("enc.conv", "enc")]


def test_a_scoped_nodes_undeclared_domain_is_still_reported():
    """The check that every domain is declared skips only nodes of an expanded model-local
    function; a TorchScript-scoped name once looked like one (its block was set as it was
    read), so `/blk/Foo`'s undeclared domain passed in silence."""
    node = helper.make_node("Foo", ["x"], ["y"], name="/blk/Foo", domain="custom.ops")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    analysis = archcalc.analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert "layer '/blk/Foo' is of domain 'custom.ops', which the model's opset_import does not declare " \
           "(ONNX requires it; analysis goes on)" in analysis.warnings
    assert analysis.layers[0].block == "blk"
