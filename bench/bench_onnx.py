"""Benchmark archcalc's ONNX path against references measured in the same run.

Run by hand (not part of the test suite):

    python3 bench/bench_onnx.py            # all models
    python3 bench/bench_onnx.py --quick    # skip the 50k-node and >2 GB models
    python3 bench/bench_onnx.py --instructions   # instruction counts (valgrind): steadier than time

For each generated model it prints L = onnx.load(path, load_external_data=False) of the
same file in the same process, then every other figure as a ratio of L: a bare walk over
the nodes, a read of every node's fields and attributes and every initializer's dims (the
least any Python front end pays), a networkx build plus topological sort, onnx's C++ shape inference,
archcalc's engine (parse + graph + inference + totals, no rendering), and onnx-tool's
profile when it is installed. Whole processes are timed too: `archcalc analyze --format
json` against a process that only imports onnx and loads the file. Peak RSS comes from
the child processes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs, outputs, initializers, name):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def deep_cnn(layers: int, channels: int = 8):
    """Conv -> Relu repeated: 2 nodes per layer."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "input"
    for i in range(layers):
        w = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), f"w{i}")
        b = numpy_helper.from_array(np.zeros(channels, np.float32), f"b{i}")
        inits += [w, b]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        x = f"r{i}"
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, 32, 32])]
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)]
    return _model(nodes, inputs, outputs, inits, f"cnn{layers}")


def residual_dag(blocks: int, channels: int = 8):
    """Conv -> Relu -> Conv -> Add(shortcut) -> Relu: 5 nodes per block, a real DAG."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "input"
    for i in range(blocks):
        for j in (0, 1):
            inits.append(numpy_helper.from_array(
                rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), f"w{i}_{j}"))
        nodes += [
            helper.make_node("Conv", [x, f"w{i}_0"], [f"a{i}"], name=f"b{i}.conv1", kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"a{i}"], [f"ar{i}"], name=f"b{i}.relu1"),
            helper.make_node("Conv", [f"ar{i}", f"w{i}_1"], [f"c{i}"], name=f"b{i}.conv2", kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1]),
            helper.make_node("Add", [f"c{i}", x], [f"s{i}"], name=f"b{i}.add"),
            helper.make_node("Relu", [f"s{i}"], [f"o{i}"], name=f"b{i}.relu2"),
        ]
        x = f"o{i}"
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, 16, 16])]
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)]
    return _model(nodes, inputs, outputs, inits, f"residual{blocks}")


def transformer(layers: int, width: int = 64, heads: int = 4):
    """Pre-norm attention + MLP blocks with symbolic batch and sequence, exported-style
    reshapes included: about 25 nodes per layer."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def weight(name, *shape):
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.02, name))
        return name

    def const(name, values):
        inits.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    heads_shape = const("heads_shape", [0, 0, heads, width // heads])
    merge_shape = const("merge_shape", [0, 0, width])
    x = "input"
    for i in range(layers):
        p = f"l{i}."
        nodes.append(helper.make_node("LayerNormalization", [x, weight(p + "ln1.w", width), weight(p + "ln1.b", width)],
                                      [p + "ln1"], name=p + "ln1", axis=-1))
        for proj in ("q", "k", "v"):
            nodes.append(helper.make_node("MatMul", [p + "ln1", weight(p + proj + ".w", width, width)],
                                          [p + proj + "_mm"], name=p + proj))
            nodes.append(helper.make_node("Add", [p + proj + "_mm", weight(p + proj + ".b", width)],
                                          [p + proj + "_b"], name=p + proj + ".bias"))
            nodes.append(helper.make_node("Reshape", [p + proj + "_b", heads_shape], [p + proj + "_h"],
                                          name=p + proj + ".split"))
            perm = [0, 2, 3, 1] if proj == "k" else [0, 2, 1, 3]
            nodes.append(helper.make_node("Transpose", [p + proj + "_h"], [p + proj + "_t"], name=p + proj + ".t",
                                          perm=perm))
        nodes += [
            helper.make_node("MatMul", [p + "q_t", p + "k_t"], [p + "scores"], name=p + "scores"),
            helper.make_node("Softmax", [p + "scores"], [p + "attn"], name=p + "softmax", axis=-1),
            helper.make_node("MatMul", [p + "attn", p + "v_t"], [p + "ctx"], name=p + "context"),
            helper.make_node("Transpose", [p + "ctx"], [p + "ctx_t"], name=p + "ctx.t", perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "ctx_t", merge_shape], [p + "ctx_m"], name=p + "merge"),
            helper.make_node("MatMul", [p + "ctx_m", weight(p + "o.w", width, width)], [p + "o"], name=p + "out"),
            helper.make_node("Add", [x, p + "o"], [p + "res1"], name=p + "res1"),
            helper.make_node("LayerNormalization", [p + "res1", weight(p + "ln2.w", width), weight(p + "ln2.b", width)],
                             [p + "ln2"], name=p + "ln2", axis=-1),
            helper.make_node("MatMul", [p + "ln2", weight(p + "fc1.w", width, 4 * width)], [p + "fc1"], name=p + "fc1"),
            helper.make_node("Gelu" if OPSET >= 20 else "Relu", [p + "fc1"], [p + "act"], name=p + "act"),
            helper.make_node("MatMul", [p + "act", weight(p + "fc2.w", 4 * width, width)], [p + "fc2"], name=p + "fc2"),
            helper.make_node("Add", [p + "res1", p + "fc2"], [p + "out"], name=p + "res2"),
        ]
        x = p + "out"
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "seq", width])]
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)]
    return _model(nodes, inputs, outputs, inits, f"transformer{layers}")


