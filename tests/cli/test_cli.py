"""Every command and format through click's CliRunner; table and explain against golden text.

Refresh the golden files after an intended change with ARCHCALC_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from goldens import check_golden

from archcalc.cli.main import cli

LENET = "specs/lenet5.yaml"


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output



@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])


def test_analyze_table_golden():
    check_golden("lenet5.table.txt", run("analyze", LENET))


def test_explain_golden():
    text = run("explain", LENET, "conv1")
    check_golden("lenet5.explain-conv1.txt", text)
    assert "H_out = floor((32 + 2*0 - 5)/1) + 1 = 28" in text
    assert "params = (5 * 5 * 1 + 1) * 6 = 156" in text


def test_explain_dense_layer_uses_seed_formula():
    text = run("explain", LENET, "fc1")
    # (N_in + 1) * N_out = (400 + 1) * 120
    assert "params = (N_in + 1) * N_out = (400 + 1) * 120 = 48120" in text


def test_analyze_json_contract():
    document = json.loads(run("analyze", LENET, "--format", "json"))
    totals = document["totals"]
    for key in ("params", "trainable_params", "non_trainable_params", "buffers", "macs", "flops",
                "activation_bytes", "weight_bytes"):
        assert isinstance(totals[key], int)
    assert totals["params"] == 61_706
    layer = document["layers"][0]
    assert {"name", "op", "inputs", "outputs", "params", "trainable_params", "macs", "flops"} <= set(layer)
    assert layer["outputs"][0] == {"name": "conv1", "shape": ["batch", 6, 28, 28], "dtype": "float32"}
    tensor_names = {t["name"] for x in document["layers"] for t in x["inputs"] + x["outputs"]}
    assert tensor_names <= set(document["tensors"])
    assert document["tensors"]["input"] == ["batch", 1, 32, 32]
    assert document["warnings"] == []
    # Totals are the sums of the layers.
    assert sum(x["macs"] for x in document["layers"]) == totals["macs"]


def test_json_writer_keeps_the_json_module_layout_and_takes_big_ints():
    from archcalc.report.analysis import dumps_json

    document = {"name": "convé\"1", "shape": [1, "batch", 3], "empty": [], "nested": {"a": None, "b": 1.5}}
    assert dumps_json(document) == json.dumps(document, indent=2, ensure_ascii=False)
    # Past int64 (orjson's limit) the json module writes it, in the same layout.
    huge = {"macs": 2**70, "layers": [{"x": 1}]}
    assert dumps_json(huge) == json.dumps(huge, indent=2)


def test_analyze_csv():
    reader = list(csv.DictReader(io.StringIO(run("analyze", LENET, "--format", "csv"))))
    assert len(reader) == 12
    assert sum(int(r["params"]) for r in reader) == 61_706
    assert reader[0]["output_shape"] == "[batch, 6, 28, 28]"


def test_analyze_markdown():
    text = run("analyze", LENET, "--format", "markdown")
    assert text.startswith("## lenet5\n")
    assert "| conv1 | Conv | [batch, 6, 28, 28] | 156 | 117,600 |" in text
    assert "| Total params | 61,706 (61.71 K) |" in text


def test_batch_scales_macs_not_params():
    one = json.loads(run("analyze", LENET, "--format", "json"))["totals"]
    four = json.loads(run("analyze", LENET, "--format", "json", "--batch", "4"))["totals"]
    assert four["macs"] == 4 * one["macs"]
    assert four["params"] == one["params"]


def test_depth_folds_blocks(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "input: [3, 8, 8]\nblocks:\n  pair:\n    layers:\n      - conv2d: {filters: 3, kernel: 3, padding: 1}\n"
        "      - relu\nlayers:\n  - pair:\n    name: stage\n    repeat: 2\n  - flatten\n"
    )
    text = run("analyze", str(spec), "--format", "csv", "--depth", "1")
    names = [r["name"] for r in csv.DictReader(io.StringIO(text))]
    assert names == ["stage", "flatten_1"]


def test_layers_lists_types():
    text = run("layers")
    assert "conv2d (also: conv): 2D convolution" in text
    assert "dense (also: linear, fc)" in text


def test_help_and_version():
    assert "analyze" in run("--help")
    assert "0.1.0" in run("--version")


def test_big_models_get_a_summary_unless_full():
    summary = run("analyze", "specs/resnet152.yaml", "--exact")
    assert "resnet152: 515 layers, by op" in summary
    assert "Top 10 layers by MACs" in summary and "--full lists every layer" in summary
    assert "60,192,808" in summary
    # The Conv row sums the convolutions' MACs: all of ResNet-152's 11,513,626,624 but fc's 2048 * 1000.
    conv = next(line for line in summary.splitlines() if line.startswith("│ Conv "))
    assert f"{11_513_626_624 - 2048 * 1000:,}" in conv and "│    155 │" in conv
    full = run("analyze", "specs/resnet152.yaml", "--full")
    assert "layer4.2.conv3" in full and "by op" not in full


RESNET18_ONNX = "tests/fixtures/onnx/resnet18_torchscript.onnx"


def test_input_shape_feeds_an_onnx_input_at_another_size():
    """ResNet-18 at 112x112: 56 -> 28 -> 14 -> 7 -> 4 after the stem and four stages, each
    conv's MACs = output elements x C_in x k x k; onnxruntime confirms every shape."""
    data = json.loads(run("analyze", RESNET18_ONNX, "--input-shape", "x=1,3,112,112", "--format", "json"))
    assert data["tensors"]["x"] == [1, 3, 112, 112] and data["tensors"]["logits"] == [1, 1000]
    stem = next(layer for layer in data["layers"] if layer["op"] == "Conv")
    assert stem["outputs"][0]["shape"] == [1, 64, 56, 56]
    assert stem["macs"] == 64 * 56 * 56 * 3 * 7 * 7
    assert "0 mismatches" in run("verify", RESNET18_ONNX, "--input-shape", "x=2,3,112,112")


