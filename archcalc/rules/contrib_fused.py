"""onnxruntime's com.microsoft fusions of a product with what follows it, which its graph
optimizations emit: FusedConv (Conv + activation, + an optional residual Z), FusedGemm
(Gemm + activation), FusedMatMul and TransposeMatMul (MatMul of transposed operands,
times alpha).

Each costs its unfused source: the Conv/Gemm/MatMul rule's shape, params and MACs (the
rules themselves are called), plus the activation's FLOPs per output element from the
Activation family's table, 1 per output element for the residual add, and 1 per output
element for an alpha other than 1 (the Mul the fusion absorbed). Transposes move data: no
FLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from archcalc.core.dims import Dim, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import required
from archcalc.rules.activation import FLOPS_PER_ELEMENT
from archcalc.rules.base import Inputs, RuleResult, rule
from archcalc.rules.conv import conv
from archcalc.rules.linear import gemm, matmul

MS = "com.microsoft"


def _activation_flops(activation: str, op: str) -> int:
    if not activation:
        return 0
    if activation not in FLOPS_PER_ELEMENT:
        raise ShapeError(f"{op}'s activation '{activation}' is not one archcalc counts",
                         fix="use one of " + ", ".join(sorted(FLOPS_PER_ELEMENT)))
    return FLOPS_PER_ELEMENT[activation]


def _with_epilogue(product: RuleResult, per_output: int, what: str) -> RuleResult:
    """The product's result plus `per_output` FLOPs per output element."""
    if not per_output:
        return product
    outputs = prod(product.outputs[0].shape)
    extra = per_output * outputs
    flops = product.flops + extra

    def explain() -> list[str]:
        lines = product.explain() if product.explain else []
        return lines + [f"FLOPs = 2 * MACs (+ bias) + {per_output} ({what}) * {outputs} outputs = {flops}"]

    return replace(product, flops=flops, explain=explain)


@rule("FusedConv", domain=MS, reads_values=())
def fused_conv(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None, dilations=None,
               group=1, auto_pad="NOTSET", activation="", activation_params=None) -> RuleResult:
    """Conv (+ Z) then the activation; MACs as Conv, FLOPs + activation (+ 1 for Z) per output."""
    product = conv(inputs[:3], kernel_shape=kernel_shape, strides=strides, pads=pads, dilations=dilations,
                   group=group, auto_pad=auto_pad)
    residual = len(inputs) > 3 and inputs[3] is not None
    per_output = _activation_flops(activation, "FusedConv") + residual
    what = " + ".join(filter(None, ["residual add" if residual else "", activation]))
    return _with_epilogue(product, per_output, what)


@rule("FusedGemm", domain=MS, reads_values=())
def fused_gemm(inputs: Inputs, *, transA=0, transB=0, alpha=1.0, beta=1.0, activation="",
               activation_alpha=None, activation_beta=None, activation_gamma=None) -> RuleResult:
    """Gemm then the activation; MACs as Gemm, FLOPs + the activation's per output."""
    product = gemm(inputs, transA=transA, transB=transB, alpha=alpha, beta=beta)
    return _with_epilogue(product, _activation_flops(activation, "FusedGemm"), activation)


def _transposed(shape: Sequence[Dim], trans: int, trans_batch: int) -> tuple[Dim, ...]:
    """An operand as the product sees it: transBatch moves the first axis just before the last
    ([b0, b1, .., m, k] -> [b1, .., m, b0, k]), trans swaps the last two."""
    shape = tuple(shape)
    if trans_batch and len(shape) > 2:
        shape = (*shape[1:-1], shape[0], shape[-1])
    if trans and len(shape) > 1:
        shape = (*shape[:-2], shape[-1], shape[-2])
    return shape


@rule("FusedMatMul", "TransposeMatMul", domain=MS, reads_values=())
def fused_matmul(inputs: Inputs, *, transA=0, transB=0, transBatchA=0, transBatchB=0,
                 alpha=1.0) -> RuleResult:
    """alpha * A' @ B' with transposed operands; MACs as MatMul, + 1 FLOP per output for alpha != 1."""
    a, b = inputs[0], inputs[1]
    # An absent operand fails on what is read from it first: its shape for the rank check when a batch
    # axis moves, else _replace.
    read = "shape" if transBatchA or transBatchB else "_replace"
    a, b = required(a, read), required(b, read)
    if (transBatchA or transBatchB) and not len(a.shape) == len(b.shape) >= 3:
        raise ShapeError(f"FusedMatMul transposes batch axes of A {list(a.shape)} and B {list(b.shape)}",
                         fix="with transBatchA or transBatchB, A and B must have one rank of at least 3")
    product = matmul([a._replace(shape=_transposed(a.shape, transA, transBatchA)),
                      b._replace(shape=_transposed(b.shape, transB, transBatchB))])
    return _with_epilogue(product, int(alpha != 1.0), "alpha scale")
