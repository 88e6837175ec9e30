"""`archcalc device calibrate`: measure this machine with onnxruntime and describe it as a
device file, so the roofline can be checked here against `archcalc verify --profile`.

Each measurement is a small ONNX model run in a session set up as `verify --profile` sets
its own (no graph optimisation, weights prepacked, onnxruntime's default threads), timed
by onnxruntime's profiler per node, the least time over a few runs after a warm-up (other
work on a shared machine only ever adds time, and adds it unevenly):

- peak FLOP/s: a large fp32 MatMul (N x N by an N x N weight, 2 N^3 FLOPs);
- memory bandwidth: a large element-wise Add (two inputs read, one output written), 96 MiB
  moved, more than any cache holds;
- cache bandwidth, for layers that move less than the last-level cache holds (its size as
  the operating system reports it): a chain of Relu on a 64 x 56 x 56 activation, each
  output a graph output as verify makes it, the median node's bytes per second; and the
  same on 256 and 1024 channels (6.4 and 25.7 MB moved, when the cache holds them): the
  fraction of that bandwidth larger tensors reach as they spill from the nearer caches;
- per-op overhead: a chain of small Relu nodes (TINY_ELEMENTS each), the median node time;
- 3x3 convolutions (64 channels at 56 x 56, in blocks with a depthwise conv and a ReLU,
  every output kept as verify makes it): FLOP/s reached, less the overhead;
- convolutions by size (CONVS, with a bias as exports fold BatchNorm into it): 3x3 convs
  from a stem of 3 channels to 64 channels at 56 x 56, for Conv's efficiency points by
  FLOPs (a stem's few channels reach a third of the peak); and 3x3 depthwise convs,
  MobileNet's ladder of 112x112 planes to 7x7 at strides 1 and 2, for Conv.depthwise's and
  Conv.depthwise.strided's points by the FLOPs of one channel's tap (RuleResult.parts), as a
  depthwise kernel sweeps its planes at a speed set by the plane's size;
- a 1x1 conv without and with a bias (MobileNetV2's first expansion, 16 -> 96 channels at
  112 x 112): Conv.pointwise's efficiency, and the passes over the output the bias adds
  (onnxruntime adds it after the product), in reads and writes of the output at the
  bandwidth for that many bytes;
- pooling (AveragePool twice: the kernel of opsets 7-18 and the slower one of opset 19+),
  normalisation (BatchNorm, LayerNorm, RMSNorm), softmax, erf, gelu, sigmoid, swish
  and rotary embedding (VECTOR_OPS) on typical activations: an efficiency for each that runs
  slower than its bytes at the cache bandwidth allow;
- MatMul by size (PRODUCTS: attention's batched products of two activations, projections
  by a prepacked weight, 3 MFLOP to 4 GFLOP): efficiency points by FLOPs, as a small product
  reaches less of the peak than a large one;
- Transpose (TRANSPOSES: a head split in cache, a weight-sized matrix in DRAM): the fraction
  of the bandwidth its strided copy reaches, points by bytes moved.

The peak is the faster of the MatMul and the convolution (onnxruntime's convolution often
beats its MatMul on a CPU); each op kind's efficiency is its rate over that peak.

Takes a few seconds. Nothing here prints; the CLI writes the file.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archcalc.core.units import BYTES, format_quantity
from archcalc.runtime.profiling import node_times_us

TINY_ELEMENTS = 256


@dataclass(frozen=True)
class Product:
    """A MatMul measured for the efficiency curve: `a` times `b`, `b` a prepacked weight (a
    projection) or a second activation (attention's products)."""

    a: tuple[int, ...]
    b: tuple[int, ...]
    weight: bool
    what: str

    @property
    def flops(self) -> int:
        return 2 * int(np.prod(self.a)) * self.b[-1]


@dataclass(frozen=True)
class Copy:
    """A Transpose measured for the data-movement curve."""

    shape: tuple[int, ...]
    perm: tuple[int, ...]
    what: str

    @property
    def moved(self) -> int:
        return 2 * 4 * int(np.prod(self.shape))


PRODUCTS = (
    Product((1, 6, 64, 64), (1, 6, 64, 64), False, "attention scores, 6 heads of 64 tokens"),
    Product((1, 12, 128, 64), (1, 12, 64, 128), False, "attention scores, 12 heads of 128 tokens"),
    Product((128, 768), (768, 768), True, "a 768x768 projection of 128 tokens"),
    Product((128, 2048), (2048, 8192), True, "a 2048x8192 MLP weight on 128 tokens"),
)
TRANSPOSES = (
    Copy((1, 12, 197, 64), (0, 2, 1, 3), "a head split, 12 heads of 197 tokens"),
    Copy((2048, 4096), (1, 0), "a 2048x4096 matrix (a weight's transpose)"),
)


@dataclass(frozen=True)
class ConvShape:
    """A square Conv measured for calibration, padded to keep the size at stride 1:
    `channels` -> `filters` at `size` x `size`, or depthwise (one filter per channel,
    `filters` = `channels`); with a bias by default, as exports fold BatchNorm into it."""

    channels: int
    filters: int
    size: int  # input height and width
    stride: int = 1
    depthwise: bool = False
    kernel: int = 3
    bias: bool = True

    @property
    def out(self) -> int:
        return (self.size - 1) // self.stride + 1

    @property
    def flops(self) -> int:
        """The kernel's MACs per input channel (per its own channel for a depthwise conv) and
        the bias, per output element."""
        taps = self.kernel**2 * (1 if self.depthwise else self.channels)
        return (2 * taps + self.bias) * self.out**2 * self.filters

    @property
    def part_flops(self) -> float:
        """The FLOPs of one part (RuleResult.parts: a depthwise conv's channel's taps; the whole
        conv otherwise)."""
        return self.flops / (self.kernel**2 * self.channels if self.depthwise else 1)

    @property
    def kind(self) -> str:
        if not self.depthwise:
            return "Conv"
        return "Conv.depthwise.strided" if self.stride > 1 else "Conv.depthwise"

    def describe(self) -> str:
        k = f"{self.kernel}x{self.kernel}"
        if self.depthwise:
            return (f"{k} depthwise Conv, {self.channels} channels of {self.size}x{self.size}, stride {self.stride}: "
                    f"{self.out}x{self.out} outputs a channel")
        return (f"{k} Conv {self.channels}->{self.filters} channels at {self.size}x{self.size}, stride {self.stride}"
                + ("" if self.bias else ", no bias"))


def _depthwise(channels: int, size: int, stride: int) -> ConvShape:
    return ConvShape(channels, channels, size, stride, depthwise=True)


CONVS = (
    # A stem on an image's 3 channels, then VGG/ResNet-like stages: small convs reach less of the peak.
    ConvShape(3, 32, 224, 2), ConvShape(16, 32, 56), ConvShape(64, 64, 28), ConvShape(64, 64, 56),
    # Each stage of MobileNetV2 (channels double as the plane halves); ShuffleNet's and
    # EfficientNet's depthwise layers fall on the same planes with other channel counts,
    # which change the time but not the speed.
    _depthwise(32, 112, 1), _depthwise(144, 56, 1), _depthwise(192, 28, 1), _depthwise(384, 14, 1),
    _depthwise(960, 7, 1),
    _depthwise(96, 112, 2), _depthwise(144, 56, 2), _depthwise(192, 28, 2), _depthwise(576, 14, 2),
)
RELU_CHAIN = 8
CACHE_CHANNELS = (256, 1024)  # Relu chains on 4x and 16x the 64-channel activation: 6.4 and 25.7 MB moved
CONV_BLOCKS = 3
CONV_CHANNELS = 64


@dataclass(frozen=True)
class Sizes:
    """Problem sizes: large enough that the big ops run for milliseconds (the defaults), small
    for a quick check (tests)."""

    matmul_n: int = 512
    add_elements: int = 8 * 2**20
    chain: int = 64
    conv_hw: int = 56
    runs: int = 10
    threads: int = 0  # onnxruntime's intra-op threads; 0: its default (one per core), as verify runs
    products: tuple[Product, ...] = PRODUCTS
    transposes: tuple[Copy, ...] = TRANSPOSES
    convs: tuple[ConvShape, ...] = CONVS
    pointwise: ConvShape = ConvShape(16, 96, 112, kernel=1, bias=False)  # measured with and without a bias


@dataclass(frozen=True)
class Measurement:
    peak_flops: float  # the best FLOP/s of the MatMul and the convolution
    bandwidth: float  # bytes/s
    cache_bytes: int  # 0: the last-level cache size is unknown, so no cache level
    cache_bandwidth: float
    overhead_s: float
    rates: dict[str, float]  # FLOP/s reached by each op kind measured: MatMul, Conv, Conv.pointwise, vector ops
    product_rates: tuple[float, ...]  # FLOP/s of each of sizes.products
    conv_rates: tuple[float, ...]  # FLOP/s of each of sizes.convs
    bias_passes: float  # passes over the output a 1x1 conv's bias adds (Conv.pointwise.bias)
    copy_efficiencies: tuple[float, ...]  # fraction of the bandwidth each of sizes.transposes reached
    cache_efficiencies: tuple[tuple[int, float], ...]  # (bytes moved, fraction of cache_bandwidth reached)
    threads: int
    memory_bytes: int
    sizes: Sizes
    processor: str

    def efficiency(self, kind: str) -> float:
        """The fraction of the peak an op kind reaches, within (0, 1]."""
        return _fraction(self.rates[kind] / self.peak_flops)


def _model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[tuple[str, Sequence[int]]], outputs: Sequence[str],
           weights: dict[str, np.ndarray], opset: int = 13) -> bytes:
    graph = helper.make_graph(
        list(nodes), "calibration",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)) for name, shape in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString()


