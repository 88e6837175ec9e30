"""Predicted against measured latency on this machine: the roofline of `analyze --device`
checked against `archcalc verify --profile`.

Run by hand (not part of the test suite):

    python3 bench/bench_roofline.py                 # every spec and ONNX fixture
    python3 bench/bench_roofline.py --device x.yaml # an existing calibration instead of a new one
    python3 bench/bench_roofline.py specs/resnet18.yaml --layers   # also each layer's two times

Each of `--repeats` rounds calibrates this machine (`archcalc device calibrate`'s
measurements, about a second) and right after runs the model in onnxruntime as `verify
--profile` does (no graph optimisation; shapes compared on a run with every tensor an
output, then per-node kernel times from onnxruntime's profiler on a run as deployed, with
only the model's own outputs), and predicts every layer's time on that calibration (batch 1,
fp32; another dim a file leaves open is bound as the fixture's JSON records it, else to
128): on a shared machine whose speed drifts by several times within minutes, only a
calibration next to the run it predicts says anything. `--device FILE` uses one file for
every round instead.

Measured times are each node's least over the rounds, as calibration takes the least of as
many runs: on a loaded machine a kernel is descheduled at random, and the least time is the one
closest to what the hardware does. `--threads N` runs calibration and every model with N
onnxruntime threads (default 0: onnxruntime's own, one per core, as `archcalc verify`
runs); on an overloaded machine two threads of one kernel wait for each other whenever one
is descheduled, which `--threads 1` never does.

It prints per model: measured ms (the sum of the layers' least kernel times), predicted ms
(the median of the rounds'), their ratio, and the Spearman rank correlation of the layers'
times (and, where that is under 0.8, how many layers the profiler timed at the per-op
overhead, whose order is the noise of its 1 us resolution); then the summary (within
tolerance and Spearman >= 0.8, CNNs and transformers apart; the median ratio), the load
average before and after, and per op the measured and predicted sums and their ratio.
Only layers onnxruntime timed are compared (a spec's export and an ONNX file run the same
nodes as the analysis' layers); a layer export lowers into several nodes (Swish: Sigmoid,
then the Mul named after it) is timed as the sum of its nodes (`layer` and `layer/...`).

Views (Reshape, Flatten, Squeeze, Unsqueeze, Identity) are left out of the comparison and
their measured time printed apart: the roofline counts a view as free, where onnxruntime
still dispatches its node (a few us each, the per-op overhead).
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from archcalc.core.errors import UnboundDim  # noqa: E402
from archcalc.hardware.device import load_device  # noqa: E402
from archcalc.hardware.roofline import VIEW, roofline, setup_for  # noqa: E402
from archcalc.readers.load import load_model  # noqa: E402
from archcalc.runtime import verify as verifier  # noqa: E402
from archcalc.runtime.calibrate import Sizes, device_yaml, measure  # noqa: E402

TRANSFORMERS = ("vit", "swin", "encoder", "transformer", "lstm", "bert", "gpt", "llama", "t5_", "whisper")
THREADS = 0
SEQUENCE = 128


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(xs: list[float], ys: list[float]) -> float:
    """Pearson correlation of the ranks (correct with ties)."""
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx and vy else float("nan")


def rounds(path: str, repeats: int, fixed, verbose: bool):
    """Per round: (the layers' measured seconds, their costs on the round's calibration)."""
    graph = load_model(path)
    bindings: dict[str, int] = {}
    while True:  # a sequence dim the file leaves open (seq, unk__N) is bound to SEQUENCE
        try:
            analysis = verifier.analyze_for_verify(graph, bindings)
            break
        except UnboundDim as error:
            if error.name in bindings:
                raise
            bindings[error.name] = recorded_dims(path).get(error.name, SEQUENCE)
    result = []
    for _ in range(repeats):
        device = fixed or calibrated(repeats, verbose)
        costs = {layer.name: layer for layer in roofline(analysis, device, setup_for(device, "fp32")).counted}
        report = verifier.verify(graph, analysis, profile=True)
        result.append((layer_seconds(report.node_times_us, costs), costs))
    return result


def layer_seconds(node_times_us: dict[str, float], costs: dict) -> dict[str, float]:
    """Each layer's measured seconds: its node's, plus those of the nodes export lowered it into
    (named `layer/...`) that are no layer themselves."""
    measured: dict[str, float] = {}
    for name, micros in node_times_us.items():
        owner = name
        while owner not in costs and "/" in owner[1:]:
            owner = owner.rsplit("/", 1)[0]  # the longest `layer` of which the node is `layer/...`
        if owner in costs:
            measured[owner] = measured.get(owner, 0.0) + micros * 1e-6
    return measured


def recorded_dims(path: str) -> dict[str, int]:
    """The dims a fixture was exported at (its JSON beside it), if any."""
    import json

    try:
        with open(os.path.splitext(path)[0] + ".json", encoding="utf-8") as handle:
            dims = json.load(handle).get("dims", {})
    except (OSError, ValueError):
        return {}
    return {name: value for name, value in dims.items() if name != "batch" and isinstance(value, int)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--device", help="a calibrated device file (default: calibrate now)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--layers", action="store_true", help="print each layer's measured and predicted time")
    parser.add_argument("--by-op", action="store_true", help="(always on) measured and predicted time summed per op")
    args = parser.parse_args()
    models = args.models or sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml"))) + sorted(
        glob.glob(os.path.join(ROOT, "tests", "fixtures", "onnx", "*.onnx")))
    if not args.models:
        # Models of over a GiB of weights last: the run after one that freed several GiB is
        # slowed while the system takes the memory back (MobileNetV2's spec measured 7.98 ms
        # right after Llama-3.2-1B, 5.14 ms alone).
        models.sort(key=lambda path: weight_bytes(path) > 2**30)
    global THREADS
    THREADS = args.threads
    if THREADS:
        import onnxruntime

        class Options(onnxruntime.SessionOptions):  # verify builds its own options: set the threads there too
            def __init__(self) -> None:
                super().__init__()
                self.intra_op_num_threads = THREADS

        onnxruntime.SessionOptions = Options
    fixed = load_device(args.device) if args.device else None
    by_op: dict[str, list[float]] = {}
    summary: list[tuple[str, float, float]] = []
    views_ms = 0.0
    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)} (1, 5, 15 min); {os.cpu_count()} cores")
    print(f"{'model':52} {'layers':>6} {'measured ms':>12} {'predicted ms':>13} {'ratio':>6} {'spearman':>9}  goal")
    for path in models:
        name = os.path.relpath(path, ROOT)
        try:
            measured_rounds = rounds(path, args.repeats, fixed, args.layers)
        except Exception as error:  # noqa: BLE001 (a bench reports and goes on)
            print(f"{name:52} skipped: {str(error).splitlines()[0][:80]}")
            continue
        costs = measured_rounds[-1][1]
        timed = [n for n in costs if all(n in measured for measured, _ in measured_rounds)]
        views = [n for n in timed if costs[n].bound == VIEW]
        view_ms = sum(min(measured[n] for measured, _ in measured_rounds) for n in views) * 1e3
        views_ms += view_ms
        names = [n for n in timed if costs[n].bound != VIEW]
        if not names:
            print(f"{name:52} skipped: no timed layers")
            continue
        pairs = [(min(measured[n] for measured, _ in measured_rounds),
                  statistics.median(round_costs[n].time_s or 0.0 for _, round_costs in measured_rounds), n)
                 for n in names]
        total_measured = sum(m for m, _, _ in pairs)
        total_predicted = sum(p for _, p, _ in pairs)
        ratio = total_predicted / total_measured
        rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
        transformer = is_transformer(name)
        band = 0.5 if transformer else 0.3
        ok = abs(ratio - 1) <= band and rho >= 0.8
        summary.append((name, ratio, rho))
        # Layers the profiler times at the per-op overhead (its resolution is 1 us): their order is noise.
        overhead = statistics.median(round_costs[names[0]].overhead_s for _, round_costs in measured_rounds)
        floor = sum(m <= overhead + 1e-6 for m, _, _ in pairs)
        for m, p, n in pairs:
            entry = by_op.setdefault(costs[n].op, [0.0, 0.0, 0])
            entry[0] += m
            entry[1] += p
            entry[2] += 1
        print(f"{name:52} {len(pairs):6} {total_measured * 1e3:12.3f} {total_predicted * 1e3:13.3f} {ratio:6.2f} "
              f"{rho:9.3f}  {'ok' if ok else 'MISS'} (±{band:.0%})"
              + (f"  [{floor} of {len(pairs)} layers at the overhead]" if rho < 0.8 else "")
              + (f"  [{len(views)} views, {view_ms:.3f} ms measured, left out]" if views else ""))
        if args.layers:
            for m, p, n in sorted(pairs, key=lambda item: -item[0])[:40]:
                cost = costs[n]
                print(f"    {n[:50]:50} {cost.op:20} {m * 1e6:10.1f} us {p * 1e6:10.1f} us  {cost.bound}")
    if summary:
        print()
        for label, band, rows in (("CNNs", 0.3, [item for item in summary if not is_transformer(item[0])]),
                                  ("transformers", 0.5, [item for item in summary if is_transformer(item[0])])):
            if rows:
                print(f"{label}: {sum(abs(ratio - 1) <= band for _, ratio, _ in rows)} of {len(rows)} within "
                      f"±{band:.0%}, Spearman >= 0.8 for {sum(rho >= 0.8 for _, _, rho in rows)} of {len(rows)}")
        print(f"median predicted/measured {statistics.median(ratio for _, ratio, _ in summary):.2f}; views left out "
              f"of the comparison: {views_ms:.1f} ms measured in all")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (before: "
          f"{' '.join(f'{x:.2f}' for x in load_before)})")
    if by_op:
        print(f"\n{'op':28} {'layers':>7} {'measured ms':>12} {'predicted ms':>13} {'ratio':>6}")
        for op, (m, p, count) in sorted(by_op.items(), key=lambda item: -item[1][0]):
            print(f"{op:28} {int(count):7} {m * 1e3:12.3f} {p * 1e3:13.3f} {p / m if m else float('nan'):6.2f}")


def weight_bytes(path: str) -> int:
    try:
        return verifier.analyze_for_verify(load_model(path), {}).totals.weight_bytes
    except Exception:  # noqa: BLE001 (open dims or a bad file: the run reports it)
        return 0


def is_transformer(name: str) -> bool:
    return any(word in name.lower() for word in TRANSFORMERS)


def calibrated(runs: int, verbose: bool = False):
    """A fresh calibration of this machine, as `archcalc device calibrate` writes it."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "cpu-local.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(device_yaml(measure(Sizes(runs=runs, threads=THREADS))))
        device = load_device(path)
    if verbose:
        cache = device.cache_bandwidth.value if device.cache_bandwidth else 0.0
        print(f"calibrated in {time.perf_counter() - started:.1f} s: peak {device.peak('fp32') / 1e9:.1f} GFLOP/s, "
              f"bandwidth {device.bandwidth.value / 1e9:.1f} GB/s (cache {device.cache_bytes / 2**20:.0f} MiB: "
              f"{cache / 1e9:.1f} GB/s), overhead {device.overhead_s.value * 1e6:.1f} us, "
              f"efficiency " + ", ".join(f"{k} {v.value:.3f}" for k, v in device.efficiency.items())
              + "; by FLOPs " + ", ".join(f"{k} " + "/".join(f"{p.value:.2f}" for p in points)
                                          for k, points in device.efficiency_curves.items())
              + "; Transpose bandwidth "
              + "/".join(f"{p.value:.2f}" for p in device.bandwidth_curves.get("Transpose", ()))
              + f", {device.threads} threads")
    return device


if __name__ == "__main__":
    main()
