"""Quantisation family: (De)QuantizeLinear, DynamicQuantizeLinear, and the integer
convolutions and matrix products.

FLOPs per element: QuantizeLinear divide by the scale, round, add the zero point,
saturate (min and max): 5. DequantizeLinear subtract the zero point, multiply by the
scale: 2. DynamicQuantizeLinear first finds the input's min and max (2 compares per
element), then quantises (5): 7.

MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv cost the MACs of their float
counterparts (their shapes and MACs are MatMul's and Conv's rules, called here), FLOPs
2 x MACs (+ the bias add of QLinearConv); the QLinear ops then requantise every output
element (scale, round, zero point, saturate: 5). Zero points are folded into the
accumulation by every integer kernel and are not counted. The weights are params; the
scales and zero points are not (they are fixed by calibration, not learned).
"""

from __future__ import annotations

from collections.abc import Sequence

from archcalc.core.dims import Dim, is_static, prod
from archcalc.core.dtypes import dtype_name
from archcalc.core.errors import ShapeError
from archcalc.rules._common import axis_index, required
from archcalc.rules.base import Inputs, Output, RuleResult, TensorState, rule
from archcalc.rules.conv import conv
from archcalc.rules.linear import matmul

QUANTIZE_FLOPS = 5
DEQUANTIZE_FLOPS = 2
MIN_MAX_FLOPS = 2
REQUANTIZE_FLOPS = QUANTIZE_FLOPS
# The scales and zero points of a QLinear op of two operands (a, a_scale, a_zero_point, b,
# b_scale, b_zero_point, y_scale, y_zero_point: QLinearMatMul, QLinearConv, QLinearAdd, ...).
QLINEAR_BINARY_SCALES = (1, 2, 4, 5, 6, 7)


def _check_scale(x: Sequence[Dim], scale: TensorState, axis: int, op: str) -> None:
    """A scale is a scalar (per tensor), 1-D of x[axis] (per axis) or of x's rank (blocked)."""
    s = scale.shape
    if len(s) == 1 and s[0] != 1 and x:
        channels = x[axis_index(axis, len(x), op)]
        if is_static(s[0]) and is_static(channels) and s[0] != channels:
            raise ShapeError(f"{op}: a per-axis scale has {s[0]} values for {channels} along axis {axis}",
                             fix="give one scale per element of the quantisation axis")
    elif len(s) > 1 and len(s) != len(x):
        raise ShapeError(f"{op}: scale shape {list(s)} fits neither per-tensor, per-axis nor blocked "
                         f"quantisation of {list(x)}")


def _per_element(x: Sequence[Dim], dtype: str, per_element: int, what: str,
                 integer_weights: tuple[int, ...] = ()) -> RuleResult:
    # Inputs 1 and 2 of both (De)QuantizeLinear: the scale and zero point.
    flops = per_element * prod(x)
    # A learned tensor stored quantised (QDQ weights: int8 -> DequantizeLinear -> Conv) is a param.
    return RuleResult(outputs=(Output(tuple(x), dtype),), flops=flops, weights=(0,), integer_weights=integer_weights,
                      quantization=(1, 2), explain=lambda: [f"output = input shape = {list(x)} as {dtype}",
                                       f"FLOPs = {per_element} ({what}) * elements = {flops}"])


@rule("QuantizeLinear", reads_values=())
def quantize_linear(inputs: Inputs, *, axis=1, saturate=1, block_size=0, output_dtype=0,
                    precision=0) -> RuleResult:
    """y = saturate(round(x / scale) + zero_point), of the zero point's dtype (uint8 by default)."""
    x, scale = required(inputs[0]).shape, required(inputs[1])  # the scale's shape is read first
    zero_point = inputs[2] if len(inputs) > 2 else None
    _check_scale(x, scale, axis, "QuantizeLinear")
    dtype = zero_point.dtype if zero_point is not None else dtype_name(output_dtype) if output_dtype else "uint8"
    return _per_element(x, dtype, QUANTIZE_FLOPS, "divide, round, add zero point, saturate")


@rule("DequantizeLinear", reads_values=())
def dequantize_linear(inputs: Inputs, *, axis=1, block_size=0,
                      output_dtype=0) -> RuleResult:
    """y = (x - zero_point) * scale, of the scale's dtype."""
    x, scale = required(inputs[0]).shape, required(inputs[1])  # the scale's shape is read first
    _check_scale(x, scale, axis, "DequantizeLinear")
    dtype = dtype_name(output_dtype) if output_dtype else scale.dtype
    # What a stored tensor dequantises is learned whatever its dtype: QDQ's biases are int32
    # (quantised at input scale x weight scale), which the front end would class as constants.
    return _per_element(x, dtype, DEQUANTIZE_FLOPS, "subtract zero point, multiply by scale", integer_weights=(0,))


