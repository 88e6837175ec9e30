"""onnxruntime's com.microsoft quantised ops, which its quantizer and int4 tools emit.

Each counts its float counterpart (the MatMul, Gemm, pooling or Concat rule, called here)
plus the quantisation arithmetic of the Quantisation family: requantising an output
element costs 5 (as QLinearConv), dequantising a value 2 (as DequantizeLinear), finding a
tensor's range and quantising it 7 (as DynamicQuantizeLinear), and rescaling an integer
product to float 1 (the Mul after MatMulInteger). Zero points fold into the integer
accumulation and are not counted, as for QLinearConv.

Params: quantised weights (by value: MatMulNBits' and GatherBlockQuantized's packed uint8
blobs count 8 / bits values per byte, as the unpacked int4 tensor would), float biases and
QGemm's int32 bias; scales and zero points are not params, as for QLinearConv.

MatMulNBits dequantises every weight value it multiplies (2 FLOPs each), as its unfused
source DequantizeLinear -> MatMul does; GatherBlockQuantized dequantises only the rows it
gathers.
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.core.dims import Dim, is_static, prod
from archcalc.core.errors import ShapeError
from archcalc.rules._common import axis_index, broadcast, required
from archcalc.rules.base import GLOBAL, Inputs, Output, RuleResult, TensorState, rule
from archcalc.rules.linear import gemm, matmul
from archcalc.rules.pool import average_pool, global_pool
from archcalc.rules.quantize import (
    DEQUANTIZE_FLOPS,
    MIN_MAX_FLOPS,
    QLINEAR_BINARY_SCALES,
    QUANTIZE_FLOPS,
    REQUANTIZE_FLOPS,
)
from archcalc.rules.tensor import concat

MS = "com.microsoft"
RESCALE_FLOPS = 1  # an int32 product times its scales (MatMulInteger -> Cast -> Mul)
BIAS_FLOPS = 1  # one add per output element, as a bias Add
# Per element of the float op a QLinear element-wise op stands for (as the Add/Mul rule and
# the Activation family's table: Sigmoid 4, LeakyRelu 2).
# X's and Y's scales and zero points of a QLinear op of one operand (X, X_scale, X_zero_point,
# Y_scale, Y_zero_point: QLinearSigmoid, QLinearAveragePool, ...).
UNARY_SCALES = (1, 2, 3, 4)
QLINEAR_ELEMENTWISE_FLOPS = {"QLinearAdd": 1, "QLinearMul": 1, "QLinearSigmoid": 4, "QLinearLeakyRelu": 2}


def _optional(inputs: Inputs, index: int) -> TensorState | None:
    return inputs[index] if len(inputs) > index else None


def _values_per_byte(bits: int, op: str) -> int:
    if bits not in (2, 4, 8):
        raise ShapeError(f"{op} has bits {bits}", fix="onnxruntime packs 2, 4 or 8 bits")
    return 8 // bits


@rule("MatMulNBits", domain=MS, reads_values=())
def matmul_nbits(inputs: Inputs, *, K=0, N=0, bits=4, block_size=0, accuracy_level=0,
                 weight_prepacked=0) -> RuleResult:
    """A [..., K] @ dequantised B [K, N] (+ bias); MACs = rows * K * N, + 2 FLOPs per weight dequantised."""
    a, packed = required(inputs[0]).shape, required(inputs[1]).shape
    bias = _optional(inputs, 5)
    per_byte = _values_per_byte(bits, "MatMulNBits")
    if block_size < 16 or block_size & (block_size - 1):
        raise ShapeError(f"MatMulNBits has block_size {block_size}", fix="a power of 2 of at least 16")
    if not a or (is_static(a[-1]) and a[-1] != K):
        raise ShapeError(f"MatMulNBits' A {list(a)} must end in K = {K} features")
    blocks = -(-K // block_size)
    expected = (N, blocks, block_size * bits // 8)
    if len(packed) != 3 or any(is_static(d) and d != e for d, e in zip(packed, expected)):
        raise ShapeError(f"MatMulNBits' B {list(packed)} is not the packed [N, k_blocks, blob_size] = "
                         f"{list(expected)} of K = {K}, N = {N}, block_size {block_size}, {bits} bits")
    out = (*a[:-1], N)
    rows = prod(a[:-1])
    macs = rows * K * N
    weight_values = N * blocks * block_size  # what B holds: K rounded up to whole blocks
    dequantise = DEQUANTIZE_FLOPS * weight_values
    bias_adds = BIAS_FLOPS * prod(out) if bias is not None else 0
    flops = 2 * macs + dequantise + bias_adds

    def explain() -> list[str]:
        return [f"output = A's rows + [N] = {list(out)}",
                f"params = N * k_blocks * block_size = {N} * {blocks} * {block_size} = {weight_values} "
                f"({bits}-bit, {per_byte} per byte of B {list(packed)})" + (f" + bias {N}" if bias is not None else ""),
                f"MACs = rows * K * N = {rows} * {K} * {N} = {macs}",
                f"FLOPs = 2 * MACs + {DEQUANTIZE_FLOPS} * {weight_values} dequantised + {bias_adds} bias adds "
                f"= {flops}"]

    return RuleResult(outputs=(Output(out),), macs=macs, flops=flops, weights=(1, 5), receptive=GLOBAL,
                      packed_weights=((1, per_byte),) if per_byte > 1 else (), quantization=(2, 3), explain=explain)


@rule("GatherBlockQuantized", domain=MS, reads_values=())
def gather_block_quantized(inputs: Inputs, *, bits=4, block_size=128, gather_axis=0,
                           quantize_axis=1) -> RuleResult:
    """Gather of a block-quantised table, dequantised (2 FLOPs per output); output of the scales' dtype."""
    data, indices, scales = inputs[0], inputs[1], inputs[2]
    data = required(data)
    logical = tuple(data.shape)
    per_byte = 1
    if data.dtype == "uint8":  # sub-byte values packed along the last axis
        per_byte = _values_per_byte(bits, "GatherBlockQuantized")
        logical = (*logical[:-1], logical[-1] * per_byte)
    along = axis_index(gather_axis, len(logical), "GatherBlockQuantized")
    axis_index(quantize_axis, len(logical), "GatherBlockQuantized")
    indices = required(indices)
    out = (*logical[:along], *indices.shape, *logical[along + 1:])
    flops = DEQUANTIZE_FLOPS * prod(out)

    def explain() -> list[str]:
        return [f"data {list(logical)} ({prod(logical)} values) gathered along axis {along} by indices "
                f"{list(indices.shape)}: output {list(out)}",
                f"FLOPs = {DEQUANTIZE_FLOPS} (dequantise) * {prod(out)} outputs = {flops}"]

    return RuleResult(outputs=(Output(out, required(scales, "dtype").dtype),), flops=flops, weights=(0,),
                      packed_weights=((0, per_byte),) if per_byte > 1 else (), quantization=(2, 3), explain=explain)


