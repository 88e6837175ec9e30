"""Rules read no input value they do not declare (Rule.reads_values): every call such a rule
gets while the bundled specs, a spread of committed fixtures and onnx's own node test cases
are analysed is repeated with a value given to each undeclared input, and must not change.
See tests/value_reads.py for why the engine relies on it."""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from value_reads import recorded_calls, undeclared_reads

from archcalc.core.errors import ArchcalcError
from archcalc.engine.inference import analyze
from archcalc.readers.load import load_model
from archcalc.readers.onnx import load_onnx
from archcalc.rules.base import Rule, RuleResult, rule_for

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "onnx"
# Between them: convolutions, norms, pooling, attention as MatMul and Einsum, LSTM, fused
# attention from the dynamo exporter.
SOME_FIXTURES = ["resnet18_torchscript_nofold", "mobilenet_v2_dynamo", "swin_t_dynamo", "keras_encoder_tf2onnx",
                 "keras_text_lstm_tf2onnx", "vit_small_dynamo_noopt", "squeezenet1_1_torchscript"]
# onnxruntime's rewrites (tests/fixtures/deployed): its com.microsoft transformer, fused and quantised ops.
DEPLOYED = ROOT / "tests" / "fixtures" / "deployed"
SOME_DEPLOYED = ["bert_optimized_dynamic", "bert_dynamic_extended", "bert_int4", "cnn_qoperator", "cnn_extended",
                 "gpt2_optimized", "qwen3_optimized_int4"]


def _node_suite_models(tmp_path: Path) -> list[Path]:
    """onnx's node test cases of ops whose rule declares its value reads, with every input of
    at most 16 elements made an initializer, so the reader gives it a value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        cases = collect_testcases(None)
    paths = []
    for case in cases:
        model = case.model
        if model is None or not case.data_sets or not any(
                (rule := rule_for(n.domain, n.op_type)) is not None and rule.reads_values is not None
                for n in model.graph.node):
            continue
        model = onnx.ModelProto.FromString(model.SerializeToString())
        given = case.data_sets[0][0]
        for value_info, array in zip(list(model.graph.input), given):
            if isinstance(array, np.ndarray) and array.size <= 16 and array.dtype != object:
                model.graph.initializer.append(numpy_helper.from_array(array, value_info.name))
                model.graph.input.remove(value_info)
        path = tmp_path / f"{case.name}.onnx"
        onnx.save(model, path)
        paths.append(path)
    return paths


def test_rules_read_only_the_values_they_declare(tmp_path):
    models = [ROOT / "specs" / p.name for p in sorted((ROOT / "specs").glob("*.yaml"))]
    with recorded_calls() as calls:
        for spec in models:
            analyze(load_model(str(spec)))
        for name in SOME_FIXTURES:
            dims = json.loads((FIXTURES / f"{name}.json").read_text()).get("dims") or {}
            analyze(load_onnx(str(FIXTURES / f"{name}.onnx")), dims)
        for name in SOME_DEPLOYED:
            dims = json.loads((DEPLOYED / f"{name}.json").read_text())["dims"]
            analyze(load_onnx(str(DEPLOYED / f"{name}.onnx")), dims)
        for path in _node_suite_models(tmp_path):
            # A case archcalc refuses (e.g. an unsupported dtype) makes no call to check.
            with contextlib.suppress(ArchcalcError):
                analyze(load_onnx(str(path)))
    ops = {rule.op for rule, *_ in calls}
    # The corpus reaches the ops the cache matters for: a shrinking corpus is a weaker test.
    assert {"Conv", "BatchNormalization", "Gemm", "MatMul", "LayerNormalization", "Relu", "MaxPool", "LSTM",
            "Softmax", "Einsum", "ConvTranspose", "QLinearConv", "Attention", "QAttention", "MatMulNBits",
            "GatherBlockQuantized", "DynamicQuantizeMatMul", "QGemm", "QLinearAdd", "FusedConv",
            "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization"} <= ops
    assert undeclared_reads(calls) == []


def _reads_its_second_input(inputs, *, scale=1) -> RuleResult:
    from archcalc.rules.base import Output

    shape = tuple(inputs[0].shape)
    return RuleResult(outputs=(Output(shape),), flops=sum(inputs[1].value or (0,)))


@pytest.mark.parametrize("declared, expected", [((), 1), ((1,), 0)])
def test_a_rule_reading_an_undeclared_value_is_found(declared, expected):
    """The check can fail: a rule whose FLOPs use input 1's value, declared as reading none."""
    from archcalc.rules.base import TensorState

    rule = Rule("Probe", _reads_its_second_input, frozenset({"scale"}), "", reads_values=declared)
    call = (rule, [TensorState((2, 3)), TensorState((4,), "float32", (1.0, 2.0, 3.0, 4.0))], {}, None)
    assert len(undeclared_reads([call])) == expected
