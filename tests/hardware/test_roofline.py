"""The roofline arithmetic, pinned to hand calculations written out beside each case.

A100 80GB SXM (archcalc/hardware/devices/a100.yaml): fp16 Tensor Core 312e12 FLOP/s dense,
non-Tensor fp16 78e12, bandwidth 2039e9 B/s, 4 us per op. Ridge point 312e12 / 2039e9 = 153.0
FLOPs per byte: below it a layer is memory-bound.
"""

from __future__ import annotations

import pytest

import archcalc
from archcalc.core.errors import ArchcalcError
from archcalc.hardware.device import load_device, parse_device
from archcalc.hardware.roofline import COMPUTE, MEMORY, VIEW, roofline, setup_for

A100 = load_device("a100")
PEAK, VECTOR, BANDWIDTH, OVERHEAD = 312e12, 78e12, 2039e9, 4e-6


@pytest.fixture(scope="module")
def resnet50_b1():
    return archcalc.analyze("specs/resnet50.yaml")


@pytest.fixture(scope="module")
def resnet50_b32():
    return archcalc.analyze("specs/resnet50.yaml", batch=32)


def cost(analysis, name, device=A100, precision="fp16", weight_dtype=None):
    result = roofline(analysis, device, setup_for(device, precision, weight_dtype))
    return next(layer for layer in result.layers if layer.name == name), result


def test_resnet50_conv1_on_a100_fp16_batch1_is_memory_bound(resnet50_b1):
    layer, _ = cost(resnet50_b1, "conv1")
    # conv1: 3 -> 64 channels, 7x7, stride 2, no bias; 224x224 -> 112x112.
    macs = 64 * 112 * 112 * 3 * 7 * 7  # 118,013,952
    assert layer.flops == 2 * macs == 236_027_904
    # fp16: 2 bytes per element. Input 3*224*224 = 150,528; weight 64*3*7*7 = 9,408; output 64*112*112 = 802,816.
    assert layer.bytes_read == 2 * 150_528 + 2 * 9_408 == 319_872
    assert layer.bytes_written == 2 * 802_816 == 1_605_632
    assert layer.intensity == pytest.approx(236_027_904 / 1_925_504)  # 122.58 < 153.0: memory-bound
    assert round(layer.intensity, 2) == 122.58
    assert layer.bound == MEMORY
    assert layer.compute_s == pytest.approx(236_027_904 / PEAK)  # 0.7565 us
    assert layer.memory_s == pytest.approx(1_925_504 / BANDWIDTH)  # 0.9443 us
    assert layer.time_s == pytest.approx(1_925_504 / BANDWIDTH + OVERHEAD)
    assert round(layer.time_s * 1e6, 4) == 4.9443


def test_resnet50_conv1_at_batch32_stays_memory_bound(resnet50_b32):
    layer, _ = cost(resnet50_b32, "conv1")
    # 32x the activations, the same weight: (32 * (150,528 + 802,816) + 9,408) * 2 bytes.
    moved = 2 * (32 * (150_528 + 802_816) + 9_408)
    assert layer.bytes == moved == 61_032_832
    assert layer.flops == 32 * 236_027_904
    assert layer.intensity == pytest.approx(7_552_892_928 / 61_032_832)  # 123.75, still under 153
    assert layer.bound == MEMORY
    assert layer.time_s == pytest.approx(61_032_832 / BANDWIDTH + OVERHEAD)  # 33.93 us


def test_a_3x3_conv_at_batch32_is_compute_bound(resnet50_b32):
    layer, _ = cost(resnet50_b32, "layer4.1.conv2")
    # 512 -> 512 channels, 3x3, stride 1, 7x7, no bias, batch 32.
    macs = 32 * 512 * 7 * 7 * 512 * 3 * 3  # 3,699,376,128
    assert layer.flops == 2 * macs
    moved = 2 * (32 * 512 * 49) + 2 * (512 * 512 * 9) + 2 * (32 * 512 * 49)  # 7,929,856
    assert layer.bytes == moved
    assert layer.intensity == pytest.approx(2 * macs / moved)  # 933.0 > 153: compute-bound
    assert layer.bound == COMPUTE
    assert layer.time_s == pytest.approx(2 * macs / PEAK + OVERHEAD)  # 23.71 + 4 us


def test_elementwise_layers_use_the_vector_peak(resnet50_b1):
    layer, _ = cost(resnet50_b1, "relu")
    # Relu on 64x112x112: one FLOP per element on the non-Tensor fp16 units, read and write 2 bytes each.
    assert layer.flops == 802_816
    assert layer.compute_s == pytest.approx(802_816 / VECTOR)
    assert layer.bytes == 2 * 2 * 802_816
    assert layer.bound == MEMORY


