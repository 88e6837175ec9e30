"""A Keras model as a Graph: converted to ONNX in memory by tf2onnx, then read as any ONNX model.

TensorFlow, Keras and tf2onnx are imported only here and only when a Keras model is given (the
``archcalc[keras]`` extra); a Keras model is recognised by the modules of its classes, so
nothing is imported to ask. What the conversion changes is put back from the model itself:

- values: tf2onnx (with TensorFlow's constant folding before it) simplifies by VALUE: it drops
  an Add of zeros and a Mul by ones, so a fresh model's zero biases and its BatchNorms'
  identity statistics would vanish from the graph, and with them params and FLOPs that any
  trained copy of the same model has. The model is converted with every float weight
  perturbed (as training would), then given back its own values; the graph then has the
  structure of the trained model, whatever the weights were;
- BatchNorm: the conversion turns a BatchNormalization into a Mul and an Add by folded
  constants (C values each, where Keras has gamma, beta, moving mean and variance) or folds
  it into the convolution before it (which gains a bias). Each is made a BatchNormalization
  node again, with the layer's own weights (params) and moving statistics (buffers); a
  folded convolution's kernel and bias are divided by the BatchNorm's scale again, and a bias
  the fold made is dropped. (The graph's values are near the model's, not equal to them: the
  conversion ran on perturbed weights. archcalc reads only shapes.);
- layer names: tf2onnx names nodes by TensorFlow name scopes (``model_1/conv1_1/BiasAdd``:
  each Keras call adds a ``_N`` suffix); nodes are renamed after the Keras layer path
  (``conv1``, ``conv1/Transpose``, ``backbone/Conv1`` in a nested model), and each node's
  ``block`` is its top-level layer, so ``--depth 1`` shows the rows of ``model.summary()``;
- trainable or frozen: from each layer's ``trainable`` flag (``model.trainable_weights``); a
  layer whose weights the graph holds in another number than Keras does is named in a warning.

Keras application factories download ImageNet weights unless told not to: archcalc calls a
factory with ``weights=None`` (``readers/torch.load_factory``), and never needs weight values.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from archcalc.core.errors import ArchcalcError
from archcalc.core.graph import Graph

CONVERTER = "tf2onnx"
_CALL_SUFFIX = re.compile(r"^(.*)_\d+$")
_OPSET = 17  # tf2onnx's newest well-tested opset in 1.17; LayerNormalization needs 17


def is_keras_model(model: object) -> bool:
    """Whether `model` is a Keras Model (Keras 3 or tf.keras), by the modules of its classes:
    nothing is imported to find out."""
    return any(cls.__name__ == "Model" and cls.__module__.split(".")[0] in ("keras", "tf_keras")
               for cls in type(model).__mro__)


def load_keras(model: Any, input_shapes: Mapping[str, Sequence[Any]] | None = None, *,
               input_size: Sequence[Any] | None = None, name: str | None = None) -> Graph:
    """`model` converted at `input_size` (its first input) or `input_shapes` ({input name:
    shape}; a dim given as a name stays symbolic), else at the model's own input shapes with a
    symbolic ``batch``."""
    import tf2onnx

    from archcalc.readers.onnx import convert_model

    label = name or model.name
    proto = export_keras(model, input_shapes, input_size=input_size, name=label)
    graph = convert_model(proto, label)
    notes = list(graph.metadata.get("warnings", ()))
    notes += _apply_weights(model, graph)
    import keras

    graph.metadata["name"] = f"{label} (keras {keras.__version__}, tf2onnx {tf2onnx.__version__})"
    graph.metadata["exporter"] = CONVERTER
    graph.metadata["warnings"] = notes
    return graph


def export_keras(model: Any, input_shapes: Mapping[str, Sequence[Any]] | None = None, *,
                 input_size: Sequence[Any] | None = None, name: str | None = None) -> Any:
    """The ONNX ModelProto `load_keras` reads: BatchNorms restored, nodes named by layer."""
    label = name or model.name
    specs, dim_names = _signature(model, input_shapes, input_size, label)
    layers = _Layers(model)
    converted = _functional(model)
    with layers.tokens():
        proto = _convert(converted, specs, label, layers.readable)
    layers.read_scope(proto)
    _name_dims(proto, dim_names)
    _restore_batchnorms(proto, layers)
    _name_by_layer(proto, layers)
    return proto


# -- inputs ---------------------------------------------------------------------------------

def _signature(model: Any, input_shapes: Mapping[str, Sequence[Any]] | None, input_size: Sequence[Any] | None,
               label: str) -> tuple[list[Any], list[list[str | None]]]:
    """A tf.TensorSpec per model input, and per input the names of its symbolic dims (None
    where the dim is a number)."""
    import tensorflow as tf

    if input_shapes is not None and input_size is not None:
        raise ArchcalcError(f"{label}: both input_size and input_shapes", where=label,
                            fix="give one: input_size=(1, 224, 224, 3) or input_shapes={'image': (1, 224, 224, 3)}")
    inputs = list(model.inputs) if getattr(model, "inputs", None) else []
    if not inputs:  # a subclassed model, or a Sequential without an Input: the shapes given are its
        built = _signature_of_unknown(model, input_shapes, input_size, label)
        if not getattr(model, "inputs", None):
            return built
        inputs = list(model.inputs)  # a Sequential has them once built, and tf2onnx reads them
    names = [_input_name(t) for t in inputs]
    given: dict[str, Sequence[Any]] = {}
    if input_size is not None:
        given = {names[0]: input_size}
    elif input_shapes:
        given = dict(input_shapes)
        if len(given) == 1 and len(names) == 1 and names[0] not in given:
            given = {names[0]: next(iter(given.values()))}  # one input: its name may be anything
        unknown = [key for key in given if key not in names]
        if unknown:
            raise ArchcalcError(f"Keras model {label} has no input named '{unknown[0]}'", where=label,
                                fix=f"name the inputs as the model does: {', '.join(names)}")
    specs, dim_names = [], []
    for tensor, input_name in zip(inputs, names):
        own = tuple(tensor.shape)
        shape = given.get(input_name)
        if shape is None:  # the model's own shape, its unknown dims symbolic: batch first
            shape = tuple("batch" if i == 0 else (d if d is not None else f"{input_name}_{i}")
                          for i, d in enumerate(own))
        dims: list[int | None] = []
        symbols: list[str | None] = []
        for d in shape:
            if isinstance(d, int) and not isinstance(d, bool) and d >= 1:
                dims.append(d)
                symbols.append(None)
            elif isinstance(d, int) or not str(d).isidentifier():
                raise ArchcalcError(f"input '{input_name}' of {label}: dim {d!r} is neither a size >= 1 nor a name",
                                    where=label, fix="give each dim as a number or a name, e.g. (1, 224, 224, 3)")
            else:
                dims.append(None)
                symbols.append(str(d))
        if len(dims) != len(own):
            raise ArchcalcError(f"input '{input_name}' of {label} has {len(own)} dims {_shape_text(own)}, "
                                f"not {len(dims)}", where=label,
                                fix=f"give {len(own)} dims, batch first (Keras is channels-last: "
                                    f"{_shape_text((1, *own[1:]))})")
        fixed = next((i for i, (d, o) in enumerate(zip(dims, own)) if o is not None and d != o), None)
        if fixed is not None:
            raise ArchcalcError(f"input '{input_name}' of {label} is {_shape_text(own)}: dim {fixed} is "
                                f"{own[fixed]}, not {shape[fixed]}", where=label,
                                fix="give the model's own size, or build the model at yours (e.g. "
                                    "keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None))")
        specs.append(tf.TensorSpec(dims, tensor.dtype, name=input_name))
        dim_names.append(symbols)
    return specs, dim_names


def _signature_of_unknown(model: Any, input_shapes: Mapping[str, Sequence[Any]] | None,
                          input_size: Sequence[Any] | None, label: str) -> tuple[list[Any], list[list[str | None]]]:
    """The signature of a model whose inputs Keras does not know (a subclassed model, a
    Sequential without an Input), from the shapes given; the model built on them if it is not."""
    import tensorflow as tf

    given = {"input": input_size} if input_size is not None else dict(input_shapes or {})
    if not given:
        raise ArchcalcError(f"Keras model {label} does not say the shape of its inputs (a subclassed model, or a "
                            "Sequential without keras.Input)", where=label,
                            fix="give input_size=(1, 224, 224, 3) (on the command line: --input-shape x=1,224,224,3)")
    specs, dim_names = [], []
    for name, shape in given.items():
        dims: list[int | None] = []
        symbols: list[str | None] = []
        for d in shape:
            number = isinstance(d, int) and not isinstance(d, bool)
            if (number and d < 1) or (not number and not str(d).isidentifier()):
                raise ArchcalcError(f"input '{name}' of {label}: dim {d!r} is neither a size >= 1 nor a name",
                                    where=label, fix="give each dim as a number or a name, e.g. (1, 224, 224, 3)")
            dims.append(d if number else None)
            symbols.append(None if number else str(d))
        specs.append(tf.TensorSpec(dims, tf.float32, name=name))
        dim_names.append(symbols)
    if not model.built:  # built by a symbolic call (a subclassed model's build() may build nothing): no compute
        import keras

        symbolic = [keras.Input(batch_shape=tuple(spec.shape), name=spec.name) for spec in specs]
        try:
            model(symbolic[0] if len(symbolic) == 1 else symbolic)
        except Exception as error:  # a model's own build: any error
            raise ArchcalcError(f"Keras model {label} could not be built at {_shape_text(tuple(specs[0].shape))}: "
                                f"{_first_line(error)}", where=label,
                                fix="check the input shape (Keras is channels-last), or build the model first "
                                    "(model.build(shape) or model(x))") from None
    return specs, dim_names


def _input_name(tensor: Any) -> str:
    name = getattr(tensor, "name", None) or "input"
    return str(name).split(":")[0]


def _shape_text(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _name_dims(proto: Any, dim_names: list[list[str | None]]) -> None:
    """tf2onnx names each unknown dim ``unk__N``: give it the name the user gave (``batch``),
    everywhere it appears, so that --batch and --dim bind it."""
    renames: dict[str, str] = {}
    for value, symbols in zip(proto.graph.input, dim_names):
        for dim, symbol in zip(value.type.tensor_type.shape.dim, symbols):
            if symbol is not None and dim.dim_param:
                renames[dim.dim_param] = symbol
    if not renames:
        return
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


# -- conversion -----------------------------------------------------------------------------

def _convert(model: Any, specs: list[Any], label: str, readable: Callable[[str], str]) -> Any:
    """tf2onnx's ModelProto of `model`, weights in memory (never written to disk), converted
    with the weights perturbed (see the module docstring) and the model's values restored."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf2onnx

    def failed(first_line: str) -> ArchcalcError:
        return ArchcalcError(
            f"Keras model {label} could not be converted to ONNX by tf2onnx {tf2onnx.__version__}: "
            f"{readable(first_line)}",
            where=label,
            fix="check the input shapes (Keras is channels-last: input_size=(1, 224, 224, 3)); for an op "
                "tf2onnx cannot convert, use another form of the layer (gelu(approximate=True) for gelu), "
                "or convert it yourself (tf2onnx.convert.from_keras with custom_op_handlers) and pass the ONNX model")

    # tf2onnx logs an op it cannot convert and leaves it in the graph: an error here
    errors = _Collect()
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its notes on each rewrite are not the user's concern
    logger.addHandler(errors)
    saved = _perturb(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=specs, opset=_OPSET)
    except Exception as error:  # the converter's and TensorFlow's failures have no common type
        raise failed(_first_line(error)) from None
    finally:
        logger.removeHandler(errors)
        logger.setLevel(level)
        for variable, value in saved:
            variable.assign(value)
    if errors.lines:
        raise failed(errors.lines[0])
    return proto