def _rescaled_matmul(a: TensorState | None, b: TensorState | None, bias: TensorState | None, dtype: str,
                     quantised_elements: Dim, weights: tuple[int, ...], what: str,
                     quantization: tuple[int, ...]) -> RuleResult:
    product = matmul([a, b])
    out = product.outputs[0].shape
    if bias is not None:
        broadcast(bias.shape, out)
    outputs = prod(out)
    quantise = (MIN_MAX_FLOPS + QUANTIZE_FLOPS) * quantised_elements
    bias_adds = BIAS_FLOPS * outputs if bias is not None else 0
    flops = product.flops + quantise + RESCALE_FLOPS * outputs + bias_adds

    def explain() -> list[str]:
        lines = product.explain() if product.explain else []
        return lines + ["FLOPs = 2 * MACs" + (f" + {quantise} {what}" if quantise else "")
                        + f" + {outputs} rescaled + {bias_adds} bias adds = {flops}"]

    return RuleResult(outputs=(Output(out, dtype),), macs=product.macs, flops=flops, weights=weights,
                      receptive=product.receptive, explain=explain, integer_macs=product.macs,
                      quantization=quantization)


@rule("DynamicQuantizeMatMul", domain=MS, reads_values=())
def dynamic_quantize_matmul(inputs: Inputs) -> RuleResult:
    """A quantised at run time (7 FLOPs per element) @ int8 B, rescaled (+1 per output) + bias; MACs as MatMul."""
    a, b, bias = inputs[0], inputs[1], _optional(inputs, 4)
    a = required(a, "dtype")
    return _rescaled_matmul(a, b, bias, a.dtype, prod(a.shape), (1, 4), "A's range found and quantised",
                            quantization=(2, 3))  # b_scale, b_zero_point


