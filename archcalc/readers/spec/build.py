"""Read a YAML spec and lower it to the engine's :class:`~archcalc.core.graph.Graph`.

Spec shape (README has the full language)::

    name: resnet18
    input: [3, 224, 224]          # channels-first; batch dim `batch` is prepended
    blocks:
      basic:
        args: {planes: 64, stride: 1, downsample: false}
        layers:
          - conv2d: {filters: $planes, kernel: 3, stride: $stride, padding: 1, bias: false}
            name: conv1
          ...
          - add: null
            inputs: [bn2, downsample.1]
    layers:
      - conv2d: {filters: 64, kernel: 7, stride: 2, padding: 3, bias: false}
        name: conv1
      - basic: {planes: 64}
        name: layer1
        repeat: 2

A layer takes the previous layer's output unless it names `inputs`; inside a block,
`in` is the block's input. A layer with `when: false` is skipped and passes its input
through, so references to it still work (ResNet's optional downsample branch).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from typing import Any

from archcalc.core.dims import Sym
from archcalc.core.dtypes import ALIASES, ONNX_NUMBERS
from archcalc.core.errors import ArchcalcError, ModelFileError, SpecError
from archcalc.core.graph import Deferred, Graph, Node, TensorInfo
from archcalc.readers.spec.builtin_blocks import builtin_blocks, check_builtin_args
from archcalc.readers.spec.catalogue import LAYER_TYPES, REQUIRED
from archcalc.readers.spec.expr import MAX_INT, substitute
from archcalc.readers.spec.layers import Composite, LayerType, Named
from archcalc.readers.yaml_lines import LineDict, LineList, load_yaml, read_text

TOP_LEVEL_KEYS = {"name", "description", "input", "batch", "blocks", "layers", "freeze_until", "dtype"}
LAYER_KEYS = {"name", "inputs", "trainable", "repeat", "when"}
MAX_NAME = 256  # characters in a layer's name; more names no layer a person writes
BLOCK_KEYS = {"args", "layers", "description"}
MAX_DEPTH = 32
# Far more than any real network (DenseNet-121 has about 430 layers); it stops a typo
# like `repeat: 100000000` from running for minutes before anything is reported.
MAX_LAYERS = 100_000


@dataclass(frozen=True)
class Ref:
    """A reference to a layer output, as written in `scope` (a block instance prefix)."""

    scope: str
    name: str
    where: str
    layer: str = ""  # the layer whose `inputs` hold the reference, for messages


@dataclass
class _Pending:
    """A layer after expansion, before its input references are resolved."""

    name: str
    type: LayerType
    args: dict[str, Any]
    inputs: list[Ref]
    trainable: bool
    source: str
    block: str


@dataclass
class _State:
    path: str
    blocks: dict[str, LineDict]
    pending: list[_Pending] = field(default_factory=list)
    aliases: dict[str, Ref] = field(default_factory=dict)  # skipped layer -> what it passes on
    block_inputs: dict[str, list[Ref]] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)
    graph_inputs: list[str] = field(default_factory=list)
    expanded: int = 0  # layers expanded so far, skipped ones included
    builtin: set[str] = field(default_factory=set)  # built-in blocks the spec did not redefine

    def where(self, line: int | None) -> str:
        return f"{self.path}:{line}" if line else self.path


def load_spec(path: str) -> Graph:
    """Parse the spec at `path` into a graph; SpecError (exit 2) on anything invalid."""
    text = read_text(path, ModelFileError, "spec file", fix="pass a YAML spec (*.yaml) or an ONNX model (*.onnx)")
    return parse_spec(text, path)


def parse_spec(text: str, path: str = "<spec>") -> Graph:
    document = load_yaml(text, path)
    if not isinstance(document, dict):
        raise SpecError("a spec must be a mapping with at least `input` and `layers`", where=path,
                        fix="start from one of the files in specs/")
    _check_keys(document, TOP_LEVEL_KEYS, path, "top level")
    for required in ("input", "layers"):
        if required not in document:
            raise SpecError(f"the spec has no `{required}`", where=path,
                            fix="add `input: [C, H, W]` and a `layers:` list")
    blocks = document.get("blocks") or {}
    if not isinstance(blocks, dict):
        raise SpecError(f"`blocks` is {_describe(blocks)}; it must be a mapping of block name to definition",
                        where=_line(path, document, "blocks"),
                        fix="write `blocks:` then `  name: {args: {...}, layers: [...]}` for each block")
    builtin = builtin_blocks()
    merged = LineDict({**builtin, **blocks})  # the spec's own lines kept, for messages
    merged.line = getattr(blocks, "line", 0)
    merged.key_lines = dict(getattr(blocks, "key_lines", {}))
    state = _State(path, merged)
    state.builtin = set(builtin) - set(blocks)
    dtype = _dtype(document, path)
    tensors = _inputs(document, state, dtype)
    previous = Ref("", state.graph_inputs[0], path)
    layers = document["layers"]
    if not isinstance(layers, list) or not layers:
        raise SpecError("`layers` must be a non-empty list", where=_line(path, document, "layers"),
                        fix="list the layers under `layers:`, one `- type` per line, e.g. `- relu`")
    last = _expand_sequence(layers, "", previous, state, trainable=True, env={}, depth=0, block_path="")
    _freeze(document, state)
    for key in ("name", "description"):
        if isinstance(document.get(key), (list, dict)):
            raise SpecError(f"`{key}` is {_describe(document[key])}; it must be text", where=_line(path, document, key),
                            fix=f"write e.g. `{key}: resnet18`" if key == "name" else "write one line of text")
    nodes = _lower(state, tensors, dtype)
    output = _resolve(last, state)
    return Graph(path=path, nodes=nodes, tensors=tensors, outputs=[output],
                 metadata={"name": str(document.get("name") or os.path.splitext(os.path.basename(path))[0]),
                           "description": document.get("description", "")}, format="spec")


def _dtype(document: dict[Any, Any], path: str) -> str:
    dtype = document.get("dtype", "float32")
    valid = [*ONNX_NUMBERS, *ALIASES]
    if not isinstance(dtype, str) or dtype not in valid:
        hint = difflib.get_close_matches(str(dtype), valid, n=1)
        raise SpecError(f"`dtype` is {_describe(dtype)}, not an element type; valid dtypes: {', '.join(valid)}",
                        where=_line(path, document, "dtype"),
                        fix=f"did you mean '{hint[0]}'?" if hint else "write e.g. `dtype: float16`, or remove it "
                        "for float32")
    return dtype


def _line(path: str, mapping: Any, key: str | None = None) -> str:
    if isinstance(mapping, LineDict):
        line = mapping.key_lines.get(key, mapping.line) if key is not None else mapping.line
        return f"{path}:{line}"
    return path


def _check_keys(mapping: dict, allowed: set[str], path: str, what: str) -> None:
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else "allowed: " + ", ".join(sorted(allowed))
            raise SpecError(f"unknown key '{key}' at {what}", where=_line(path, mapping, key), fix=fix)


def _inputs(document: dict[Any, Any], state: _State, dtype: str) -> dict[str, TensorInfo]:
    where = _line(state.path, document, "input")
    raw = document["input"]
    batch = document.get("batch", "batch")
    if isinstance(batch, bool) or not (isinstance(batch, int) and 0 < batch <= MAX_INT or batch == "batch"):
        raise SpecError(f"`batch` is {batch!r}; it must be a positive integer of at most 2**63 - 1 (int64)",
                        where=_line(state.path, document, "batch"),
                        fix="write e.g. `batch: 8`, or remove it to keep the batch symbolic (--batch binds it)")
    named = raw if isinstance(raw, dict) else {"input": raw}
    tensors = {}
    for name, shape in named.items():
        input_dtype = dtype
        if isinstance(shape, dict) and isinstance(raw, dict):  # {shape: [...], dtype: int64}: token ids
            unknown = sorted(map(str, set(shape) - {"shape", "dtype"}))
            if unknown or "shape" not in shape:
                raise SpecError(f"input '{name}' is a mapping with keys {sorted(map(str, shape))}", where=where,
                                fix="write `{shape: [128], dtype: int64}`, or just the shape list")
            input_dtype = _dtype({"dtype": shape.get("dtype", dtype)}, where)
            shape = shape["shape"]
        if not isinstance(shape, list) or not shape:
            raise SpecError(f"input '{name}' has shape {shape!r}; give a list like [3, 224, 224]", where=where,
                            fix="channels first, without the batch dim")
        dims: list[Any] = [Sym.symbol(batch) if isinstance(batch, str) else batch]
        for dim in shape:
            if isinstance(dim, str) and dim.isidentifier():
                dims.append(Sym.symbol(dim))
            elif isinstance(dim, int) and not isinstance(dim, bool) and 0 < dim <= MAX_INT:
                dims.append(dim)
            else:
                raise SpecError(f"input '{name}' has dim {dim!r}; dims must be positive integers (int64: at most "
                                "2**63 - 1) or names",
                                where=where, fix="e.g. input: [3, 224, 224]")
        tensors[name] = TensorInfo(name, tuple(dims), input_dtype, "input")
        state.graph_inputs.append(name)
        state.taken.add(name)
    return tensors


def _expand_sequence(items: list, scope: str, previous: Ref, state: _State, *, trainable: bool,
                     env: dict[str, Any], depth: int, block_path: str, use_line: int | None = None) -> Ref:
    """`use_line`: a built-in block's layers are placed at the line that uses the block
    (their own lines are in archcalc's text, not in the spec)."""
    counters: dict[str, int] = {}
    lines = items.item_lines if isinstance(items, LineList) and use_line is None else [use_line] * len(items)
    for item, line in zip(items, lines):
        previous = _expand_item(item, line, scope, previous, state, counters, trainable=trainable,
                                env=env, depth=depth, block_path=block_path)
    return previous


def _expand_item(item: Any, line: int | None, scope: str, previous: Ref, state: _State,
                 counters: dict[str, int], *, trainable: bool, env: dict[str, Any], depth: int,
                 block_path: str) -> Ref:
    try:
        return _expand_item_at(state.where(line), item, scope, previous, state, counters, trainable=trainable,
                               env=env, depth=depth, block_path=block_path)
    except SpecError as error:
        raise error.located(state.where(line)) from None


def _expand_item_at(where: str, item: Any, scope: str, previous: Ref, state: _State,
                    counters: dict[str, int], *, trainable: bool, env: dict[str, Any], depth: int,
                    block_path: str) -> Ref:
    kind, args, extra = _split_item(item, where)
    # `name`, `inputs` and `when` may use `i`, the innermost repeat index, so they are
    # substituted per repetition below; `repeat` and `trainable` only see the outer values.
    repeat = substitute(extra.get("repeat", 1), env)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise SpecError(f"`repeat` is {repeat!r}; it must be a positive integer", where=where,
                        fix="write how many copies to chain, e.g. `repeat: 3`, or remove it for one")
    if repeat > MAX_LAYERS:
        raise SpecError(f"`repeat` is {repeat:,}, more than the {MAX_LAYERS:,} layers a spec may expand to",
                        where=where, fix="check the value: real networks repeat a block a few dozen times at most")
    layer_trainable = substitute(extra.get("trainable", True), env)
    if not isinstance(layer_trainable, bool):
        raise SpecError(f"`trainable` is {layer_trainable!r}; it must be true or false", where=where,
                        fix="write `trainable: false` to freeze the layer's weights, or remove it")
    explicit = extra.get("inputs")
    if explicit is not None and not isinstance(explicit, list):
        explicit = [explicit]
    given = extra.get("name")
    if isinstance(given, (list, dict)):
        raise SpecError(f"`name` is {_describe(given)}; a layer's name is one word", where=where,
                        fix="write e.g. `name: conv1`")
    # A plain name gets the index appended (layer1.0, layer1.1), and the name itself then
    # stands for the last repetition's output, as a block's name stands for its output; a
    # name that uses an expression (denselayer${i + 1}) is already unique per repetition.
    group = scope + _name(given, env, where) if given is not None and repeat > 1 and "$" not in str(given) \
        else None
    if group is not None:
        _take(group, state, where)
    for index in range(repeat):
        state.expanded += 1
        if state.expanded > MAX_LAYERS:
            raise SpecError(f"the spec expands to more than {MAX_LAYERS:,} layers", where=where,
                            fix="check `repeat` values (and repeats nested inside blocks)")
        local_env = {**env, "i": index} if repeat > 1 or "i" not in env else env
        if group is not None:
            local = f"{group[len(scope):]}.{index}"
        elif given is not None:
            local = _name(given, local_env, where)
        else:
            local = _default_name(kind, scope, counters, state)
        full = scope + local
        _take(full, state, where)
        at = f"{where}: layer '{full}'"
        inputs = [Ref(scope, str(substitute(r, local_env)), where, full) for r in explicit] \
            if explicit and index == 0 else [previous]
        when = substitute(extra.get("when", True), local_env)
        if not isinstance(when, bool):
            raise SpecError(f"`when` is {when!r}; it must be true or false", where=at,
                            fix="write true, false, a block arg that holds one ($downsample), "
                                "or a comparison (${i == 0})")
        if not when:
            state.aliases[full] = inputs[0]
            previous = Ref("", full, where)
            continue
        if kind in state.blocks:
            previous = _expand_block(kind, args, full, inputs, state, where, trainable=trainable and layer_trainable,
                                     env=local_env, depth=depth)
        else:
            layer_type = _layer_type(kind, where)
            resolved = _layer_args(layer_type, substitute(args, local_env), at)
            low, high = layer_type.inputs
            if not low <= len(inputs) <= high:
                raise SpecError(f"'{kind}' takes {low if low == high else f'{low} to {high}'} inputs, "
                                f"got {len(inputs)}", where=at,
                                fix=f"list {low if low == high else f'{low} to {high}'} layer names: inputs: [a, b]")
            state.pending.append(_Pending(full, layer_type, resolved, inputs, trainable and layer_trainable,
                                          where, block_path))
            previous = Ref("", full, where)
    if group is not None:
        state.aliases[group] = previous
    return previous


def _name(given: Any, env: dict[str, Any], where: str) -> str:
    name = str(substitute(given, env))
    if len(name) > MAX_NAME:
        # A block's name prefixes every layer and tensor inside it: a long one is copied
        # once per tensor (a 10 MB name in googlenet's inception block took gigabytes).
        raise SpecError(f"the layer name '{name[:40]}...' is {len(name):,} characters long, over {MAX_NAME}",
                        where=where, fix="use a shorter name")
    if not name.strip():
        # An empty name cannot be referenced and becomes an empty ONNX tensor name, which
        # ONNX reads as "no tensor" (export and verify then fail).
        raise SpecError(f"the layer name {name!r} is empty", where=where,
                        fix="give the layer a name, or remove `name:` to get one like relu_1")
    return name


def _take(full: str, state: _State, where: str) -> None:
    if full in state.taken:
        raise SpecError(f"the name '{full}' is used twice", where=where, fix="give each layer a unique name")
    state.taken.add(full)


def _split_item(item: Any, where: str) -> tuple[str, Any, dict[str, Any]]:
    """`relu` | `{dense: 10}` | `{conv2d: {...}, name: c1, inputs: [...]}` -> (type, args, extra keys)."""
    if isinstance(item, str):
        return item, None, {}
    if not isinstance(item, dict):
        raise SpecError(f"a layer must be a name or a mapping, got {item!r}", where=where,
                        fix="write e.g. `- relu` or `- conv2d: {filters: 64, kernel: 3}`")
    kinds = [k for k in item if k not in LAYER_KEYS]
    for key in kinds if len(kinds) > 1 else ():  # a misspelled `name:` looks like a second type
        meant = difflib.get_close_matches(str(key), sorted(LAYER_KEYS), n=1, cutoff=0.6)
        if meant:
            types = [str(k) for k in kinds if k != key]
            raise SpecError(f"unknown key '{key}' beside the layer type '{', '.join(types)}': did you mean "
                            f"'{meant[0]}'?", where=where,
                            fix=f"write `{meant[0]}:`; the keys beside a layer's type are "
                                + ", ".join(sorted(LAYER_KEYS)))
    if len(kinds) != 1:
        found = ", ".join(map(str, kinds)) or "none"
        raise SpecError(f"a layer needs exactly one type key, found: {found}", where=where,
                        fix="other keys may only be " + ", ".join(sorted(LAYER_KEYS)))
    kind = kinds[0]
    return str(kind), item[kind], {k: v for k, v in item.items() if k != kind}


def _default_name(kind: str, scope: str, counters: dict[str, int], state: _State) -> str:
    while True:
        counters[kind] = counters.get(kind, 0) + 1
        local = f"{kind}_{counters[kind]}"
        if scope + local not in state.taken:
            return local


def _layer_type(kind: str, where: str) -> LayerType:
    if kind in LAYER_TYPES:
        return LAYER_TYPES[kind]
    hint = difflib.get_close_matches(kind, LAYER_TYPES, n=1)
    raise SpecError(
        f"unknown layer type '{kind}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""),
        where=where,
        fix="use a layer type from `archcalc layers`, or define a block of that name under `blocks:`",
    )


def _layer_args(layer_type: LayerType, args: Any, where: str) -> dict[str, Any]:
    if args is None:
        given: dict[str, Any] = {}
    elif isinstance(args, dict):
        given = dict(args)
    elif layer_type.primary is not None:
        given = {layer_type.primary: args}
    else:
        raise SpecError(f"'{layer_type.name}' takes no value, got {args!r}", where=where,
                        fix=f"write `- {layer_type.name}`")
    for key in given:
        if key not in layer_type.fields:
            hint = difflib.get_close_matches(str(key), layer_type.fields, n=1)
            raise SpecError(
                f"'{layer_type.name}' has no field '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""),
                where=where, fix="its fields: " + (", ".join(layer_type.fields) or "none"))
    merged = {**layer_type.fields, **given}
    missing = [k for k, v in merged.items() if v is REQUIRED]
    if missing:
        raise SpecError(f"'{layer_type.name}' is missing field '{missing[0]}'", where=where,
                        fix=f"add {missing[0]}: ...")
    return merged


def _expand_block(kind: str, args: Any, prefix: str, inputs: list[Ref], state: _State, where: str, *,
                  trainable: bool, env: dict[str, Any], depth: int) -> Ref:
    if depth >= MAX_DEPTH:
        # "(in block" keeps the enclosing uses from appending 32 levels of instance names.
        raise SpecError(f"blocks nest deeper than {MAX_DEPTH} levels (in block '{kind}': does it use itself?)",
                        where=where, fix="a block may use other blocks, but not itself, directly or through another")
    definition = state.blocks[kind]
    if not isinstance(definition, dict) or not isinstance(definition.get("layers"), list) \
            or not definition["layers"]:
        raise SpecError(f"block '{kind}' needs a non-empty `layers:` list",
                        where=_line(state.path, state.blocks, kind) if not isinstance(definition, dict)
                        else _line(state.path, definition, "layers" if "layers" in definition else None),
                        fix="list the block's layers under `layers:`, one `- type` per line")
    _check_keys(definition, BLOCK_KEYS, state.path, f"block '{kind}'")
    declared = definition.get("args") or {}
    if not isinstance(declared, dict):
        raise SpecError(f"block '{kind}' declares `args` as {_describe(declared)}; it must be a mapping of "
                        "arg name to default", where=_line(state.path, definition, "args"),
                        fix="write e.g. `args: {planes: null, stride: 1}` (null: the arg is required)")
    given = {} if args is None else args
    if not isinstance(given, dict):
        raise SpecError(f"block '{kind}' takes a mapping of args, got {_describe(given)}", where=where,
                        fix=f"pass args by name, e.g. `- {kind}: {{{next(iter(declared), 'arg')}: ...}}`")
    for key in given:
        if key not in declared:
            raise SpecError(f"block '{kind}' has no arg '{key}'", where=where,
                            fix="its args: " + (", ".join(declared) or "none"))
    block_env = {**{k: v for k, v in declared.items()}, **substitute(given, env), "i": env.get("i", 0)}
    block_env = {k: substitute(v, block_env) for k, v in block_env.items()}
    missing = [k for k, v in block_env.items() if v is None and k not in given]
    if missing:
        raise SpecError(f"block '{kind}' needs arg '{missing[0]}'", where=where, fix=f"pass {missing[0]}: ...")
    if kind in state.builtin:
        check_builtin_args(kind, block_env, where)
    scope = prefix + "."
    state.block_inputs[scope] = inputs
    try:
        use_line = int(where.rsplit(":", 1)[1]) if kind in state.builtin and where.rsplit(":", 1)[-1].isdigit() \
            else None
        last = _expand_sequence(definition["layers"], scope, Ref(scope, "in", where), state, trainable=trainable,
                                env=block_env, depth=depth + 1, block_path=prefix, use_line=use_line)
    except SpecError as error:
        if error.where and f"(in block '{kind}'" not in error.message:
            error.message += f" (in block '{kind}', used as '{prefix}' at {where})"
        raise
    state.aliases[prefix] = last
    return Ref("", prefix, where)


def _freeze(document: dict[Any, Any], state: _State) -> None:
    until = document.get("freeze_until")
    if until is None:
        return
    names = [p.name for p in state.pending]
    last = max((i for i, n in enumerate(names) if n == until or n.startswith(f"{until}.")), default=None)
    if last is None:
        raise SpecError(f"freeze_until names '{until}', which is no layer or block",
                        where=_line(state.path, document, "freeze_until"), fix=_suggest(str(until), names))
    for pending in state.pending[: last + 1]:
        pending.trainable = False


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _suggest(name: str, names: list[str]) -> str:
    hint = difflib.get_close_matches(name, names, n=1)
    return f"did you mean '{hint[0]}'?" if hint else "use the name of a layer defined in the spec"


def _resolve(ref: Ref, state: _State, seen: frozenset[str] = frozenset()) -> str:
    """The name of the tensor `ref` denotes, following skipped layers and block inputs."""
    candidates = [ref.scope + ref.name, ref.name] if ref.scope else [ref.name]
    where = f"{ref.where}: layer '{ref.layer}'" if ref.layer else ref.where
    if ref.scope and (ref.name == "in" or (ref.name.startswith("in") and ref.name[2:].isdigit())):
        block_inputs = state.block_inputs[ref.scope]
        index = int(ref.name[2:] or 0)
        if index >= len(block_inputs):
            raise SpecError(f"'{ref.name}' refers to block input {index}, but the block has {len(block_inputs)}",
                            where=where, fix="list the block's inputs where it is used: inputs: [a, b]"
                            if len(block_inputs) < 2 else f"use in0 to in{len(block_inputs) - 1}")
        return _resolve(block_inputs[index], state, seen)
    for name in candidates:
        if name in state.aliases:
            if name in seen:
                raise SpecError(f"'{name}' refers back to itself through skipped layers", where=where,
                                fix="a layer whose `when` is false passes on its first input: list another one")
            return _resolve(state.aliases[name], state, seen | {name})
        if name in state.taken:
            return name
    known = [p.name for p in state.pending] + state.graph_inputs
    raise SpecError(f"input '{ref.name}' is not a layer or input of this spec", where=where,
                    fix=_suggest(ref.name, known))


def _lower(state: _State, tensors: dict[str, TensorInfo], dtype: str) -> list[Node]:
    nodes = []
    for pending in state.pending:
        try:
            lowered = pending.type.lower(pending.name, pending.args)
        except ArchcalcError as error:
            raise error.located(f"{pending.source}: layer '{pending.name}'") from None
        data_inputs = [_resolve(ref, state) for ref in pending.inputs]
        if isinstance(lowered, Composite):
            nodes += _composite_nodes(pending, lowered, data_inputs, tensors)
            continue
        extra_inputs = []
        for tensor in lowered.tensors:
            if tensor is None:
                extra_inputs.append("")
                continue
            if tensor.kind == "weight" and not pending.trainable:
                tensor = TensorInfo(tensor.name, tensor.shape, tensor.dtype, tensor.kind, tensor.value, False)
            tensors[tensor.name] = tensor
            extra_inputs.append(tensor.name)
        deferred = any(isinstance(v, Deferred) for v in lowered.attrs.values())
        nodes.append(Node(
            name=pending.name, op=lowered.op, inputs=tuple(data_inputs + extra_inputs), outputs=(pending.name,),
            attrs=lowered.attrs, domain=lowered.domain, trainable=pending.trainable, source=pending.source,
            block=pending.block, has_deferred=deferred,
        ))
    return nodes


def _composite_nodes(pending: _Pending, composite: Composite, data_inputs: list[str],
                     tensors: dict[str, TensorInfo]) -> list[Node]:
    """A layer lowered to several ops: one node per step, `<layer>.<part>`, the last named as
    the layer (its output is what other layers refer to). Their deferred shapes are computed
    from the layer's own data inputs; a weight two layers name (a shared table) is one tensor."""
    layer_inputs = tuple(data_inputs)
    made: dict[str, str] = {}
    nodes = []
    last = len(composite.steps) - 1
    block = pending.name if last > 0 else pending.block
    for index, step in enumerate(composite.steps):
        name = pending.name if index == last else f"{pending.name}.{step.part}"
        inputs = []
        for ref in step.inputs:
            if ref is None:
                inputs.append("")
            elif isinstance(ref, int):
                inputs.append(data_inputs[ref])
            elif isinstance(ref, str):
                inputs.append(made[ref])
            elif isinstance(ref, Named):
                if ref.name not in tensors:
                    raise SpecError(f"field '{ref.field}' needs the tensor '{ref.name}', which no earlier layer "
                                    "holds", where=f"{pending.source}: layer '{pending.name}'",
                                    fix=f"name the layer that holds it (an embedding named "
                                        f"'{ref.name.rsplit('.', 1)[0]}'), before this one")
                inputs.append(ref.name)
            else:
                if ref.name not in tensors:
                    tensors[ref.name] = _for_layer(ref, layer_inputs, pending.trainable)
                inputs.append(ref.name)
        attrs = {k: replace(v, inputs=layer_inputs) if isinstance(v, Deferred) else v for k, v in step.attrs.items()}
        nodes.append(Node(
            name=name, op=step.op, inputs=tuple(inputs), outputs=(name,), attrs=attrs, domain=step.domain,
            trainable=pending.trainable, source=pending.source, block=block,
            has_deferred=any(isinstance(v, Deferred) for v in attrs.values()),
        ))
        made[step.part] = name
    return nodes


def _for_layer(tensor: TensorInfo, layer_inputs: tuple[str, ...], trainable: bool) -> TensorInfo:
    """`tensor` with its deferred shape and value computed from the layer's data inputs."""
    shape = replace(tensor.shape, inputs=layer_inputs) if isinstance(tensor.shape, Deferred) else tensor.shape
    value = replace(tensor.value, inputs=layer_inputs) if isinstance(tensor.value, Deferred) else tensor.value
    return TensorInfo(tensor.name, shape, tensor.dtype, tensor.kind, value,
                      tensor.trainable and (trainable or tensor.kind != "weight"))