@rule("DynamicQuantizeLinear", reads_values=())
def dynamic_quantize_linear(inputs: Inputs) -> RuleResult:
    """uint8 y of x's shape, and a scalar scale and zero point from x's range; 7 FLOPs per element."""
    x = required(inputs[0]).shape
    per_element = MIN_MAX_FLOPS + QUANTIZE_FLOPS
    flops = per_element * prod(x)
    return RuleResult(outputs=(Output(tuple(x), "uint8"), Output((), "float32"), Output((), "uint8")),
                      flops=flops,
                      explain=lambda: [f"y = {list(x)} uint8, y_scale and y_zero_point scalars",
                                       f"FLOPs = ({MIN_MAX_FLOPS} min/max + {QUANTIZE_FLOPS} quantise) * "
                                       f"elements = {flops}"])


def _integer(product: RuleResult, dtype: str, weights: tuple[int, ...], requantised: bool,
             quantization: tuple[int, ...], integer_weights: tuple[int, ...] = ()) -> RuleResult:
    """The float product's shape and MACs with the integer op's dtype, weights and requantisation."""
    out = product.outputs[0].shape
    requantise = REQUANTIZE_FLOPS * prod(out) if requantised else 0
    flops = product.flops + requantise

    def explain() -> list[str]:
        lines = product.explain() if product.explain else []
        if requantised:
            lines.append(f"FLOPs = 2 * MACs (+ bias) + {REQUANTIZE_FLOPS} * {prod(out)} outputs requantised "
                         f"= {flops}")
        return lines

    return RuleResult(outputs=(Output(out, dtype),), macs=product.macs, flops=flops, weights=weights,
                      integer_weights=integer_weights, receptive=product.receptive, explain=explain,
                      integer_macs=product.macs, quantization=quantization)


@rule("MatMulInteger", reads_values=())
def matmul_integer(inputs: Inputs) -> RuleResult:
    """int32 (A - a_zero_point) @ (B - b_zero_point); shape and MACs as MatMul."""
    return _integer(matmul([inputs[0], inputs[1]]), "int32", (0, 1), requantised=False, quantization=(2, 3))


@rule("ConvInteger", reads_values=())
def conv_integer(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None,
                 dilations=None, group=1, auto_pad="NOTSET") -> RuleResult:
    """int32 convolution of (x - x_zero_point) by (w - w_zero_point); shape and MACs as Conv."""
    product = conv([inputs[0], inputs[1]], kernel_shape=kernel_shape, strides=strides, pads=pads,
                   dilations=dilations, group=group, auto_pad=auto_pad)
    return _integer(product, "int32", (1,), requantised=False, quantization=(2, 3))


@rule("QLinearMatMul", multiplies=(0, 3), reads_values=())  # a, then b after a's scale and zero point
def qlinear_matmul(inputs: Inputs) -> RuleResult:
    """Quantised a @ b requantised to y_scale / y_zero_point; MACs as MatMul, + 5 FLOPs per output."""
    a, b, y_zero_point = inputs[0], inputs[3], inputs[7] if len(inputs) > 7 else None
    dtype = y_zero_point.dtype if y_zero_point is not None else required(a, "dtype").dtype
    return _integer(matmul([a, b]), dtype, (0, 3), requantised=True, quantization=QLINEAR_BINARY_SCALES)


@rule("QLinearConv", multiplies=(0, 3), reads_values=())  # x, then w after x's scale and zero point
def qlinear_conv(inputs: Inputs, *, kernel_shape=None, strides=None, pads=None,
                 dilations=None, group=1, auto_pad="NOTSET") -> RuleResult:
    """Quantised convolution (int32 bias) requantised to y_scale / y_zero_point; MACs as Conv."""
    x, w, y_zero_point = inputs[0], inputs[3], inputs[7]
    bias = inputs[8] if len(inputs) > 8 else None
    product = conv([x, w, bias], kernel_shape=kernel_shape, strides=strides, pads=pads, dilations=dilations,
                   group=group, auto_pad=auto_pad)
    dtype = y_zero_point.dtype if y_zero_point is not None else required(x, "dtype").dtype
    if bias is None:
        return _integer(product, dtype, (3,), requantised=True, quantization=QLINEAR_BINARY_SCALES)
    return _integer(product, dtype, (3, 8), requantised=True, quantization=QLINEAR_BINARY_SCALES,
                    integer_weights=(8,))