@rule("MatMulIntegerToFloat", domain=MS, reads_values=())
def matmul_integer_to_float(inputs: Inputs) -> RuleResult:
    """int8 A @ int8 B rescaled to float (+1 per output) + bias; MACs as MatMul; output of a_scale's dtype."""
    return _rescaled_matmul(inputs[0], inputs[1], _optional(inputs, 6), required(inputs[2], "dtype").dtype, 0,
                            (0, 1, 6), "", quantization=(2, 3, 4, 5))  # a_scale, b_scale, their zero points


def _requantised(out: Sequence[Dim], per_element: int, what: str, dtype: str | None = None,
                 weights: tuple[int, ...] = (), base_flops: Dim = 0, receptive=None,
                 lines: Sequence[str] = (), quantization: tuple[int, ...] = UNARY_SCALES) -> RuleResult:
    """`base_flops` (or `per_element` per output) + requantising each output element."""
    out = tuple(out)
    elements = prod(out)
    flops = base_flops + (per_element + REQUANTIZE_FLOPS) * elements
    extra = {} if receptive is None else {"receptive": receptive}
    return RuleResult(outputs=(Output(out, dtype),), flops=flops, weights=weights, **extra,
                      quantization=quantization, explain=lambda: [*lines, f"output = {list(out)}",
                                       f"FLOPs = {base_flops or ''}{' + ' if base_flops else ''}({per_element} "
                                       f"{what} + {REQUANTIZE_FLOPS} requantise) * {elements} = {flops}"])


@rule("QLinearAdd", "QLinearMul", domain=MS, reads_values=())
def qlinear_binary(inputs: Inputs, *, op="") -> RuleResult:
    """Quantised A + B (or A * B) with broadcasting, requantised: 1 + 5 FLOPs per output."""
    out = broadcast(required(inputs[0]).shape, required(inputs[3]).shape)
    return _requantised(out, QLINEAR_ELEMENTWISE_FLOPS[op], op[len("QLinear"):].lower(), weights=(0, 3),
                        quantization=QLINEAR_BINARY_SCALES)


@rule("QLinearSigmoid", "QLinearLeakyRelu", domain=MS, reads_values=())
def qlinear_activation(inputs: Inputs, *, alpha=0.01, op="") -> RuleResult:
    """quantise(f(dequantise(x))): the activation's FLOPs (Sigmoid 4, LeakyRelu 2) + 5 per element."""
    return _requantised(required(inputs[0]).shape, QLINEAR_ELEMENTWISE_FLOPS[op], op[len("QLinear"):])


def _channels_first(shape: Sequence[Dim], channels_last: int) -> tuple[Dim, ...]:
    shape = tuple(shape)
    return (shape[0], shape[-1], *shape[1:-1]) if channels_last and len(shape) > 2 else shape


def _channels_back(shape: Sequence[Dim], channels_last: int) -> tuple[Dim, ...]:
    shape = tuple(shape)
    return (shape[0], *shape[2:], shape[1]) if channels_last and len(shape) > 2 else shape


