"""`analyze FUSED --compare-source SOURCE` on the deployed fixtures (tests/fixtures/deployed):
each rewrite does its source's arithmetic, stored in fewer bytes.

The figures by hand (see test_deployed_models.py for the models). BERT: 81,856 params,
at batch 2 and 7 tokens 950,784 MACs; its source stores every param in float32: 4 * 81,856
= 327,424 bytes. bert_int4 packs the 12 MatMul weights (65,536 values) and the three
embedding tables (10,624) at half a byte, the other 5,696 params float32: 60,864 bytes,
beside 10,710 bytes of block scales and zero points. bert_dynamic stores the 13 MatMul
weights (65,536 + the pooler's 4,096) and the tables in int8, 1,600 params float32:
80,256 + 6,400 = 86,656 bytes; its integer MACs, the 13 weight products, 2 * 14 *
(4 * 64*64 + 2 * 64*128) + 2 * 64*64. The small ResNet: 10,058 params; cnn_qdq stores
its 9,968 conv and head weights in int8 and its 90 biases in int32: 9,968 + 360 bytes."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from archcalc.cli.main import cli

DEPLOYED = "tests/fixtures/deployed/"
DIMS = ("--batch", "2", "--dim", "seq=7")


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])


def compared(model: str, source: str, *extra: str):
    result = CliRunner().invoke(cli, ["analyze", DEPLOYED + model + ".onnx", "--compare-source",
                                      DEPLOYED + source + ".onnx", *DIMS, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def comparison(model: str, source: str) -> dict:
    return json.loads(compared(model, source, "--format", "json"))["compare_source"]


@pytest.mark.parametrize("model, source, params, macs, integer_macs, weight_bytes, source_bytes, scale_bytes", [
    ("bert_int4", "bert_source", 81_856, 950_784, 0, 65_536 // 2 + 10_624 // 2 + 4 * 5_696, 4 * 81_856,
     4 * (2_048 + 332) + 1_024 + 166),
    ("bert_dynamic", "bert_source", 81_856, 950_784, 2 * 14 * (4 * 64 * 64 + 2 * 64 * 128) + 2 * 64 * 64,
     69_632 + 10_624 + 4 * 1_600, 4 * 81_856, 28),
    ("cnn_qdq", "cnn_source", 10_058, 12_681_856, 0, 9_968 + 4 * 90, 4 * 10_058, 105),
    ("bert_fp16", "bert_source", 81_856, 950_784, 0, 2 * 81_856, 4 * 81_856, 0),
])
def test_a_rewrite_has_its_sources_params_and_macs_in_fewer_bytes(model, source, params, macs, integer_macs,
                                                                  weight_bytes, source_bytes, scale_bytes):
    found = comparison(model, source)
    assert found["source"] == DEPLOYED + source + ".onnx"
    assert found["params"] == {"model": params, "source": params, "ratio": 1.0}
    assert found["macs"] == {"model": macs, "source": macs, "ratio": 1.0}
    assert found["integer_macs"] == {"model": integer_macs, "source": 0, "ratio": None}
    assert found["weight_bytes"] == {"model": weight_bytes, "source": source_bytes,
                                     "ratio": float(Fraction(weight_bytes, source_bytes))}
    assert found["weight_bytes"]["ratio"] < (0.6 if model.endswith("fp16") else 0.3)
    assert found["quantization_bytes"] == {"model": scale_bytes, "source": 0, "ratio": None}
    assert found["same_arithmetic"] is True and found["partial"] is False


def test_the_table_sets_each_figure_beside_the_sources():
    text = compared("bert_int4", "bert_source")
    assert f"Against the source {DEPLOYED}bert_source.onnx:" in text
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:5]]
            for line in text.splitlines() if line.startswith("│")}
    assert rows["Params"] == ["81,856", "81,856", "1.0000"]
    assert rows["MACs"] == ["950,784", "950,784", "1.0000"]
    assert rows["Integer MACs"] == ["0", "0", "-"]
    assert rows["Weight memory"] == ["59.44 KiB", "319.75 KiB", f"{60_864 / 327_424:.4f}"]
    assert rows["Scales, zero points"] == ["10.46 KiB", "0 B", "new"]
    assert "params and MACs equal the source's: the same arithmetic" in text


def test_a_different_model_is_said_to_differ():
    found = comparison("cnn_source", "bert_source")
    assert found["same_arithmetic"] is False
    assert "params or MACs differ from the source's" in compared("cnn_source", "bert_source")


def test_compare_source_refuses_other_formats():
    result = CliRunner().invoke(cli, ["analyze", DEPLOYED + "cnn_qdq.onnx", "--compare-source",
                                      DEPLOYED + "cnn_source.onnx", "--format", "csv"])
    assert result.exit_code == 2 and "--compare-source reports in table or json" in result.output


def test_a_missing_source_is_named(tmp_path):
    missing = str(tmp_path / "nowhere.onnx")
    result = CliRunner().invoke(cli, ["analyze", DEPLOYED + "cnn_qdq.onnx", "--compare-source", missing])
    assert result.exit_code == 2 and missing in result.output
    assert "Traceback" not in result.output
