"""Sequence-model rules pinned by hand: Attention (MHA, GQA, MQA, 3-D and 4-D, past keys),
LSTM / GRU / RNN (one and two directions) and RMSNormalization.

Each expected value is written as its formula. Recurrent params are compared with
torch's published counts: nn.LSTM(input, hidden) holds 4*hidden*(input + hidden) +
8*hidden values (W_ih, W_hh and two biases), nn.GRU 3*hidden*(input + hidden) +
6*hidden, nn.RNN hidden*(input + hidden) + 2*hidden; ONNX's B holds both biases.
"""

from __future__ import annotations

import math

import onnx
import onnx_models
import pytest
from onnx import helper
from ort_helpers import OMITTED, Arg, data, run_rule, weight

from archcalc.core.dims import Sym, bind
from archcalc.core.errors import ShapeError, UnknownValue
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx
from archcalc.rules.base import TensorState, get_rule

SOFTMAX, SCALE, MASK, SOFTCAP = 5, 1, 1, 3  # FLOPs per attention score


def params(result, args: list[Arg]) -> int:
    """What the engine counts for the rule's weight inputs (each a distinct initializer here)."""
    return sum(math.prod(args[i].shape) for i in result.weights if i < len(args) and args[i].kind != "omitted")


# ---------------------------------------------------------------------------------------
# Attention


def test_attention_4d_multi_head():
    batch, heads, q_seq, kv_seq, head, v_head = 2, 4, 5, 6, 8, 3
    result = run_rule("Attention", [data(batch, heads, q_seq, head), data(batch, heads, kv_seq, head),
                                    data(batch, heads, kv_seq, v_head)], {})
    scores = batch * heads * q_seq * kv_seq
    assert result.outputs[0].shape == (batch, heads, q_seq, v_head)
    assert result.macs == batch * heads * q_seq * kv_seq * (head + v_head)
    assert result.flops == 2 * result.macs + (SCALE + SOFTMAX) * scores
    assert result.weights == ()  # Q, K and V are activations


def test_attention_3d_grouped_query():
    # 8 query heads share 2 key/value heads: the products are as large as with 8 of each.
    batch, seq, q_heads, kv_heads, head = 2, 7, 8, 2, 16
    args = [data(batch, seq, q_heads * head), data(batch, seq, kv_heads * head), data(batch, seq, kv_heads * head)]
    result = run_rule("Attention", args, {"q_num_heads": q_heads, "kv_num_heads": kv_heads, "is_causal": 1})
    assert result.outputs[0].shape == (batch, seq, q_heads * head)
    assert result.outputs[1].shape == (batch, kv_heads, seq, head)  # present_key
    assert result.outputs[3].shape == (batch, q_heads, seq, seq)  # qk_matmul_output
    assert result.macs == batch * q_heads * seq * seq * (head + head)
    assert result.flops == 2 * result.macs + (SCALE + SOFTMAX + MASK) * batch * q_heads * seq * seq


def test_attention_multi_query_with_past_keys_and_softcap():
    batch, q_heads, q_seq, new, past, head = 1, 4, 1, 1, 9, 8
    args = [data(batch, q_heads, q_seq, head), data(batch, 1, new, head), data(batch, 1, new, head), OMITTED,
            data(batch, 1, past, head), data(batch, 1, past, head)]
    result = run_rule("Attention", args, {"softcap": 50.0})
    total = past + new
    assert result.outputs[1].shape == (batch, 1, total, head)
    assert result.macs == batch * q_heads * q_seq * total * (head + head)
    assert result.flops == 2 * result.macs + (SCALE + SOFTMAX + SOFTCAP) * batch * q_heads * q_seq * total


def test_attention_symbolic_batch_and_sequence():
    batch, seq = Sym.symbol("batch"), Sym.symbol("seq")
    q = TensorState((batch, 4, seq, 8))
    result = get_rule("Attention")([q, q, q], {})
    assert result.outputs[0].shape == (batch, 4, seq, 8)
    assert bind(result.macs, {"batch": 3, "seq": 10}) == 3 * 4 * 10 * 10 * (8 + 8)


