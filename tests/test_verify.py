"""`archcalc verify` and `archcalc export`: every spec runs in onnxruntime and matches."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from archcalc import registry
from archcalc.cli import cli
from archcalc.registry import Output, RuleResult

ROOT = Path(__file__).parent.parent
SPECS = sorted(p.name for p in (ROOT / "specs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_verifies_with_zero_mismatches(spec):
    result = invoke("verify", f"specs/{spec}", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["mismatches"] == []
    assert report["tensors_checked"] == report["layers_checked"] > 0
    assert report["skipped"] == []


def test_a_wrong_rule_is_caught(monkeypatch):
    honest = registry.get_rule("Gemm")

    def one_column_too_many_for_fc3(inputs, **attrs):
        # Wrong on the last layer only, so every weight exported from the analysis is still right.
        result = honest.fn(inputs, **attrs)
        rows, columns = result.outputs[0].shape
        wrong = (rows, columns + 1) if columns == 10 else (rows, columns)
        return RuleResult(outputs=(Output(wrong),), macs=result.macs, flops=result.flops, weights=result.weights)

    monkeypatch.setitem(registry.RULES, "Gemm",
                        registry.Rule("Gemm", one_column_too_many_for_fc3, honest.attributes, honest.summary))
    result = invoke("verify", "specs/lenet5.yaml")
    assert result.exit_code == 1, result.output
    assert "1 mismatches" in result.output
    assert "fc3" in result.output and "[1, 11]" in result.output and "[1, 10]" in result.output


def test_memory_bound_refuses_before_running():
    result = invoke("verify", "specs/vgg16.yaml", "--max-memory", "100MiB")
    assert result.exit_code == 2
    assert "GiB" in result.output and "over the" in result.output and "--max-memory" in result.output


def test_bad_memory_size_is_bad_input():
    result = invoke("verify", "specs/lenet5.yaml", "--max-memory", "lots")
    assert result.exit_code == 2
    assert "--max-memory" in result.output and "'lots' is not a quantity" in result.output


def test_profile_shows_per_layer_time():
    result = invoke("verify", "specs/lenet5.yaml", "--profile")
    assert result.exit_code == 0, result.output
    assert "Per-layer time" in result.output and "GMAC/s" in result.output
    assert "conv1" in result.output


@pytest.mark.parametrize("weights", ["random", "zeros", "omit", "external"])
def test_export_writes_a_checked_model(tmp_path, weights):
    path = tmp_path / "lenet5.onnx"
    result = invoke("export", "specs/lenet5.yaml", "-o", str(path), "--weights", weights)
    assert result.exit_code == 0, result.output
    model = onnx.load(str(path), load_external_data=weights == "external")
    if weights != "omit":
        onnx.checker.check_model(model, full_check=True)
    names = [node.name for node in model.graph.node]
    assert names[:3] == ["conv1", "relu_1", "pool1"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    initializer_shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    assert initializer_shapes["conv1.weight"] == [6, 1, 5, 5]
    assert initializer_shapes["fc1.weight"] == [120, 400]
    if weights == "external":
        assert (tmp_path / "lenet5.onnx.data").stat().st_size == 61_706 * 4


def test_export_min_pooling_as_standard_ops(tmp_path):
    spec = tmp_path / "minpool.yaml"
    spec.write_text("input: [3, 8, 8]\nlayers:\n  - minpool: 2\n    name: pool\n")
    path = tmp_path / "minpool.onnx"
    assert invoke("export", str(spec), "-o", str(path)).exit_code == 0
    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node] == ["Neg", "MaxPool", "Neg"]
    onnx.checker.check_model(model, full_check=True)
    assert invoke("verify", str(spec)).exit_code == 0


def test_export_refuses_too_old_opset(tmp_path):
    spec = tmp_path / "gelu.yaml"
    spec.write_text("input: [8]\nlayers:\n  - gelu\n")
    result = invoke("export", str(spec), "-o", str(tmp_path / "g.onnx"), "--opset", "17")
    assert result.exit_code == 2
    assert "Gelu needs opset 20" in result.output


@pytest.mark.parametrize("spec", SPECS)
def test_exported_spec_analyses_to_the_same_numbers(tmp_path, spec):
    from archcalc.engine import analyze
    from archcalc.loader import load_model

    path = tmp_path / "model.onnx"
    assert invoke("export", f"specs/{spec}", "-o", str(path), "--weights", "omit").exit_code == 0
    original, exported = analyze(load_model(f"specs/{spec}")), analyze(load_model(str(path)))
    assert exported.totals.params == original.totals.params
    assert exported.totals.buffers == original.totals.buffers
    assert exported.totals.macs == original.totals.macs
    assert exported.warnings == ()
    # Min pooling becomes three ops; every other layer keeps its name and output shape.
    shapes = {t.name: t.shape for t in exported.tensors.values()}
    assert all(shapes[layer.name] == layer.outputs[0].shape for layer in original.layers)


def test_a_model_onnxruntime_refuses_is_bad_input(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    result = invoke("verify", str(path))
    assert result.exit_code == 2
    assert "onnxruntime refused the model" in result.output and "FancyOp" in result.output
    assert str(path) in result.output and "Traceback" not in result.output
