"""A PyTorch module as a Graph: exported to ONNX in memory, then read as any ONNX model.

torch is imported only here and only when a module is given (it is an optional extra). The
module is exported with ``torch.onnx.export``: the dynamo exporter first, TorchScript when
that fails (or the one asked for), and the graph's name says which ran. What the exporter
loses is put back from the module itself:

- layer names: ONNX node names become module paths (``layer1.0.conv1``), read from the
  dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata or the TorchScript exporter's
  ``/layer1/layer1.0/conv1/Conv`` names, and each layer's ``block`` is its module's path,
  so ``--depth`` folds by module as torchinfo's depth does;
- frozen weights: an initializer named after a parameter whose ``requires_grad`` is False
  is not trainable;
- BatchNorm: both exporters fold BatchNorm into the convolution before it by default, which
  drops its scale and bias from the params; archcalc exports with that folding off (dynamo:
  ``optimize=False``, then only onnxscript's constant folding, never of an op that reads a
  parameter; TorchScript: ``TrainingMode.PRESERVE``, ``do_constant_folding=False``), and any
  parameter still missing from the graph is named in a warning rather than lost in silence;
- state: a tied parameter counts once under whichever of its names the exporter kept; what
  the exporter made up (a bias-free conv's zero bias, folded shapes) is no param; tensors the
  TorchScript exporter merged because their values were equal are separated again.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from archcalc.core.errors import ArchcalcError, ModelFileError
from archcalc.core.graph import Graph

EXPORTERS = ("dynamo", "torchscript")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # torchvision.models:resnet50


def is_torch_module(model: object) -> bool:
    """Whether `model` is a torch.nn.Module, without importing torch when it is not loaded
    (a module object can only exist once torch is)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def is_factory_spec(text: str) -> bool:
    """`package.module:callable`, as the CLI takes a model factory."""
    return bool(_FACTORY.match(text))


def load_factory(spec: str, input_shapes: Mapping[str, Sequence[Any]] | None = None,
                 exporter: str | None = None) -> Graph:
    """The model that `package.module:callable` returns when called with no arguments (with
    ``weights=None`` when it takes `weights`): a PyTorch module, or a Keras model
    (readers/keras)."""
    module_name, _, attribute = spec.partition(":")
    import os
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's own package, as `python -m` finds it
    # TensorFlow's C++ info lines (loaded by a Keras factory's import) are not archcalc's output
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelFileError(f"{spec} is neither a file nor an importable model factory ({error})",
                             fix="check the path, or install the package that defines the factory") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelFileError(f"{spec}: module '{module_name}' has no attribute '{attribute}'",
                                 fix="name a callable that returns a model, e.g. torchvision.models:resnet50")
        target = getattr(target, part)
    if not callable(target):
        raise ModelFileError(f"{spec} is not callable", fix="name a function or class that returns a model")
    # A factory that takes `weights` (Keras applications, torchvision) is called with weights=None:
    # Keras' would download ImageNet weights by default, and counting never needs their values.
    kwargs = {"weights": None} if _takes_weights(target) else {}
    try:
        model = target(**kwargs)
    except Exception as error:
        raise ModelFileError(f"{spec}({'weights=None' if kwargs else ''}) failed: {_first_line(error)}",
                             fix="the factory must build a model with no arguments") from None
    from archcalc.readers.keras import is_keras_model, load_keras

    if is_keras_model(model):  # its inputs' shapes are its own unless given
        return load_keras(model, input_shapes, name=spec)
    if not is_torch_module(model):
        raise ModelFileError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module or a Keras model",
                             fix="name a factory of PyTorch modules (torchvision.models:resnet50) or Keras "
                                 "models (keras.applications:MobileNetV2)")
    if not input_shapes:
        raise ModelFileError(f"{spec}: a PyTorch module needs the size of its inputs to be exported",
                             fix="give --input-shape NAME=D1,D2,... for each input of forward(), "
                                 "e.g. --input-shape x=1,3,224,224")
    return load_module(model, input_shapes=input_shapes, exporter=exporter, name=spec)


