"""`archcalc device calibrate`: measure this machine with onnxruntime and describe it as a
device file, so the roofline can be checked here against `archcalc verify --profile`.

Each measurement is a small ONNX model run in a session set up as `verify --profile` sets
its own (no graph optimisation, weights prepacked, onnxruntime's default threads), timed
by onnxruntime's profiler per node, the median over a few runs after a warm-up (the
median, not the least: a model's layers, measured the same way, share the machine with the
same other work):

- peak FLOP/s: a large fp32 MatMul (N x N by an N x N weight, 2 N^3 FLOPs);
- memory bandwidth: a large element-wise Add (two inputs read, one output written), 96 MiB
  moved, more than any cache holds;
- cache bandwidth: the same Add moving a quarter of the last-level cache (which the
  operating system reports), as a layer does whose input the layer before just wrote;
- per-op overhead: a chain of small Relu nodes (TINY_ELEMENTS each), the median node time;
- a 3x3 convolution and a 3x3 depthwise convolution: FLOP/s reached, less the overhead.

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
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archcalc.core.units import BYTES, format_quantity

TINY_ELEMENTS = 256


@dataclass(frozen=True)
class Sizes:
    """Problem sizes: large enough that the big ops run for milliseconds (the defaults), small
    for a quick check (tests)."""

    matmul_n: int = 1024
    add_elements: int = 8 * 2**20
    chain: int = 64
    conv_hw: int = 56
    runs: int = 10


@dataclass(frozen=True)
class Measurement:
    peak_flops: float  # the best FLOP/s of the MatMul and the convolution
    bandwidth: float  # bytes/s
    cache_bytes: int  # 0: the last-level cache size is unknown, so no cache level
    cache_bandwidth: float
    overhead_s: float
    rates: dict[str, float]  # FLOP/s reached by each op kind measured: MatMul, Conv, Conv.depthwise
    threads: int
    memory_bytes: int
    sizes: Sizes
    processor: str

    def efficiency(self, kind: str) -> float:
        """The fraction of the peak an op kind reaches, within (0, 1]."""
        return max(min(1.0, self.rates[kind] / self.peak_flops), 1e-4)


def _model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[tuple[str, Sequence[int]]], outputs: Sequence[str],
           weights: dict[str, np.ndarray]) -> bytes:
    graph = helper.make_graph(
        list(nodes), "calibration",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)) for name, shape in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


def _node_times(model: bytes, feeds: dict[str, np.ndarray], runs: int, scratch: str) -> dict[str, float]:
    """Median kernel time (seconds) of each node over `runs` runs after a warm-up."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(scratch, "calibration")
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    session.run(names, feeds)  # warm-up: allocation and packing
    times: dict[str, list[float]] = {}
    path = session.end_profiling()  # drops the warm-up's events
    os.remove(path)
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        session.run(names, feeds)
    path = session.end_profiling()
    with open(path, encoding="utf-8") as handle:
        events = json.load(handle)
    os.remove(path)
    for event in events:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            times.setdefault(name[: -len("_kernel_time")], []).append(float(event.get("dur", 0)) * 1e-6)
    # The first run of the second session warms it up; the rest are measured.
    return {name: statistics.median(values[1:] or values) for name, values in times.items()}