class _Collect(logging.Handler):
    """The first lines of the errors tf2onnx logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        if text:
            self.lines.append(text.splitlines()[0])


def _functional(model: Any) -> Any:
    """A Sequential as the functional model of the same layers: tf2onnx 1.17 looks a Keras 3
    Sequential's outputs up by names its trace does not have (a KeyError)."""
    if any(cls.__name__ == "Sequential" for cls in type(model).__mro__) and getattr(model, "outputs", None):
        import keras

        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def _first_line(error: BaseException) -> str:
    """The error's first line; for TensorFlow's "in user code:" (a trace of the model's call),
    the last, which says what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    line = lines[-1] if lines[0].startswith("in user code") else lines[0]
    return line if line.startswith(type(error).__name__) else f"{type(error).__name__}: {line}"


def _perturb(model: Any) -> list[tuple[Any, Any]]:
    """Give every float weight a value no constant folding simplifies (no zero, no one, no
    identity statistics); returns the original values, to assign back."""
    import numpy as np

    rng = np.random.default_rng(0)
    saved = []
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        if not np.issubdtype(value.dtype, np.floating):
            continue
        saved.append((variable, value))
        noise = (0.05 + 0.05 * rng.random(value.shape)).astype(value.dtype)  # in [0.05, 0.1): never zero
        variable.assign(value + noise)
    return saved


# -- layers ---------------------------------------------------------------------------------

class _Layers:
    """The model's layers by path, and the layer path of each tf2onnx node name.

    TensorFlow makes scope names unique by appending ``_N``, so a scope ``conv2d_1`` may be the
    layer ``conv2d`` called again or the layer ``conv2d_1`` (InceptionV3 has both): names cannot
    be told apart. So the layers are converted under tokens of their own (``archcalc7L``, which
    no ``_N`` turns into another), and a node's scope parts are read back through them."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.by_path: dict[tuple[str, ...], Any] = {}
        self._walk(model, ())
        self.token_of = {path: f"archcalc{index}L" for index, path in enumerate(self.by_path)}
        self.by_token = {token: path for path, token in self.token_of.items()}
        self._located: dict[str, tuple[str, ...]] = {}
        self.scope = ""

    def _walk(self, container: Any, path: tuple[str, ...]) -> None:
        for layer in getattr(container, "layers", []):
            here = (*path, layer.name)
            self.by_path[here] = layer
            if _is_container(layer):
                self._walk(layer, here)

    def tokens(self) -> Any:
        """A context in which every layer is named by its token (as tf2onnx is run)."""
        import contextlib

        @contextlib.contextmanager
        def renamed() -> Any:
            names = [(layer, layer.name) for layer in self.by_path.values()]
            try:
                for path, layer in self.by_path.items():
                    layer.name = self.token_of[path]
                yield
            finally:
                for layer, name in names:
                    layer.name = name

        return renamed()

    def read_scope(self, proto: Any) -> None:
        """The model's own scope in node names: its name, or its name with a call suffix."""
        counts: dict[str, int] = {}
        name = self.model.name
        for node in proto.graph.node:
            first = node.name.split("/")[0]
            if "/" in node.name and (first == name or (first.startswith(name + "_")
                                                       and first[len(name) + 1:].isdigit())):
                counts[first] = counts.get(first, 0) + 1
        self.scope = max(counts, key=lambda k: counts[k]) if counts else ""

    def scoped(self, path: tuple[str, ...], own: str) -> str:
        """A node name in tf2onnx's form for a node of the layer at `path`."""
        return "/".join((self.scope, *(self.token_of[path[:i + 1]] for i in range(len(path))), own))

    def locate(self, node_name: str) -> tuple[tuple[str, ...], str]:
        """(the layer path of a node, ""); an empty path for a node outside any layer."""
        if node_name not in self._located:
            self._located[node_name] = self._locate(node_name)
        return self._located[node_name], ""

    def _locate(self, node_name: str) -> tuple[str, ...]:
        parts = node_name.split("/")
        if len(parts) < 2 or parts[0] != self.scope:
            return ()
        path: tuple[str, ...] = ()
        for part in parts[1:]:
            stripped = _CALL_SUFFIX.match(part)
            token = part if part in self.by_token else (stripped.group(1) if stripped else "")
            found = self.by_token.get(token)
            if found is None or found[:-1] != path:
                break
            path = found
            if not _is_container(self.by_path[path]):
                break
        return path

    def layer(self, path: tuple[str, ...]) -> Any:
        return self.by_path.get(path)

    def readable(self, text: str) -> str:
        """`text` (a converter's message) with each token read back as its layer's name."""
        return _TOKEN.sub(lambda m: self.by_token[m.group(0)][-1] if m.group(0) in self.by_token else m.group(0),
                          text)


