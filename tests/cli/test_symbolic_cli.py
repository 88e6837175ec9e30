"""`analyze --symbolic` and `analyze --sweep` in every format, and their bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from archcalc.cli.main import cli
from archcalc.core.dims import Sym, polynomial_from_json

GPT2 = ("specs/gpt2.yaml", "--input-shape", "input_ids=batch,seq")
b, s = Sym.symbol("batch"), Sym.symbol("seq")
# GPT-2 small, by hand: per token, 12 layers of q/k/v (768*2304), output (768*768) and MLP (2*768*3072)
# weight MACs plus the tied LM head (768*50257); QK^T and AV cost 2 * seq * 768 per token and layer.
GPT2_MACS = (12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257) * b * s + 12 * 2 * 768 * b * s * s


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])


def test_symbolic_json_is_the_hand_polynomial_and_adds_keys_only():
    document = json.loads(run("analyze", *GPT2, "--symbolic", "--format", "json"))
    symbolic = document["symbolic"]
    assert symbolic["dims"] == ["batch", "seq"] and symbolic["exact"] is True
    assert polynomial_from_json(symbolic["totals"]["macs"]) == GPT2_MACS
    assert symbolic["totals"]["macs"]["terms"] == [
        {"coefficient": 18432, "powers": {"batch": 1, "seq": 2}},
        {"coefficient": 123532032, "powers": {"batch": 1, "seq": 1}}]
    assert symbolic["totals"]["params"] == 124_439_808
    # seq has no value: the counts are at seq=1 and a warning says so; every other key is today's.
    plain = json.loads(run("analyze", *GPT2, "--dim", "seq=1", "--format", "json"))
    assert any("'seq' has no value" in w for w in document["warnings"])
    for layer in document["layers"]:
        assert set(layer.pop("symbolic")) == {"macs", "flops", "activation_bytes"}
    del document["symbolic"]
    document["warnings"] = plain["warnings"]
    assert document == plain


def test_symbolic_table_csv_markdown():
    table = run("analyze", *GPT2, "--symbolic", "--depth", "1")
    assert "18,432*batch*seq^2 + 123,532,032*batch*seq" in table and "Formulas by layer" in table
    rows = list(csv.DictReader(io.StringIO(run("analyze", *GPT2, "--symbolic", "--depth", "1", "--format", "csv"))))
    by_name = {row["name"]: row for row in rows}
    assert by_name["lm_head"]["macs_formula"] == "38,597,376*batch*seq"  # 768 * 50257 per token
    assert by_name["h"]["macs_formula"] == "18,432*batch*seq^2 + 84,934,656*batch*seq"
    markdown = run("analyze", *GPT2, "--symbolic", "--depth", "1", "--format", "markdown")
    assert "### Formulas" in markdown and "| MACs | 18,432*batch*seq^2 + 123,532,032*batch*seq |" in markdown


def test_symbolic_substitutes_given_bindings():
    table = run("analyze", *GPT2, "--symbolic", "--dim", "seq=10")
    per_batch = 18432 * 100 + 123532032 * 10
    assert f"{per_batch:,}*batch" in table and "bound: seq=10" in table


def test_sweep_points_equal_bound_analyses():
    document = json.loads(run("analyze", *GPT2, "--sweep", "seq=8,64", "--sweep", "batch=1,3", "--format", "json"))
    assert document["swept"] == ["seq", "batch"] and len(document["points"]) == 4
    for point in document["points"]:
        binding = point["bindings"]
        bound = json.loads(run("analyze", *GPT2, "--dim", f"seq={binding['seq']}", "--batch", str(binding["batch"]),
                               "--format", "json"))["totals"]
        assert point["macs"] == bound["macs"]
        assert point["macs"] == (123532032 * binding["seq"] + 18432 * binding["seq"] ** 2) * binding["batch"]
        for key in ("params", "flops", "activation_bytes", "peak_activation_bytes", "input_bytes", "weight_bytes"):
            assert point[key] == bound[key], key
        assert point["kv_cache_bytes"] == 2 * 12 * 12 * 64 * 4 * binding["seq"] * binding["batch"]


def test_sweep_table_csv_markdown():
    table = run("analyze", *GPT2, "--sweep", "seq=128,1024")
    assert "gpt2: sweep of seq" in table and "16.11 G" in table and "one analysis" in table
    lines = run("analyze", *GPT2, "--sweep", "seq=128,1024", "--format", "csv").splitlines()
    assert lines[0] == ("seq,params,macs,flops,peak_activation_bytes,activation_bytes,input_bytes,weight_bytes,"
                        "kv_cache_bytes")
    assert lines[1].startswith("128,124439808,16114089984,")  # 123532032*128 + 18432*128^2
    assert lines[1].endswith(f",{2 * 12 * 12 * 64 * 4 * 128}")  # GPT-2's fp32 cache at 128 tokens
    markdown = run("analyze", *GPT2, "--sweep", "seq=128", "--format", "markdown")
    assert "| 128 | 124,439,808 | 16,114,089,984 |" in markdown


def test_sweep_of_several_models_csv():
    text = run("analyze", "specs/lenet5.yaml", "specs/resnet18.yaml", "--sweep", "batch=1,2", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["model"], r["batch"]) for r in rows] == [("specs/lenet5.yaml", "1"), ("specs/lenet5.yaml", "2"),
                                                         ("specs/resnet18.yaml", "1"), ("specs/resnet18.yaml", "2")]
    # ResNet-18: 3,628,146,688 MACs at batch 2, as tests/fixtures/onnx/resnet18_torchscript.json records
    assert int(rows[3]["macs"]) == 2 * int(rows[2]["macs"]) == 3_628_146_688


@pytest.mark.parametrize("args, message", [
    (("--sweep", "seq=a"), "is not NAME=V1,V2"),
    (("--sweep", "seq=0"), "is not NAME=V1,V2"),
    (("--sweep", "seq=4", "--dim", "seq=2"), "swept and bound"),
    (("--sweep", "seq=4", "--sweep", "seq=2"), "swept and bound"),
    (("--sweep", "seq=4", "--training"), "leave out --training"),
    (("--sweep", "seq=4", "--format", "html", "specs/lenet5.yaml"), "draws one model"),
    (("--symbolic", "--format", "html"), "leave out --format html"),
    (("--sweep", "width=4"), "has no symbolic dim 'width'"),
    (("--sweep", "batch=4"), "symbolic dim 'seq' has no value"),
])
def test_bad_sweeps(args, message):
    output = run("analyze", *GPT2, *args, code=2)
    assert message in output and "Traceback" not in output


def test_sweep_point_the_model_cannot_take(tmp_path):
    spec = tmp_path / "conv.yaml"
    spec.write_text("name: conv\ninput: [3, H, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 5}\n")
    output = run("analyze", str(spec), "--sweep", "H=9,2", code=2)
    assert str(spec) in output and "at H=2" in output and "fix:" in output


def test_sweep_latency_on_a_device_equals_the_bound_roofline():
    """--device adds the roofline's latency per point, in every format: at each point, the
    latency of `analyze --dim seq=S --batch B --device a100 --precision fp16` (one analysis bound
    there), to the last bit, the same layers' costs summed in the same order."""
    device = ("--device", "a100", "--precision", "fp16")
    document = json.loads(run("analyze", *GPT2, "--sweep", "seq=8,300", "--sweep", "batch=1,4", *device,
                              "--format", "json"))
    assert "latency on a100 at fp16" in document["method"]
    for point in document["points"]:
        binding = point["bindings"]
        bound = json.loads(run("analyze", *GPT2, "--dim", f"seq={binding['seq']}", "--batch", str(binding["batch"]),
                               *device, "--format", "json"))
        assert point["latency_s"] == bound["roofline"]["latency_s"] > 0
    lines = run("analyze", *GPT2, "--sweep", "seq=8,300", *device, "--format", "csv").splitlines()
    assert lines[0].endswith(",kv_cache_bytes,latency_s") and float(lines[1].rsplit(",", 1)[1]) > 0
    table = run("analyze", *GPT2, "--sweep", "seq=8,300", *device)
    assert "Latency" in table and " ms │" in table
    markdown = run("analyze", *GPT2, "--sweep", "seq=8", *device, "--format", "markdown")
    assert "| KV cache | Latency |" in markdown
    # without --device: no latency column, the key null
    assert "latency_s" not in run("analyze", *GPT2, "--sweep", "seq=8", "--format", "csv")
    assert json.loads(run("analyze", *GPT2, "--sweep", "seq=8", "--format", "json"))["points"][0]["latency_s"] is None


def test_sweep_latency_of_a_model_analysed_per_point(tmp_path):
    """A Loop's counts are bound, not formulas: each point is analysed, and its roofline timed."""
    from onnx_models import ints, loop_model

    import archcalc
    from archcalc.engine.inference import analyze
    from archcalc.engine.sweep import run_sweep
    from archcalc.hardware.device import load_device
    from archcalc.hardware.roofline import roofline, setup_for
    from archcalc.hardware.sweep import LatencyTimer

    path = tmp_path / "loop.onnx"
    path.write_bytes(loop_model("M", "", initializers=[ints("M", 3)]).SerializeToString())
    graph = archcalc.load(str(path))
    on_device = (load_device("a100"), setup_for(load_device("a100"), "fp16"))
    formulas, points, method = run_sweep(graph, {}, [("batch", [1, 5])], None, LatencyTimer(*on_device))
    assert formulas is None and "one analysis per point" in method and "latency on a100" in method
    for point in points:
        assert point.latency_s == roofline(analyze(graph, point.bindings), *on_device).latency_s
