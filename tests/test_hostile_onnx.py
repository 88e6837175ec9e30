"""Hostile ONNX files: huge but valid dimensions and names cost what small ones cost.

A blow-up is run as `archcalc analyze` in a subprocess under a time and an address-space
limit, so a regression fails the test instead of hanging the suite or the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import onnx
from onnx import TensorProto, helper
from onnx_models import make_model, tensor_input

# Generous: each case below takes about a second and well under 400 MB when it is right.
TIMEOUT_SECONDS = 60
MEMORY_LIMIT = 1 << 30
HUGE = 10_000_000


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args: str) -> subprocess.CompletedProcess:
    """`python -m archcalc ARGS` under the time and memory limits."""
    return subprocess.run([sys.executable, "-m", "archcalc", *args], capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS, preexec_fn=_limited)


def external_weight(name: str, dims: list[int]) -> TensorProto:
    """A float weight whose data sits in a file that does not exist: the model stays small,
    and analysis never reads weights."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "absent.bin"
    return tensor


def analyze_json(path: str) -> dict:
    result = run_limited("analyze", "--format", "json", path)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------
# receptive fields of huge kernels


def test_huge_transposed_kernel_field_is_computed_per_phase_not_per_tap(tmp_path):
    """Output o of a stride-2 transposed convolution with kernel K reads K/2 inputs: output 0
    those from -(K/2 - 1) to 0."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2])]
    model = make_model(nodes, [tensor_input("x", [1, 1, 4])], ["y"], [external_weight("w", [1, 1, HUGE])])
    path = str(tmp_path / "tconv.onnx")
    onnx.save(model, path)
    (layer,) = analyze_json(path)["layers"]
    assert layer["receptive_field"] == [{"size": HUGE // 2, "jump": 0.5, "start": -(HUGE // 2 - 1) / 2}]


def test_huge_kernel_after_upsampling_field_is_computed_per_phase_not_per_tap(tmp_path):
    """After a 2x upsampling (two output phases) a kernel of K reads K/2 + 1 inputs at most;
    output 0 those from 0 to K/2 - 1."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w_up"], ["u"], name="up", strides=[2]),
             helper.make_node("Conv", ["u", "w"], ["y"], name="conv", dilations=[1])]
    model = make_model(nodes, [tensor_input("x", [1, 1, HUGE])], ["y"],
                       [external_weight("w_up", [1, 1, 2]), external_weight("w", [1, 1, HUGE])])
    path = str(tmp_path / "up_conv.onnx")
    onnx.save(model, path)
    layers = analyze_json(path)["layers"]
    assert layers[1]["receptive_field"] == [{"size": HUGE // 2 + 1, "jump": 0.5, "start": (HUGE // 2 - 1) / 2}]
