"""Decoders exported with their cache AND an attention mask [batch, past_seq + seq] and position
ids [batch, seq], as real exports take them (tests/fixtures/decoders: qwen3_mask and gpt2_mask,
the models of test_decoder_cache.py, recorded by make_decoder_fixtures.py). The mask's length is
a symbol of its own (`total_sequence_length`; GPT-2's `past_sequence_length + 1`, as optimum
names it), tied by kv.StepDims to past_seq + seq: prefill and decode are costed and their
bindings equal the ones onnxruntime ran (the generator's, each run's total = past + seq)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx_models import shape_mismatches

import archcalc
from archcalc.cli.main import cli
from archcalc.engine.kv import StepDims, generation, kv_cache
from archcalc.engine.symbolic import analyze_unbound

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures/decoders"
TOTAL = {"qwen3_mask": "total_sequence_length", "gpt2_mask": "past_sequence_length + 1"}
# Hand figures at batch 2 (written out in test_decoder_cache.py for the same models without a mask:
# the mask adds no matrix product).
# Qwen3: weight MACs per token 2 layers x 36,864; QK^T and AV 2 layers x 2 x 4 heads x new x (past + new) x 16.
# GPT-2: weight MACs per token 98,304; QK^T and AV 256 x new x (past + new).
PREFILL_7 = {"qwen3_mask": 2 * 7 * 2 * 36_864 + 2 * 2 * 2 * 4 * 7 * 7 * 16,  # 1,032,192 + 25,088
             "gpt2_mask": 2 * 7 * 98_304 + 2 * 256 * 7 * 7}  # 1,376,256 + 25,088
DECODE_9 = {"qwen3_mask": 2 * 1 * 2 * 36_864 + 2 * 2 * 2 * 4 * 1 * 10 * 16,  # 147,456 + 5,120
            "gpt2_mask": 2 * 1 * 98_304 + 2 * 256 * 1 * 10}  # 196,608 + 5,120


def record(stem: str) -> dict:
    return json.loads((FIXTURES / f"{stem}.json").read_text())


def path(stem: str) -> str:
    return str(FIXTURES / f"{stem}.onnx")


def test_the_fixtures_take_a_mask_of_their_own_length_and_positions():
    """What the rule is for: the mask's second dim is neither the tokens' nor the past's."""
    for stem, total in TOTAL.items():
        inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                  for i in onnx.load(path(stem), load_external_data=False).graph.input}
        assert inputs["input_ids"] == ["batch", "seq"] == inputs["position_ids"]
        assert inputs["attention_mask"] == ["batch", total]
        assert inputs["past_key_values.0.key"][2] == "past_seq"


@pytest.mark.parametrize("stem", list(TOTAL))
def test_step_dims_tie_the_mask_to_past_plus_seq(stem):
    cache = kv_cache(analyze_unbound(archcalc.load(path(stem)), {}))
    assert cache is not None and cache.source == "past key/value inputs"
    assert cache.step == StepDims("seq", "past_seq", (("attention_mask", TOTAL[stem]),), ())
    assert (cache.seq, cache.past, cache.tied) == ("seq", "past_seq", (TOTAL[stem],))
    # The bindings of each run equal the generator's (total = past_seq + seq, fed to onnxruntime).
    for run, (new, past) in (("prefill", (7, 0)), ("decode", (1, 9))):
        dims = record(stem)["runs"][run]["dims"]
        assert {"batch": 2, **cache.step.bindings(new, past)} == dims


@pytest.mark.parametrize("stem", list(TOTAL))
def test_prefill_and_decode_equal_the_bound_analysis_torch_and_hand(stem):
    """Prefill of 7 tokens (total = 7) and a token decoded with 9 cached (total = 10), batch 2."""
    r = record(stem)
    graph = archcalc.load(path(stem))
    unbound = analyze_unbound(graph, {})
    result = generation(unbound, {"batch": 2}, graph.batch_dims, 7, None)
    assert result.prefill_bindings == {"seq": 7, "past_seq": 0, TOTAL[stem]: 7}
    prefill = archcalc.analyze(graph, dims={"batch": 2, **result.prefill_bindings}).totals
    assert result.prefill.macs == prefill.macs == r["runs"]["prefill"]["macs"] == PREFILL_7[stem]
    assert result.prefill.peak_activation_bytes == prefill.peak_activation_bytes
    result = generation(unbound, {"batch": 2}, graph.batch_dims, 9, None)
    assert result.decode_bindings == {"seq": 1, "past_seq": 9, TOTAL[stem]: 10}
    step = archcalc.analyze(graph, dims={"batch": 2, **result.decode_bindings}).totals
    assert result.decode.macs == step.macs == r["runs"]["decode"]["macs"] == DECODE_9[stem]
    # the same figures as the export without a mask
    unmasked = record(stem.replace("_mask", "_cache"))["runs"]
    assert (PREFILL_7[stem], DECODE_9[stem]) == (unmasked["prefill"]["macs"], unmasked["decode"]["macs"])


