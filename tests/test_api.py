"""The Python API: the same numbers as the CLI, the same errors, and a light `import archcalc`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import cli

LENET = "specs/lenet5.yaml"


def test_analyze_a_path_gives_the_cli_json_totals():
    document = json.loads(CliRunner().invoke(cli, ["analyze", LENET, "--format", "json", "--batch", "4"]).output)
    analysis = archcalc.analyze(LENET, batch=4)
    assert isinstance(analysis, archcalc.Analysis)
    for key in ("params", "trainable_params", "macs", "flops", "activation_bytes", "weight_bytes"):
        assert getattr(analysis.totals, key) == document["totals"][key], key
    # LeNet-5's classic count: (5*5*1+1)*6 + (5*5*6+1)*16 + (400+1)*120 + (120+1)*84 + (84+1)*10
    assert analysis.totals.params == 156 + 2416 + 48120 + 10164 + 850 == 61706


def test_analyze_a_loaded_graph_with_dims_and_input_shapes():
    graph = archcalc.load(LENET)
    assert isinstance(graph, archcalc.Graph)
    once, twice = archcalc.analyze(graph), archcalc.analyze(graph, dims={"batch": 2})
    assert twice.totals.macs == 2 * once.totals.macs
    # conv1 on a 36x36 input: (36 - 5 + 1)^2 outputs x 6 filters x 25 MACs each
    bigger = archcalc.analyze(LENET, input_shapes={"input": ("batch", 1, 36, 36)})
    conv1 = next(layer for layer in bigger.layers if layer.name == "conv1")
    assert conv1.macs == 32 * 32 * 6 * 25


def test_bad_input_raises_the_error_the_cli_reports():
    with pytest.raises(archcalc.ModelFileError, match="does not exist"):
        archcalc.analyze("no/such/model.onnx")
    assert issubclass(archcalc.ModelFileError, archcalc.ArchcalcError)


def test_import_archcalc_loads_no_engine_until_used():
    """Results and errors load without the engine; __all__ names exactly what __getattr__ serves."""
    code = ("import sys, archcalc; before = 'archcalc.engine.inference' in sys.modules; archcalc.Analysis; "
            "print(before, 'archcalc.engine.inference' in sys.modules, "
            "sorted(set(archcalc.__all__) - set(dir(archcalc))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[0] == "False False []"


# -- models in every form the API takes ---------------------------------------------------------

def test_a_spec_as_text_or_dict_and_an_onnx_proto_give_the_file_numbers():
    import onnx
    import yaml
    from onnx import helper
    from onnx_models import make_model, tensor_input, weight

    text = Path(LENET).read_text(encoding="utf-8")
    from_file = archcalc.analyze(LENET).totals
    assert archcalc.analyze(text).totals == from_file
    assert archcalc.analyze(yaml.safe_load(text)).totals == from_file
    # One Gemm, 4 -> 3 features with a bias: (4 + 1) * 3 = 15 params, 2 * 4 * 3 = 24 MACs at batch 2
    proto = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")],
                       [tensor_input("x", [2, 4])], ["y"], [weight("w", [3, 4]), weight("b", [3])])
    assert isinstance(proto, onnx.ModelProto)
    analysis = archcalc.analyze(proto)
    assert (analysis.totals.params, analysis.totals.macs) == (15, 24)
    assert analysis.layer("fc").op == "Gemm"


def test_a_model_of_another_kind_is_a_typed_error():
    with pytest.raises(archcalc.ArchcalcError, match="cannot analyse a builtins.int") as caught:
        archcalc.analyze(42)
    assert "pass a path (.onnx, .yaml), an onnx.ModelProto" in str(caught.value)
    with pytest.raises(archcalc.ArchcalcError, match="for PyTorch modules"):
        archcalc.analyze(LENET, input_size=(1, 1, 32, 32))
    with pytest.raises(archcalc.SpecError):
        archcalc.analyze("name: x\nlayers: [{conv2d: {filters: 0, kernel: 3}}]\ninput: [1, 8, 8]\n")


# -- the analysis object ------------------------------------------------------------------------

def test_to_dict_is_the_cli_json_document():
    document = json.loads(CliRunner().invoke(cli, ["analyze", LENET, "--format", "json", "--batch", "4",
                                                   "--training"]).output)
    assert archcalc.analyze(LENET, batch=4, training=True).to_dict() == document


def test_explain_is_the_cli_explain_text():
    printed = CliRunner().invoke(cli, ["explain", LENET, "conv1"]).output
    assert archcalc.analyze(LENET).explain("conv1") + "\n" == printed
    with pytest.raises(archcalc.ArchcalcError, match="no layer named 'conv9'") as caught:
        archcalc.analyze(LENET).explain("conv9")
    assert str(caught.value).endswith("fix: did you mean: conv2, conv1")


def test_table_renders_what_the_cli_prints():
    from rich.console import Console

    analysis = archcalc.analyze(LENET)
    console = Console(file=__import__("io").StringIO(), width=140, markup=False, highlight=False)
    console.print(analysis)  # __rich__
    printed = CliRunner().invoke(cli, ["analyze", LENET]).output

    def lines(text: str) -> list[str]:  # piped CLI output carries no trailing spaces
        return [line.rstrip() for line in text.splitlines()]

    assert lines(console.file.getvalue()) == lines(printed)
    html = analysis._repr_html_()
    assert html.startswith("<pre") and "61,706" in html and "conv1" in html
    folded = Console(file=__import__("io").StringIO(), width=140)  # rich.print's defaults: markup read
    folded.print(archcalc.analyze("specs/resnet18.yaml").table(depth=1))
    assert lines(folded.file.getvalue()) == lines(CliRunner().invoke(cli, ["analyze", "specs/resnet18.yaml",
                                                                            "--depth", "1"]).output)


def test_to_dataframe_rows_sum_to_the_totals():
    if os.environ.get("CI") != "true":
        pytest.importorskip("pandas")
    analysis = archcalc.analyze("specs/resnet50.yaml", batch=2)
    frame = analysis.to_dataframe()
    assert list(frame.index) == [layer.name for layer in analysis.layers]
    for column in ("params", "trainable_params", "buffers", "macs", "flops", "activation_bytes"):
        assert frame[column].sum() == getattr(analysis.totals, column), column
    assert frame.loc["conv1", "output_shape"] == "[batch, 64, 112, 112]"  # shapes stay symbolic; counts bind it


# -- check, diff, verify ----------------------------------------------------------------------

def test_check_returns_the_result_the_cli_reports():
    analysis = archcalc.analyze(LENET)
    # LeNet-5 has 61,706 params: a 60k budget fails, a 100k one passes
    failed = archcalc.check(analysis, {"total": {"params": "60k"}})
    assert isinstance(failed, archcalc.ModelCheck) and failed.level == "fail"
    assert [(r.metric, r.actual) for r in failed.results] == [("params", 61706)]
    assert archcalc.check(LENET, "total:\n  params: 100k\n").level == "pass"
    with pytest.raises(archcalc.ArchcalcError, match="b.yaml"):
        archcalc.check(analysis, "no/such/b.yaml")


def test_diff_returns_the_pairing_the_cli_prints():
    result = archcalc.diff("specs/resnet18.yaml", "specs/resnet34.yaml")
    assert isinstance(result, archcalc.ModelDiff)
    document = json.loads(CliRunner().invoke(cli, ["diff", "specs/resnet18.yaml", "specs/resnet34.yaml",
                                                   "--format", "json"]).output)
    assert json.loads(json.dumps(result.to_json())) == document
    # torchvision's counts: resnet18 11,689,512 params, resnet34 21,797,672
    assert (result.totals["params"].old, result.totals["params"].new) == (11_689_512, 21_797_672)


def test_verify_returns_a_report():
    report = archcalc.verify(LENET, batch=2)
    assert isinstance(report, archcalc.VerifyReport)
    assert report.ok and report.tensors_checked > 0


def test_formulas_and_sweep_from_python():
    """Analysis.formulas() and archcalc.sweep(), against GPT-2 small's hand polynomial: per token
    12 layers of 768*2304 + 768*768 + 2*768*3072 weight MACs and the tied 768x50257 head; QK^T and
    AV 2 * 768 * seq per token and layer."""
    from archcalc.core.dims import Sym, bind

    shapes = {"input_ids": ("batch", "seq")}
    analysis = archcalc.analyze("specs/gpt2.yaml", input_shapes=shapes, dims={"seq": 16})
    per_token = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257
    b, s = Sym.symbol("batch"), Sym.symbol("seq")
    f = analysis.formulas()
    assert f.macs == per_token * b * s + 12 * 2 * 768 * b * s * s
    assert f.to_dict()["totals"]["macs"]["text"] == "18432*batch*seq^2 + 123532032*batch*seq"
    assert analysis.formulas({"seq": 10}, batch=2).macs == 2 * (per_token * 10 + 12 * 2 * 768 * 100)
    result = archcalc.sweep("specs/gpt2.yaml", {"seq": [8, 64], "batch": [1, 3]}, input_shapes=shapes,
                            kv_dtype="fp16")
    assert [p.bindings for p in result.points] == [{"seq": 8, "batch": 1}, {"seq": 8, "batch": 3},
                                                   {"seq": 64, "batch": 1}, {"seq": 64, "batch": 3}]
    for point in result.points:
        assert point.macs == bind(f.macs, point.bindings)
        assert point.kv_cache_bytes == 2 * 12 * 12 * 64 * 2 * point.bindings["seq"] * point.bindings["batch"]
        assert point.latency_s is None
    document = result.to_dict()
    assert document["swept"] == ["seq", "batch"] and document["points"][0] == result.points[0].to_dict()
    timed = archcalc.sweep("specs/gpt2.yaml", {"seq": [8]}, input_shapes=shapes, device="a100", precision="fp16")
    assert timed.points[0].latency_s and timed.points[0].latency_s > 0
    with pytest.raises(archcalc.ArchcalcError, match="swept and bound"):
        archcalc.sweep("specs/gpt2.yaml", {"seq": [8]}, input_shapes=shapes, dims={"seq": 4})
    with pytest.raises(archcalc.ArchcalcError, match="sizes >= 1"):
        archcalc.sweep("specs/gpt2.yaml", {"seq": [0]}, input_shapes=shapes)
    with pytest.raises(archcalc.ArchcalcError, match="sizes >= 1"):
        archcalc.sweep("specs/gpt2.yaml", {"seq": ["8"]}, input_shapes=shapes)  # was a bare ValueError


@pytest.mark.parametrize(("call", "message"), [
    (lambda: archcalc.analyze("specs/lenet5.yaml", batch=-1), "batch is -1"),
    (lambda: archcalc.analyze("specs/gpt2.yaml", dims={"seq": "128"}), r"dims\['seq'\] is '128'"),
    (lambda: archcalc.analyze("specs/lenet5.yaml").formulas(batch=2.5), "batch is 2.5"),
    (lambda: archcalc.verify("specs/lenet5.yaml", dims={"batch": True}), r"dims\['batch'\] is True"),
])
def test_a_binding_that_is_no_size_is_a_typed_error(call, message):
    with pytest.raises(archcalc.ArchcalcError, match=message) as caught:
        call()
    assert "whole number >= 0" in str(caught.value) and "fix:" in str(caught.value)


def test_bindings_take_numpy_integers_and_zero():
    import numpy as np

    shapes = {"input_ids": ("batch", "seq")}
    at_16 = archcalc.analyze("specs/gpt2.yaml", input_shapes=shapes, dims={"seq": 16}).totals.macs
    assert archcalc.analyze("specs/gpt2.yaml", input_shapes=shapes, dims={"seq": np.int64(16)}).totals.macs == at_16
    assert archcalc.analyze("specs/gpt2.yaml", input_shapes=shapes, dims={"seq": 0}).totals.macs == 0  # no tokens