def _node_times(model: bytes, feeds: dict[str, np.ndarray], runs: int, scratch: str,
                threads: int = 0) -> dict[str, float]:
    """Least kernel time (seconds) of each node over `runs` runs after a warm-up."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(scratch, "calibration")
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    session.run(names, feeds)  # warm-up: allocation and packing
    path = session.end_profiling()  # drops the warm-up's events
    os.remove(path)
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        session.run(names, feeds)
    # The first run of the second session warms it up; the rest are measured.
    return {name: micros * 1e-6 for name, micros in node_times_us(session.end_profiling(), skip_runs=1).items()}


def measure(sizes: Sizes = Sizes()) -> Measurement:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="archcalc-calibrate-") as scratch:
        n = sizes.matmul_n
        matmul = _model([helper.make_node("MatMul", ["a", "w"], ["y"], name="matmul")], [("a", (n, n))], ["y"],
                        {"w": rng.standard_normal((n, n), dtype=np.float32)})
        matmul_s = _node_times(matmul, {"a": rng.standard_normal((n, n), dtype=np.float32)}, sizes.runs,
                               scratch, sizes.threads)["matmul"]

        count = sizes.add_elements
        add = _model([helper.make_node("Add", ["x", "y"], ["z"], name="add")], [("x", (count,)), ("y", (count,))],
                     ["z"], {})
        feeds = {"x": rng.standard_normal(count, dtype=np.float32), "y": rng.standard_normal(count, dtype=np.float32)}
        bandwidth = 3 * 4 * count / _node_times(add, feeds, sizes.runs, scratch, sizes.threads)["add"]
        cache_bytes = last_level_cache_bytes()
        cache_bandwidth = 0.0
        cache_points: list[tuple[int, float]] = []
        if cache_bytes:
            # Chains of Relu on activations of 64 channels (the cache bandwidth), then of CACHE_CHANNELS
            # (larger tensors, which spill from the nearer caches: the cache level's efficiency by bytes).
            for channels in (64, *CACHE_CHANNELS):
                shape = (1, channels, sizes.conv_hw, sizes.conv_hw)
                moved = 2 * 4 * int(np.prod(shape))
                if moved > cache_bytes:
                    break
                rate = moved / _relu_chain_median(shape, rng, sizes, scratch)
                cache_bandwidth = cache_bandwidth or rate
                cache_points.append((moved, rate / cache_bandwidth))

        # Small but not empty: the fixed cost of an op that touches a few cache lines.
        chain = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"relu{i}") for i in range(sizes.chain)]
        tiny = _model(chain, [("t0", (TINY_ELEMENTS,))], [f"t{sizes.chain}"], {})
        overheads = _node_times(tiny, {"t0": np.ones(TINY_ELEMENTS, dtype=np.float32)}, sizes.runs, scratch,
                                sizes.threads)
        overhead = statistics.median(overheads.values())

        # Convolutions as a model runs them: a few blocks of conv, depthwise conv and ReLU, every
        # output kept (as verify does), each op's median over its nodes.
        hw = sizes.conv_hw
        nodes, weights, last = [], {}, "x"
        for i in range(CONV_BLOCKS):
            nodes += [helper.make_node("Conv", [last, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                      helper.make_node("Conv", [f"c{i}", f"d{i}"], [f"e{i}"], name=f"depthwise{i}",
                                       pads=[1, 1, 1, 1], group=CONV_CHANNELS),
                      helper.make_node("Relu", [f"e{i}"], [f"r{i}"], name=f"relu{i}")]
            weights[f"w{i}"] = rng.standard_normal((CONV_CHANNELS, CONV_CHANNELS, 3, 3), dtype=np.float32)
            weights[f"d{i}"] = rng.standard_normal((CONV_CHANNELS, 1, 3, 3), dtype=np.float32)
            last = f"r{i}"
        outputs = [name for node in nodes for name in node.output]
        shape = (1, CONV_CHANNELS, hw, hw)
        convs = _node_times(_model(nodes, [("x", shape)], outputs, weights),
                            {"x": rng.standard_normal(shape, dtype=np.float32)}, sizes.runs, scratch,
                            sizes.threads)
        conv_s = statistics.median(convs[f"conv{i}"] for i in range(CONV_BLOCKS))
        conv_rates = tuple(shape.flops / max(_conv_s(shape, rng, sizes, scratch) - overhead, 1e-9)
                           for shape in sizes.convs)
        plain_s, biased_s = (_conv_s(replace(sizes.pointwise, bias=bias), rng, sizes, scratch)
                             for bias in (False, True))
        vector_s = _node_times(*_vector_ops(rng), sizes.runs, scratch, sizes.threads)
        vector_s.update(_node_times(*_average_pool_before_19(rng), sizes.runs, scratch, sizes.threads))
        products = []
        for product in sizes.products:
            node = helper.make_node("MatMul", ["a", "b"], ["y"], name="matmul")
            if product.weight:
                weight = {"b": rng.standard_normal(product.b, dtype=np.float32)}
                model = _model([node], [("a", product.a)], ["y"], weight)
                feeds = {"a": rng.standard_normal(product.a, dtype=np.float32)}
            else:
                model = _model([node], [("a", product.a), ("b", product.b)], ["y"], {})
                feeds = {"a": rng.standard_normal(product.a, dtype=np.float32),
                         "b": rng.standard_normal(product.b, dtype=np.float32)}
            spent = _node_times(model, feeds, sizes.runs, scratch, sizes.threads)["matmul"] - overhead
            products.append(product.flops / max(spent, 1e-9))
        copies = []
        for copy in sizes.transposes:
            model = _model([helper.make_node("Transpose", ["x"], ["y"], name="transpose", perm=list(copy.perm))],
                           [("x", copy.shape)], ["y"], {})
            spent = _node_times(model, {"x": rng.standard_normal(copy.shape, dtype=np.float32)}, sizes.runs,
                                scratch, sizes.threads)["transpose"] - overhead
            reachable = cache_bandwidth if cache_bytes and copy.moved <= cache_bytes else bandwidth
            copies.append(max(min(1.0, copy.moved / max(spent, 1e-9) / reachable), 1e-4))
    rates = {
        "MatMul": 2 * n**3 / matmul_s,
        "Conv": 2 * CONV_CHANNELS**2 * 9 * hw * hw / max(conv_s - overhead, 1e-9),
    }
    peak = max(rates["MatMul"], rates["Conv"])
    pointwise = replace(sizes.pointwise, bias=False)
    rates["Conv.pointwise"] = pointwise.flops / max(plain_s - overhead, 1e-9)
    passed = 2 * 4 * pointwise.filters * pointwise.out**2  # one read and one write of the fp32 output
    reachable = cache_bandwidth if cache_bytes and passed <= cache_bytes else bandwidth
    bias_passes = min(max(biased_s - plain_s, 0.0) / (passed / reachable), 4.0)
    in_cache = cache_bandwidth or bandwidth
    for op, (flops, moved, _) in VECTOR_OPS.items():
        # A lowered op (Swish: Sigmoid then Mul) runs as several nodes named after it.
        spent = max(sum(t for name, t in vector_s.items() if name == op or name.startswith(f"{op}/")) - overhead,
                    1e-9)
        # Only an op slower than its bytes allow gets an efficiency: the rest are memory-bound as modelled.
        rates[op] = peak if spent <= moved / in_cache else flops / spent
    return Measurement(
        peak_flops=peak, bandwidth=bandwidth, cache_bytes=cache_bytes,
        cache_bandwidth=cache_bandwidth, overhead_s=overhead, rates=rates,
        product_rates=tuple(products), conv_rates=conv_rates, bias_passes=bias_passes,
        copy_efficiencies=tuple(copies),
        cache_efficiencies=tuple((moved, _fraction(value)) for moved, value in cache_points[1:]),
        threads=sizes.threads or os.cpu_count() or 1, memory_bytes=_physical_memory(), sizes=sizes,
        processor=platform.processor() or platform.machine(),
    )


# Ops whose kernels may run slower than their bytes allow, each timed on a typical activation:
# op -> (FLOPs as archcalc counts them, bytes read and written, its input's shape).
_IMAGE = (1, 64, 56, 56)  # 200,704 elements; pooled 3x3 stride 2 to 64 x 28 x 28 = 50,176
_TOKENS = (1, 196, 384)  # 75,264 elements
_LLM = (1, 128, 2048)  # 262,144 elements: a 1B-parameter LLM's hidden state for 128 tokens
VECTOR_OPS: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "MaxPool": (9 * 50_176, 4 * (200_704 + 50_176), _IMAGE),
    "AveragePool": (9 * 50_176, 4 * (200_704 + 50_176), _IMAGE),  # opset 7-18's kernel
    "AveragePool.opset19": (9 * 50_176, 4 * (200_704 + 50_176), _IMAGE),  # opset 19's (see rules/pool.py)
    "BatchNormalization": (2 * 200_704, 4 * (2 * 200_704 + 4 * 64), _IMAGE),
    "LayerNormalization": (7 * 75_264, 4 * (2 * 75_264 + 2 * 384), _TOKENS),
    "Softmax": (5 * 6 * 196 * 196, 8 * 6 * 196 * 196, (1, 6, 196, 196)),
    "Erf": (196 * 1536, 8 * 196 * 1536, (1, 196, 1536)),
    "Gelu": (5 * 196 * 1536, 8 * 196 * 1536, (1, 196, 1536)),
    "Sigmoid": (4 * 200_704, 8 * 200_704, _IMAGE),
    # RMSNorm: 4 FLOPs per element (square, sum, scale, weight); reads x and a 2048 scale.
    "RMSNormalization": (4 * 262_144, 4 * (2 * 262_144 + 2048), _LLM),
    # Rotary: 3 FLOPs per rotated element; reads x and cos and sin of (1, 128, 32).
    "RotaryEmbedding": (3 * 262_144, 4 * (2 * 262_144 + 2 * 4096), _LLM),
    # Swish as archcalc's export lowers it (Sigmoid then Mul): 6 FLOPs per element of an MLP's hidden.
    "Swish": (6 * 1_048_576, 8 * 1_048_576, (1, 128, 8192)),
}


def _vector_ops(rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    """One model running each of VECTOR_OPS on its own input (opset 23, for Gelu, RMSNormalization
    and RotaryEmbedding; Swish, which onnxruntime has no kernel for, as export lowers it)."""
    nodes = [
        helper.make_node("MaxPool", ["image"], ["maxpool"], name="MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["image"], ["avgpool"], name="AveragePool.opset19", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["image", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"],
                         name="BatchNormalization"),
        helper.make_node("LayerNormalization", ["tokens", "ln_scale", "ln_bias"], ["ln"], name="LayerNormalization"),
        helper.make_node("Softmax", ["scores"], ["softmax"], name="Softmax", axis=-1),
        helper.make_node("Erf", ["hidden"], ["erf"], name="Erf"),
        helper.make_node("Gelu", ["hidden"], ["gelu"], name="Gelu"),
        helper.make_node("Sigmoid", ["image"], ["sigmoid"], name="Sigmoid"),
        helper.make_node("RMSNormalization", ["llm", "rms_scale"], ["rms"], name="RMSNormalization", axis=-1),
        helper.make_node("RotaryEmbedding", ["llm", "cos", "sin"], ["rotary"], name="RotaryEmbedding", num_heads=32),
        helper.make_node("Sigmoid", ["mlp"], ["swish_gate"], name="Swish/sigmoid"),
        helper.make_node("Mul", ["mlp", "swish_gate"], ["swish"], name="Swish"),
    ]
    weights = {name: rng.standard_normal(64, dtype=np.float32) for name in ("bn_scale", "bn_bias", "bn_mean")}
    weights["bn_var"] = np.ones(64, dtype=np.float32)
    weights.update({name: rng.standard_normal(384, dtype=np.float32) for name in ("ln_scale", "ln_bias")})
    weights["rms_scale"] = rng.standard_normal(2048, dtype=np.float32)
    # No position ids: the caches are given per token, (batch, seq, rotary dim / 2).
    inputs = {"image": _IMAGE, "tokens": _TOKENS, "scores": VECTOR_OPS["Softmax"][2], "hidden": VECTOR_OPS["Erf"][2],
              "llm": _LLM, "cos": (1, 128, 32), "sin": (1, 128, 32), "mlp": VECTOR_OPS["Swish"][2]}
    model = _model(nodes, list(inputs.items()), [name for node in nodes for name in node.output], weights, opset=23)
    return model, {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in inputs.items()}


def _relu_chain_median(shape: tuple[int, ...], rng: np.random.Generator, sizes: Sizes, scratch: str) -> float:
    """Median node time of a chain of RELU_CHAIN Relu on `shape`, each output a graph output as verify makes it."""
    relus = [helper.make_node("Relu", [f"r{i}"], [f"r{i + 1}"], name=f"relu{i}") for i in range(RELU_CHAIN)]
    model = _model(relus, [("r0", shape)], [f"r{i + 1}" for i in range(RELU_CHAIN)], {})
    times = _node_times(model, {"r0": rng.standard_normal(shape, dtype=np.float32)}, sizes.runs, scratch, sizes.threads)
    return max(statistics.median(times.values()), 1e-9)


def _conv_s(conv: ConvShape, rng: np.random.Generator, sizes: Sizes, scratch: str) -> float:
    """Median node time of CONV_BLOCKS convs of `conv`'s shape on one input, each output kept."""
    shape = (1, conv.channels, conv.size, conv.size)
    group = conv.channels if conv.depthwise else 1
    nodes, weights = [], {}
    for i in range(CONV_BLOCKS):
        bias = [f"b{i}"] if conv.bias else []
        nodes.append(helper.make_node("Conv", ["x", f"w{i}", *bias], [f"y{i}"], name=f"conv{i}",
                                      pads=[conv.kernel // 2] * 4, strides=[conv.stride] * 2, group=group))
        weights[f"w{i}"] = rng.standard_normal((conv.filters, conv.channels // group, conv.kernel, conv.kernel),
                                               dtype=np.float32)
        if conv.bias:
            weights[f"b{i}"] = rng.standard_normal(conv.filters, dtype=np.float32)
    model = _model(nodes, [("x", shape)], [f"y{i}" for i in range(CONV_BLOCKS)], weights)
    times = _node_times(model, {"x": rng.standard_normal(shape, dtype=np.float32)}, sizes.runs, scratch,
                        sizes.threads)
    return statistics.median(times.values())


def _average_pool_before_19(rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    """AveragePool as models exported at opsets 7-18 run it (another kernel than opset 19's)."""
    node = helper.make_node("AveragePool", ["image"], ["avgpool"], name="AveragePool", kernel_shape=[3, 3],
                            strides=[2, 2], pads=[1, 1, 1, 1])
    model = _model([node], [("image", _IMAGE)], ["avgpool"], {}, opset=17)
    return model, {"image": rng.standard_normal(_IMAGE, dtype=np.float32)}


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache Linux reports (sysfs); 0 elsewhere."""
    sizes = [0]
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.read().strip()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _curve_lines(result: Measurement, by: str) -> list[str]:
    """The MatMul points by FLOPs (Gemm runs the same kernel) and the Transpose points by bytes."""
    sizes = result.sizes
    lines = []
    if sizes.products or sizes.convs:
        lines.append("efficiency_by_flops:  # FLOP/s reached (less the overhead) / peak, by the FLOPs of one part")
    if sizes.products:
        for op in ("MatMul", "Gemm"):
            lines.append(f"  {op}:")
            for product, rate in zip(sizes.products, result.product_rates):
                what = f"{by}: MatMul {_shape(product.a)} x {_shape(product.b)}, {product.what})"
                lines.append(f"    - {{flops: {product.flops}, value: {_fraction(rate / result.peak_flops):.6g}, "
                             f"source: {json.dumps(what)}}}")
    for kind in dict.fromkeys(shape.kind for shape in sizes.convs):
        lines.append(f"  {kind}:" + ("  # by the FLOPs of one channel's tap" if kind != "Conv" else ""))
        for shape, rate in zip(sizes.convs, result.conv_rates):
            if shape.kind == kind:
                what = f"{by}: {shape.describe()})"
                value = _fraction(rate / result.peak_flops)
                lines.append(f"    - {{flops: {shape.part_flops:.6g}, value: {value:.6g}, source: {json.dumps(what)}}}")
    if sizes.transposes:
        lines += ["bandwidth_efficiency:  # bytes/s reached (less the overhead) / the bandwidth for that many bytes",
                  "  Transpose:"]
        for copy, value in zip(sizes.transposes, result.copy_efficiencies):
            what = f"{by}: Transpose {_shape(copy.shape)} perm {list(copy.perm)}, {copy.what})"
            lines.append(f"    - {{bytes: {copy.moved}, value: {value:.6g}, source: {json.dumps(what)}}}")
    return lines


def _fraction(value: float) -> float:
    return max(min(1.0, value), 1e-4)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _pointwise_source(sizes: Sizes) -> str:
    return f"{replace(sizes.pointwise, bias=False).describe()} (median of {CONV_BLOCKS})"


def _bias_source(sizes: Sizes) -> str:
    return (f"{_pointwise_source(sizes)}: with a bias less without, over one read and write of its output at the "
            f"bandwidth for those bytes")


def _vector_source(op: str) -> str:
    flops, moved, shape = VECTOR_OPS[op]
    return (f"{op} on {'x'.join(map(str, shape))}: {flops:,} FLOPs / (peak x time), or 1 when its "
            f"{moved:,} bytes at the cache bandwidth explain the time")


def device_yaml(result: Measurement, name: str = "cpu-local") -> str:
    """The measurement as a device file (archcalc.hardware.device's form)."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = result.sizes
    by = f"measured by archcalc device calibrate ({when}, onnxruntime CPU, {result.threads} threads"
    hw = sizes.conv_hw

    def entry(value: float, what: str) -> str:
        return f"{{value: {value:.6g}, source: {json.dumps(f'{by}: {what})')}}}"

    mm = f"MatMul {sizes.matmul_n}^3"
    conv = f"3x3 Conv 64->64 channels at {hw}x{hw} (median of {CONV_BLOCKS} in blocks)"
    tiny = f"median of {sizes.chain} Relu nodes of {TINY_ELEMENTS} elements"
    peak = f"the faster of {mm} and {conv}, fp32, least of {sizes.runs} runs"
    big = f"Add of two {sizes.add_elements:,}-element fp32 tensors"
    cached = f"a chain of {RELU_CHAIN} Relu on 64x{hw}x{hw} fp32, each output kept, median node"
    lines = [
        f"name: {name}",
        f"title: {json.dumps(f'This machine ({result.processor}, {result.threads} threads)')}",
        "peak_tflops:",
        f"  fp32: {entry(result.peak_flops / 1e12, peak)}",
        f"bandwidth_gb_s: {entry(result.bandwidth / 1e9, big)}",
        f"memory: {{value: {format_quantity(result.memory_bytes, BYTES)}, source: "
        f"{json.dumps('physical memory reported by the operating system (sysconf)')}}}",
        f"overhead_us: {entry(result.overhead_s * 1e6, tiny)}",
        *([f"cache_bytes: {{value: {format_quantity(result.cache_bytes, BYTES)}, source: "
           f"{json.dumps('largest CPU cache the operating system reports (sysfs)')}}}",
           f"cache_bandwidth_gb_s: {entry(result.cache_bandwidth / 1e9, cached)}"]
          if result.cache_bytes else []),
        *(["cache_efficiency:  # bytes/s reached / cache_bandwidth_gb_s, by bytes moved", *(
            f"  - {{bytes: {moved}, value: {value:.6g}, source: "
            f"{json.dumps(f'{by}: a chain of {RELU_CHAIN} Relu moving {moved:,} bytes each, median node)')}}}"
            for moved, value in result.cache_efficiencies)] if result.cache_efficiencies else []),
        "efficiency:  # FLOP/s reached / peak",
        f"  MatMul: {entry(result.efficiency('MatMul'), mm)}",
        f"  Gemm: {entry(result.efficiency('MatMul'), mm + ' (Gemm runs the same kernel)')}",
        f"  Conv: {entry(result.efficiency('Conv'), conv)}",
        f"  Conv.pointwise: {entry(result.efficiency('Conv.pointwise'), _pointwise_source(sizes))}",
        *(f"  {op}: {entry(result.efficiency(op), _vector_source(op))}" for op in VECTOR_OPS),
        *_curve_lines(result, by),
        "output_passes:  # passes over the output after the kernel, each a read and a write",
        f"  Conv.pointwise.bias: {entry(result.bias_passes, _bias_source(sizes))}",
        f"threads: {result.threads}",
    ]
    return "\n".join(lines) + "\n"