@pytest.mark.parametrize(("args", "attrs", "message"), [
    ([data(1, 6, 5, 8), data(1, 4, 5, 8), data(1, 4, 5, 8)], {}, "6 query heads for 4"),
    ([data(1, 5, 32), data(1, 5, 32), data(1, 5, 32)], {}, "number of heads is not given"),
    ([data(1, 5, 30), data(1, 5, 32), data(1, 5, 32)], {"q_num_heads": 4, "kv_num_heads": 4}, "not divisible"),
    ([data(1, 2, 5, 8), data(1, 2, 5, 4), data(1, 2, 5, 8)], {}, "head size 8 differs from K's 4"),
    ([data(1, 2, 5, 8), data(1, 2, 5, 8), data(1, 2, 6, 8)], {}, "K has 5 positions and V 6"),
], ids=["heads-not-multiple", "3d-without-heads", "hidden-not-divisible", "head-size", "kv-length"])
def test_attention_rejects_inconsistent_inputs(args, attrs, message):
    with pytest.raises(ShapeError, match=message):
        run_rule("Attention", args, attrs)


def test_rotary_embedding_counts_rotated_elements_only():
    batch, heads, seq, head, rotated = 2, 4, 5, 16, 8
    result = run_rule("RotaryEmbedding", [data(batch, heads, seq, head), data(batch, seq, rotated // 2),
                                          data(batch, seq, rotated // 2)], {"rotary_embedding_dim": rotated})
    assert result.macs == 0
    assert result.flops == 3 * batch * heads * seq * rotated  # 6 per rotated pair


# ---------------------------------------------------------------------------------------
# recurrent


def recurrent_args(op: str, seq: int, batch: int, features: int, hidden: int, dirs: int, *,
                   bias: bool = True, peepholes: bool = False) -> list[Arg]:
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    args = [data(seq, batch, features), weight(dirs, gates * hidden, features),
            weight(dirs, gates * hidden, hidden), weight(dirs, 2 * gates * hidden) if bias else OMITTED]
    if peepholes:
        args += [OMITTED, weight(dirs, hidden), weight(dirs, hidden), weight(dirs, 3 * hidden)]
    return args


SEQ, BATCH, FEATURES, HIDDEN = 7, 3, 10, 20
DIRECTIONS = [pytest.param("forward", 1, id="forward"), pytest.param("bidirectional", 2, id="bidirectional")]


@pytest.mark.parametrize(("direction", "dirs"), DIRECTIONS)
def test_lstm(direction, dirs):
    seq, batch, features, hidden = SEQ, BATCH, FEATURES, HIDDEN
    args = recurrent_args("LSTM", seq, batch, features, hidden, dirs)
    result = run_rule("LSTM", args, {"hidden_size": hidden, "direction": direction})
    assert [o.shape for o in result.outputs] == [(seq, dirs, batch, hidden), (dirs, batch, hidden),
                                                (dirs, batch, hidden)]
    assert params(result, args) == dirs * (4 * hidden * (features + hidden) + 8 * hidden)  # torch's nn.LSTM
    assert result.macs == seq * batch * dirs * 4 * hidden * (features + hidden)
    # per unit and step: 3 sigmoids (4) + 2 tanh (1) + c, h updates (4) + 8 bias adds
    assert result.flops == 2 * result.macs + seq * batch * dirs * hidden * (3 * 4 + 2 * 1 + 4 + 8)


def test_lstm_peepholes_are_params_and_initial_state_is_not():
    seq, batch, features, hidden = SEQ, BATCH, FEATURES, HIDDEN
    args = recurrent_args("LSTM", seq, batch, features, hidden, 1, peepholes=True)
    result = run_rule("LSTM", args, {"hidden_size": hidden})
    assert params(result, args) == 4 * hidden * (features + hidden) + 8 * hidden + 3 * hidden
    assert result.flops == 2 * result.macs + seq * batch * hidden * (3 * 4 + 2 * 1 + 4 + 8 + 6)


@pytest.mark.parametrize(("direction", "dirs"), DIRECTIONS)
@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru(direction, dirs, linear_before_reset):
    seq, batch, features, hidden = SEQ, BATCH, FEATURES, HIDDEN
    args = recurrent_args("GRU", seq, batch, features, hidden, dirs)
    result = run_rule("GRU", args, {"hidden_size": hidden, "direction": direction,
                                    "linear_before_reset": linear_before_reset})
    assert [o.shape for o in result.outputs] == [(seq, dirs, batch, hidden), (dirs, batch, hidden)]
    assert params(result, args) == dirs * (3 * hidden * (features + hidden) + 6 * hidden)  # torch's nn.GRU
    assert result.macs == seq * batch * dirs * 3 * hidden * (features + hidden)
    # per unit and step: 2 sigmoids (4) + 1 tanh (1) + reset and update (5) + 6 bias adds
    assert result.flops == 2 * result.macs + seq * batch * dirs * hidden * (2 * 4 + 1 + 5 + 6)


@pytest.mark.parametrize(("direction", "dirs"), DIRECTIONS)
def test_rnn(direction, dirs):
    seq, batch, features, hidden = SEQ, BATCH, FEATURES, HIDDEN
    args = recurrent_args("RNN", seq, batch, features, hidden, dirs, bias=False)
    result = run_rule("RNN", args, {"hidden_size": hidden, "direction": direction, "activations": ["Relu"]})
    assert params(result, args) == dirs * hidden * (features + hidden)  # nn.RNN(bias=False)
    assert result.macs == seq * batch * dirs * hidden * (features + hidden)
    assert result.flops == 2 * result.macs + seq * batch * dirs * hidden * 1  # one relu


def test_recurrent_batch_first_layout():
    seq, batch, features, hidden = SEQ, BATCH, FEATURES, HIDDEN
    args = [data(batch, seq, features), weight(1, 3 * hidden, features), weight(1, 3 * hidden, hidden)]
    result = run_rule("GRU", args, {"layout": 1})  # hidden_size read from R
    assert [o.shape for o in result.outputs] == [(batch, seq, 1, hidden), (batch, 1, hidden)]
    assert result.macs == seq * batch * 3 * hidden * (features + hidden)


def test_recurrent_rejects_a_weight_of_the_wrong_size():
    args = [data(5, 2, 3), weight(1, 12, 3), weight(1, 16, 4)]  # W sized for a GRU, R for an LSTM
    with pytest.raises(ShapeError, match=r"W has shape \[1, 12, 3\], expected \[1, 16, 3\]"):
        run_rule("LSTM", args, {"hidden_size": 4})


def test_lstm_params_through_an_onnx_file(tmp_path):
    """The engine counts W, R, B and P once each, and not the initial state (an initializer too)."""
    seq, batch, features, hidden, dirs = 4, 2, 6, 5, 2
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "", "P"], ["y", "y_h"], name="lstm",
                            hidden_size=hidden, direction="bidirectional")
    inits = [onnx_models.weight("W", [dirs, 4 * hidden, features]), onnx_models.weight("R", [dirs, 4 * hidden, hidden]),
             onnx_models.weight("B", [dirs, 8 * hidden]), onnx_models.weight("h0", [dirs, batch, hidden]),
             onnx_models.weight("P", [dirs, 3 * hidden])]
    model = onnx_models.make_model([node], [onnx_models.tensor_input("x", [seq, batch, features])], ["y", "y_h"],
                                   inits, opset=14)
    path = str(tmp_path / "lstm.onnx")
    onnx.save(model, path)
    analysis = analyze(load_onnx(path))
    (layer,) = analysis.layers
    assert layer.params == dirs * (4 * hidden * (features + hidden) + 8 * hidden + 3 * hidden)
    assert layer.macs == seq * batch * dirs * 4 * hidden * (features + hidden)
    assert [o.shape for o in layer.outputs] == [(seq, dirs, batch, hidden), (dirs, batch, hidden)]


# ---------------------------------------------------------------------------------------
# RMSNormalization


def test_rms_normalization_last_axis():
    batch, seq, hidden = 2, 5, 16
    args = [data(batch, seq, hidden), weight(hidden)]
    result = run_rule("RMSNormalization", args, {})
    assert params(result, args) == hidden  # the scale; RMSNorm has no bias
    assert result.macs == 0
    assert result.flops == 4 * batch * seq * hidden  # square, sum, divide, scale
    assert result.backward_state_bytes == 4 * batch * seq  # 1/rms per row, fp32


def test_rms_normalization_over_two_axes():
    batch, seq, hidden = 2, 5, 16
    args = [data(batch, seq, hidden), weight(seq, hidden)]
    result = run_rule("RMSNormalization", args, {"axis": 1})
    assert params(result, args) == seq * hidden
    assert result.backward_state_bytes == 4 * batch


def test_rms_normalization_rejects_a_scale_that_does_not_broadcast():
    with pytest.raises(ShapeError, match="cannot be broadcast"):
        run_rule("RMSNormalization", [data(2, 5, 16), weight(8)], {})


# ---------------------------------------------------------------------------------------
# data-dependent sizes are unmodelled, not guessed


def test_one_hot_and_top_k_need_constant_sizes():
    with pytest.raises(UnknownValue, match="OneHot's depth"):
        run_rule("OneHot", [data(2, 3, dtype="int64"), data(1), data(2)], {})
    with pytest.raises(UnknownValue, match="TopK's K"):
        run_rule("TopK", [data(2, 7), data(1, dtype="int64")], {})
