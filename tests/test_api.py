"""The Python API: the same numbers as the CLI, the same errors, and a light `import archcalc`."""

from __future__ import annotations

import json
import subprocess
import sys

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
