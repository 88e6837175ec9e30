"""The spec's layer catalogue: each layer type, its fields, and its lowering to an ONNX op.

A spec states only what a person writes down (``conv2d: {filters: 64, kernel: 3}``);
weight shapes that depend on the incoming tensor (input channels, features) are
:class:`~archcalc.core.graph.Deferred` and resolved by the engine once that tensor's shape
is known. Weight names follow PyTorch (``conv1.weight``, ``bn1.running_mean``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archcalc.core.errors import ShapeError, SpecError
from archcalc.core.graph import Deferred, Shape, TensorInfo
from archcalc.readers.spec.expr import MAX_INT

_REQUIRED = object()


@dataclass(frozen=True)
class Lowered:
    """A spec layer as an op: attributes, and the tensors fed after its data inputs
    (None for an omitted optional input)."""

    op: str
    attrs: dict[str, Any]
    tensors: list[TensorInfo | None] = field(default_factory=list)
    domain: str = ""


@dataclass(frozen=True)
class Named:
    """A tensor another layer holds, by its full name (a tied weight: `tie: wte` -> `wte.weight`)."""

    name: str
    field: str  # the spec field that named it, for the message when there is no such tensor


@dataclass(frozen=True)
class Step:
    """One op of a spec layer that lowers to several (see :class:`Composite`). Inputs: an int
    is the layer's data input at that position, a str an earlier step's `part`, a TensorInfo a
    weight, buffer or constant of the layer, a Named another layer's tensor, None an omitted input."""

    part: str
    op: str
    inputs: tuple[int | str | TensorInfo | Named | None, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""


@dataclass(frozen=True)
class Composite:
    """A spec layer as several standard ops (an attention layer: projections, Attention,
    output projection), so each op's own rule gives its shapes, counts and explanation and
    export writes them as they are. The last step is named as the layer and its output is
    the layer's output; the others are `<layer>.<part>`. Deferred shapes in the steps are
    computed from the spec layer's data inputs."""

    steps: tuple[Step, ...]


@dataclass(frozen=True)
class LayerType:
    name: str
    fields: dict[str, Any]  # field name -> default (_REQUIRED if none)
    lower: Callable[[str, dict[str, Any]], Lowered | Composite]
    primary: str | None = None  # the field a scalar short form sets: `dense: 10`
    inputs: tuple[int, int] = (1, 1)  # min and max data inputs
    aliases: tuple[str, ...] = ()
    summary: str = ""


# -- field checks -----------------------------------------------------------------------

def _fail(field_name: str, value: Any, expected: str) -> SpecError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else f"{shown[:60]}... ({len(shown):,} characters)"
    return SpecError(f"field '{field_name}' is {shown}; it must be {expected}",
                     fix=f"set '{field_name}' to {expected}")


FLOAT32_MAX = 3.4028234663852886e38
INT64_MIN = -MAX_INT - 1


def _int64(name: str, value: Any, low: int, expected: str) -> int:
    """`value` if it is an integer from `low` to int64's maximum: ONNX stores every integer
    attribute and shape as int64, so a larger one would only fail later, in export or verify."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, expected)
    if value > MAX_INT:
        raise _fail(name, value, f"{expected} of at most 2**63 - 1 (int64)")
    if value < low:
        raise _fail(name, value, expected if low > INT64_MIN else f"{expected} of at least -2**63 (int64)")
    return value


def positive_int(name: str, value: Any) -> int:
    return _int64(name, value, 1, "a positive integer")


def non_negative_int(name: str, value: Any) -> int:
    return _int64(name, value, 0, "a non-negative integer")


def per_axis(name: str, value: Any, rank: int, check=positive_int) -> tuple[int, ...]:
    """An int for every axis, or a list of `rank` ints."""
    if isinstance(value, list):
        if len(value) != rank:
            raise _fail(name, value, f"one integer or a list of {rank}")
        return tuple(check(name, v) for v in value)
    return (check(name, value),) * rank


def padding(name: str, value: Any, rank: int) -> tuple[str, tuple[int, ...] | None]:
    """'valid', 'same', an int, one int per axis, or [begin, end] per axis -> (auto_pad, pads)."""
    if isinstance(value, str):
        mode = value.lower()
        if mode == "same":
            return "SAME_UPPER", None
        if mode == "valid":
            return "NOTSET", (0,) * (2 * rank)
        raise _fail(name, value, "'valid', 'same', an integer, or a list per axis")
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        if len(value) != rank or any(len(v) != 2 for v in value):
            raise _fail(name, value, f"{rank} pairs [begin, end]")
        pairs = [(non_negative_int(name, b), non_negative_int(name, e)) for b, e in value]
        return "NOTSET", tuple(b for b, _ in pairs) + tuple(e for _, e in pairs)
    each = per_axis(name, value, rank, non_negative_int)
    return "NOTSET", each + each


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "true or false")
    return value


def number(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, value, "a number")
    if not -FLOAT32_MAX <= value <= FLOAT32_MAX:  # also NaN; ONNX stores float attributes as float32
        raise _fail(name, value, "a finite number (float32: at most 3.4e38 in size)")
    if (low is not None and value < low) or (high is not None and value >= high):
        raise _fail(name, value, f"a number in [{low}, {high})")
    return float(value)


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise _fail(name, value, "one of " + ", ".join(options))
    return value


# -- tensors ------------------------------------------------------------------------------

def _channels(shapes: Sequence[Shape | None], layer: str, min_rank: int = 2) -> Any:
    x = shapes[0]
    if x is None or len(x) < min_rank:
        raise ShapeError(f"'{layer}' needs an input of rank {min_rank} or more, got {list(x or ())}")
    return x[1]


def weight(name: str, shape: Callable[[Sequence[Shape | None]], Shape], what: str) -> TensorInfo:
    return TensorInfo(name, Deferred(shape, what), kind="weight")


def buffer(name: str, shape: Callable[[Sequence[Shape | None]], Shape], what: str) -> TensorInfo:
    return TensorInfo(name, Deferred(shape, what), kind="buffer")


def constant(name: str, values: Sequence[Any] | Deferred, dtype: str = "int64") -> TensorInfo:
    if isinstance(values, Deferred):
        return TensorInfo(name, Deferred(lambda s: (len(values.compute(s)),)), dtype, "constant", values)
    return TensorInfo(name, (len(values),), dtype, "constant", tuple(values))


def scalar(name: str, value: float) -> TensorInfo:
    return TensorInfo(name, (), "float32", "constant", (value,))


def _spatial_rank_check(shapes: Sequence[Shape | None], layer: str, rank: int, kind: str) -> Shape:
    """`kind` is the layer type (conv2d, conv_transpose3d), its last two characters `Nd`."""
    x = shapes[0]
    if x is None or len(x) != rank + 2:
        axes = {1: "[N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}[rank]
        spatial = len(x or ()) - 2
        if spatial < 1:
            # No spatial axis left: typically a flatten, dense or global pooling before it.
            fix = f"remove the flatten before it, or reshape the input to {axes} first (reshape: [{axes[4:]})"
        elif spatial <= 3:
            fix = f"use {kind[:-2]}{spatial}d for a {spatial}D input, or reshape the input to {axes}"
        else:
            fix = f"reshape the input to {axes} first"
        raise ShapeError(f"{kind} needs a {axes} input, got {list(x or ())}", fix=fix)
    return x


# -- lowerings ----------------------------------------------------------------------------

def _conv(rank: int) -> Callable[[str, dict], Lowered]:
    def lower(name: str, a: dict) -> Lowered:
        kernel = per_axis("kernel", a["kernel"], rank)
        auto_pad, pads = padding("padding", a["padding"], rank)
        depthwise = a["groups"] == "depthwise"
        groups = None if depthwise else positive_int("groups", a["groups"])
        filters = a["filters"]
        if filters is not None:
            positive_int("filters", filters)
        elif not depthwise:
            raise SpecError("field 'filters' is missing", fix="give the number of filters: filters: 64")
        if groups and filters and filters % groups:
            raise SpecError(f"filters {filters} is not divisible by groups {groups}",
                            fix="make filters a multiple of groups")

        def group_of(shapes) -> Any:
            c = _spatial_rank_check(shapes, name, rank, f"conv{rank}d")[1]
            g = c if depthwise else groups
            if isinstance(c, int) and isinstance(g, int) and c % g:  # g is c (depthwise) or groups, an int
                raise ShapeError(f"input has {c} channels, not divisible by groups={g}",
                                 fix="make the input channels a multiple of groups")
            return g

        def out_channels(shapes) -> Any:
            return filters if filters is not None else group_of(shapes)

        attrs: dict[str, Any] = {
            "kernel_shape": kernel,
            "strides": per_axis("stride", a["stride"], rank),
            "dilations": per_axis("dilation", a["dilation"], rank),
            "group": Deferred(group_of, "input channels") if depthwise else groups,
            "auto_pad": auto_pad,
        }
        if pads is not None:
            attrs["pads"] = pads
        tensors: list[TensorInfo | None] = [weight(
            f"{name}.weight",
            lambda s: (out_channels(s), _channels(s, name) // group_of(s), *kernel),
            "[filters, C_in/groups, *kernel]",
        )]
        if boolean("bias", a["bias"]):
            tensors.append(weight(f"{name}.bias", lambda s: (out_channels(s),), "[filters]"))
        return Lowered("Conv", attrs, tensors)

    return lower


def _conv_transpose(rank: int) -> Callable[[str, dict], Lowered]:
    def lower(name: str, a: dict) -> Lowered:
        kernel = per_axis("kernel", a["kernel"], rank)
        filters = positive_int("filters", a["filters"])
        groups = positive_int("groups", a["groups"])
        auto_pad, pads = padding("padding", a["padding"], rank)

        def in_channels(shapes) -> Any:
            return _spatial_rank_check(shapes, name, rank, f"conv_transpose{rank}d")[1]

        attrs: dict[str, Any] = {
            "kernel_shape": kernel,
            "strides": per_axis("stride", a["stride"], rank),
            "dilations": per_axis("dilation", a["dilation"], rank),
            "output_padding": per_axis("output_padding", a["output_padding"], rank, non_negative_int),
            "group": groups,
            "auto_pad": auto_pad,
        }
        if pads is not None:
            attrs["pads"] = pads
        tensors: list[TensorInfo | None] = [weight(
            f"{name}.weight", lambda s: (in_channels(s), filters // groups, *kernel),
            "[C_in, filters/groups, *kernel]")]
        if boolean("bias", a["bias"]):
            tensors.append(weight(f"{name}.bias", lambda s: (filters,), "[filters]"))
        return Lowered("ConvTranspose", attrs, tensors)

    return lower


def _pool(op: str, rank: int) -> Callable[[str, dict], Lowered]:
    def lower(name: str, a: dict) -> Lowered:
        kernel = per_axis("kernel", a["kernel"], rank)
        stride = kernel if a["stride"] is None else per_axis("stride", a["stride"], rank)
        auto_pad, pads = padding("padding", a["padding"], rank)
        attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": stride, "auto_pad": auto_pad,
                                 "ceil_mode": int(boolean("ceil_mode", a["ceil_mode"]))}
        if pads is not None:
            attrs["pads"] = pads
        if "dilation" in a:
            attrs["dilations"] = per_axis("dilation", a["dilation"], rank)
        if "count_include_pad" in a:
            attrs["count_include_pad"] = int(boolean("count_include_pad", a["count_include_pad"]))
        return Lowered(op, attrs, domain="archcalc" if op == "MinPool" else "")

    return lower


def _global_pool(op: str) -> Callable[[str, dict], Lowered]:
    return lambda name, a: Lowered(op, {})


def _batch_norm(name: str, a: dict) -> Lowered:
    def per_channel(s: Sequence[Shape | None]) -> Shape:
        return (_channels(s, name),)

    return Lowered(
        "BatchNormalization",
        {"epsilon": number("epsilon", a["epsilon"], 0), "momentum": number("momentum", a["momentum"], 0, 1.0001)},
        [weight(f"{name}.weight", per_channel, "[C]"), weight(f"{name}.bias", per_channel, "[C]"),
         buffer(f"{name}.running_mean", per_channel, "[C]"), buffer(f"{name}.running_var", per_channel, "[C]")],
    )


def integer(name: str, value: Any) -> int:
    return _int64(name, value, INT64_MIN, "an integer")


def _layer_norm(name: str, a: dict) -> Lowered:
    axis = integer("axis", a["axis"])

    def normalised(s: Sequence[Shape | None]) -> Shape:
        x = s[0] or ()
        if not -len(x) <= axis < len(x):
            raise ShapeError(f"axis {axis} is out of range for input {list(x)}",
                             fix=f"use an axis from {-len(x)} to {len(x) - 1} (-1 normalises the last axis)")
        return tuple(x[axis:]) if axis < 0 else tuple(x[axis:])

    return Lowered("LayerNormalization", {"axis": axis, "epsilon": number("epsilon", a["epsilon"], 0)},
                   [weight(f"{name}.weight", normalised, "normalised shape"),
                    weight(f"{name}.bias", normalised, "normalised shape")])


def _activation(op: str, **fixed: Any) -> Callable[[str, dict], Lowered]:
    def lower(name: str, a: dict) -> Lowered:
        attrs = dict(fixed)
        if "alpha" in a:
            attrs["alpha"] = number("alpha", a["alpha"])
        if "axis" in a:
            attrs["axis"] = integer("axis", a["axis"])
        if "approximate" in a:
            attrs["approximate"] = choice("approximate", a["approximate"], ("none", "tanh"))
        return Lowered(op, attrs)

    return lower


def _relu6(name: str, a: dict) -> Lowered:
    return Lowered("Clip", {}, [scalar(f"{name}.min", 0.0), scalar(f"{name}.max", 6.0)])


def _dropout(name: str, a: dict) -> Lowered:
    return Lowered("Dropout", {}, [scalar(f"{name}.ratio", number("rate", a["rate"], 0, 1))])


def _flatten(name: str, a: dict) -> Lowered:
    return Lowered("Flatten", {"axis": non_negative_int("axis", a["axis"])})


def _dense(name: str, a: dict) -> Lowered:
    units = positive_int("units", a["units"])

    def features(s: Sequence[Shape | None]) -> Any:
        x = s[0] or ()
        if len(x) != 2:
            raise ShapeError(
                f"dense needs a flat [N, features] input, got {list(x)}",
                fix="add a flatten layer (or global pooling then flatten) before it",
            )
        return x[1]

    tensors: list[TensorInfo | None] = [weight(f"{name}.weight", lambda s: (units, features(s)), "[units, features]")]
    if boolean("bias", a["bias"]):
        tensors.append(weight(f"{name}.bias", lambda s: (units,), "[units]"))
    return Lowered("Gemm", {"transB": 1}, tensors)


def _merge(op: str) -> Callable[[str, dict], Lowered]:
    def lower(name: str, a: dict) -> Lowered:
        return Lowered(op, {"axis": integer("axis", a["axis"])} if "axis" in a else {})

    return lower


def _reshape(name: str, a: dict) -> Lowered:
    shape = a["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and -1 <= d <= MAX_INT
                                               for d in shape):
        raise _fail("shape", shape, "a list of integers up to 2**63 - 1 (without the batch dim; -1 for one "
                    "inferred dim)")
    return Lowered("Reshape", {}, [constant(f"{name}.shape", [0, *shape])])


def _zero_padding(name: str, a: dict) -> Lowered:
    value = a["padding"]
    # The rank is known only once the input is; what does not depend on it is checked now.
    if isinstance(value, str):
        raise _fail("padding", value, "an integer, one per axis, or [begin, end] per axis (zero_padding adds "
                    "exactly that; 'same' and 'valid' are for conv and pooling)")
    for item in value if isinstance(value, list) else [value]:
        for each in item if isinstance(item, list) else [item]:
            non_negative_int("padding", each)

    def pads(s: Sequence[Shape | None]) -> tuple[int, ...]:
        rank = len(s[0] or ()) - 2
        if rank < 1:
            raise ShapeError(f"zero_padding needs spatial axes, got {list(s[0] or ())}")
        _, spatial = padding("padding", value, rank)
        assert spatial is not None  # padding gives None for 'same' only, and a string was refused above
        return (0, 0, *spatial[:rank], 0, 0, *spatial[rank:])

    return Lowered("Pad", {"mode": "constant"}, [constant(f"{name}.pads", Deferred(pads, "pads"))])


def _upsample(name: str, a: dict) -> Lowered:
    mode = choice("mode", a["mode"], ("nearest", "linear", "cubic"))
    scale = a["scale"]

    def scales(s: Sequence[Shape | None]) -> tuple[float, ...]:
        rank = len(s[0] or ()) - 2
        return (1.0, 1.0, *(float(v) for v in per_axis("scale", scale, rank)))

    return Lowered("Resize", {"mode": mode},
                   [None, constant(f"{name}.scales", Deferred(scales, "scales"), "float32")])


def _identity(name: str, a: dict) -> Lowered:
    return Lowered("Identity", {})


def layer_types() -> list[LayerType]:
    """The layer types of CNNs and MLPs (catalogue.py adds the transformer ones)."""
    types = []
    conv_fields = {"filters": _REQUIRED, "kernel": _REQUIRED, "stride": 1, "padding": 0, "dilation": 1,
                   "groups": 1, "bias": True}
    for rank in (1, 2, 3):
        types.append(LayerType(f"conv{rank}d", {**conv_fields, "filters": None}, _conv(rank), "filters",
                               aliases=("conv",) if rank == 2 else (),
                               summary=f"{rank}D convolution (groups: N or depthwise)"))
        types.append(LayerType(f"conv_transpose{rank}d", {**conv_fields, "output_padding": 0},
                               _conv_transpose(rank), "filters",
                               aliases=("deconv", "conv_transpose") if rank == 2 else (),
                               summary=f"{rank}D transposed convolution"))
        pool_fields = {"kernel": _REQUIRED, "stride": None, "padding": 0, "ceil_mode": False}
        pool_kinds: tuple[tuple[str, str, dict[str, Any]], ...] = (
            ("max", "MaxPool", {"dilation": 1}), ("avg", "AveragePool", {"count_include_pad": False}),
            ("min", "MinPool", {}))
        for kind, op, extra in pool_kinds:
            types.append(LayerType(f"{kind}pool{rank}d", {**pool_fields, **extra}, _pool(op, rank), "kernel",
                                   aliases=(f"{kind}pool",) if rank == 2 else (),
                                   summary=f"{rank}D {kind} pooling"))
    types += [
        LayerType("global_avgpool", {}, _global_pool("GlobalAveragePool"),
                  aliases=("global_average_pooling", "gap"), summary="average over all spatial positions"),
        LayerType("global_maxpool", {}, _global_pool("GlobalMaxPool"),
                  aliases=("global_max_pooling",), summary="maximum over all spatial positions"),
        LayerType("batchnorm", {"epsilon": 1e-5, "momentum": 0.9}, _batch_norm,
                  aliases=("bn", "batch_norm"),
                  summary="batch normalisation (params: scale, bias; buffers: mean, var)"),
        LayerType("layernorm", {"axis": -1, "epsilon": 1e-5}, _layer_norm, "axis",
                  aliases=("layer_norm", "ln"), summary="layer normalisation over the axes from `axis` on"),
        LayerType("relu", {}, _activation("Relu"), summary="max(x, 0)"),
        LayerType("relu6", {}, _relu6, summary="min(max(x, 0), 6)"),
        LayerType("leaky_relu", {"alpha": 0.01}, _activation("LeakyRelu"), "alpha", aliases=("leakyrelu",),
                  summary="x if x > 0 else alpha * x"),
        LayerType("sigmoid", {}, _activation("Sigmoid"), summary="1 / (1 + exp(-x))"),
        LayerType("hard_sigmoid", {}, _activation("HardSigmoid", alpha=1 / 6), summary="max(0, min(1, x/6 + 1/2))"),
        LayerType("tanh", {}, _activation("Tanh"), summary="tanh(x)"),
        LayerType("elu", {"alpha": 1.0}, _activation("Elu"), "alpha", summary="exponential linear unit"),
        LayerType("gelu", {"approximate": "none"}, _activation("Gelu"), summary="x * Phi(x)"),
        LayerType("silu", {}, _activation("Swish"), aliases=("swish",), summary="x * sigmoid(x)"),
        LayerType("hard_swish", {}, _activation("HardSwish"), aliases=("hardswish",),
                  summary="x * hard_sigmoid(x)"),
        LayerType("softmax", {"axis": -1}, _activation("Softmax"), "axis", summary="exp(x) / sum(exp(x)) over axis"),
        LayerType("dropout", {"rate": 0.5}, _dropout, "rate", summary="identity at inference"),
        LayerType("flatten", {"axis": 1}, _flatten, "axis", summary="[N, ...] -> [N, features]"),
        LayerType("dense", {"units": _REQUIRED, "bias": True}, _dense, "units", aliases=("linear", "fc"),
                  summary="fully connected: (N_in + 1) * N_out params"),
        LayerType("add", {}, _merge("Sum"), inputs=(2, 64), summary="element-wise sum of its inputs"),
        LayerType("multiply", {}, _merge("Mul"), inputs=(2, 2), aliases=("mul",),
                  summary="element-wise product of two inputs"),
        LayerType("concat", {"axis": 1}, _merge("Concat"), "axis", inputs=(1, 1024),
                  summary="join inputs along an axis (channels by default)"),
        LayerType("reshape", {"shape": _REQUIRED}, _reshape, "shape", summary="new shape, batch dim kept"),
        LayerType("zero_padding", {"padding": 1}, _zero_padding, "padding", aliases=("pad",),
                  summary="zeros around the spatial axes"),
        LayerType("upsample", {"scale": 2, "mode": "nearest"}, _upsample, "scale", aliases=("upsampling",),
                  summary="resize by an integer factor"),
        LayerType("identity", {}, _identity, summary="output = input"),
    ]
    return types


REQUIRED = _REQUIRED
