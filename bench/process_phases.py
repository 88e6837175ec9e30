"""Where a whole `archcalc analyze MODEL --format json` process spends its CPU time: start-up
and imports, onnx's own import, read, engine, JSON document, serialising and writing, exit.

    python3 bench/process_phases.py               # cnn_50k (bench_table's), medians of 3
    python3 bench/process_phases.py model.onnx --runs 5

Each run is a child process that does what the command does, step by step, noting its own
CPU time (user + sys) after each; the parent takes the child's whole CPU time from
getrusage, so `exit` is what remains after the last step (the interpreter's teardown, or
none with the command's hard exit). A process that only imports onnx and loads the file,
measured the same way, is the reference of bench_table's last column.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = r"""
import json, os, sys, time
marks = [("start-up", time.process_time())]
from archcalc.cli.main import cli  # noqa: F401  the command's own imports
from archcalc.cli.options import load_from_options
from archcalc.core.collector import pause_gc
from archcalc.engine.inference import analyze
from archcalc.report import analysis as report
marks.append(("archcalc imports", time.process_time()))
import onnx  # noqa: F401  imported by the reader in the command
marks.append(("onnx import", time.process_time()))
graph = load_from_options(sys.argv[1], ())
marks.append(("read", time.process_time()))
result = analyze(graph, {})
marks.append(("engine", time.process_time()))
with pause_gc():
    document = report.json_document(result)
    marks.append(("JSON document", time.process_time()))
    # (a tree from before report.json_bytes and cli.main._end: the text, encoded, and the usual exit)
    data = report.json_bytes(document) if hasattr(report, "json_bytes") else report.dumps_json(document).encode()
    marks.append(("serialise", time.process_time()))
with open(os.devnull, "wb") as sink:
    sink.write(data + b"\n")
marks.append(("write", time.process_time()))
sys.stderr.write(json.dumps(marks) + "\n")
sys.stderr.flush()
from archcalc.cli import main
if hasattr(main, "_end"):
    main._end(0)
"""


def run(code: list[str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, *code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="an ONNX file (default: bench_table's cnn_50k, generated)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.model
        if path is None:
            import onnx
            from bench_table import conv_bn_relu

            path = os.path.join(folder, "cnn_50k.onnx")
            onnx.save(conv_bn_relu(16667), path)
        phases: dict[str, list[float]] = {}
        bare = []
        for _ in range(args.runs):
            total, stderr = run(["-c", CHILD, path])
            marks = json.loads(stderr.strip().splitlines()[-1])
            previous = 0.0
            for name, at in marks:
                phases.setdefault(name, []).append(at - previous)
                previous = at
            phases.setdefault("exit", []).append(total - previous)
            phases.setdefault("whole process", []).append(total)
            bare.append(run(["-c", f"import onnx; onnx.load({path!r}, load_external_data=False)"])[0])
    reference = statistics.median(bare)
    print(f"CPU time (user+sys), medians of {args.runs}; load average {os.getloadavg()[0]:.1f}\n")
    for name, values in phases.items():
        seconds = statistics.median(values)
        print(f"  {name:16s} {seconds:6.3f} s  {seconds / reference:5.2f} x bare")
    print(f"  {'bare onnx.load':16s} {reference:6.3f} s  (import onnx; onnx.load, in its own process)")


if __name__ == "__main__":
    main()