def _takes_weights(factory: Any) -> bool:
    try:
        return "weights" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


def load_module(module: Any, example_inputs: Any = None, *, input_shapes: Mapping[str, Sequence[Any]] | None = None,
                input_size: Sequence[int] | None = None, exporter: str | None = None,
                name: str | None = None) -> Graph:
    """`module` exported at `example_inputs` (a tensor or a tuple of them), or at zeros of
    `input_size` (its first forward() input) or `input_shapes` ({forward argument: shape})."""
    import torch

    from archcalc.readers.onnx import convert_model

    label = name or type(module).__name__
    model, choice, failures = _exported(module, example_inputs, input_shapes, input_size, exporter, label)
    graph = convert_model(model, label)
    for node in graph.nodes:
        node.block = _block(node.name)
    lost = _apply_parameters(module, graph)
    graph.metadata["name"] = f"{label} (torch {torch.__version__.split('+')[0]}, {choice} exporter)"
    graph.metadata["exporter"] = choice
    notes = list(graph.metadata.get("warnings", ()))
    notes += [f"the {f}, so the next exporter was tried" for f in failures]
    if lost:
        count = sum(n for _, n in lost)
        notes.append(f"{len(lost)} parameter tensor(s) of the module ({count:,} values) are not in the exported "
                     f"graph, so not counted: {', '.join(p for p, _ in lost[:5])}"
                     f"{' ...' if len(lost) > 5 else ''} (unused by forward(), or folded by the exporter)")
    graph.metadata["warnings"] = notes
    return graph


def export_module(module: Any, example_inputs: Any = None, *, input_shapes: Mapping[str, Sequence[Any]] | None = None,
                  input_size: Sequence[int] | None = None, exporter: str | None = None) -> Any:
    """The ONNX ModelProto `load_module` reads: nodes named by module, weights whole."""
    return _exported(module, example_inputs, input_shapes, input_size, exporter, type(module).__name__)[0]


def _exported(module: Any, example_inputs: Any, input_shapes: Mapping[str, Sequence[Any]] | None,
              input_size: Sequence[int] | None, exporter: str | None, label: str) -> tuple[Any, str, list[str]]:
    """(model, the exporter that made it, the failures of those tried before)."""
    if exporter is not None and exporter not in EXPORTERS:
        raise ArchcalcError(f"unknown exporter {exporter!r}", where=label, fix=f"use one of: {', '.join(EXPORTERS)}")
    args, kwargs = _example(module, example_inputs, input_shapes, input_size, label)
    was_training = module.training
    module.eval()  # the inference graph (BatchNorm's running statistics, no dropout), as torchinfo counts it
    failures: list[str] = []
    try:
        for choice in (exporter,) if exporter else EXPORTERS:
            try:
                model = _export(module, args, kwargs, choice)
            except Exception as error:  # an exporter's failures have no common type
                failures.append(f"{choice} exporter failed: {_first_line(error)}")
                continue
            break
        else:
            other = [e for e in EXPORTERS if e != exporter]
            raise ArchcalcError(
                f"module {type(module).__name__} could not be exported to ONNX: " + "; ".join(failures),
                where=label,
                fix="check the example inputs (input_shapes={'x': (1, 3, 224, 224)} or example_inputs=...)"
                    + (f", or try exporter={other[0]!r}" if exporter else " against what forward() takes"))
    finally:
        module.train(was_training)
    _restore_state(model, module)
    _drop_zero_biases(model, _state_names(module))
    _name_by_module(model, choice)
    return model, choice, failures


def _drop_zero_biases(model: Any, state: set[str]) -> None:
    """Take out the all-zero bias the dynamo exporter gives a Conv or ConvTranspose made with
    bias=False (ONNX's bias is optional): the module has no such parameter, and the
    explanation and FLOPs should not show one."""
    import numpy as np
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) == 3:
            bias = initializers.get(node.input[2])
            if bias is not None and bias.name not in state and not np.any(numpy_helper.to_array(bias)):
                del node.input[2]


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text.splitlines()[0]}"