def measure(sizes: Sizes = Sizes()) -> Measurement:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="archcalc-calibrate-") as scratch:
        n = sizes.matmul_n
        matmul = _model([helper.make_node("MatMul", ["a", "w"], ["y"], name="matmul")], [("a", (n, n))], ["y"],
                        {"w": rng.standard_normal((n, n), dtype=np.float32)})
        matmul_s = _node_times(matmul, {"a": rng.standard_normal((n, n), dtype=np.float32)}, sizes.runs,
                               scratch)["matmul"]

        count = sizes.add_elements
        add = _model([helper.make_node("Add", ["x", "y"], ["z"], name="add")], [("x", (count,)), ("y", (count,))],
                     ["z"], {})
        feeds = {"x": rng.standard_normal(count, dtype=np.float32), "y": rng.standard_normal(count, dtype=np.float32)}
        bandwidth = 3 * 4 * count / _node_times(add, feeds, sizes.runs, scratch)["add"]
        cache_bytes = last_level_cache_bytes()
        cache_bandwidth = 0.0
        if cache_bytes:
            small = max(cache_bytes // 4 // 12, 1)  # elements: 12 bytes moved per element
            add = _model([helper.make_node("Add", ["x", "y"], ["z"], name="add")],
                         [("x", (small,)), ("y", (small,))], ["z"], {})
            feeds = {"x": rng.standard_normal(small, dtype=np.float32),
                     "y": rng.standard_normal(small, dtype=np.float32)}
            cache_bandwidth = 3 * 4 * small / _node_times(add, feeds, sizes.runs, scratch)["add"]

        # Small but not empty: the fixed cost of an op that touches a few cache lines.
        chain = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"relu{i}") for i in range(sizes.chain)]
        tiny = _model(chain, [("t0", (TINY_ELEMENTS,))], [f"t{sizes.chain}"], {})
        overheads = _node_times(tiny, {"t0": np.ones(TINY_ELEMENTS, dtype=np.float32)}, sizes.runs, scratch)
        overhead = statistics.median(overheads.values())

        hw = sizes.conv_hw
        conv = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
                       helper.make_node("Conv", ["y", "d"], ["z"], name="depthwise", pads=[1, 1, 1, 1], group=256)],
                      [("x", (1, 64, hw, hw))], ["z"],
                      {"w": rng.standard_normal((256, 64, 3, 3), dtype=np.float32),
                       "d": rng.standard_normal((256, 1, 3, 3), dtype=np.float32)})
        convs = _node_times(conv, {"x": rng.standard_normal((1, 64, hw, hw), dtype=np.float32)}, sizes.runs,
                            scratch)
    rates = {
        "MatMul": 2 * n**3 / matmul_s,
        "Conv": 2 * 256 * 64 * 9 * hw * hw / max(convs["conv"] - overhead, 1e-9),
        "Conv.depthwise": 2 * 256 * 9 * hw * hw / max(convs["depthwise"] - overhead, 1e-9),
    }
    return Measurement(
        peak_flops=max(rates["MatMul"], rates["Conv"]), bandwidth=bandwidth, cache_bytes=cache_bytes,
        cache_bandwidth=cache_bandwidth, overhead_s=overhead, rates=rates,
        threads=os.cpu_count() or 1, memory_bytes=_physical_memory(), sizes=sizes,
        processor=platform.processor() or platform.machine(),
    )


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


def device_yaml(result: Measurement, name: str = "cpu-local") -> str:
    """The measurement as a device file (archcalc.hardware.device's form)."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = result.sizes
    by = f"measured by archcalc device calibrate ({when}, onnxruntime CPU, {result.threads} threads"
    hw = sizes.conv_hw

    def entry(value: float, what: str) -> str:
        return f"{{value: {value:.6g}, source: {json.dumps(f'{by}: {what})')}}}"

    mm = f"MatMul {sizes.matmul_n}^3"
    conv = f"3x3 Conv 64->256 channels at {hw}x{hw}"
    tiny = f"median of {sizes.chain} Relu nodes of {TINY_ELEMENTS} elements"
    peak = f"the faster of {mm} and {conv}, fp32, median of {sizes.runs} runs"
    big = f"Add of two {sizes.add_elements:,}-element fp32 tensors"
    depthwise = f"3x3 depthwise Conv, 256 channels at {hw}x{hw}"
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
           f"cache_bandwidth_gb_s: {entry(result.cache_bandwidth / 1e9, 'Add moving a quarter of that cache')}"]
          if result.cache_bytes else []),
        "efficiency:  # FLOP/s reached / peak",
        f"  MatMul: {entry(result.efficiency('MatMul'), mm)}",
        f"  Gemm: {entry(result.efficiency('MatMul'), mm + ' (Gemm runs the same kernel)')}",
        f"  Conv: {entry(result.efficiency('Conv'), conv)}",
        f"  Conv.depthwise: {entry(result.efficiency('Conv.depthwise'), depthwise)}",
        f"threads: {result.threads}",
    ]
    return "\n".join(lines) + "\n"