@rule("QLinearAveragePool", domain=MS, reads_values=())
def qlinear_average_pool(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None,
                         auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, channels_last=0) -> RuleResult:
    """AveragePool (NCHW, or NHWC with channels_last) requantised; FLOPs = window per output + 5 per output."""
    x = required(inputs[0], "_replace")
    pooled = average_pool([x._replace(shape=_channels_first(x.shape, channels_last))], kernel_shape=kernel_shape,
                          strides=strides, pads=pads, auto_pad=auto_pad, ceil_mode=ceil_mode,
                          count_include_pad=count_include_pad)
    out = _channels_back(pooled.outputs[0].shape, channels_last)
    return _requantised(out, 0, "average", base_flops=pooled.flops, receptive=pooled.receptive,
                        lines=pooled.explain()[:-1] if pooled.explain else ())


@rule("QLinearGlobalAveragePool", domain=MS, reads_values=())
def qlinear_global_average_pool(inputs: Inputs, *, channels_last=0) -> RuleResult:
    """GlobalAveragePool (NCHW, or NHWC with channels_last) requantised; FLOPs = inputs + 5 per output."""
    x = required(inputs[0], "_replace")
    pooled = global_pool([x._replace(shape=_channels_first(x.shape, channels_last))])
    out = _channels_back(pooled.outputs[0].shape, channels_last)
    return _requantised(out, 0, "average", base_flops=pooled.flops, receptive=pooled.receptive)


@rule("QLinearConcat", domain=MS, reads_values=())
def qlinear_concat(inputs: Inputs, *, axis=1) -> RuleResult:
    """Concat of (tensor, scale, zero point) triples requantised to Y's scale: 5 FLOPs per output."""
    if len(inputs) < 5 or (len(inputs) - 2) % 3:
        raise ShapeError(f"QLinearConcat has {len(inputs)} inputs; it takes Y_scale, Y_zero_point and then a "
                         "(tensor, scale, zero point) triple per input")
    tensors = list(range(2, len(inputs), 3))
    joined = concat([inputs[i] for i in tensors], axis=axis)
    scales = (0, 1, *(i + k for i in tensors for k in (1, 2)))  # Y's, then each tensor's scale and zero point
    return _requantised(joined.outputs[0].shape, 0, "copy", dtype=required(inputs[1], "dtype").dtype,
                        weights=tuple(tensors), lines=joined.explain() if joined.explain else (),
                        quantization=scales)


@rule("QGemm", domain=MS, multiplies=(0, 3), reads_values=())  # A, then B after A's scale and zero point
def qgemm(inputs: Inputs, *, transA=0, transB=0, alpha=1.0) -> RuleResult:
    """Quantised Gemm (int32 C), requantised (+5 per output) or, without y_scale, rescaled to float (+1)."""
    a, b, c = inputs[0], inputs[3], _optional(inputs, 6)
    y_scale, y_zero_point = _optional(inputs, 7), _optional(inputs, 8)
    product = gemm([a, b, c], transA=transA, transB=transB, alpha=alpha)
    out = product.outputs[0].shape
    quantised = y_scale is not None
    dtype = ((y_zero_point.dtype if y_zero_point is not None else "uint8") if quantised
             else required(inputs[1], "dtype").dtype)
    per_output = REQUANTIZE_FLOPS if quantised else RESCALE_FLOPS
    flops = product.flops + per_output * prod(out)

    def explain() -> list[str]:
        lines = product.explain() if product.explain else []
        return lines + [f"FLOPs = 2 * MACs (+ bias) + {per_output} ({'requantise' if quantised else 'rescale'}) "
                        f"* {prod(out)} outputs = {flops}"]

    return RuleResult(outputs=(Output(out, dtype),), macs=product.macs, flops=flops,
                      weights=(3, 6) if c is not None else (3,), integer_weights=(6,) if c is not None else (),
                      receptive=product.receptive, explain=explain, integer_macs=product.macs,
                      quantization=(1, 2, 4, 5, 7, 8))  # A's, B's and Y's scales and zero points