def test_a_view_costs_nothing(resnet50_b1):
    layer, _ = cost(resnet50_b1, "flatten")
    assert (layer.bytes, layer.time_s, layer.bound) == (0, 0.0, VIEW)


def test_weight_dtype_changes_weight_bytes_only(resnet50_b1):
    fp16, _ = cost(resnet50_b1, "fc")
    int4, result = cost(resnet50_b1, "fc", weight_dtype="int4")
    # fc: weight 1000x2048 and bias 1000 (params, at the weight dtype); input 2048 and output 1000 at fp16.
    assert fp16.bytes_read == 2 * 2048 + 2 * (2_048_000 + 1000)
    assert int4.bytes_read == 2 * 2048 + (2_048_000 + 1000) // 2  # two 4-bit weights a byte
    assert int4.bytes_written == fp16.bytes_written == 2 * 1000
    # The model's weights: 25,557,032 params at 4 bits, 53,120 BatchNorm running statistics at fp16.
    assert result.weight_bytes == 25_557_032 // 2 + 2 * 53_120


def test_totals_add_up(resnet50_b32):
    result = roofline(resnet50_b32, A100, setup_for(A100, "fp16"))
    assert result.latency_s == pytest.approx(sum(layer.time_s for layer in result.layers))
    assert result.throughput == pytest.approx(32 / result.latency_s)
    assert sum(fraction for _, _, fraction in result.share_by_op()) == pytest.approx(1.0)
    assert result.weight_bytes == 2 * (25_557_032 + 53_120)
    counts = result.bound_counts()
    assert sum(counts.values()) == len(resnet50_b32.layers) == 175
    assert counts[VIEW] == 1  # flatten
    # The inference peak scales with the activation dtype: fp32 analysis, fp16 deployment.
    assert result.peak_activation_bytes == resnet50_b32.totals.peak_activation_bytes // 2


# The hand-made devices below: 0.1 TFLOP/s, 10 GB/s, 2 us per op, each with the fields its test needs.
TOY = """\
peak_tflops:
  fp32: {value: 0.1, source: "hand-made for a test"}
bandwidth_gb_s: {value: 10, source: "hand-made"}
memory: {value: 1GiB, source: "hand-made"}
overhead_us: {value: 2, source: "hand-made"}
"""
DEVICE_WITH_CACHE = "name: toy\n" + TOY + """\
cache_bytes: {value: 1MiB, source: "hand-made"}
cache_bandwidth_gb_s: {value: 100, source: "hand-made"}
efficiency:
  Conv.depthwise: {value: 0.25, source: "hand-made"}
"""


def test_cache_bandwidth_and_depthwise_efficiency():
    toy = parse_device(DEVICE_WITH_CACHE, "toy.yaml")
    mobilenet = archcalc.analyze("specs/mobilenet_v2.yaml")
    setup = setup_for(toy, "fp32")
    result = {layer.name: layer for layer in roofline(mobilenet, toy, setup).layers}
    # features.1.conv.0.0: depthwise 3x3 on 32 channels at 112x112, no bias: 32*112*112*9 MACs.
    depthwise = result["features.1.conv.0.0"]
    assert depthwise.flops == 2 * 32 * 112 * 112 * 9
    assert depthwise.compute_s == pytest.approx(depthwise.flops / (0.1e12 * 0.25))
    # Moves 2 x 401,408 x 4 bytes + 288 x 4 (weight) = 3,212,416 bytes: more than the 1 MiB cache.
    assert depthwise.bytes == 4 * (2 * 32 * 112 * 112 + 32 * 9)
    assert depthwise.memory_s == pytest.approx(depthwise.bytes / 10e9)
    # A strided depthwise conv (Conv.depthwise.strided) takes Conv.depthwise's figure in a file
    # that does not tell them apart: features.2.conv.1.0, 96 channels 112x112 -> 56x56.
    strided = result["features.2.conv.1.0"]
    assert strided.flops == 2 * 96 * 56 * 56 * 9
    assert strided.compute_s == pytest.approx(strided.flops / (0.1e12 * 0.25))
    # The last ReLU6 (Clip) reads and writes 1280 x 7 x 7 floats and its min and max (one float each):
    # 2 x 4 x 62,720 + 2 x 4 = 501,768 bytes, within the 1 MiB cache.
    clip = result["features.18.2"]
    assert clip.bytes == 2 * 4 * 1280 * 7 * 7 + 2 * 4
    assert clip.memory_s == pytest.approx(clip.bytes / 100e9)
    assert clip.time_s == pytest.approx(clip.memory_s + 2e-6)