_TOKEN = re.compile(r"archcalc\d+L")


# -- BatchNorm ------------------------------------------------------------------------------

def _restore_batchnorms(proto: Any, layers: _Layers) -> None:
    """Make each BatchNormalization a BatchNormalization node again (see the module docstring):
    from its Mul and Add where tf2onnx kept them, after the convolution it was folded into
    otherwise (whose own weights and bias come back)."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    ranks = _ranks(proto)
    for path, layer in layers.by_path.items():
        if type(layer).__name__ != "BatchNormalization" or not _channel_last(layer):
            continue
        values = _batchnorm_values(layer)
        channels = values["mean"].shape[0]
        mine = [node for node in graph.node if layers.locate(node.name)[0] == path]
        mul = next((n for n in mine if n.op_type == "Mul" and _constant_of(n, initializers, channels)), None)
        if mul is not None:
            add = next((n for n in graph.node if n.op_type == "Add" and mul.output[0] in n.input
                        and _constant_of(n, initializers, channels)), None)
            data = next(x for x in mul.input if x not in initializers)
            if add is None or ranks.get(data, 0) < 2 or not _on_axis_one(_constant_of(mul, initializers, channels),
                                                                          ranks.get(data, 0)):
                continue  # not in the form a BatchNormalization node can take: the count warns
            position = list(graph.node).index(mul)
            output = add.output[0]
            graph.node.remove(mul)
            graph.node.remove(add)
        else:
            conv = _folded_into(graph, initializers, path, layers)
            if conv is None:
                continue
            source = layers.layer(path[:-1] + (_inbound_name(layer),))
            scale = values["gamma"] / np.sqrt(values["var"] + layer.epsilon)
            weight = numpy_helper.to_array(initializers[conv.input[1]])
            shape = (-1,) + (1,) * (weight.ndim - 1)
            restored = (weight / scale.reshape(shape)).astype(weight.dtype)
            kernel_name = "/".join(path[:-1] + (source.name if source is not None else conv.name, "kernel"))
            graph.initializer.append(numpy_helper.from_array(restored, kernel_name))
            conv.input[1] = kernel_name
            if len(conv.input) > 2:
                bias = numpy_helper.to_array(initializers[conv.input[2]])
                if source is not None and getattr(source, "use_bias", False):
                    own = ((bias - values["beta"]) / scale + values["mean"]).astype(bias.dtype)
                    bias_name = "/".join(path[:-1] + (source.name, "bias"))
                    graph.initializer.append(numpy_helper.from_array(own, bias_name))
                    conv.input[2] = bias_name
                else:
                    del conv.input[2]  # the convolution had none: the folded shift made it
            if source is not None:
                conv.name = layers.scoped(path[:-1] + (source.name,), "convolution")
            position = list(graph.node).index(conv) + 1
            output = conv.output[0]
            conv.output[0] = output + "__before_batchnorm"
            data = conv.output[0]
        prefix = "/".join(path)
        names = {}
        for key in ("gamma", "beta", "mean", "var"):
            # a gamma or beta the layer does not learn (scale=False, center=False) is a made-up constant
            own = getattr(layer, key, None) is not None if key in ("gamma", "beta") else True
            names[key] = f"{prefix}/{_VARIABLE[key] if own else _MADE_UP[key]}"
            graph.initializer.append(numpy_helper.from_array(values[key], names[key]))
        node = helper.make_node("BatchNormalization", [data, names["gamma"], names["beta"], names["mean"],
                                                       names["var"]], [output],
                                name=layers.scoped(path, "batchnorm"), epsilon=float(layer.epsilon))
        graph.node.insert(position, node)
    # initializers nothing reads any more (the folded constants) go, so none is counted
    used = {x for node in graph.node for x in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


_VARIABLE = {"gamma": "gamma", "beta": "beta", "mean": "moving_mean", "var": "moving_variance"}
_MADE_UP = {"gamma": "unit_gamma", "beta": "zero_beta"}
# State a layer computes from data rather than learns: archcalc's buffers, Keras' non-trainable weights
_STATISTICS = {"BatchNormalization": ("moving_mean", "moving_variance"), "Normalization": ("mean", "variance", "count")}


def _channel_last(layer: Any) -> bool:
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    return axis == -1 or (axis is not None and axis == len(layer.input.shape) - 1)


def _batchnorm_values(layer: Any) -> dict[str, Any]:
    """gamma, beta, moving mean and variance; ones for a gamma and zeros for a beta the layer
    does not learn (``scale=False``, ``center=False``: InceptionV3's), fixed: neither params nor buffers."""
    import numpy as np

    mean = np.asarray(layer.moving_mean.numpy())
    return {
        "gamma": np.asarray(layer.gamma.numpy()) if layer.gamma is not None else np.ones_like(mean),
        "beta": np.asarray(layer.beta.numpy()) if layer.beta is not None else np.zeros_like(mean),
        "mean": mean,
        "var": np.asarray(layer.moving_variance.numpy()),
    }


def _constant_of(node: Any, initializers: dict[str, Any], channels: int) -> list[int] | None:
    """The dims of a node's constant operand of `channels` elements, if it has one."""
    for name in node.input:
        tensor = initializers.get(name)
        if tensor is not None and math.prod(tensor.dims) == channels and tensor.data_type == 1:
            return list(tensor.dims)
    return None


def _on_axis_one(dims: list[int] | None, rank: int) -> bool:
    """Whether a constant of these dims, broadcast against a tensor of `rank`, varies along
    axis 1 only (where a BatchNormalization node has its channels)."""
    if dims is None or len(dims) > rank:
        return False
    aligned = [1] * (rank - len(dims)) + dims
    return all(d == 1 for i, d in enumerate(aligned) if i != 1)


def _ranks(proto: Any) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    ranks = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def _inbound_name(layer: Any) -> str:
    """The name of the layer whose output a layer reads (its first input)."""
    history = getattr(layer.input, "_keras_history", None)
    return history.operation.name if history is not None else ""


def _folded_into(graph: Any, initializers: dict[str, Any], path: tuple[str, ...], layers: _Layers) -> Any:
    """The Conv that a folded BatchNorm became part of: tf2onnx names its new bias after the
    BatchNorm's scope (``model_1/bn_1/batchnorm/sub``)."""
    for node in graph.node:
        if (node.op_type == "Conv" and len(node.input) > 2 and node.input[2] in initializers
                and node.input[1] in initializers and layers.locate(node.input[2].split(":")[0])[0] == path):
            return node
    return None


# -- names and weights ----------------------------------------------------------------------

def _name_by_layer(proto: Any, layers: _Layers) -> None:
    """Rename nodes after their Keras layer path: the path alone when the layer gave one node,
    else ``path/op`` (its op type, numbered when repeated); nodes outside any layer keep
    tf2onnx's name. A node tf2onnx made itself (a layout Transpose, a Squeeze: its name ends in
    ``__N``) borrows a neighbour's scope, so it belongs to the layer whose weights it reads,
    else to the one that produces its input, else to the first that reads its output."""
    from archcalc.readers.onnx import claim_name

    nodes = list(proto.graph.node)
    initializers = {t.name for t in proto.graph.initializer}
    paths = [() if _INSERTED.search(node.name) else layers.locate(node.name)[0] for node in nodes]
    for i, node in enumerate(nodes):  # a made-up node of a layer's weights (Conv__223) is that layer's
        if not paths[i]:
            paths[i] = next((p for x in node.input if x in initializers
                             for p in [layers.locate(x.split(":")[0])[0]] if p), ())
    producer: dict[str, int] = {out: i for i, node in enumerate(nodes) for out in node.output}
    for i, node in enumerate(nodes):  # forward: from the producer of its first data input
        if not paths[i]:
            source = next((producer[x] for x in node.input if x in producer and paths[producer[x]]), None)
            paths[i] = paths[source] if source is not None else ()
    readers: dict[str, int] = {}
    for i in range(len(nodes) - 1, -1, -1):
        for x in nodes[i].input:
            readers[x] = i
    for i in range(len(nodes) - 1, -1, -1):  # backward: from the first reader of its output
        if not paths[i]:
            reader = next((readers[x] for x in nodes[i].output if x in readers and paths[readers[x]]), None)
            paths[i] = paths[reader] if reader is not None else ()
    per_layer: dict[tuple[str, ...], int] = {}
    for path in paths:
        per_layer[path] = per_layer.get(path, 0) + 1
    taken: set[str] = set()
    for node, path in zip(nodes, paths):
        if not path:
            name = node.name or node.op_type
        elif per_layer[path] == 1:
            name = "/".join(path)
        else:
            name = "/".join(path) + "/" + node.op_type
        node.name = claim_name(name, taken)


_INSERTED = re.compile(r"__\d+$")


def _apply_weights(model: Any, graph: Graph) -> list[str]:
    """Trainable or frozen from the Keras layers, each node's block its top-level layer; a
    warning for each layer whose learned values or buffers the graph counts otherwise."""
    layers = {tuple(path): layer for path, layer in _walk(model, ())}
    trainable = {id(v) for v in model.trainable_weights}
    by_layer: dict[tuple[str, ...], list[Any]] = {}
    for node in graph.nodes:
        path = _path_of(node.name, layers)
        # the layer's own, over the block the reader gave the node's name
        node.block = path[0] if path and (len(path) > 1 or not _single(node.name, path)) else ""
        if path:
            by_layer.setdefault(path, []).append(node)
    notes = []
    for path, nodes in by_layer.items():
        layer = layers[path]
        own = [v for v in layer.weights if not _is_container(layer)]
        # Keras marks a frozen layer's kernel non-trainable just as a BatchNorm's moving
        # statistics: the statistics are known by layer and name
        statistics = _STATISTICS.get(type(layer).__name__, ())
        state = {"/".join(path) + "/" + v.name: v for v in own if v.name in statistics}
        learned = sum(math.prod(v.shape) for v in own if v.name not in statistics)
        buffers = sum(math.prod(v.shape) for v in state.values())
        only_state = buffers and not learned  # a Normalization: whatever the graph holds of it is its statistics
        trains = any(id(v) in trainable for v in own)
        seen: set[str] = set()
        graph_learned = graph_buffers = 0
        for node in nodes:
            for name in node.inputs:
                info = graph.tensors.get(name)
                if info is None or name in seen or info.kind not in ("weight", "buffer"):
                    continue
                seen.add(name)
                if name in {"/".join(path) + "/" + x for x in _MADE_UP.values()}:
                    info.kind = "fixed"  # a BatchNormalization node needs both; the layer learns neither
                    continue
                if name in state or only_state:
                    info.kind = "buffer"
                size = _size(info.shape)
                if info.kind == "weight":
                    info.trainable = trains
                    graph_learned += size
                else:
                    graph_buffers += size
        if (graph_learned, graph_buffers) != (learned, buffers):
            notes.append(f"layer {'/'.join(path)} ({type(layer).__name__}): the converted graph holds "
                         f"{graph_learned:,} learned values and {graph_buffers:,} buffer values, Keras "
                         f"{learned:,} and {buffers:,} (tf2onnx converted it in another form)")
    return notes


def _walk(container: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for layer in getattr(container, "layers", []):
        here = (*path, layer.name)
        found.append((here, layer))
        if _is_container(layer):
            found += _walk(layer, here)
    return found


def _is_container(layer: Any) -> bool:
    return bool(getattr(layer, "layers", None))


def _path_of(node_name: str, layers: dict[tuple[str, ...], Any]) -> tuple[str, ...]:
    """The layer path of a node named by _name_by_layer: its longest leading parts that name a layer."""
    parts = node_name.split("/")
    for end in range(len(parts), 0, -1):
        if tuple(parts[:end]) in layers and not _is_container(layers[tuple(parts[:end])]):
            return tuple(parts[:end])
    return ()


def _single(node_name: str, path: tuple[str, ...]) -> bool:
    return node_name == "/".join(path)


def _size(shape: Any) -> int:
    return math.prod(d for d in shape if isinstance(d, int)) if isinstance(shape, tuple) else 0
