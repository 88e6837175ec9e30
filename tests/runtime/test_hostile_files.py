"""Hostile or broken input files and interrupted writes: external-data locations that leave
the model's folder, a Loop that would run forever, an opset onnx does not know, and output
files that must never be left half-written."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from archcalc.cli.main import cli

ROOT = Path(__file__).parents[2]
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


# -- 4. no half-written files ------------------------------------------------------------------

class Interrupted(Exception):
    """Stands for a crash (or a kill) in the middle of writing."""


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from archcalc.core.files import atomic_write

    target = tmp_path / "report.txt"
    target.write_text("old report\n")
    with pytest.raises(Interrupted), atomic_write(str(target)) as handle:
        handle.write("new, half")
        handle.flush()
        raise Interrupted
    assert target.read_text() == "old report\n"
    assert os.listdir(tmp_path) == ["report.txt"]


def test_atomic_write_replaces_appends_and_keeps_permissions(tmp_path):
    from archcalc.core.files import atomic_write

    target = tmp_path / "summary.md"
    target.write_text("first\n")
    target.chmod(0o640)
    with atomic_write(str(target), "a") as handle:
        handle.write("second\n")
    assert target.read_text() == "first\nsecond\n"
    assert target.stat().st_mode & 0o777 == 0o640
    with atomic_write(str(target), "wb") as handle:
        handle.write(b"bytes")
    assert target.read_bytes() == b"bytes" and os.listdir(tmp_path) == ["summary.md"]


def test_atomic_write_through_a_symlink_updates_its_target(tmp_path):
    from archcalc.core.files import atomic_write

    (tmp_path / "real.txt").write_text("old")
    os.symlink("real.txt", tmp_path / "link.txt")
    with atomic_write(str(tmp_path / "link.txt")) as handle:
        handle.write("new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"


def test_atomic_write_errors_name_the_target_not_the_temporary_file(tmp_path):
    from archcalc.core.files import atomic_write

    missing = str(tmp_path / "missing" / "out.txt")
    with pytest.raises(FileNotFoundError) as raised, atomic_write(missing):
        pass
    assert raised.value.filename == missing
    with pytest.raises(IsADirectoryError) as raised, atomic_write(str(tmp_path)):
        pass
    assert raised.value.filename == str(tmp_path) and os.listdir(tmp_path) == []


def test_export_external_writes_both_files_and_no_temporary_ones(tmp_path):
    path = tmp_path / "lenet5.onnx"
    result = invoke("export", LENET, "-o", str(path), "--weights", "external")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ["lenet5.onnx", "lenet5.onnx.data"]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)  # loads the data it points to


@pytest.mark.parametrize("weights", ["random", "external"])
def test_an_export_that_fails_mid_write_leaves_the_previous_export_whole(tmp_path, monkeypatch, weights):
    from archcalc.runtime import export

    path = tmp_path / "lenet5.onnx"
    assert invoke("export", LENET, "-o", str(path), "--weights", weights).exit_code == 0
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    if weights == "external":  # weights drawn as the data file is written: crash a few tensors in
        real = export.weight_values
        calls = []

        def failing(*args, **kwargs):
            calls.append(1)
            if len(calls) > 3:
                raise Interrupted
            return real(*args, **kwargs)

        monkeypatch.setattr(export, "weight_values", failing)
    else:  # weights inline, drawn before writing: crash once the bytes are written, before they are synced
        def crash(*args):
            raise Interrupted

        monkeypatch.setattr(os, "fsync", crash)
    result = invoke("export", LENET, "-o", str(path), "--weights", weights, "--batch", "2")
    assert isinstance(result.exception, Interrupted)
    monkeypatch.undo()
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_a_check_report_that_fails_mid_write_leaves_the_old_report(tmp_path, monkeypatch):
    from archcalc.report import check as check_output

    budget = tmp_path / "budget.yaml"
    budget.write_text("total:\n  params: 10M\n")
    report = tmp_path / "report.txt"
    report.write_text("the previous report\n")

    def half_render(checks, console, **kwargs):
        console.print("half a table")
        console.file.flush()
        raise Interrupted

    monkeypatch.setattr(check_output, "render_table", half_render)
    result = invoke("check", LENET, "--budget", str(budget), "-o", str(report))
    assert isinstance(result.exception, Interrupted)
    assert report.read_text() == "the previous report\n"
    assert sorted(os.listdir(tmp_path)) == ["budget.yaml", "report.txt"]


# -- 3. an opset the installed onnx does not know ----------------------------------------------

def test_an_opset_newer_than_onnx_knows_is_bad_input(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    path = tmp_path / "lenet5.onnx"
    result = invoke("export", LENET, "-o", str(path), "--opset", str(newest + 2))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, ValueError)
    assert f"opset {newest + 2}" in result.output and f"supports opsets 13 to {newest}" in result.output
    assert "fix: pass --opset between 13 and" in result.output
    assert not path.exists()


def test_the_newest_opset_onnx_knows_is_written(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    path = tmp_path / "lenet5.onnx"
    result = invoke("export", LENET, "-o", str(path), "--opset", str(newest))
    assert result.exit_code == 0, result.output
    assert onnx.load(str(path)).opset_import[0].version == newest


# -- 2. a Loop that would run for ever -------------------------------------------------------

def copying_loop(path: Path, trips: int) -> str:
    """y = x passed through a Loop of `trips` iterations whose body only copies (no FLOPs)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
         helper.make_node("Identity", ["h"], ["h_out"], name="pass")],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1])])
    graph = helper.make_graph([helper.make_node("Loop", ["M", "", "x"], ["y"], name="loop", body=body)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              initializer=[onnx.numpy_helper.from_array(np.array(trips, np.int64), "M")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def _limit_cpu() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (120, 120))  # a regression dies instead of spinning


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archcalc", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, preexec_fn=_limit_cpu)


def test_a_loop_of_1e15_trips_is_refused_before_it_runs(tmp_path):
    path = copying_loop(tmp_path / "loop.onnx", 10**15)
    result = run_cli("verify", path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert path in result.stderr and "2e15 FLOPs" in result.stderr and "--max-work 2e15" in result.stderr


def test_max_work_lets_a_loop_run_and_refuses_a_spec_over_it(tmp_path):
    path = copying_loop(tmp_path / "loop.onnx", 10)
    assert invoke("verify", path).exit_code == 0
    assert invoke("verify", path, "--max-work", "19").exit_code == 2  # 2 body layers x 10 trips
    assert invoke("verify", path, "--max-work", "20").exit_code == 0
    result = invoke("verify", LENET, "--max-work", "1K")
    assert result.exit_code == 2 and "over the --max-work limit of 1e3" in result.output
    assert "--max-work 8.6e5" in result.output
    assert invoke("verify", LENET, "--max-work", "8.6e5").exit_code == 0
    bad = invoke("verify", LENET, "--max-work", "lots")
    assert bad.exit_code == 2 and "--max-work" in bad.output


def test_every_bundled_spec_is_under_the_default_work_limit():
    from archcalc.readers.load import load_model
    from archcalc.runtime import verify as verifier

    # A factor of 3 to spare for the largest: Llama-3.2-1B at 128 tokens and GPT-2 at 1024
    # take about 3e11 FLOPs (the CNNs at 224x224 at most 4e10).
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        analysis = verifier.analyze_for_verify(load_model(str(spec), {}), {})
        assert verifier.estimate_run_work(analysis) < verifier.DEFAULT_MAX_WORK / 3, spec.name


def test_the_onnxruntime_profile_goes_to_the_verifier_scratch_folder(monkeypatch, tmp_path):
    """Not to the working directory, where a killed run would leave it."""
    from archcalc.runtime import verify as verifier

    monkeypatch.chdir(tmp_path)
    paths = []
    real = verifier.node_times_us

    def recording(path, skip_runs=0):
        paths.append(path)
        return real(path, skip_runs)

    monkeypatch.setattr(verifier, "node_times_us", recording)
    assert invoke("verify", LENET, "--profile").exit_code == 0
    (path,) = paths
    assert os.path.basename(os.path.dirname(path)).startswith("archcalc-verify-") and os.listdir(tmp_path) == []


def test_a_sparse_constant_with_escaping_external_values_is_refused(tmp_path, outside):
    values = TensorProto(name="S_values", data_type=TensorProto.FLOAT, dims=[2])
    values.data_location = TensorProto.EXTERNAL
    entry = values.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    indices = onnx.numpy_helper.from_array(np.array([0, 2], np.int64), "S_indices")
    nodes = [helper.make_node("Constant", [], ["S"], name="const",
                              sparse_value=helper.make_sparse_tensor(values, indices, [4])),
             helper.make_node("Add", ["x", "S"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "model").mkdir()
    path = str(tmp_path / "model" / "sparse.onnx")
    onnx.save(model, path)
    result = invoke("verify", path)
    assert result.exit_code == 2, result.output
    assert "'S_values'" in result.output and "'../secret.bin'" in result.output


def test_weights_no_file_or_disk_can_hold_are_refused_before_any_allocation(tmp_path):
    """lenet5 with dense: 10**12 holds 400 x 1e12 float32 weights, 1.6 PB: inline it is over
    protobuf's 2 GiB, external over any disk's free space; refused, not a MemoryError."""
    spec = tmp_path / "big.yaml"
    spec.write_text((ROOT / "specs" / "lenet5.yaml").read_text().replace("dense: 120", "dense: 1000000000000"))
    for weights, said in (("random", "more than the 2 GiB one ONNX file can hold"), ("zeros", "2 GiB"),
                          ("external", "free in")):
        result = CliRunner().invoke(cli, ["export", str(spec), "-o", str(tmp_path / "big.onnx"), "--weights", weights])
        assert result.exit_code == 2, result.output
        assert said in result.output and "fix:" in result.output
    assert not (tmp_path / "big.onnx").exists()
    omitted = CliRunner().invoke(cli, ["export", str(spec), "-o", str(tmp_path / "big.onnx"), "--weights", "omit"])
    assert omitted.exit_code == 0, omitted.output


def test_external_weights_are_written_in_chunks_of_whole_rows(tmp_path, monkeypatch):
    """A tensor larger than a write chunk is written in pieces: the same bytes on disk as
    its shape says, and a model onnxruntime runs."""
    import archcalc.runtime.export as export

    monkeypatch.setattr(export, "WRITE_CHUNK", 1000)  # fc layers of lenet5 are larger than this
    out = tmp_path / "lenet.onnx"
    result = CliRunner().invoke(cli, ["export", str(ROOT / "specs" / "lenet5.yaml"), "-o", str(out),
                                      "--weights", "external"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lenet.onnx.data").stat().st_size == 4 * 61706  # every param, float32, once
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0
