"""The speed table of issue 16: archcalc's read and engine against onnx's own load and C++
shape inference, on four generated graphs, in CPU time, measured in one run.

    python3 bench/bench_table.py                  # CPU time, medians of 5 interleaved runs
    python3 bench/bench_table.py --onnx-tool      # + onnx-tool's shape_infer + profile (slow)
    python3 bench/bench_table.py --instructions   # + valgrind instruction counts (minutes)

Columns (CPU time = user + sys of this process, so other load on the machine counts less
than in wall time): L = `onnx.load`, SI = `onnx.shape_inference.infer_shapes` of the
loaded model, R = archcalc's read into its graph, E = its engine pass; T = onnx-tool; the
last column is a whole `archcalc analyze --format json` process over a process that only
imports onnx and loads the file (children's CPU time, medians of 5).

Graphs: cnn_10k and cnn_50k are Conv(bias) -> BatchNormalization -> Relu blocks of 16
channels with random values (as trained weights are: no two biases alike); resnet_10k
is bench_onnx's residual DAG; tfm_10k its pre-norm transformer with symbolic batch and
sequence.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_onnx import CHILD_ENV, _model, _onnx_tool_profile, instructions, residual_dag, transformer  # noqa: E402

from archcalc.engine.inference import analyze  # noqa: E402
from archcalc.readers.onnx import load_onnx  # noqa: E402

REPEATS = 5


def conv_bn_relu(blocks: int, channels: int = 16) -> onnx.ModelProto:
    """Conv(bias) -> BatchNormalization -> Relu, 3 nodes per block, random values."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "input"
    for i in range(blocks):
        inits.append(numpy_helper.from_array(
            rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), f"w{i}"))
        for part in ("bias", "scale", "shift", "mean", "var"):
            inits.append(numpy_helper.from_array(rng.random(channels).astype(np.float32), f"{part}{i}"))
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"bias{i}"], [f"c{i}"], name=f"b{i}.conv", kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", [f"c{i}", f"scale{i}", f"shift{i}", f"mean{i}", f"var{i}"],
                             [f"n{i}"], name=f"b{i}.bn"),
            helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"b{i}.relu"),
        ]
        x = f"r{i}"
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, 32, 32])]
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)]
    return _model(nodes, inputs, outputs, inits, f"cnn{blocks}")


def cpu(fn) -> float:
    """CPU seconds of `fn()`, collections from earlier work done before the clock starts."""
    gc.collect()
    started = time.process_time()
    fn()
    return time.process_time() - started


def children_cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=CHILD_ENV)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def once(path: str, bindings: dict[str, int]) -> dict[str, float]:
    """One measurement of every column for the model at `path`."""
    loaded: list[onnx.ModelProto] = []
    graph: list = []
    figures = {
        "L": cpu(lambda: loaded.append(onnx.load(path, load_external_data=False))),
        "SI": cpu(lambda: onnx.shape_inference.infer_shapes(loaded[0])),
        "R": cpu(lambda: graph.append(load_onnx(path))),
        "E": cpu(lambda: analyze(graph[0], bindings)),
    }
    dims = [arg for name, value in bindings.items() for arg in ("--dim", f"{name}={value}")]
    figures["P"] = children_cpu([sys.executable, "-m", "archcalc", "analyze", path, "--format", "json", *dims])
    figures["B"] = children_cpu([sys.executable, "-c", f"import onnx; onnx.load({path!r}, load_external_data=False)"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-tool", action="store_true", help="time onnx-tool too (one run each, 10k graphs)")
    parser.add_argument("--instructions", action="store_true", help="count R+E and SI instructions with valgrind")
    args = parser.parse_args()
    graphs = {"cnn_10k": (conv_bn_relu(3334), {"batch": 1}), "resnet_10k": (residual_dag(2000), {"batch": 1}),
              "tfm_10k": (transformer(400), {"batch": 1, "seq": 128}),
              "cnn_50k": (conv_bn_relu(16667), {"batch": 1})}
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for label, (model, _) in graphs.items():
            paths[label] = os.path.join(folder, f"{label}.onnx")
            onnx.save(model, paths[label])
        times: dict[str, dict[str, list[float]]] = {label: {} for label in graphs}
        for _ in range(REPEATS):  # interleaved, so a slow spell of the machine spreads over every figure
            for label, (_, bindings) in graphs.items():
                for key, seconds in once(paths[label], bindings).items():
                    times[label].setdefault(key, []).append(seconds)
        print(f"CPU time (user+sys), medians of {REPEATS} interleaved runs; {os.cpu_count()} cores, "
              f"Python {sys.version.split()[0]}, onnx {onnx.__version__}\n")
        header = "| model | L | SI | R | E | E/SI | (R+E)/(L+SI) | process / bare load |"
        if args.onnx_tool:
            header = header + " T | T/(R+E) |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        medians = {}
        for label in graphs:
            m = {k: statistics.median(v) for k, v in times[label].items()}
            medians[label] = m
            line = (f"| {label} | {m['L']:.3f} s | {m['SI']:.3f} s | {m['R']:.3f} s | {m['E']:.3f} s | "
                    f"{m['E'] / m['SI']:.2f} | {(m['R'] + m['E']) / (m['L'] + m['SI']):.2f} | "
                    f"{m['P'] / m['B']:.2f} |")
            if args.onnx_tool:
                if label.endswith("10k"):
                    path, bindings = paths[label], graphs[label][1]
                    tool = cpu(lambda: _onnx_tool_profile(path, bindings))  # noqa: B023  called at once
                    line += f" {tool:.2f} s | {tool / (m['R'] + m['E']):.0f}x |"
                else:
                    line += " not run (minutes) | |"
            print(line)
        if args.instructions:
            print("\ninstructions beyond a process that imports archcalc and onnx and loads the file "
                  "(valgrind; collector off in all, see bench_onnx.instructions):")
            counts = {}
            for label, (_, bindings) in graphs.items():
                path = paths[label]
                setup = ("import gc; gc.disable(); import onnx; import archcalc.rules; "
                         "from archcalc.engine.inference import analyze; "
                         "from archcalc.readers.onnx import load_onnx; "
                         f"model = onnx.load({path!r}, load_external_data=False)")
                base = instructions(setup)
                read_engine = instructions(setup + f"; analyze(load_onnx({path!r}), {bindings!r})") - base
                inference = instructions(setup + "; onnx.shape_inference.infer_shapes(model)") - base
                counts[label] = read_engine
                print(f"  {label:11s} R+E {read_engine / 1e6:7.0f} M, SI {inference / 1e6:7.0f} M: "
                      f"{read_engine / inference:.2f} x")
            print(f"  linearity: cnn_50k / cnn_10k R+E = {counts['cnn_50k'] / counts['cnn_10k']:.2f} "
                  "(5 x the nodes)")


if __name__ == "__main__":
    main()
