"""`analyze --device` in every format, `--weight-dtype`, `--fit device`, and the bad-input paths."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import cli
from archcalc.hardware.device import load_device
from archcalc.hardware.roofline import roofline, setup_for

RESNET50 = "specs/resnet50.yaml"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "160"})


def test_table_has_bound_and_time_and_the_latency():
    result = run("analyze", RESNET50, "--device", "a100", "--precision", "fp16", "--batch", "32")
    assert result.exit_code == 0, result.output
    assert "Bound" in result.output and "Time" in result.output
    conv1 = next(line for line in result.output.splitlines() if line.startswith("│ conv1 "))
    assert "memory" in conv1 and "33.93 us" in conv1  # (61,032,832 B / 2039 GB/s) + 4 us, test_roofline
    assert "Estimated latency" in result.output and "at batch 32" in result.output
    assert "NVIDIA A100 80GB SXM" in result.output and "Time by op" in result.output


def test_json_carries_the_roofline_and_matches_the_api():
    result = run("analyze", RESNET50, "--device", "a100", "--precision", "fp16", "--batch", "32",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert {"totals", "layers", "tensors", "warnings"} <= set(document)  # the stable keys stay
    roof = document["roofline"]
    expected = roofline(archcalc.analyze(RESNET50, batch=32), load_device("a100"),
                        setup_for(load_device("a100"), "fp16"))
    assert roof["device"] == "a100" and roof["compute_dtype"] == "fp16" and roof["batch"] == 32
    assert roof["latency_s"] == pytest.approx(expected.latency_s)
    assert roof["throughput_per_s"] == pytest.approx(32 / expected.latency_s)
    assert len(roof["layers"]) == 175
    conv1 = roof["layers"][0]
    assert (conv1["name"], conv1["bound"], conv1["bytes_read"] + conv1["bytes_written"]) == ("conv1", "memory",
                                                                                            61_032_832)
    assert roof["inference_fits"] is True


def test_csv_and_markdown_add_the_device_columns():
    result = run("analyze", "specs/lenet5.yaml", "--device", "t4", "--precision", "int8", "--weight-dtype", "int4",
                 "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    conv1 = rows[0]
    # LeNet-5 conv1: input 1x32x32 at int8 (1 byte), weight 6x1x5x5 + bias 6 = 156 params at 4 bits,
    # output 6x28x28 at 1 byte.
    assert int(conv1["bytes_read"]) == 1024 + 156 // 2
    assert int(conv1["bytes_written"]) == 6 * 28 * 28
    assert conv1["bound"] == "memory"
    assert float(conv1["time_s"]) == pytest.approx((1024 + 78 + 4704) / 320e9 + 4e-6, rel=1e-5)
    flatten = next(row for row in rows if row["op"] == "Flatten")
    assert (flatten["bound"], flatten["time_s"]) == ("view", "0")
    markdown = run("analyze", "specs/lenet5.yaml", "--device", "t4", "--format", "markdown")
    assert markdown.exit_code == 0
    assert "### Roofline on NVIDIA T4" in markdown.output and "| Estimated latency |" in markdown.output


def test_fit_device_gives_training_and_inference_batches():
    result = run("analyze", RESNET50, "--device", "t4", "--precision", "fp16", "--fit", "device", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    roof = document["roofline"]
    capacity = 16 * 10**9
    assert document["fit"]["memory_bytes"] == capacity
    batch = roof["largest_training_batch"]
    assert batch == document["fit"]["largest_batch"] and roof["largest_training_batch_memory_bytes"] <= capacity
    # Inference: weights + peak activations is affine in the batch; the answer is the largest that fits.
    inference = roof["largest_inference_batch"]
    device = load_device("t4")
    setup = setup_for(device, "fp16")

    def needed(n: int) -> int:
        return roofline(archcalc.analyze(RESNET50, batch=n), device, setup).inference_bytes

    assert needed(inference) <= capacity < needed(inference + 1)
    assert inference > batch  # inference keeps no activations for backward


@pytest.mark.parametrize(("args", "message"), [
    (("--fit", "device"), "--fit device needs --device"),
    (("--weight-dtype", "int8"), "--weight-dtype needs --device"),
    (("--device", "t4", "--precision", "bf16"), "t4 (archcalc/hardware/devices/t4.yaml) gives no bf16 peak"),
    (("--device", "a100", "--precision", "int8", "--training"), "a training step at int8 is not modelled"),
])
def test_bad_device_options_are_exit_2(args, message):
    result = run("analyze", "specs/lenet5.yaml", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "fix:" in result.output
