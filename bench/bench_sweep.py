"""`analyze --sweep` against what it replaces: N bound analyses, one per point.

    python3 bench/bench_sweep.py

A sweep is one analysis plus, per point, an evaluation of the formulas (the rules' own
polynomials, summed) and one integer pass over the liveness schedule for the peak. Each point's
totals are checked equal to the bound analysis at that point before anything is printed. CPU
time (user + sys of this process), medians of 3 runs, measured in one run.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_onnx import transformer  # noqa: E402

import archcalc  # noqa: E402
from archcalc.engine.inference import analyze  # noqa: E402
from archcalc.engine.sweep import run_sweep
from archcalc.engine.symbolic import sweep_points  # noqa: E402
from archcalc.readers.onnx import load_onnx  # noqa: E402

REPEATS = 3
SEQ = [128 * 2**k for k in range(7)]  # 128 .. 8192
SWEEPS = [("seq", SEQ), ("batch", [1, 8])]


def cpu(fn) -> float:
    gc.collect()
    started = time.process_time()
    fn()
    return time.process_time() - started


def main() -> None:
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "tfm_10k.onnx")
        onnx.save(transformer(400), path)
        graphs = {
            "gpt2 spec": archcalc.load("specs/gpt2.yaml", {"input_ids": ("batch", "seq")}),
            "llama_3_2_1b spec": archcalc.load("specs/llama_3_2_1b.yaml", {"input_ids": ("batch", "seq")}),
            "tfm_10k onnx": load_onnx(path),
        }
        points = sweep_points(SWEEPS)
        print(f"{len(points)} points (seq {SEQ[0]}..{SEQ[-1]} x batch 1, 8); CPU time, medians of {REPEATS}\n")
        print("| model | layers | sweep | N bound analyses | ratio |")
        print("|---|---:|---:|---:|---:|")
        for label, graph in graphs.items():
            swept = []
            bound = []
            sweep_times = [cpu(lambda: swept.append(run_sweep(graph, {}, SWEEPS))) for _ in range(REPEATS)]  # noqa: B023
            bound_times = [cpu(lambda: bound.append([analyze(graph, p) for p in points])) for _ in range(REPEATS)]  # noqa: B023
            _, values, _ = swept[0]
            for value, analysis in zip(values, bound[0]):
                t = analysis.totals
                assert (value.macs, value.flops, value.activation_bytes, value.peak_activation_bytes) == (
                    t.macs, t.flops, t.activation_bytes, t.peak_activation_bytes), (label, value.bindings)
            s, b = statistics.median(sweep_times), statistics.median(bound_times)
            print(f"| {label} | {len(bound[0][0].layers):,} | {s:.3f} s | {b:.3f} s | {b / s:.1f}x |")


if __name__ == "__main__":
    main()
