"""archcalc on PyTorch modules next to torch's own figures: params against
sum(p.numel() for p in model.parameters()), MACs against FlopCounterMode's FLOPs / 2
(attention computed eagerly: the math SDPA backend, attn_implementation="eager"), and the
wall time of archcalc.analyze on the module next to torch.onnx.export alone.

Run by hand, in a venv with the torch extra, torchvision and transformers:

    python3 bench/torch_models.py [--runs N] [model ...]

It prints one line per model; the README's table comes from it.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch
from bench_onnx import timed_best  # this folder: the scripts run from it
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import archcalc


def torchvision_model(name: str):
    import torchvision

    return getattr(torchvision.models, name)(), (torch.randn(1, 3, 224, 224),)


def bert():
    import transformers

    config = transformers.BertConfig(attn_implementation="eager", use_cache=False)
    return transformers.BertModel(config), (torch.ones(1, 128, dtype=torch.long),)


def gpt2():
    import transformers

    config = transformers.GPT2Config(attn_implementation="eager", use_cache=False)
    return transformers.GPT2LMHeadModel(config), (torch.ones(1, 128, dtype=torch.long),)


MODELS = {name: (lambda n=name: torchvision_model(n)) for name in (
    "resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t")}
MODELS.update({"bert-base": bert, "gpt2 (lm head tied)": gpt2})


def reference_macs(model, inputs) -> int:
    """FlopCounterMode's FLOPs / 2 with attention computed eagerly: the math SDPA backend, and
    nn.MultiheadAttention's fused inference path off (FlopCounterMode sees neither fused kernel)."""
    counter = FlopCounterMode(display=False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() // 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--runs", type=int, default=1, help="time each step this many times, keep the best")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}", file=sys.stderr)
    print("| model | params (archcalc) | sum(p.numel()) | MACs (archcalc) | FlopCounterMode / 2 | MACs ratio "
          "| export alone s | archcalc.load s | analysis of the graph s | archcalc.analyze s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        model, inputs = MODELS[name]()
        model.eval()
        numel = sum(p.numel() for p in model.parameters())
        macs = reference_macs(model, inputs)
        torch.onnx.export(model, inputs, dynamo=True, optimize=False, verbose=False, report=False)  # warm-up
        export_seconds, _ = timed_best(args.runs, lambda m=model, i=inputs: torch.onnx.export(
            m, i, dynamo=True, optimize=False, verbose=False, report=False))
        load_seconds, graph = timed_best(args.runs, lambda m=model, i=inputs: archcalc.load(m, example_inputs=i))
        graph_seconds, _ = timed_best(args.runs, lambda g=graph: archcalc.analyze(g))
        analyze_seconds, analysis = timed_best(args.runs, lambda m=model, i=inputs: archcalc.analyze(m, i))
        t = analysis.totals
        print(f"| {name} | {t.params:,} | {numel:,} | {t.macs:,} | {macs:,} | {t.macs / macs:.4f} "
              f"| {export_seconds:.1f} | {load_seconds:.1f} | {graph_seconds:.2f} | {analyze_seconds:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
