"""Hostile or broken input files and interrupted writes: external-data locations that leave
the model's folder, a Loop that would run forever, an opset onnx does not know, and output
files that must never be left half-written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from archcalc.cli.main import cli

ROOT = Path(__file__).parent.parent
LENET = str(ROOT / "specs" / "lenet5.yaml")
WEIGHT = np.arange(4, dtype=np.float32)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def external_model(folder: Path, location: str, offset: str | None = None, length: str | None = None,
                   name: str = "model.onnx") -> str:
    """y = x + W, with W's data stored externally at `location` (offset, length as given)."""
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"], name="add")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, str(path))
    return str(path)


# -- 1. external data stays inside the model's folder -------------------------------------------

@pytest.fixture
def outside(tmp_path) -> Path:
    """A file beside, not inside, the model's folder, holding plausible weights."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(WEIGHT.tobytes())
    return secret


def assert_refused(result, path: str, location: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert path in result.output and "'W'" in result.output and repr(location) in result.output
    assert "fix:" in result.output


def test_a_location_above_the_model_folder_is_refused(tmp_path, outside):
    path = external_model(tmp_path / "model", "../secret.bin")
    assert_refused(invoke("verify", path), path, "../secret.bin")


def test_an_absolute_location_is_refused(tmp_path, outside):
    path = external_model(tmp_path / "model", str(outside))
    assert_refused(invoke("verify", path), path, str(outside))


def test_an_escaping_location_is_refused_even_when_its_target_is_missing(tmp_path):
    path = external_model(tmp_path / "model", "../../nowhere/weights.bin")
    assert_refused(invoke("verify", path), path, "../../nowhere/weights.bin")


def test_a_symlink_inside_the_folder_pointing_outside_is_refused(tmp_path, outside):
    path = external_model(tmp_path / "model", "weights.bin")
    os.symlink(outside, tmp_path / "model" / "weights.bin")
    result = invoke("verify", path)
    assert_refused(result, path, "weights.bin")
    assert "outside the model's folder" in result.output


def test_a_location_naming_a_directory_is_refused(tmp_path):
    path = external_model(tmp_path / "model", "sub")
    (tmp_path / "model" / "sub").mkdir()
    assert_refused(invoke("verify", path), path, "sub")


@pytest.mark.parametrize(("offset", "length"), [("64", None), ("abc", None), ("0", "-16"), ("-4", None),
                                                ("8", "16"), ("0", "8")])
def test_bad_offsets_and_lengths_are_refused(tmp_path, offset, length):
    path = external_model(tmp_path / "model", "weights.bin", offset, length)
    (tmp_path / "model" / "weights.bin").write_bytes(WEIGHT.tobytes())  # 16 bytes
    assert_refused(invoke("verify", path), path, "weights.bin")


def test_a_good_location_inside_the_folder_verifies(tmp_path):
    path = external_model(tmp_path / "model", "data/weights.bin", "16", "16")
    (tmp_path / "model" / "data").mkdir()
    (tmp_path / "model" / "data" / "weights.bin").write_bytes(b"\0" * 16 + WEIGHT.tobytes())
    result = invoke("verify", path)
    assert result.exit_code == 0, result.output
    assert "verify ok" in result.output


def test_a_symlink_inside_the_folder_to_a_file_inside_it_verifies(tmp_path):
    path = external_model(tmp_path / "model", "link.bin")
    (tmp_path / "model" / "weights.bin").write_bytes(WEIGHT.tobytes())
    os.symlink("weights.bin", tmp_path / "model" / "link.bin")
    assert invoke("verify", path).exit_code == 0


def test_a_missing_file_inside_the_folder_still_runs_on_generated_weights(tmp_path):
    path = external_model(tmp_path / "model", "absent.bin", "0", "16")
    result = invoke("verify", path)
    assert result.exit_code == 0, result.output


def test_the_stored_values_are_the_ones_run(tmp_path):
    """The checked path still reads the right bytes (not generated ones)."""
    from archcalc.engine.inference import analyze
    from archcalc.readers.load import load_model
    from archcalc.runtime import verify as verifier

    path = external_model(tmp_path / "model", "weights.bin", "0", "16")
    (tmp_path / "model" / "weights.bin").write_bytes(WEIGHT.tobytes())
    graph = load_model(path, {})
    model = verifier.model_for(graph, analyze(graph, {}))
    (stored,) = model.graph.initializer
    assert onnx.numpy_helper.to_array(stored).tolist() == WEIGHT.tolist()


def test_a_constant_with_escaping_external_data_is_refused(tmp_path, outside):
    """Tensors outside the main initializers (a Constant's value) follow the same rule."""
    value = TensorProto(name="c", data_type=TensorProto.FLOAT, dims=[4])
    value.data_location = TensorProto.EXTERNAL
    entry = value.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    nodes = [helper.make_node("Constant", [], ["c"], name="const", value=value),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "model").mkdir()
    path = str(tmp_path / "model" / "const.onnx")
    onnx.save(model, path)
    result = invoke("verify", path)
    assert result.exit_code == 2, result.output
    assert "'../secret.bin'" in result.output and "Traceback" not in result.output
