"""archcalc on Keras models next to Keras' and TensorFlow's own figures: params against
``model.count_params()`` (archcalc's params plus buffers: Keras counts BatchNorm's moving
statistics as params), trainable and non-trainable against Keras' weight lists, MACs against
TensorFlow's FLOPs statistics / 2 of the Conv2D, DepthwiseConv2dNative and MatMul ops of the
frozen graph, and the wall time of archcalc.analyze on the model next to
tf2onnx.convert.from_keras alone (the same signature, opset and model).

Run by hand, in a venv with the keras extra (tensorflow-cpu, tf2onnx):

    python3 bench/keras_models.py [--runs N] [--size S] [model ...]

Each model is a Keras application built with ``weights=None`` (nothing is downloaded), at
224x224 (or --size) with its top, so its params are the Keras Applications table's. It prints
one line per model; the README's table comes from it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from bench_onnx import timed_best  # noqa: E402  (this folder: the scripts run from it)

import archcalc  # noqa: E402

MODELS = ("MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121", "InceptionV3", "Xception")


def tensorflow_macs(model, shape: tuple[int, ...]) -> int:
    from tensorflow.python.framework import ops
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape))
    graph = convert_variables_to_constants_v2(function).graph
    flops = sum(ops.get_stats_for_node_def(graph, op.node_def, "flops").value for op in graph.get_operations()
                if op.type in ("Conv2D", "DepthwiseConv2dNative", "MatMul"))
    return flops // 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--runs", type=int, default=1, help="time each step this many times, keep the best")
    parser.add_argument("--size", type=int, default=None, help="input height and width (default: the model's)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}", file=sys.stderr)
    print("| model | count_params() | archcalc params + buffers | trainable / non-trainable (Keras) "
          "| trainable / frozen + buffers (archcalc) | MACs (archcalc) | TensorFlow FLOPs / 2 "
          "| tf2onnx alone s | archcalc.analyze s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        shape = {"input_shape": (args.size, args.size, 3)} if args.size else {}
        model = getattr(keras.applications, name)(weights=None, **shape)
        size = tuple(model.inputs[0].shape[1:])
        trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
        frozen = sum(math.prod(v.shape) for v in model.non_trainable_weights)
        reference = tensorflow_macs(model, (1, *size))
        signature = [tf.TensorSpec((None, *size), name="x")]
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)  # warm-up: the first trace costs more
        convert_seconds, _ = timed_best(args.runs, lambda m=model, s=signature: tf2onnx.convert.from_keras(
            m, input_signature=s, opset=17))
        analyze_seconds, analysis = timed_best(args.runs, lambda m=model: archcalc.analyze(m))
        t = analysis.totals
        print(f"| {name} ({size[0]}x{size[1]}) | {model.count_params():,} | {t.params + t.buffers:,} "
              f"| {trainable:,} / {frozen:,} | {t.trainable_params:,} / {t.frozen_params + t.buffers:,} "
              f"| {t.macs:,} | {reference:,} | {convert_seconds:.1f} | {analyze_seconds:.1f} |", flush=True)
        for warning in analysis.warnings:
            print(f"  warning: {warning}", file=sys.stderr)


if __name__ == "__main__":
    main()
