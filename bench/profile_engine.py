"""Where the engine pass spends its time: a CPU-time sampling profile of `analyze` on the
bench table's graphs (issue 16), each step's share of the samples.

    python3 bench/profile_engine.py                   # cnn_10k and resnet_10k, 20 passes each
    python3 bench/profile_engine.py tfm_10k --runs 40

SIGPROF fires every 0.5 ms of this process's CPU time (user + sys, so other load on the
machine does not count) and the handler counts the Python stack it interrupts: a step's
inclusive share is the fraction of samples with it anywhere on the stack, its self share
those with it on top. Unlike cProfile, whose per-call cost inflates the many small
per-layer functions, sampling leaves the pass's own proportions as they are.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_onnx import residual_dag, transformer  # noqa: E402
from bench_table import conv_bn_relu  # noqa: E402

from archcalc.engine.inference import analyze  # noqa: E402
from archcalc.readers.onnx import load_onnx  # noqa: E402

GRAPHS = {"cnn_10k": (lambda: conv_bn_relu(3334), {"batch": 1}),
          "resnet_10k": (lambda: residual_dag(2000), {"batch": 1}),
          "tfm_10k": (lambda: transformer(400), {"batch": 1, "seq": 128})}
INTERVAL = 0.0005  # seconds of CPU time between samples


def profile(path: str, bindings: dict[str, int], runs: int) -> tuple[int, collections.Counter, collections.Counter]:
    """(samples, inclusive counts, self counts) by `file:function` over `runs` engine passes."""
    graph = load_onnx(path)
    analyze(graph, bindings)  # warm: rule registry imported, lru caches filled
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0

    def sample(_signal: int, frame: FrameType | None) -> None:
        nonlocal total
        total += 1
        seen = set()
        top = True
        while frame is not None:
            code = frame.f_code
            key = f"{Path(code.co_filename).name}:{code.co_name}"
            if top:
                own[key] += 1
                top = False
            if key not in seen:
                inclusive[key] += 1
                seen.add(key)
            frame = frame.f_back

    signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
    try:
        for _ in range(runs):
            gc.collect()  # outside the pass, as bench_table's cpu() does; its samples are left out below
            analyze(graph, bindings)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
    # Samples outside analyze (the loop, gc.collect) are no part of the pass.
    passes = inclusive["inference.py:analyze"]
    return passes, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graphs", nargs="*", default=["cnn_10k", "resnet_10k"], choices=list(GRAPHS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for label in args.graphs:
            make, bindings = GRAPHS[label]
            path = os.path.join(folder, f"{label}.onnx")
            onnx.save(make(), path)
            samples, inclusive, own = profile(path, bindings, args.runs)
            print(f"\n{label}: {samples} samples of the engine pass ({args.runs} passes, one per "
                  f"{INTERVAL * 1000:g} ms of CPU)")
            print("  inclusive  self  step")
            steps = [(key, count) for key, count in inclusive.most_common()
                     if key != "inference.py:analyze" and count >= samples / 200
                     and not key.startswith(("profile_engine.py", "<frozen"))]
            for key, count in steps[:args.top]:
                print(f"  {count / samples:8.1%} {own[key] / samples:6.1%}  {key}")

if __name__ == "__main__":
    main()
