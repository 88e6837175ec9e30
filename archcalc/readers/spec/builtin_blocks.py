"""Blocks every spec may use without defining them: `transformer_block`.

Written in the spec language itself, so a use expands, names and folds (`--depth`) like a
block the spec defines; a spec that defines a block of the same name uses its own.
"""

from __future__ import annotations

import functools
from typing import Any

from archcalc.core.errors import SpecError
from archcalc.readers.yaml_lines import load_yaml

SOURCE = "<built-in block transformer_block>"

# Pre-norm (norm_first: true; GPT-2, ViT, Llama, T5, Whisper):
#   x + attn(norm(x)), then x + mlp(norm(x));
# post-norm (norm_first: false; BERT, the original Transformer):
#   norm(x + attn(x)), then norm(x + mlp(x)).
# A layer whose `when` is false passes its input on, so each norm is written where it goes
# and the two layouts share one list; `post_ln_1` stands for the first residual sum in
# pre-norm, where it is skipped. A decoder layer (cross: true; its second input is the
# encoder's output) has a cross-attention sublayer between the two, laid out the same way;
# without it `post_ln_cross` stands for what `post_ln_1` does.
TEXT = """
transformer_block:
  description: one transformer layer (attention and feed-forward, each with a residual and a norm)
  args: {heads: null, mlp_hidden: null, kv_heads: $heads, head_dim: 0, causal: false, bias: true,
         key_bias: $bias, mlp_bias: $bias, norm: layernorm, norm_first: true, epsilon: 1.0e-5,
         activation: gelu, gated: false, positional: none, scale: 0, relative_buckets: 0,
         relative_max_distance: 128, relative_bias_from: "", cross: false}
  layers:
    - layernorm: {epsilon: $epsilon}
      name: ln_1
      when: ${norm_first and norm == 'layernorm'}
    - rmsnorm: {epsilon: $epsilon}
      name: rms_1
      when: ${norm_first and norm == 'rmsnorm'}
    - attention: {heads: $heads, kv_heads: $kv_heads, head_dim: $head_dim, causal: $causal, bias: $bias,
                  key_bias: $key_bias, positional: $positional, scale: $scale,
                  relative_buckets: $relative_buckets, relative_max_distance: $relative_max_distance,
                  relative_bias_from: $relative_bias_from}
      name: attn
    - add:
      name: residual_1
      inputs: [attn, in]
    - layernorm: {epsilon: $epsilon}
      name: post_ln_1
      when: ${not norm_first}
    - layernorm: {epsilon: $epsilon}
      name: ln_cross
      when: ${cross and norm_first and norm == 'layernorm'}
    - rmsnorm: {epsilon: $epsilon}
      name: rms_cross
      when: ${cross and norm_first and norm == 'rmsnorm'}
    - attention: {heads: $heads, kv_heads: $kv_heads, head_dim: $head_dim, bias: $bias, key_bias: $key_bias,
                  scale: $scale, cross: true}
      name: cross_attn
      inputs: [rms_cross, in1]
      when: $cross
    - add:
      name: residual_cross
      inputs: [cross_attn, post_ln_1]
      when: $cross
    - layernorm: {epsilon: $epsilon}
      name: post_ln_cross
      when: ${cross and not norm_first}
    - layernorm: {epsilon: $epsilon}
      name: ln_2
      when: ${norm_first and norm == 'layernorm'}
    - rmsnorm: {epsilon: $epsilon}
      name: rms_2
      when: ${norm_first and norm == 'rmsnorm'}
    - mlp: {hidden: $mlp_hidden, activation: $activation, gated: $gated, bias: $mlp_bias}
      name: mlp
    - add:
      name: residual_2
      inputs: [mlp, post_ln_cross]
    - layernorm: {epsilon: $epsilon}
      name: post_ln_2
      when: ${not norm_first}
"""

NORMS = ("layernorm", "rmsnorm")


@functools.lru_cache(maxsize=1)
def builtin_blocks() -> dict[str, Any]:
    blocks = load_yaml(TEXT, SOURCE)
    assert isinstance(blocks, dict)  # the text above is a mapping
    return blocks


def check_builtin_args(kind: str, env: dict[str, Any], where: str) -> None:
    """What the block's own layers cannot check: a norm they would all skip."""
    if kind == "transformer_block":
        if env.get("norm") not in NORMS:
            raise SpecError(f"transformer_block's norm is {env.get('norm')!r}", where=where,
                            fix="use norm: layernorm or norm: rmsnorm")
        if env.get("norm") == "rmsnorm" and not env.get("norm_first"):
            raise SpecError("transformer_block's post-norm layout (norm_first: false) uses layernorm", where=where,
                            fix="use norm: layernorm, or norm_first: true")
