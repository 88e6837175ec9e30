"""How long the bundled transformer specs take to analyse, against ResNet-50's spec in the same run.

Run by hand (not part of the test suite):

    python3 bench/bench_transformer_specs.py            # 5 repetitions each, the fastest kept
    python3 bench/bench_transformer_specs.py --repeat 20

R = parse + analyse of specs/resnet50.yaml in this process (the CNN spec the README leads
with, 175 layers); every transformer spec's parse + analyse is printed as seconds and as a
ratio of R, with its layer count and the time per layer. Whole processes are timed too:
`archcalc analyze SPEC --format json` against the same command on resnet50.yaml.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from archcalc.engine.inference import analyze  # noqa: E402 (after the path is set)
from archcalc.readers.spec.build import load_spec  # noqa: E402

SPECS = ("bert_base", "gpt2", "vit_b_16", "llama_3_2_1b", "t5_small_encoder", "whisper_tiny_encoder")
REFERENCE = "resnet50"


def fastest(spec: str, repeat: int) -> tuple[float, int]:
    path = os.path.join(ROOT, "specs", f"{spec}.yaml")
    best = float("inf")
    layers = 0
    for _ in range(repeat):
        start = time.perf_counter()
        analysis = analyze(load_spec(path))
        best = min(best, time.perf_counter() - start)
        layers = len(analysis.layers)
    return best, layers


def process(spec: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "archcalc", "analyze", f"specs/{spec}.yaml", "--format", "json"],
                   cwd=ROOT, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": ROOT})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    fastest(REFERENCE, 1)  # warm imports and the rule registry
    reference, reference_layers = fastest(REFERENCE, repeat)
    reference_process = min(process(REFERENCE) for _ in range(3))
    print(f"R = {REFERENCE}: {reference * 1000:.1f} ms in-process ({reference_layers} layers), "
          f"{reference_process:.2f} s as a process")
    print(f"{'spec':22} {'layers':>6} {'ms':>8} {'x R':>6} {'us/layer':>9} {'process s':>9} {'x R':>6}")
    for spec in SPECS:
        seconds, layers = fastest(spec, repeat)
        whole = min(process(spec) for _ in range(3))
        print(f"{spec:22} {layers:6d} {seconds * 1000:8.1f} {seconds / reference:6.2f} "
              f"{seconds / layers * 1e6:9.1f} {whole:9.2f} {whole / reference_process:6.2f}")


if __name__ == "__main__":
    main()