def _example(module: Any, example_inputs: Any, input_shapes: Mapping[str, Sequence[Any]] | None,
             input_size: Sequence[int] | None, label: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    import torch

    given = [x is not None for x in (example_inputs, input_shapes, input_size)].count(True)
    if given != 1:
        raise ArchcalcError(f"{label}: {'no' if given == 0 else 'more than one'} description of the inputs",
                            where=label, fix="give exactly one of example_inputs=(tensor, ...), "
                                             "input_size=(1, 3, 224, 224) or input_shapes={'x': (1, 3, 224, 224)}")
    if example_inputs is not None:
        return (example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)), {}
    if input_size is not None:
        return (torch.zeros(tuple(_sizes(input_size, "input_size", label))),), {}
    assert input_shapes is not None
    parameters = list(inspect.signature(module.forward).parameters)
    kwargs = {}
    for key, shape in input_shapes.items():
        if key not in parameters:
            raise ArchcalcError(f"forward() of {type(module).__name__} has no argument '{key}'", where=label,
                                fix=f"name the inputs as forward() does: {', '.join(parameters) or 'none'}")
        kwargs[key] = torch.zeros(tuple(_sizes(shape, key, label)))
    return (), kwargs


def _sizes(shape: Sequence[Any], what: str, label: str) -> list[int]:
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ArchcalcError(f"{what} is {tuple(str(d) for d in shape)}: a PyTorch module is exported at fixed sizes",
                            where=label, fix="give every dim as a number >= 1, e.g. (1, 3, 224, 224)")
    return list(shape)