def huge_external(directory: str, gigabytes: float = 2.2):
    """A few big Gemm weights stored as external data in a sparse file: > 2 GB of weights
    on disk that archcalc must never open."""
    features = 16384
    count = int(gigabytes * 2**30 // (features * features * 4)) + 1
    nodes, inits = [], []
    x = "input"
    data_name = "huge.onnx.data"
    offset = 0
    for i in range(count):
        tensor = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[features, features])
        tensor.data_location = TensorProto.EXTERNAL
        length = features * features * 4
        for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        offset += length
        inits.append(tensor)
        nodes.append(helper.make_node("Gemm", [x, f"w{i}"], [f"y{i}"], name=f"fc{i}", transB=1))
        x = f"y{i}"
    with open(os.path.join(directory, data_name), "wb") as handle:
        handle.truncate(offset)  # sparse: the size is real, the disk blocks are not
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])]
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)]
    return _model(nodes, inputs, outputs, inits, "huge"), offset


def best_of(fn, repeat: int = 5) -> float:
    return timed_best(repeat, fn)[0]


def timed_best(runs: int, work) -> tuple[float, object]:
    """The shortest wall time of `runs` calls of `work` (other processes only ever add time),
    and what the last call returned."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


# Child processes may cache bytecode, as any installed package does: with
# PYTHONDONTWRITEBYTECODE set, archcalc's modules would be compiled afresh in every process
# while onnx's come precompiled from its wheel.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def child(code: str, repeat: int = 3) -> float:
    """Best wall time of a fresh Python process running `code`, after one warm-up run."""
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, env=CHILD_ENV)
        times.append(time.perf_counter() - started)
    return min(times[1:])


def child_rss(code: str) -> int:
    """Peak RSS (MiB) of a fresh Python process running `code`: its VmHWM, which starts
    afresh at exec (ru_maxrss would carry over this big parent's peak through fork)."""
    report = ("\nprint(next(line.split()[1] for line in open('/proc/self/status') "
              "if line.startswith('VmHWM')))")
    result = subprocess.run([sys.executable, "-c", code + report], check=True, capture_output=True, text=True)
    return int(result.stdout.strip().splitlines()[-1]) // 1024


def data_file_opened(path: str) -> str:
    """Whether `archcalc analyze` opens the model's external-data file, by strace."""
    import shutil

    if shutil.which("strace") is None:
        return "strace not installed: data-file opens not checked"
    result = subprocess.run(["strace", "-f", "-e", "trace=open,openat", sys.executable, "-m", "archcalc",
                             "analyze", path, "--format", "json"], capture_output=True, text=True)
    opened = [line for line in result.stderr.splitlines() if ".onnx.data" in line]
    return f"data file opened {len(opened)} times (strace)"


# onnx-tool's profile grows faster than linearly (minutes on the 50k-node model): it is
# measured on the 10k-node models only.
ONNX_TOOL_MAX_NODES = 10_000


def measure(path: str, label: str, nodes: int, bindings: dict[str, int]) -> None:
    import networkx as nx

    from archcalc.engine.inference import analyze
    from archcalc.readers.onnx import load_onnx

    load = best_of(lambda: onnx.load(path, load_external_data=False))
    model = onnx.load(path, load_external_data=False)

    def walk():
        for node in model.graph.node:
            _ = (node.op_type, list(node.input), list(node.output))

    def read_all():
        """What any Python front end pays before inferring anything: every node's fields and
        attributes, and every initializer's dims and type, read through protobuf."""
        for node in model.graph.node:
            _ = (node.name, node.op_type, node.domain, tuple(node.input[:]), tuple(node.output[:]),
                 [(a.name, a.type, a.i, a.f, tuple(a.ints[:])) for a in node.attribute])
        for init in model.graph.initializer:
            _ = (init.name, tuple(init.dims[:]), init.data_type, init.data_location)

    def networkx_build():
        dag = nx.DiGraph()
        producer = {}
        for node in model.graph.node:
            dag.add_node(node.name)
            for out in node.output:
                producer[out] = node.name
        for node in model.graph.node:
            for name in node.input:
                if name in producer:
                    dag.add_edge(producer[name], node.name)
        list(nx.topological_sort(dag))

    engine = best_of(lambda: analyze(load_onnx(path), bindings), repeat=7)
    figures = {
        "walk": best_of(walk),
        "read (nodes, attributes, initializers)": best_of(read_all),
        "networkx": best_of(networkx_build, repeat=3),
        "onnx C++ shape inference": best_of(lambda: onnx.shape_inference.infer_shapes(model), repeat=7),
        "archcalc engine": engine,
    }
    try:
        import onnx_tool  # noqa: F401
    except ImportError:
        onnx_tool = None
    if onnx_tool is not None and nodes <= ONNX_TOOL_MAX_NODES:
        figures["onnx-tool profile"] = best_of(lambda: _onnx_tool_profile(path, bindings), repeat=1)
    binds = " ".join(f"--dim {k}={v}" for k, v in bindings.items())
    archcalc_process = child(f"import sys; sys.argv=['archcalc','analyze',{path!r},'--format','json'] + "
                                f"{binds.split()!r}; from archcalc.cli.main import main; main()")
    load_process = child(f"import onnx; onnx.load({path!r}, load_external_data=False)")
    print(f"\n{label}: {nodes:,} nodes, {os.path.getsize(path) / 2**20:.1f} MiB; L = {load * 1e3:.1f} ms")
    for name, seconds in figures.items():
        print(f"  {name:38s} {seconds * 1e3:9.1f} ms  {seconds / load:6.2f} L")
    print(f"  {'process: analyze --format json':38s} {archcalc_process * 1e3:9.1f} ms  "
          f"{archcalc_process / load_process:6.2f} x a process that imports onnx and loads the file "
          f"({load_process * 1e3:.0f} ms)")
    return engine


def _onnx_tool_profile(path: str, bindings: dict[str, int]) -> None:
    """onnx-tool's shape inference and profile; it needs concrete inputs, so each graph
    input is fed a zero array with its symbolic dims bound."""
    import onnx_tool

    model = onnx_tool.Model(path)
    feeds = {}
    for graph_input in onnx.load(path, load_external_data=False).graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        feeds[graph_input.name] = np.zeros([d.dim_value or bindings[d.dim_param] for d in dims], np.float32)
    model.graph.shape_infer(feeds)
    model.graph.profile()


def instructions(code: str) -> int:
    """Instructions a fresh Python process running `code` executes, counted by valgrind's
    callgrind. They vary by 2-3% from run to run (where objects land in memory changes the
    hashing of anything keyed by identity), against 30-50% for wall time on this virtual
    machine; string hashing is fixed (PYTHONHASHSEED) so dict probes repeat."""
    result = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                             os.path.realpath(sys.executable), "-c", code],
                            capture_output=True, text=True, env={**CHILD_ENV, "PYTHONHASHSEED": "0"}, check=True)
    collected = [line for line in result.stderr.splitlines() if "Collected" in line]
    return int(collected[-1].split()[-1])