def test_a_precision_the_device_lacks_is_refused():
    with pytest.raises(ArchcalcError, match="gives no bf16 peak") as error:
        setup_for(load_device("t4"), "bf16")
    assert "fp32, fp16, mixed, int8" in str(error.value)


def test_an_embedding_lookup_reads_its_rows_not_the_table():
    """GPT-2's token embedding at seq 7: Gather picks 7 rows of the 50,257 x 768 table, so it
    reads 7 * 768 fp16 values (and the 7 int64 ids), not the 77 MB table."""
    gpt2 = archcalc.analyze("specs/gpt2.yaml", input_shapes={"input_ids": (1, 7)})
    layer, _ = cost(gpt2, "wte")
    assert layer.bytes_read == 2 * 7 * 768 + 8 * 7 == 10_808
    assert layer.bytes_written == 2 * 7 * 768 == 10_752
    assert layer.bound == MEMORY and layer.time_s == pytest.approx(21_560 / BANDWIDTH + OVERHEAD)


DEVICE_WITH_CURVES = "name: curved\n" + TOY + """\
efficiency:
  MatMul: {value: 1, source: "hand-made: the curve below overrides it"}
efficiency_by_flops:
  MatMul:
    - {flops: 1.0e+7, value: 0.8, source: "hand-made, listed out of order"}
    - {flops: 1.0e+5, value: 0.2, source: "hand-made"}
bandwidth_efficiency:
  Transpose:
    - {bytes: 10000, value: 0.5, source: "hand-made"}
    - {bytes: 1000000, value: 0.25, source: "hand-made"}
"""


def test_efficiency_curves_by_flops_and_by_bytes(tmp_path):
    """x [64, 128] -> Transpose -> [128, 64] -> MatMul by a [64, 32] weight -> [128, 32], fp32."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[1, 0]),
         helper.make_node("MatMul", ["t", "w"], ["y"], name="matmul")], "curves",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [128, 32])],
        [numpy_helper.from_array(np.zeros((64, 32), dtype=np.float32), "w")])
    path = tmp_path / "curves.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    device = parse_device(DEVICE_WITH_CURVES, "curved.yaml")
    layers = {layer.name: layer for layer in roofline(archcalc.analyze(str(path)), device,
                                                        setup_for(device, "fp32")).layers}
    matmul = layers["matmul"]
    # 2 * 128 * 64 * 32 = 524,288 FLOPs, between the points at 1e5 (0.2) and 1e7 (0.8): on log FLOPs
    # the share is ln(5.24288) / ln(100) = 1.65685 / 4.60517 = 0.35978, so 0.2 + 0.35978 * 0.6 = 0.41587.
    assert matmul.flops == 524_288
    assert matmul.peak_flops == pytest.approx(1e11 * 0.41587, rel=1e-4)
    assert matmul.compute_s == pytest.approx(12.607e-6, rel=1e-4)  # 524,288 / 4.1587e10
    # Reads 4 * (8,192 + 2,048) and writes 4 * 4,096 bytes: 57,344 / 10 GB/s = 5.73 us < 12.61 us.
    assert matmul.bytes == 57_344 and matmul.bound == COMPUTE
    transpose = layers["transpose"]
    # Moves 2 * 4 * 8,192 = 65,536 bytes, between 1e4 (0.5) and 1e6 (0.25): share ln(6.5536) / ln(100)
    # = 1.88004 / 4.60517 = 0.40824, so 0.5 - 0.40824 * 0.25 = 0.39794 of 10 GB/s: 16.469 us.
    assert transpose.bytes == 65_536 and transpose.bound == MEMORY
    assert transpose.memory_s == pytest.approx(16.469e-6, rel=1e-4)
    assert transpose.time_s == pytest.approx(18.469e-6, rel=1e-4)
    # Past either end a curve holds its end's value.
    assert device.efficiency_of("MatMul", 10.0) == 0.2
    assert device.efficiency_of("MatMul", 1e12) == 0.8
    assert device.bandwidth_efficiency_of("Transpose", 1e9) == 0.25
    assert device.bandwidth_efficiency_of("Relu", 1e9) == 1.0  # an op without a curve streams


DEVICE_WITH_DEPTHWISE_CURVES = "name: planes\n" + TOY + """\
efficiency:
  Conv: {value: 0.5, source: "hand-made"}
efficiency_by_flops:
  Conv.depthwise:
    - {flops: 1e4, value: 0.1, source: "hand-made"}
    - {flops: 1e6, value: 0.3, source: "hand-made"}
  Conv.depthwise.strided:
    - {flops: 1e5, value: 0.05, source: "hand-made"}