def _export(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], exporter: str) -> Any:
    """The ONNX ModelProto of `module`, weights in memory (never written to disk)."""
    import onnx
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes of torch's own, not the user's concern
        if exporter == "dynamo":
            # optimize=False: the optimizer's FuseBatchNormIntoConv would drop BatchNorm's params.
            program: Any = torch.onnx.export(module, args, kwargs=kwargs or None, dynamo=True, optimize=False,
                                             verbose=False, report=False)
            # Its constant folding alone, without the rewrites that fold BatchNorm: shapes
            # computed from constants (a zero bias built by Shape/Expand) become constants.
            import onnxscript.optimizer

            state = _state_names(module)

            def keeps_weights(node: Any) -> bool | None:
                """Never fold an op of a parameter (the slices of attention's in_proj_weight):
                its output would be a constant, and the parameter lost from the count."""
                return False if any(v is not None and v.name in state for v in node.inputs) else None

            onnxscript.optimizer.fold_constants(program.model, should_fold=keeps_weights)
            onnxscript.optimizer.remove_unused_nodes(program.model)
            return program.model_proto
        buffer: Any = io.BytesIO()  # a file object, which the TorchScript exporter takes (its hints say paths)
        # graph inputs named as forward()'s arguments, as the dynamo exporter names them
        names = list(kwargs) or list(inspect.signature(module.forward).parameters)[:len(args)] or None
        # PRESERVE with the module in eval mode: the eval-mode graph without the pass that folds
        # BatchNorm into the convolution (and renames the convolution's weights).
        torch.onnx.export(module, args, buffer, kwargs=kwargs or None, dynamo=False, input_names=names,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        return onnx.load_from_string(buffer.getvalue())


def _scopes(node: Any, exporter: str) -> tuple[str, str]:
    """(module path, the op's own name within it) of an exported node."""
    if exporter == "dynamo":
        for entry in node.metadata_props:
            if entry.key == "pkg.torch.onnx.name_scopes":
                scopes = ast.literal_eval(entry.value)
                return (scopes[-2] if len(scopes) >= 2 else ""), scopes[-1] if scopes else node.op_type
        return "", node.name or node.op_type
    # TorchScript: "/layer1/layer1.0/conv1/Conv_1", each level a full path or one relative to the last
    parts = [p for p in node.name.split("/") if p]
    path = ""
    for part in parts[:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path, parts[-1] if parts else node.op_type


def _name_by_module(model: Any, exporter: str) -> None:
    """Rename the model's nodes after their modules: the module path when a module without
    submodules gave one node (`layer1.0.conv1`), else the path and the op's own name (`layer1.0.relu/relu_2`),
    and the ONNX op after that when one torch op gave several nodes (`mean/ReduceMean`)."""
    from archcalc.readers.onnx import claim_name

    scopes = [_scopes(node, exporter) for node in model.graph.node]
    per_module: dict[str, int] = {}
    per_op: dict[tuple[str, str], int] = {}
    for scope in scopes:
        per_module[scope[0]] = per_module.get(scope[0], 0) + 1
        per_op[scope] = per_op.get(scope, 0) + 1
    # modules with submodules in the graph: their own ops (a residual Add) are not the module
    parents = {path[:i] for path in per_module for i, char in enumerate(path) if char == "."}
    taken: set[str] = set()
    for node, (path, own) in zip(model.graph.node, scopes):
        if path and per_module[path] == 1 and path not in parents:
            name = path
        else:
            name = f"{path}/{own}" if path else own
            if per_op[path, own] > 1:
                name += f"/{node.op_type}"
        node.name = claim_name(name, taken)


def _restore_state(model: Any, module: Any) -> None:
    """Give back the module's parameters and buffers that the export hid: the TorchScript
    exporter stores tensors of equal values once and makes the others Identity nodes of it
    (a new BatchNorm's running_var is its weight: all ones), which would count one tensor for
    two and take the buffer for an activation. Each becomes its own initializer again, with
    its values, so the model stays whole for onnxruntime too."""
    from onnx import numpy_helper

    graph = model.graph
    state = dict(module.named_parameters())
    state.update(module.named_buffers())
    initializers = {t.name for t in graph.initializer}
    aliases = [node for node in graph.node if node.op_type == "Identity" and len(node.output) == 1
               and node.input and node.input[0] in initializers and node.output[0] in state]
    for node in aliases:
        graph.node.remove(node)
        name = node.output[0]
        graph.initializer.append(numpy_helper.from_array(state[name].detach().cpu().numpy(), name))


def _block(layer_name: str) -> str:
    """A renamed node's block: its module's path when that module gave several nodes
    (`layer1.0.relu/relu_2`), else the enclosing module's (`layer1.0` for `layer1.0.conv1`)."""
    if "/" in layer_name:
        return layer_name.rpartition("/")[0]
    return layer_name.rpartition(".")[0]


def _state_names(module: Any) -> set[str]:
    """Every name of the module's parameters and buffers, a tied one under each of its names
    (the exporter may use any of them)."""
    return ({name for name, _ in module.named_parameters(remove_duplicate=False)}
            | {name for name, _ in module.named_buffers(remove_duplicate=False)})


def _apply_parameters(module: Any, graph: Graph) -> list[tuple[str, int]]:
    """The module's own account of its state, over what the ONNX reader guessed: an initializer
    named after a frozen parameter is not trainable, one that is neither a parameter nor a
    buffer (a zero bias the exporter made for a conv without one, the unit scale and zero
    bias of the InstanceNormalization GroupNorm is exported as, a folded shape) is fixed,
    never a param, even where a rule names that input learned. Returns the parameters the
    graph lacks, with their sizes."""
    state = _state_names(module)
    for name, info in graph.tensors.items():
        if info.kind in ("weight", "constant") and name not in state:
            info.kind = "fixed"
    aliases: dict[int, list[str]] = {}  # a tied parameter: one object, several names
    parameters = {}
    for path, parameter in module.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(parameter), []).append(path)
        parameters[id(parameter)] = parameter
    lost = []
    for key, names in aliases.items():
        present = [graph.tensors[name] for name in names if name in graph.tensors]
        if not present:
            lost.append((names[0], parameters[key].numel()))
        for info in present:
            info.trainable = bool(parameters[key].requires_grad)
    return lost