def _renamed(tmp_path, stem: str, dims: dict[tuple[str, int], str]) -> str:
    """The fixture with some inputs' dims renamed ((input, axis) -> name): another exporter's names."""
    model = onnx.load(path(stem), load_external_data=False)
    for graph_input in model.graph.input:
        for (name, axis), dim in dims.items():
            if graph_input.name == name:
                graph_input.type.tensor_type.shape.dim[axis].dim_param = dim
    out = tmp_path / f"{stem}.onnx"
    out.write_bytes(model.SerializeToString())
    return str(out)


def test_position_ids_with_a_length_of_their_own_are_bound_with_seq(tmp_path):
    """torch's default names (`attention_mask_dim_1`, `position_ids_dim_1`): the positions' own
    symbol is bound to seq, the mask's to past_seq + seq, and the counts are the fixture's."""
    renamed = _renamed(tmp_path, "qwen3_mask", {("attention_mask", 1): "attention_mask_dim_1",
                                                ("position_ids", 1): "position_ids_dim_1"})
    graph = archcalc.load(renamed)
    unbound = analyze_unbound(graph, {})
    cache = kv_cache(unbound)
    assert cache.step == StepDims("seq", "past_seq", (("attention_mask", "attention_mask_dim_1"),),
                                  (("position_ids", "position_ids_dim_1"),))
    result = generation(unbound, {"batch": 2}, graph.batch_dims, 9, None)
    assert result.decode_bindings == {"seq": 1, "past_seq": 9, "attention_mask_dim_1": 10, "position_ids_dim_1": 1}
    assert result.decode.macs == DECODE_9["qwen3_mask"]
    analysis = archcalc.analyze(renamed, dims={"batch": 2, **result.decode_bindings})
    r = record("qwen3_mask")["runs"]["decode"]
    actual = {name: tuple(shape) for name, shape in r["shapes"].items()}
    assert shape_mismatches(analysis, actual, {"batch": 2, **result.decode_bindings}) == []


def test_a_mask_is_tied_only_when_integer_rank_2_and_of_its_own_length(tmp_path):
    """A float 'attention_mask' is not a mask of tokens; one whose length another input shares is no
    length of its own: neither is tied, and the steps' dims are then not found (no prefill cost)."""
    model = onnx.load(path("qwen3_mask"), load_external_data=False)
    mask = next(i for i in model.graph.input if i.name == "attention_mask")
    mask.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    out = tmp_path / "float_mask.onnx"
    out.write_bytes(model.SerializeToString())
    cache = kv_cache(analyze_unbound(archcalc.load(str(out)), {}))
    assert cache.step is None and cache.seq is None
    shared = _renamed(tmp_path, "qwen3_mask", {("attention_mask", 1): "past_seq"})
    cache = kv_cache(analyze_unbound(archcalc.load(shared), {}))
    assert cache.step is None  # past_seq would then be a dim of the token inputs too: no past of its own


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_cli_says_which_inputs_were_bound_to_what():
    out = run("analyze", path("gpt2_mask"), "--context", "9", "--batch", "2")
    assert "attention_mask's 'past_sequence_length + 1' = past_seq + seq" in out
    assert "Bound for prefill       seq=9, past_seq=0, 'past_sequence_length + 1'=9" in out
    assert "Bound for decode        seq=1, past_seq=9, 'past_sequence_length + 1'=10" in out
    assert f"{DECODE_9['gpt2_mask']:,} MACs" in out
    document = json.loads(run("analyze", path("qwen3_mask"), "--context", "9", "--batch", "2", "--format", "json"))
    g = document["generation"]
    assert g["step_dims"] == {"new_tokens": "seq", "past": "past_seq", "new": [],
                              "past_plus_new": [{"input": "attention_mask", "dim": "total_sequence_length"}]}
    assert g["prefill"]["bindings"] == {"past_seq": 0, "seq": 9, "total_sequence_length": 9}
    assert g["decode"]["bindings"] == {"past_seq": 9, "seq": 1, "total_sequence_length": 10}
    assert g["decode"]["macs_per_token"] == DECODE_9["qwen3_mask"]
    # the table's counts at the prompt: every dim bound, the mask's too
    assert document["bindings"] == {"batch": 2, "past_seq": 0, "seq": 9, "total_sequence_length": 9}
    out = run("analyze", path("qwen3_mask"), "--context", "9", "--dim", "total_sequence_length=3")
    assert "total_sequence_length is bound by --dim" in out
