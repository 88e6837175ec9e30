"""Linear family: Gemm (dense / fully connected), MatMul and Einsum.

MACs = M * N * K (times the broadcast batch for MatMul); FLOPs = 2 * MACs, plus one
per output element for Gemm's bias add. Einsum: MACs = the product of the sizes of all
distinct indices (every combination is one multiply-accumulate), FLOPs = 2 * MACs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archcalc.core.dims import Dim, is_static, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import broadcast, required
from archcalc.rules.base import GLOBAL, Inputs, ObservedShapes, Output, RuleResult, rule


def _check_inner(k_a, k_b, a_shape, b_shape, op: str) -> None:
    if is_static(k_a) and is_static(k_b) and k_a != k_b:
        raise ShapeError(
            f"{op} of {list(a_shape)} by {list(b_shape)}: inner dims {k_a} and {k_b} differ",
            fix="the input's feature count must equal the weight's (flatten or reshape first?)",
        )


def _gemm_observed_macs(i: ObservedShapes, o: ObservedShapes, a: Mapping[str, Any]) -> int:
    """M*N * K."""
    out, x = o[0], i[0]
    assert out is not None and x is not None  # verify calls this only with both known (see ObservedMacs)
    return prod(out) * x[0 if a.get("transA") else 1]


@rule("Gemm", observed_macs=_gemm_observed_macs, reads_values=())
def gemm(inputs: Inputs, *, transA=0, transB=0, alpha=1.0, beta=1.0) -> RuleResult:
    """Y = alpha * A' B' + beta * C with A' [M, K], B' [K, N]; params = (K + 1) * N with a bias."""
    a, b = required(inputs[0]).shape, required(inputs[1]).shape
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(
            f"Gemm needs 2-D inputs, got {list(a)} and {list(b)}",
            fix="flatten the input to [N, features] first (add a flatten layer)",
        )
    m, k = (a[1], a[0]) if transA else (a[0], a[1])
    k_b, n = (b[1], b[0]) if transB else (b[0], b[1])
    _check_inner(k, k_b, a, b, "Gemm")
    bias = inputs[2] if len(inputs) > 2 else None
    has_bias = bias is not None
    if bias is not None:
        broadcast(bias.shape, (m, n))
    macs = m * n * k
    bias_adds = m * n if has_bias else 0

    def explain() -> list[str]:
        bias = " + 1" if has_bias else ""
        return [
            f"output = [M, N] = [{m}, {n}]",
            f"params = (N_in{bias}) * N_out = ({k}{bias}) * {n} = {(k + has_bias) * n}",
            f"MACs = M * N * K = {m} * {n} * {k} = {macs}",
        ]

    return RuleResult(outputs=(Output((m, n)),), macs=macs, flops=2 * macs + bias_adds,
                      weights=(1, 2) if has_bias else (1,), receptive=GLOBAL, explain=explain)


def _matmul_observed_macs(i: ObservedShapes, o: ObservedShapes, a: Mapping[str, Any]) -> int:
    """out elements * K."""
    out, x = o[0], i[0]
    assert out is not None and x is not None  # verify calls this only with both known (see ObservedMacs)
    return prod(out) * x[-1]


@rule("MatMul", observed_macs=_matmul_observed_macs, reads_values=())
def matmul(inputs: Inputs) -> RuleResult:
    """numpy matmul: [..., M, K] @ [..., K, N] -> [..., M, N]; MACs = batch * M * N * K."""
    a, b = tuple(required(inputs[0]).shape), tuple(required(inputs[1]).shape)
    if not a or not b:
        raise ShapeError("MatMul of a scalar", fix="use Mul for scalars")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    _check_inner(a2[-1], b2[-2], a, b, "MatMul")
    batch = broadcast(a2[:-2], b2[:-2])
    m, k, n = a2[-2], a2[-1], b2[-1]
    out = batch + ((m,) if len(a) > 1 else ()) + ((n,) if len(b) > 1 else ())
    macs = prod(batch) * m * n * k
    return RuleResult(
        outputs=(Output(out),), macs=macs, flops=2 * macs, weights=(0, 1), receptive=GLOBAL,
        explain=lambda: [f"output = {list(out)}",
                         f"MACs = batch * M * N * K = {prod(batch)} * {m} * {n} * {k} = {macs}"],
    )


def _einsum_operand(term: str, shape: Sequence[Dim], position: int) -> tuple[str, tuple[Dim, ...], tuple[Dim, ...]]:
    """Split one operand of an equation into its letters, their dims and its '...' dims."""
    if "..." in term:
        before, after = term.split("...", 1)
        ellipsis = len(shape) - len(before) - len(after)
        if ellipsis < 0:
            raise ShapeError(f"Einsum operand {position} '{term}' has more letters than its rank {len(shape)}")
        return before + after, tuple(shape[:len(before)]) + tuple(shape[len(shape) - len(after):]), \
            tuple(shape[len(before):len(before) + ellipsis])
    if len(term) != len(shape):
        raise ShapeError(f"Einsum operand {position} '{term}' names {len(term)} axes, its shape "
                         f"{list(shape)} has {len(shape)}")
    return term, tuple(shape), ()


@rule("Einsum", reads_values=())
def einsum(inputs: Inputs, *, equation="") -> RuleResult:
    """Shape from the equation; MACs = product of the sizes of all distinct indices (and '...' dims)."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != len(inputs):
        raise ShapeError(f"Einsum equation '{equation}' has {len(terms)} operands for {len(inputs)} inputs")
    sizes: dict[str, Dim] = {}
    counts: dict[str, int] = {}
    ellipsis: tuple[Dim, ...] = ()
    uses_ellipsis = False
    for position, term in enumerate(terms):  # as many as inputs (checked above)
        letters, dims, extra = _einsum_operand(term, required(inputs[position]).shape, position)
        if "..." in term:
            uses_ellipsis = True
            ellipsis = broadcast(ellipsis, extra)
        for letter, dim in zip(letters, dims):
            counts[letter] = counts.get(letter, 0) + 1
            known = sizes.get(letter)
            if known is None or known == 1:
                sizes[letter] = dim
            elif dim != 1 and is_static(dim) and is_static(known) and dim != known:
                raise ShapeError(f"Einsum index '{letter}' is {known} in one operand and {dim} in another")
    if not arrow:
        rhs = ("..." if uses_ellipsis else "") + "".join(sorted(k for k, n in counts.items() if n == 1))
    before, _, after = rhs.partition("...") if "..." in rhs else (rhs, "", "")
    for letter in before + after:
        if letter not in sizes:
            raise ShapeError(f"Einsum output index '{letter}' appears in no operand")
    out = tuple(sizes[c] for c in before) + (ellipsis if "..." in rhs else ()) + tuple(sizes[c] for c in after)
    macs = prod(sizes.values()) * prod(ellipsis)
    return RuleResult(
        outputs=(Output(out),), macs=macs, flops=2 * macs, weights=tuple(range(len(inputs))), receptive=GLOBAL,
        explain=lambda: [f"{equation}: output = {list(out)}",
                         "MACs = product of all index sizes = "
                         + " * ".join(f"{k}={v}" for k, v in sizes.items()) + f" = {macs}"],
    )