def measure_instructions(path: str, label: str, bindings: dict[str, int]) -> None:
    """archcalc's engine and onnx's C++ shape inference, each in instructions beyond a process
    that imports both and loads the file. The cyclic collector is off in all three: its
    passes start at allocation thresholds, so a full pass over every imported module's
    objects lands in one process and not in another, and the differences would measure it."""
    setup = ("import gc; gc.disable(); import onnx; import archcalc.rules; "
             "from archcalc.engine.inference import analyze; "
             f"from archcalc.readers.onnx import load_onnx; model = onnx.load({path!r}, load_external_data=False)")
    base = instructions(setup)
    engine = instructions(setup + f"; analyze(load_onnx({path!r}), {bindings!r})") - base
    inference = instructions(setup + "; onnx.shape_inference.infer_shapes(model)") - base
    print(f"  {label:16s} engine {engine / 1e6:7.0f} M instructions, onnx C++ shape inference "
          f"{inference / 1e6:7.0f} M: {engine / inference:.2f} x")


def measure_rendering(path: str, bindings: dict[str, int]) -> None:
    import io

    from rich.console import Console

    from archcalc.engine.inference import analyze
    from archcalc.engine.rows import rows as table_rows
    from archcalc.readers.onnx import load_onnx
    from archcalc.report import analysis as report

    analysis = analyze(load_onnx(path), bindings)
    rows = table_rows(analysis)
    console = Console(file=io.StringIO(), width=140, markup=False, highlight=False)
    table = best_of(lambda: report.render_table(analysis, rows[:1000], console), repeat=1)
    summary = best_of(lambda: report.render_summary(analysis, rows, console), repeat=3)
    csv_time = best_of(lambda: report.render_csv(rows), repeat=3)
    json_time = best_of(lambda: report.render_json(analysis), repeat=3)
    print(f"\nrendering {len(rows):,} rows: rich table {table / 1000 * 1e3:.3f} ms/row (1,000 rows), "
          f"default summary table {summary * 1e3:.0f} ms, "
          f"CSV {csv_time / len(rows) * 1e6:.1f} us/row, JSON {json_time / len(rows) * 1e6:.1f} us/row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 50k-node and >2 GB models")
    parser.add_argument("--instructions", action="store_true",
                        help="only count instructions (valgrind) of the engine and of onnx's C++ shape inference "
                             "on the 10k-node models: slow, but steadier than wall time")
    args = parser.parse_args()
    if args.instructions:
        with tempfile.TemporaryDirectory() as directory:
            print("instructions beyond importing and loading (valgrind callgrind):")
            for label, model, bindings in (("cnn-10k", deep_cnn(5000), {"batch": 1}),
                                           ("residual-10k", residual_dag(2000), {"batch": 1}),
                                           ("transformer-10k", transformer(400), {"batch": 1, "seq": 128})):
                path = os.path.join(directory, f"{label}.onnx")
                onnx.save(model, path)
                measure_instructions(path, label, bindings)
        return
    with tempfile.TemporaryDirectory() as directory:
        engines = {}
        cases = [("cnn-1k", deep_cnn(500)), ("cnn-10k", deep_cnn(5000)), ("residual-10k", residual_dag(2000)),
                 ("transformer-10k", transformer(400))]
        if not args.quick:
            cases.append(("cnn-50k", deep_cnn(25000)))
        for label, model in cases:
            path = os.path.join(directory, f"{label}.onnx")
            onnx.save(model, path)
            bindings = {"batch": 1, "seq": 128} if label.startswith("transformer") else {"batch": 1}
            engines[label] = measure(path, label, len(model.graph.node), bindings)
        if "cnn-50k" in engines:
            print(f"\nscaling: cnn-50k engine / cnn-10k engine = {engines['cnn-50k'] / engines['cnn-10k']:.2f} "
                  f"(5 x the nodes)")
        measure_rendering(os.path.join(directory, "cnn-10k.onnx"), {"batch": 1})
        if not args.quick:
            huge, data_bytes = huge_external(directory)
            path = os.path.join(directory, "huge.onnx")
            onnx.save(huge, path)
            rss = child_rss("from archcalc.engine.inference import analyze; "
                            "from archcalc.readers.onnx import load_onnx; "
                            f"a = analyze(load_onnx({path!r})); print(a.totals.params)")
            baseline = child_rss("import onnx")
            print(f"\nexternal data: {data_bytes / 2**30:.2f} GiB of weights; archcalc peak RSS {rss} MiB "
                  f"(a process that only imports onnx: {baseline} MiB); {data_file_opened(path)}")
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, onnx {onnx.__version__}")


if __name__ == "__main__":
    main()