"""


def test_depthwise_curves_are_read_at_one_taps_flops():
    """A depthwise conv sweeps each channel's plane once per kernel tap: its efficiency is read at
    the FLOPs of one (the layer's over RuleResult.parts, images x channels x taps), so batch 2
    reads where batch 1 does, and a 5x5 kernel where a 3x3 on the same plane does."""
    planes = parse_device(DEVICE_WITH_DEPTHWISE_CURVES, "planes.yaml")
    for batch in (1, 2):
        mobilenet = archcalc.analyze("specs/mobilenet_v2.yaml", batch=batch)
        result = {layer.name: layer for layer in roofline(mobilenet, planes, setup_for(planes, "fp32")).layers}
        # features.1.conv.0.0: 32 channels at 112x112, stride 1, no bias: 2 * 9 * 112 * 112 = 225,792 FLOPs a
        # plane, 25,088 a tap, between 1e4 (0.1) and 1e6 (0.3): share ln(2.5088) / ln(100) = 0.919805 /
        # 4.605170 = 0.199733, so 0.1 + 0.199733 * 0.2 = 0.139947 of the peak, whatever the batch.
        depthwise = result["features.1.conv.0.0"]
        assert depthwise.flops == batch * 32 * 225_792
        assert depthwise.peak_flops == pytest.approx(0.1e12 * 0.139947, rel=1e-5)
        # features.2.conv.1.0, stride 2: its own curve, one point (0.05), held at every size.
        assert result["features.2.conv.1.0"].peak_flops == pytest.approx(0.1e12 * 0.05)
        # A plain conv is one part per image: the single Conv figure.
        assert result["features.0.0"].peak_flops == pytest.approx(0.1e12 * 0.5)


def test_output_passes_add_an_unfused_bias_pass(tmp_path):
    """A device's output_passes add, after the kernel, reads and writes of the output: onnxruntime's
    CPU 1x1 conv adds its bias so. Conv.pointwise.bias has the pass; the same conv without a bias
    and a 3x3 conv with one have none."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def conv(name, source, weight, bias=None, **attrs):
        inputs = [source, weight, *([bias] if bias else [])]
        return helper.make_node("Conv", inputs, [name], name=name, **attrs)

    zeros = {"w1": (96, 16, 1, 1), "b1": (96,), "w3": (96, 16, 3, 3)}
    graph = helper.make_graph(
        [conv("pointwise_bias", "x", "w1", "b1"), conv("pointwise", "x", "w1"),
         conv("conv3x3_bias", "x", "w3", "b1", pads=[1, 1, 1, 1])], "passes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 112, 112])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
         for name in ("pointwise_bias", "pointwise", "conv3x3_bias")],
        [numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name) for name, shape in zeros.items()])
    path = tmp_path / "passes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    device = parse_device(DEVICE_WITH_DEPTHWISE_CURVES + """\
output_passes:
  Conv.pointwise.bias: {value: 1, source: "hand-made"}
""", "passes.yaml")
    layers = {layer.name: layer for layer in roofline(archcalc.analyze(str(path)), device,
                                                        setup_for(device, "fp32")).layers}
    biased = layers["pointwise_bias"]
    # 16 -> 96 at 112x112: 2 * 16 * 96 * 12,544 + 96 * 12,544 (bias) = 39,739,392 FLOPs at Conv's 0.5
    # of 0.1 TFLOP/s (no pointwise figure: the kind it is a form of) = 794.79 us; reads 4 * (16 * 12,544
    # + 1,536 + 96) = 809,344 bytes and writes 4 * 96 * 12,544 = 4,816,896: 562.62 us at 10 GB/s. The
    # pass reads and writes the output again: 9,633,792 bytes / 10 GB/s = 963.38 us, after the kernel.
    assert biased.flops == 39_739_392 and biased.bytes_written == 4_816_896
    assert biased.compute_s == pytest.approx(794.78784e-6)
    assert biased.memory_s == pytest.approx(562.624e-6)
    assert biased.epilogue_s == pytest.approx(963.3792e-6)
    assert biased.time_s == pytest.approx(794.78784e-6 + 963.3792e-6 + 2e-6)
    assert biased.to_json()["epilogue_s"] == pytest.approx(963.3792e-6)
    assert layers["pointwise"].epilogue_s == 0.0 and layers["conv3x3_bias"].epilogue_s == 0.0


def test_the_python_api_roofline_is_the_clis(resnet50_b1):
    """Analysis.roofline(device, precision) gives what `analyze --device --format json` prints."""
    import json

    from click.testing import CliRunner

    from archcalc.cli.main import cli

    on_a100 = resnet50_b1.roofline("a100", precision="fp16")
    conv1 = next(layer for layer in on_a100.layers if layer.name == "conv1")
    assert round(conv1.time_s * 1e6, 4) == 4.9443  # the hand calculation of the first test
    document = on_a100.to_dict()
    assert document["device"] == "a100" and document["precision"] == "fp16"
    printed = CliRunner().invoke(cli, ["analyze", "specs/resnet50.yaml", "--device", "a100", "--precision", "fp16",
                                       "--format", "json"])
    assert printed.exit_code == 0, printed.output
    cli_roofline = json.loads(printed.output)["roofline"]
    assert cli_roofline["latency_s"] == pytest.approx(document["latency_s"])
    assert cli_roofline["layers"] == json.loads(json.dumps(document["layers"]))
    # A loaded device, and a weight dtype: int8 weights move a quarter of fp32's bytes.
    int8 = resnet50_b1.roofline(load_device("a100"), "fp32", weight_dtype="int8")
    assert int8.weight_bytes == 25_557_032 + 4 * 53_120  # BatchNorm's running statistics stay fp32
    with pytest.raises(ArchcalcError, match="unknown device"):
        resnet50_b1.roofline("a1000")


DEVICE_WITH_POOLS = """\
name: pools
peak_tflops:
  fp32: {value: 0.1, source: "hand-made for a test"}