def test_input_shape_may_keep_a_dim_symbolic():
    data = json.loads(run("analyze", LENET, "--input-shape", "input=batch,1,36,36", "--batch", "2",
                          "--format", "json"))
    assert data["tensors"]["input"] == ["batch", 1, 36, 36]
    conv1 = data["layers"][0]
    assert conv1["outputs"][0]["shape"] == ["batch", 6, 32, 32]
    assert conv1["macs"] == 2 * 6 * 32 * 32 * 5 * 5


@pytest.mark.parametrize(("value", "message"), [
    ("y=1,3,224,224", "no graph input named 'y'"),
    ("x=1,3", "has 4 dims"),
    ("x=1,3,0,224", "is not NAME=D1,D2"),
    ("1,3,224,224", "is not NAME=D1,D2"),
    ("x=1,\u00b2,224,224", "is not NAME=D1,D2"),  # a digit to str.isdigit, not to int()
])
def test_bad_input_shape_is_exit_2(value, message):
    result = CliRunner().invoke(cli, ["analyze", RESNET18_ONNX, "--input-shape", value])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("width", [80, 100])
def test_narrow_table_keeps_every_number_whole(width):
    """At 80 and 100 columns, with --exact, names and shapes fold and the optional columns
    go, but no params or MACs figure is ever cut."""
    from rich.console import Console

    from archcalc.engine.inference import analyze
    from archcalc.engine.rows import rows
    from archcalc.readers.load import load_model
    from archcalc.report import analysis as report

    analysis = analyze(load_model("specs/resnet50.yaml"))
    out = io.StringIO()
    console = Console(file=out, width=width, markup=False, highlight=False, soft_wrap=False, color_system=None)
    table = rows(analysis)
    report.render_table(analysis, table, console, exact=True)
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    cells = {cell.strip() for line in lines for cell in re.split(r"│| {2,}", line)}
    for row in table:
        assert f"{row.params:,}" in cells and f"{row.macs:,}" in cells, row.name
    assert "…" not in text
    assert "Params" in text and "MACs" in text


def test_depth_folds_by_block_instance_not_by_dots():
    """MobileNetV2's features.0 / .1 / .18 are plain layers, features.2 ... features.17 block
    instances: depth 1 folds each instance, never a made-up `features` row."""
    names = [r["name"] for r in csv.DictReader(io.StringIO(
        run("analyze", "specs/mobilenet_v2.yaml", "--format", "csv", "--depth", "1")))]
    assert "features" not in names
    assert names[:3] == ["features.0.0", "features.0.1", "features.0.2"]
    assert [n for n in names if n.count(".") == 1 and n.startswith("features.")] == [
        f"features.{i}" for i in range(2, 18)]
    dense = {d: [r["name"] for r in csv.DictReader(io.StringIO(
        run("analyze", "specs/densenet121.yaml", "--format", "csv", "--depth", str(d))))] for d in (1, 2)}
    assert "features" not in dense[1] and "features.denseblock1.denselayer" in dense[1]
    assert "features.denseblock1.denselayer.5" in dense[2] and dense[1] != dense[2]
    assert "features.transition1" in dense[1] and "features.transition1" in dense[2]


