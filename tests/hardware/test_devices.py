"""The device catalogue, device files from users (every malformed one is exit 2 naming the
file, the field and the fix), `archcalc devices` and `archcalc device calibrate`."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from archcalc.cli.main import cli
from archcalc.hardware.device import COMPUTE_DTYPES, catalogue, catalogue_names, load_device, parse_device
from archcalc.runtime import calibrate

REQUIRED_DEVICES = {"h200", "h100", "a100", "l4", "t4", "rtx4090", "jetson-orin-nano", "apple-m2", "raspberry-pi-5"}


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_the_catalogue_has_every_required_device_each_number_sourced():
    assert set(catalogue_names()) >= REQUIRED_DEVICES
    for device in catalogue():
        assert device.peak_flops and set(device.peak_flops) <= set(COMPUTE_DTYPES)
        sourced = [*device.peak_flops.values(), *device.vector_flops.values(), device.bandwidth, device.overhead_s]
        assert all(item.source and item.value > 0 for item in sourced), device.name
        assert device.memory_source and device.memory_bytes > 0


@pytest.mark.parametrize(("name", "dtype", "tflops", "gb_s", "memory"), [
    # Datasheet figures, dense (half the "with sparsity" ones).
    ("a100", "fp16", 312, 2039, 80 * 10**9),
    ("h100", "fp16", 989.5, 3350, 80 * 10**9),
    ("h200", "fp8", 1979, 4800, 141 * 10**9),
    ("l4", "int8", 242.5, 300, 24 * 10**9),
    ("t4", "fp16", 65, 320, 16 * 10**9),
    ("rtx4090", "fp16", 165.2, 1008, 24 * 10**9),
    ("jetson-orin-nano", "int8", 20, 68, 8 * 10**9),
    ("apple-m2", "fp32", 3.6, 100, 8 * 10**9),
    # 4 cores x 2.4 GHz x 16 FP32 FLOPs per cycle; 32-bit LPDDR4X-4267.
    ("raspberry-pi-5", "fp32", 4 * 2.4 * 16 / 1000, 4267 * 4 / 1000, 8 * 10**9),
])
def test_catalogue_numbers(name, dtype, tflops, gb_s, memory):
    device = load_device(name)
    assert device.peak(dtype) == pytest.approx(tflops * 1e12)
    assert device.bandwidth.value == pytest.approx(gb_s * 1e9, rel=3e-3)  # the Pi's 17.07 is written 17.1
    assert device.memory_bytes == memory


def test_devices_lists_the_catalogue_with_sources():
    result = run("devices")
    assert result.exit_code == 0, result.output
    for name in REQUIRED_DEVICES:
        assert f"{name}: " in result.output
    assert "FP16 Tensor Core 312 TFLOPS (624 with sparsity)" in result.output
    assert "device calibrate" in result.output


GOOD = {
    "name": "mine",
    "peak_tflops": {"fp32": {"value": 1.5, "source": "my datasheet"}},
    "bandwidth_gb_s": {"value": 50, "source": "my datasheet"},
    "memory": {"value": "16GiB", "source": "my datasheet"},
    "overhead_us": {"value": 3, "source": "measured"},
}


def with_change(path: tuple[str, ...], value) -> str:
    document = yaml.safe_load(yaml.safe_dump(GOOD))
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return yaml.safe_dump(document, sort_keys=False)


BAD = {
    "missing-field": (with_change(("bandwidth_gb_s",), KeyError),
                      ["`bandwidth_gb_s`: missing", "add `bandwidth_gb_s:`"]),
    "negative": (with_change(("peak_tflops", "fp32", "value"), -2), ["`peak_tflops.fp32`", "not a positive number"]),
    "no-source": (with_change(("overhead_us", "source"), ""), ["`overhead_us`", "has no source", "datasheet"]),
    "bare-number": (with_change(("bandwidth_gb_s",), 50), ["`bandwidth_gb_s`", "not {value, source}",
                                                           "where it comes from"]),
    "unknown-field": (with_change(("bandwith_gb_s",), 3), ["`bandwith_gb_s`: unknown field",
                                                          "did you mean `bandwidth_gb_s`"]),
    "unknown-dtype": (with_change(("peak_tflops", "fp12"), {"value": 1, "source": "x"}),
                      ["`peak_tflops.fp12`: unknown compute dtype", "fp16"]),
    "bad-memory": (with_change(("memory", "value"), "16 parsecs"), ["`memory`", "unknown unit", "80GiB"]),
    "efficiency-over-one": (with_change(("efficiency",), {"Conv": {"value": 1.5, "source": "x"}}),
                            ["`efficiency.Conv`", "more than 1", "fraction of the peak"]),
    "half-a-cache": (with_change(("cache_bytes",), {"value": "1MiB", "source": "x"}),
                     ["`cache_bandwidth_gb_s`: missing", "a cache level needs both"]),
    "curve-not-a-list": (with_change(("efficiency_by_flops",), {"MatMul": {"value": 1, "source": "x"}}),
                         ["`efficiency_by_flops.MatMul`", "not a list of points", "flops: 3.1e6"]),
    "curve-point-keys": (with_change(("efficiency_by_flops",), {"MatMul": [{"value": 0.5, "source": "x"}]}),
                         ["`efficiency_by_flops.MatMul[0]`", "not {flops, value, source}"]),
    "curve-size": (with_change(("bandwidth_efficiency",), {"Transpose": [{"bytes": -1, "value": 0.5, "source": "x"}]}),
                   ["`bandwidth_efficiency.Transpose[0].bytes`", "not a positive number", "bytes: 2.7e8"]),
    "curve-value": (with_change(("bandwidth_efficiency",), {"Transpose": [{"bytes": 8, "value": 2, "source": "x"}]}),
                    ["`bandwidth_efficiency.Transpose[0].value`", "more than 1", "fraction of the peak"]),
    "curve-no-source": (with_change(("efficiency_by_flops",), {"MatMul": [{"flops": 8, "value": 1, "source": ""}]}),
                        ["`efficiency_by_flops.MatMul[0].value`", "has no source"]),
    "curve-twice": (with_change(("efficiency_by_flops",), {"MatMul": [{"flops": 8, "value": 1, "source": "x"},
                                                                      {"flops": 8.0, "value": 0.5, "source": "y"}]}),
                    ["`efficiency_by_flops.MatMul`", "two points at the same flops", "one point per flops"]),
    "cache-curve-without-cache": (with_change(("cache_efficiency",), [{"bytes": 8, "value": 1, "source": "x"}]),
                                  ["`cache_efficiency`: given without a cache level", "add `cache_bytes:`"]),
    "cache-curve-not-a-list": (with_change(("cache_bytes",), {"value": "1MiB", "source": "x"})
                               .replace("cache_bytes:", "cache_bandwidth_gb_s: {value: 9, source: x}\n"
                                                        "cache_efficiency: 0.5\ncache_bytes:"),
                               ["`cache_efficiency`", "not a list of points", "bytes: 6.4e6"]),
    "negative-passes": (with_change(("output_passes",), {"Conv.pointwise.bias": {"value": -1, "source": "x"}}),
                        ["`output_passes.Conv.pointwise.bias`", "not a number of at least 0"]),
    "passes-not-a-mapping": (with_change(("output_passes",), [1]),
                             ["`output_passes`", "must map op kinds to {value, source}", "Conv.depthwise"]),
    "not-a-mapping": ("- a100\n", ["must be a mapping of fields"]),
    "yaml-syntax": ("name: [a\n", ["mine.yaml:"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_device_file_is_exit_2_naming_file_field_and_fix(case, tmp_path):
    text, expected = BAD[case]
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    result = run("analyze", "specs/lenet5.yaml", "--device", str(path))
    assert result.exit_code == 2, result.output
    assert str(path) in result.output
    assert "Traceback" not in result.output
    for part in expected:
        assert part in result.output, (case, result.output)
    if case != "yaml-syntax":
        assert "fix:" in result.output


def test_a_good_device_file_is_used(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    result = run("analyze", "specs/lenet5.yaml", "--device", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    assert '"device": "mine"' in result.output


def test_unknown_device_names_and_missing_files_are_exit_2(tmp_path):
    result = run("analyze", "specs/lenet5.yaml", "--device", "a10")
    assert result.exit_code == 2
    assert "unknown device 'a10'" in result.output and "did you mean 'a100'" in result.output
    result = run("analyze", "specs/lenet5.yaml", "--device", str(tmp_path / "none.yaml"))
    assert result.exit_code == 2
    assert "none.yaml does not exist" in result.output


def test_calibrate_writes_a_device_file_that_loads(tmp_path, monkeypatch):
    """What calibration writes, not how fast it runs: small sizes keep the test quick."""
    real = calibrate.measure
    monkeypatch.setattr(calibrate, "measure", lambda: real(calibrate.Sizes(
        matmul_n=64, add_elements=4096, chain=4, conv_hw=8, runs=2,
        products=(calibrate.Product((16, 16), (16, 16), True, "a weight"),
                  calibrate.Product((1, 2, 8, 8), (1, 2, 8, 8), False, "two activations")),
        transposes=(calibrate.Copy((4, 8), (1, 0), "a matrix"),),
        pointwise=calibrate.ConvShape(4, 8, 8, kernel=1, bias=False),
        convs=(calibrate.ConvShape(3, 4, 8), calibrate.ConvShape(3, 4, 16),
               calibrate.ConvShape(4, 4, 8, depthwise=True), calibrate.ConvShape(2, 2, 16, depthwise=True),
               calibrate.ConvShape(4, 4, 8, 2, depthwise=True)))))
    path = tmp_path / "cpu-local.yaml"
    result = run("device", "calibrate", "-o", str(path))
    assert result.exit_code == 0, result.output
    device = load_device(str(path))
    assert device.name == "cpu-local"
    assert set(device.peak_flops) == {"fp32"}
    assert device.bandwidth.value > 0 and device.overhead_s.value >= 0 and device.memory_bytes > 0
    assert set(device.efficiency) == {"MatMul", "Gemm", "Conv", "Conv.pointwise", *calibrate.VECTOR_OPS}
    # One point per product measured, by its FLOPs; one per transpose, by its bytes moved.
    # Two heads of 8x8 by 8x8; 16x16 by 16x16.
    assert [point.at for point in device.efficiency_curves["MatMul"]] == [2 * 2 * 8 * 8 * 8, 2 * 16 * 16 * 16]
    assert device.efficiency_curves["Gemm"] == device.efficiency_curves["MatMul"]
    assert [point.at for point in device.bandwidth_curves["Transpose"]] == [2 * 4 * 4 * 8]
    # Conv points by FLOPs (9 MACs per input channel and a bias per output): 3 -> 4 channels at
    # 8x8 and 16x16. Depthwise points by the FLOPs of one channel's tap (a ninth of a channel's 9
    # MACs and bias per output): planes of 8x8 and 16x16 at stride 1; 8x8 at stride 2 gives 4x4.
    assert [point.at for point in device.efficiency_curves["Conv"]] == [55 * 4 * 8 * 8, 55 * 4 * 16 * 16]
    assert [point.at for point in device.efficiency_curves["Conv.depthwise"]] == pytest.approx(
        [19 * 8 * 8 / 9, 19 * 16 * 16 / 9], rel=1e-5)
    assert [point.at for point in device.efficiency_curves["Conv.depthwise.strided"]] == pytest.approx(
        [19 * 4 * 4 / 9], rel=1e-5)
    # A 1x1 conv's bias: a number of passes over its output, at least 0.
    assert device.output_passes["Conv.pointwise.bias"].value >= 0
    assert all(0 < point.value <= 1 for points in (*device.efficiency_curves.values(),
                                                   *device.bandwidth_curves.values()) for point in points)
    assert all(0 < item.value <= 1 for item in device.efficiency.values())
    # The peak is the faster of MatMul and Conv, so one of them reaches it.
    assert max(device.efficiency["MatMul"].value, device.efficiency["Conv"].value) == pytest.approx(1.0)
    assert all("measured by archcalc device calibrate" in item.source
               for item in (device.peak_flops["fp32"], device.bandwidth, device.overhead_s))
    assert device.threads is not None and device.threads >= 1
    if device.cache_bytes:  # Relu chains on 256 and 1024 channels at 8x8: 2 * 4 * 16,384 and 65,536 bytes
        assert [point.at for point in device.cache_curve] == [131_072, 524_288]
        assert "cache @128.00 KiB" in run("devices", str(path)).output
    listed = run("devices", str(path))
    assert listed.exit_code == 0 and "efficiency MatMul @2.05e+03 FLOPs" in listed.output
    assert "bandwidth Transpose @256 B" in listed.output
    assert "output passes Conv.pointwise.bias" in listed.output
    # It drives the roofline like any device.
    result = run("analyze", "specs/lenet5.yaml", "--device", str(path))
    assert result.exit_code == 0 and "Estimated latency" in result.output


def test_calibrate_to_an_unwritable_place_is_exit_2(tmp_path, monkeypatch):
    real = calibrate.measure
    monkeypatch.setattr(calibrate, "measure", lambda: real(calibrate.Sizes(
        matmul_n=32, add_elements=1024, chain=2, conv_hw=4, runs=1, products=(), transposes=(), convs=(),
        pointwise=calibrate.ConvShape(2, 2, 4, kernel=1))))
    result = run("device", "calibrate", "-o", str(tmp_path / "missing" / "cpu.yaml"))
    assert result.exit_code == 2
    assert "cannot write" in result.output and "fix:" in result.output


def test_parse_device_keeps_sources():
    device = parse_device(yaml.safe_dump(GOOD), "mine.yaml")
    assert device.peak_flops["fp32"].source == "my datasheet"
    assert device.memory_bytes == 16 * 2**30
    assert device.overhead_s.value == pytest.approx(3e-6)