bandwidth_gb_s: {value: 1000, source: "hand-made: fast enough that pooling is compute-bound"}
memory: {value: 1GiB, source: "hand-made"}
overhead_us: {value: 0, source: "hand-made"}
efficiency:
  AveragePool: {value: 0.5, source: "hand-made: opsets 7-18's kernel"}
  AveragePool.opset19: {value: 0.1, source: "hand-made: opset 19's kernel"}
"""


@pytest.mark.parametrize(("model", "name", "efficiency"), [
    ("tests/fixtures/onnx/densenet121_torchscript.onnx", "/features/transition1/pool/AveragePool", 0.5),  # opset 17
    ("tests/fixtures/onnx/densenet121_dynamo.onnx", "node_avg_pool2d", 0.1),  # opset 20
    ("specs/densenet121.yaml", "features.transition1.pool", 0.1),  # export writes the newest opset
])
def test_average_pool_from_opset_19_has_its_own_efficiency(model, name, efficiency):
    device = parse_device(DEVICE_WITH_POOLS, "pools.yaml")
    costs = roofline(archcalc.analyze(model), device, setup_for(device, "fp32"))
    pool = next(layer for layer in costs.layers if layer.name == name)
    # DenseNet-121's first transition: 2x2 average over 128 x 56 x 56 -> 128 x 28 x 28, 4 FLOPs per output.
    assert pool.flops == 128 * 28 * 28 * 4 == 401_408
    assert pool.compute_s == pytest.approx(401_408 / (0.1e12 * efficiency))


def test_the_cache_level_slows_with_size_but_never_below_memory():
    """A 100 GB/s cache of 64 MiB reaching 1.0 at 1 MB and 0.2 at 32 MB moved, over 30 GB/s memory."""
    text = (DEVICE_WITH_CACHE.replace("cache_bytes: {value: 1MiB", "cache_bytes: {value: 64MiB")
            .replace("\nbandwidth_gb_s: {value: 10", "\nbandwidth_gb_s: {value: 30"))
    device = parse_device(text + """\
cache_efficiency:
  - {bytes: 1.0e+6, value: 1.0, source: "hand-made"}
  - {bytes: 3.2e+7, value: 0.2, source: "hand-made"}
""", "toy.yaml")
    assert device.bandwidth.value == 30e9 and device.cache_bytes == 64 * 2**20
    assert device.bandwidth_for(500_000) == pytest.approx(100e9)  # before the first point: its value, 1.0
    # 4 MB: ln(4) / ln(32) = 0.4 of the way on log bytes: 1.0 - 0.4 * 0.8 = 0.68 of 100 GB/s.
    assert device.bandwidth_for(4_000_000) == pytest.approx(68e9)
    # 20 MB: ln(20) / ln(32) = 0.86439: 1.0 - 0.86439 * 0.8 = 0.30849 -> 30.85 GB/s, just above memory's 30.
    assert device.bandwidth_for(20_000_000) == pytest.approx(30.849e9, rel=1e-4)
    assert device.bandwidth_for(32_000_000) == pytest.approx(30e9)  # 0.2 of 100 = 20 < 30: memory's 30
    assert device.bandwidth_for(65 * 2**20) == pytest.approx(30e9)  # past the cache