def test_binding_that_binds_nothing_is_a_warning():
    document = json.loads(run("analyze", LENET, "--dim", "nosuch=4", "--format", "json"))
    assert [w for w in document["warnings"] if "binds nothing" in w] == [
        "binding 'nosuch=4' (--dim) binds nothing: the model has no symbolic dim 'nosuch' (its symbolic dims: "
        "batch); counts are at the model's own sizes"]
    assert document["bindings"] == {"batch": 1}
    # Fed at a fixed shape, the model has no batch dim left for --batch to bind.
    text = run("analyze", LENET, "--input-shape", "input=1,1,32,32", "--batch", "8")
    assert "warning: --batch 8 binds nothing: the model has no symbolic 'batch' dim (its batch is fixed)" in text
    assert re.search(r"Counted with +no symbolic dims", text) and "batch=8" not in text
    bound = run("analyze", LENET, "--batch", "8")
    assert re.search(r"Counted with +batch=8", bound) and "warning" not in bound


def test_fractional_receptive_fields_are_compact(tmp_path):
    spec = tmp_path / "up.yaml"
    spec.write_text("input: [4, 17, 20]\nlayers:\n  - avgpool: {kernel: [8, 4]}\n  - upsample: {scale: 3}\n")
    table = run("analyze", str(spec))
    assert "/2.67x1.33" in table and "2.666" not in table
    reader = list(csv.DictReader(io.StringIO(run("analyze", str(spec), "--format", "csv"))))
    assert reader[-1]["receptive_field"] == "8x4 /2.67x1.33"
    assert "/2.67x1.33 |" in run("analyze", str(spec), "--format", "markdown")


def test_bad_dim_value_is_exit_2():
    result = CliRunner().invoke(cli, ["analyze", LENET, "--dim", "seq=\u00b2"])
    assert result.exit_code == 2 and "is not NAME=N" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_explain_says_why_a_layer_with_a_rule_is_not_modelled(tmp_path):
    """A Reshape whose target comes from data, of a length known only at run time (so not even
    the output's rank is known), has a rule but no known output: explain says so."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["t"], ["target"], name="from_data"),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="r")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                                           helper.make_tensor_value_info("t", TensorProto.INT64, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "r.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    text = run("explain", str(path), "r")
    assert "not modelled: Reshape's target shape is computed from data" in text


def test_totals_add_up_as_printed(tmp_path):
    """Total params = trainable + frozen, as printed; buffers (running statistics) on their own
    line, outside params. LeNet-5 frozen up to conv2: conv1 (5*5*1 + 1) * 6 = 156 and conv2
    (5*5*6 + 1) * 16 = 2,416 are frozen, 2,572 of 61,706; a BatchNorm of 6 channels adds
    2 * 6 = 12 params (trainable) and 2 * 6 = 12 buffers."""
    spec = Path(LENET).read_text().replace("layers:\n", "freeze_until: conv2\nlayers:\n", 1)
    spec = spec.replace("  - conv2d: {filters: 6, kernel: 5}\n    name: conv1\n",
                        "  - conv2d: {filters: 6, kernel: 5}\n    name: conv1\n  - batchnorm\n", 1)
    path = tmp_path / "frozen.yaml"
    path.write_text(spec)
    text = run("analyze", str(path), "--exact")
    values = {label.strip(): value for label, value in re.findall(r"^ {2,4}(\S.*?)  +(\S.*)$", text, re.M)}
    assert values["Total params"] == "61,718 (61.72 K)"  # 61,706 + 12
    assert values["Trainable"] == "59,134 (59.13 K)"      # 61,706 + 12 - 2,572 - 12 (the BatchNorm before conv2)
    assert values["Frozen"] == "2,584 (2.58 K)"           # 2,572 + the BatchNorm's 12
    assert values["Buffers"] == "12, not in params"
    document = json.loads(run("analyze", str(path), "--format", "json"))["totals"]
    assert document["non_trainable_params"] == 2_584 + 12  # Keras' figure, frozen + buffers, kept in JSON


def test_depth_folds_an_onnx_export_by_its_module_scopes():
    """TorchScript names nodes by module scope ('/layer1/layer1.0/conv1/Conv'): --depth folds
    them as a spec's blocks. layer1 of ResNet-18: four 3x3 convs 64 -> 64, each BatchNorm
    folded into a bias of 64 by the exporter: 4 * (64 * 64 * 3 * 3 + 64) = 147,712 params."""
    table = list(csv.DictReader(io.StringIO(run("analyze", RESNET18_ONNX, "--format", "csv", "--depth", "1"))))
    names = [row["name"] for row in table]
    assert names[3:7] == ["layer1", "layer2", "layer3", "layer4"]
    assert int(table[3]["params"]) == 4 * (64 * 64 * 3 * 3 + 64)
    depth2 = [r["name"] for r in csv.DictReader(io.StringIO(
        run("analyze", RESNET18_ONNX, "--format", "csv", "--depth", "2")))]
    assert "layer1.0" in depth2 and "layer4.1" in depth2


def test_depth_on_a_model_without_blocks_says_so():
    result = CliRunner().invoke(cli, ["analyze", "tests/fixtures/onnx/resnet18_dynamo.onnx", "--depth", "1"])
    assert result.exit_code == 0
    assert "warning: --depth 1 folds nothing: tests/fixtures/onnx/resnet18_dynamo.onnx has no blocks" in result.stderr


def test_explain_a_folded_block_gives_its_sums_and_layers():
    """`analyze --depth 1` shows a row `layer1`; explain gives it as the sum of its layers.
    ResNet-18's layer1: four 3x3 convs 64 -> 64 (64 * 64 * 3 * 3 = 36,864 params, times the
    56 * 56 outputs = 115,605,504 MACs each) and four BatchNorms of 2 * 64 = 128 params."""
    text = run("explain", "specs/resnet18.yaml", "layer1")
    assert text.startswith("layer1: a block of 14 layers (a row of --depth 1)")
    assert f"params {4 * 36_864 + 4 * 128:,} = 36,864 + 128 + 36,864 + 128 + 36,864 + 128 + 36,864 + 128" in text
    assert f"MACs {4 * 115_605_504:,} = " + " + ".join(["115,605,504"] * 4) in text
    assert "layer1.1.relu_1" in text
    assert run("explain", "specs/resnet18.yaml", "layer1.0").startswith("layer1.0: a block of 7 layers (a row of "
                                                                        "--depth 2)")


def test_analyze_takes_several_models():
    models = ["specs/lenet5.yaml", "specs/alexnet.yaml"]
    table = run("analyze", *models)
    assert "lenet5: 12 layers" in table and "alexnet: 21 layers" in table
    lines = list(csv.reader(io.StringIO(run("analyze", *models, "--format", "csv"))))
    assert lines[0][:3] == ["model", "name", "op"] and sum(line[0] == "model" for line in lines) == 1
    assert [line[0] for line in lines[1:]] == ["specs/lenet5.yaml"] * 12 + ["specs/alexnet.yaml"] * 21
    documents = json.loads(run("analyze", *models, "--format", "json"))
    assert [d["totals"]["params"] for d in documents] == [61_706, 61_100_840]  # hand count; torchvision's
    assert json.loads(run("analyze", models[0], "--format", "json"))["totals"]["params"] == 61_706  # one: as before


def test_verify_takes_several_models():
    result = CliRunner().invoke(cli, ["verify", "specs/lenet5.yaml", "specs/alexnet.yaml"])
    assert result.exit_code == 0, result.output
    assert "specs/lenet5.yaml:\nverify ok: 12 tensors and 12 layers" in result.output
    assert "specs/alexnet.yaml:\nverify ok: 21 tensors and 21 layers" in result.output


def test_verify_reads_every_model_before_running_any(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("garbage: [\n")
    result = CliRunner().invoke(cli, ["verify", "specs/lenet5.yaml", str(bad)])
    assert result.exit_code == 2
    assert "verify ok" not in result.output and "bad.yaml:2: not valid YAML" in result.output


def test_no_arguments_prints_help_on_stdout_and_exits_0():
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ") and "Commands:" in result.stdout and "Examples:" in result.stdout


@pytest.mark.parametrize("command", ["analyze", "check", "diff", "explain", "export", "layers", "verify",
                                     "completion"])
def test_every_command_has_examples_and_described_options(command):
    text = CliRunner().invoke(cli, [command, "--help"]).stdout
    assert "Examples:\n" in text and f"  archcalc {command}" in text
    assert "--format" not in text or re.search(r"--format \[[^\]]*\]\s+[^\s\[]", text)  # described, not bare


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_that_completes(shell):
    script = run("completion", shell)
    assert "_ARCHCALC_COMPLETE" in script
    # What the bash script asks archcalc when the user types `archcalc ana<TAB>`:
    answer = CliRunner().invoke(cli, [], prog_name="archcalc", env={
        "_ARCHCALC_COMPLETE": "bash_complete", "COMP_WORDS": "archcalc ana", "COMP_CWORD": "1"})
    assert answer.output.splitlines() == ["plain,analyze"]
