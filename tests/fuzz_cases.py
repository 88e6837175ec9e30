"""Hostile inputs for archcalc, shared by tests/test_fuzz.py (CI) and bench/fuzz.py (long runs).

A `Recipe` is plain data: which kind of file (spec, onnx model, budget), which valid base it
starts from, which named mutations (each with its own seed) turn it hostile, and which command
runs on it. `build_case` writes the files into a folder and returns the argv; the same recipe
always builds the same bytes, so a failure's recipe is its reproducer.

`Runner` runs cases in a driver subprocess (this file run as a script) that calls
`archcalc.cli.main.main` in-process per case, so one Python start-up serves many cases, while
the subprocess still bounds memory (RLIMIT_AS) and time (the parent kills it on a timeout).
`judge` turns an outcome into the list of broken house rules: exit code in {0, 1, 2}, no
traceback, a message on stderr with exit 2, no timeout, no memory blow-up, no crash.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
EXAMPLE_BUDGET = REPO / "budgets" / "example.yaml"

MEMORY_LIMIT = 2 << 30  # RLIMIT_AS of the driver: 2 GiB
CASE_TIMEOUT = 30.0  # seconds per case
VERIFY_MAX_MEMORY = "1GiB"  # verify's own guard, set under RLIMIT_AS so the guard (not the limit) refuses
CASES_PER_DRIVER = 40  # a fresh driver now and then, so memory one case leaks cannot fail a later one
TRACEBACK = "Traceback (most recent call last)"


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Recipe:
    kind: str  # "spec", "onnx" or "budget"
    base: str  # a spec name, an ONNX base model name, or (budget) the model checked
    mutations: tuple[tuple[str, int], ...]  # (mutation name, seed), applied in order
    command: str  # a key of SPEC_COMMANDS, ONNX_COMMANDS or BUDGET_COMMANDS

    def __str__(self) -> str:
        steps = " + ".join(f"{name}#{seed}" for name, seed in self.mutations) or "unmutated"
        return f"{self.kind}:{self.base} [{steps}] -> {self.command}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "base": self.base, "mutations": [list(m) for m in self.mutations],
                "command": self.command}

    @classmethod
    def from_json(cls, data: dict) -> Recipe:
        return cls(data["kind"], data["base"], tuple((n, int(s)) for n, s in data["mutations"]), data["command"])


# ---------------------------------------------------------------------------------------------
# Spec mutations. Data mutations edit the parsed YAML (a dict); text mutations edit the dumped
# text, for what a dict cannot hold (duplicate keys, tags, complex keys, broken bytes).
# ---------------------------------------------------------------------------------------------

SPEC_BASES = ("lenet5", "resnet18", "googlenet")
EXPLAIN_LAYER = {"lenet5": "conv1", "resnet18": "layer1.0.conv1", "googlenet": "inception3a.branch1.conv"}

HOSTILE_VALUES: tuple[Any, ...] = (
    "x", "", "conv2d", [], {}, None, True, False, 1.5, -0.0, float("nan"), float("inf"), [1, 2, 3],
    {"a": 1}, [[1, 2], [3]], "${1/0}", "$nope", "-1", "a" * 1000, 2**63, -(2**63) - 1, "1e30",
)
EDGE_NUMBERS: tuple[Any, ...] = (0, -1, 10**30, 2**63, 2**63 - 1, 2**31, -(10**30), 1e308, 10**6, 0.5, 10**12)
HOSTILE_EXPRESSIONS = (
    "${10**10**10}", "${9**9**9}", "${'a'*10**9}", "${[0]*10**9}", "${(lambda: 1)()}", "${__import__('os')}",
    "${i.__class__}", "${1/0}", "${2**64}", "${-1}", "${", "$", "${}", "${" + "(" * 500 + "1" + ")" * 500 + "}",
    "${planes * 10**20}", "${[x for x in range(10**9)]}", "${1e400}", "${True}",
)
YAML_TAGS = ("!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=", "!!set {a, b}",
             "!!timestamp 2001-12-14", "!!float nan", "!custom x", "!!str 5", "!!int 0x10", "!!map {}")


def _leaves(doc: Any) -> list[tuple]:
    """Every (container, key) in a parsed YAML tree, the top level excluded. Each container is
    visited once, so shared (aliased) and self-containing values cost their size, not their
    expansion."""
    found, seen, stack = [], set(), [doc]
    while stack:
        obj = stack.pop()
        if not isinstance(obj, dict | list) or id(obj) in seen:
            continue
        seen.add(id(obj))
        keys = list(obj) if isinstance(obj, dict) else range(len(obj))
        for key in keys:
            found.append((obj, key))
            stack.append(obj[key])
    return found


def _numeric_leaves(doc: Any) -> list[tuple]:
    return [(c, k) for c, k in _leaves(doc) if isinstance(c[k], int | float) and not isinstance(c[k], bool)]


def _layer_lists(doc: Any) -> list[list]:
    """The top-level `layers` and every block's."""
    lists = []
    if isinstance(doc, dict):
        if isinstance(doc.get("layers"), list) and doc["layers"]:
            lists.append(doc["layers"])
        for block in (doc.get("blocks") or {}).values() if isinstance(doc.get("blocks"), dict) else ():
            if isinstance(block, dict) and isinstance(block.get("layers"), list) and block["layers"]:
                lists.append(block["layers"])
    return lists


def _as_mapping(layers: list, index: int) -> dict:
    """Layer `index` as a mapping (`- relu` becomes `- relu:`), so it can take a name or inputs."""
    layer = layers[index]
    if isinstance(layer, str):
        layer = layers[index] = {layer: None}
    elif not isinstance(layer, dict):
        layer = layers[index] = {"relu": None}
    return layer


def _layer_name(layers: list, index: int, rnd: random.Random) -> str:
    layer = _as_mapping(layers, index)
    if not isinstance(layer.get("name"), str):
        layer["name"] = f"fuzz_{rnd.randrange(10**6)}"
    return layer["name"]


def _pick_layers(doc: Any, rnd: random.Random) -> list | None:
    lists = _layer_lists(doc)
    return rnd.choice(lists) if lists else None


def delete_key(doc, rnd):
    places = _leaves(doc)
    if places:
        container, key = rnd.choice(places)
        del container[key]
    elif isinstance(doc, dict) and doc:
        del doc[rnd.choice(list(doc))]
    return doc


def swap_type(doc, rnd):
    places = _leaves(doc)
    if places:
        container, key = rnd.choice(places)
        container[key] = copy.deepcopy(rnd.choice(HOSTILE_VALUES))
    return doc


def edge_number(doc, rnd):
    places = _numeric_leaves(doc) or _leaves(doc)
    if places:
        container, key = rnd.choice(places)
        container[key] = rnd.choice(EDGE_NUMBERS)
    return doc


def huge_input(doc, rnd):
    if isinstance(doc, dict):
        doc["input"] = [rnd.choice((3, 10**6, 10**15)), rnd.choice((10**9, 2**62, 10**30)), rnd.choice((1, 10**9))]
    return doc


def swap_top_level(doc, rnd):
    """The whole document becomes something other than a mapping."""
    return copy.deepcopy(rnd.choice(HOSTILE_VALUES))


def duplicate_layer(doc, rnd):
    layers = _pick_layers(doc, rnd)
    if layers:
        layers.insert(rnd.randrange(len(layers) + 1), copy.deepcopy(rnd.choice(layers)))
    return doc


def reorder_layers(doc, rnd):
    layers = _pick_layers(doc, rnd)
    if layers:
        if rnd.random() < 0.5:
            rnd.shuffle(layers)
        else:
            i, j = rnd.randrange(len(layers)), rnd.randrange(len(layers))
            layers[i], layers[j] = layers[j], layers[i]
    return doc


def duplicate_name(doc, rnd):
    layers = _pick_layers(doc, rnd)
    if layers and len(layers) > 1:
        i, j = rnd.sample(range(len(layers)), 2)
        _as_mapping(layers, j)["name"] = _layer_name(layers, i, rnd)
    return doc


def inputs_missing(doc, rnd):
    layers = _pick_layers(doc, rnd)
    if layers:
        _as_mapping(layers, rnd.randrange(len(layers)))["inputs"] = [rnd.choice(("no_such_layer", "", "in", "input"))]
    return doc


def inputs_cycle(doc, rnd):
    """A layer takes a later layer's (or its own) output."""
    layers = _pick_layers(doc, rnd)
    if layers:
        i = rnd.randrange(len(layers))
        j = rnd.randrange(i, len(layers))
        _as_mapping(layers, i)["inputs"] = [_layer_name(layers, j, rnd)]
    return doc


def alias_shared(doc, rnd):
    """Two places hold the same object: safe_dump writes an anchor and an alias."""
    places = [(c, k) for c, k in _leaves(doc) if isinstance(c[k], dict | list)]
    if len(places) > 1:
        (c1, k1), (c2, k2) = rnd.sample(places, 2)
        c2[k2] = c1[k1]
    return doc


def alias_bomb(doc, rnd):
    """Nested aliases ('billion laughs'): a few hundred bytes that expand to ~10**9 items."""
    width, depth = rnd.choice(((10, 9), (9, 9), (100, 4), (2, 30)))
    bomb: Any = ["lol"] * width
    for _ in range(depth):
        bomb = [bomb] * width
    places = _leaves(doc)
    if places and rnd.random() < 0.7:
        container, key = rnd.choice(places)
        container[key] = bomb
    elif isinstance(doc, dict):
        doc[rnd.choice(("layers", "input", "blocks", "name"))] = bomb
    return doc


def alias_recursive(doc, rnd):
    """A list that contains itself (`&a [*a]`)."""
    loop: list = [1]
    loop.append(loop)
    places = _leaves(doc)
    if places:
        container, key = rnd.choice(places)
        container[key] = loop
    return doc


def huge_repeat(doc, rnd):
    layers = _pick_layers(doc, rnd)
    if layers:
        _as_mapping(layers, rnd.randrange(len(layers)))["repeat"] = rnd.choice((10**6, 10**9, 10**30, 0, -1))
    return doc


def hostile_expression(doc, rnd):
    places = _leaves(doc)
    if places:
        container, key = rnd.choice(places)
        container[key] = rnd.choice(HOSTILE_EXPRESSIONS)
    return doc


def huge_name(doc, rnd):
    layers = _pick_layers(doc, rnd)
    if layers:
        _as_mapping(layers, rnd.randrange(len(layers)))["name"] = "n" * rnd.choice((10**4, 10**6, 10**7))
    return doc


def odd_name(doc, rnd):
    layers = _pick_layers(doc, rnd)
    if layers:
        name = rnd.choice(("", " ", "a\x00b", "\u202eevil", "../../etc", "in", "input", "a.b.c", "*", "[x]", "名前"))
        _as_mapping(layers, rnd.randrange(len(layers)))["name"] = name
    return doc


SPEC_DATA_MUTATIONS: dict[str, Callable] = {f.__name__: f for f in (
    delete_key, swap_type, edge_number, huge_input, swap_top_level, duplicate_layer, reorder_layers,
    duplicate_name, inputs_missing, inputs_cycle, alias_shared, alias_bomb, alias_recursive, huge_repeat,
    hostile_expression, huge_name, odd_name,
)}


def duplicate_key(text: str, rnd: random.Random) -> str:
    """A `key: value` line written again just before itself (so a nested block still follows
    the original), with the same or another value."""
    lines = text.splitlines()
    keyed = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith(("#", "- "))]
    if not keyed:
        return text + "\nlayers: []\nlayers: []\n"
    i = rnd.choice(keyed)
    key, _, value = lines[i].partition(":")
    lines.insert(i, key + ":" + rnd.choice((value or " null", " 7", " [1, 2]", " null")))
    return "\n".join(lines) + "\n"


def complex_key(text: str, rnd: random.Random) -> str:
    """Keys that are lists or mappings, which Python dicts hold only as tuples (or not at all)."""
    choice = rnd.randrange(4)
    if choice == 0:
        return text + "? [a, b]\n: c\n"
    if choice == 1:
        return text + "? {x: 1}\n: 2\n"
    if choice == 2 and "\nlayers:\n" in text:
        return text.replace("\nlayers:\n", "\nlayers:\n- {[conv2d]: 3}\n", 1)
    return text.replace("\nlayers:\n", "\nlayers:\n- ? [1, 2]\n  : relu\n", 1) if "\nlayers:\n" in text \
        else text + "[1]: 2\n"


def yaml_tag(text: str, rnd: random.Random) -> str:
    lines = text.splitlines()
    valued = [i for i, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")]
    tag = rnd.choice(YAML_TAGS)
    if not valued:
        return text + f"\nextra: {tag}\n"
    i = rnd.choice(valued)
    lines[i] = lines[i].split(": ", 1)[0] + ": " + tag
    return "\n".join(lines) + "\n"


def merge_key(text: str, rnd: random.Random) -> str:
    return text + rnd.choice(("<<: {input: [1, 2, 3]}\n", "<<: [{a: 1}, {b: 2}]\n", "x: &m {layers: 5}\n<<: *m\n",
                              "<<: 5\n"))


def multi_document(text: str, rnd: random.Random) -> str:
    return rnd.choice((text + "---\nname: second\n", "---\n" + text, text + "...\n" + text, "---\n---\n"))


def truncate_text(text: str, rnd: random.Random) -> str:
    return text[: rnd.randrange(len(text) + 1)]


def tabs_and_controls(text: str, rnd: random.Random) -> str:
    return rnd.choice((text.replace("  ", "\t"), "\ufeff" + text, text.replace(":", ":\x00", 1),
                       text.replace("\n", "\r", 3), text + "\x85\u2028"))


def deep_nesting(text: str, rnd: random.Random) -> str:
    """A value nested hundreds to tens of thousands of levels deep (written as text: the YAML
    dumper itself would recurse that deep)."""
    depth = rnd.choice((100, 1000, 5000, 20000))
    value = "[" * depth + "]" * depth if rnd.random() < 0.5 else "{a: " * depth + "1" + "}" * depth
    lines = text.splitlines()
    valued = [i for i, line in enumerate(lines) if ": " in line and not line.lstrip().startswith("#")]
    if not valued:
        return text + f"\nlayers: {value}\n"
    i = rnd.choice(valued)
    lines[i] = lines[i].split(": ", 1)[0] + ": " + value
    return "\n".join(lines) + "\n"


TEXT_MUTATIONS: dict[str, Callable] = {f.__name__: f for f in (
    deep_nesting, duplicate_key, complex_key, yaml_tag, merge_key, multi_document, truncate_text, tabs_and_controls,
)}


def flip_bytes(data: bytes, rnd: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        if data:
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    return bytes(data)


def truncate_bytes(data: bytes, rnd: random.Random) -> bytes:
    return data[: rnd.randrange(len(data) + 1)]


def invalid_utf8(data: bytes, rnd: random.Random) -> bytes:
    at = rnd.randrange(len(data) + 1)
    return data[:at] + rnd.choice((b"\xff\xfe", b"\xc3", b"\x80\x80", b"\xed\xa0\x80")) + data[at:]


BYTE_MUTATIONS: dict[str, Callable] = {f.__name__: f for f in (flip_bytes, truncate_bytes, invalid_utf8)}

SPEC_MUTATIONS = (*SPEC_DATA_MUTATIONS, *TEXT_MUTATIONS, *BYTE_MUTATIONS)


def _stage(name: str) -> int:
    return 0 if name in SPEC_DATA_MUTATIONS or name in BUDGET_DATA_MUTATIONS else 1 if name in TEXT_MUTATIONS else 2


def mutate_yaml(text: str, mutations: tuple[tuple[str, int], ...]) -> bytes:
    """Data mutations on the parsed document, then text mutations, then byte mutations, each
    stage in recipe order."""
    doc = yaml.safe_load(text)
    ordered = sorted(mutations, key=lambda m: _stage(m[0]))
    dumped = False
    data: bytes = b""
    for name, seed in ordered:
        rnd = random.Random(f"{name}:{seed}")
        if _stage(name) == 0:
            doc = (SPEC_DATA_MUTATIONS.get(name) or BUDGET_DATA_MUTATIONS[name])(doc, rnd)
            continue
        if not dumped:
            text, dumped = _dump(doc), True
        if name in TEXT_MUTATIONS:
            text = TEXT_MUTATIONS[name](text, rnd)
        else:
            data = BYTE_MUTATIONS[name](data or text.encode(), rnd)
    if not dumped:
        text = _dump(doc)
    return data or text.encode("utf-8", "surrogatepass")


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=10**9)


# ---------------------------------------------------------------------------------------------
# Budget mutations: the spec ones, plus hostile quantities, globs and training settings.
# ---------------------------------------------------------------------------------------------

BUDGET_MODELS = ("lenet5", "resnet18", "conv_gemm")
HOSTILE_QUANTITIES: tuple[Any, ...] = (
    "1e400M", "-5G", "5XB", "NaN", "nan", "inf", "-inf", "0x10", "1_000M", "", "M", "5 G", "5GiB", "10**30", 1e309,
    "\uff19M", "1.5.5M", "0", 0, -1, 10**30, 2**63, "1" * 5000 + "T", "1e-400", True, None, [], {"a": 1},
    "99999999999999999999999999999TiB", "0.0000001", "5MiB", ".5K",
)
HOSTILE_GLOBS = ("[", "[!]", "\\", "(?P<x>", "*" * 3000 + "x", "a" * 100000, "[" * 1000, "**/*", "", "[]]", "?" * 500,
                 None, 5, ["Conv", None, 3], "{a,b}", "[a-]")


def hostile_quantity(doc, rnd):
    limits = [(c, k) for c, k in _leaves(doc) if isinstance(c, dict) and not isinstance(c[k], dict | list)]
    if limits:
        container, key = rnd.choice(limits)
        container[key] = copy.deepcopy(rnd.choice(HOSTILE_QUANTITIES))
    return doc


def hostile_glob(doc, rnd):
    rules = []
    if isinstance(doc, dict):
        warn = doc.get("warn") if isinstance(doc.get("warn"), dict) else {}
        for section in (doc.get("layers"), warn.get("layers")):
            rules += [r for r in section if isinstance(r, dict)] if isinstance(section, list) else []
    if rules:
        rnd.choice(rules)[rnd.choice(("match", "op"))] = copy.deepcopy(rnd.choice(HOSTILE_GLOBS))
    elif isinstance(doc, dict):
        doc["layers"] = [{"match": rnd.choice(HOSTILE_GLOBS), "params": "1M"}]
    return doc


def hostile_training(doc, rnd):
    if isinstance(doc, dict):
        doc["training"] = rnd.choice(({"optimizer": "lion"}, {"precision": "fp8"}, {"optimizer": None}, "adam", [],
                                      {"optimizer": "adam", "precision": "mixed", "extra": 1}))
        doc.setdefault("total", {})
        if isinstance(doc["total"], dict):
            doc["total"]["training_memory"] = rnd.choice(("1KiB", "4GiB", "-1", "nan"))
    return doc


def unknown_limit(doc, rnd):
    if isinstance(doc, dict) and isinstance(doc.get("total"), dict):
        doc["total"][rnd.choice(("param", "MACS", "", "layers ", "flops\x00", "training_macs"))] = "1M"
    return doc


def hostile_bindings(doc, rnd):
    if isinstance(doc, dict):
        doc[rnd.choice(("batch", "dims"))] = rnd.choice((0, -1, 10**30, "x", {"batch": 2**63}, {"": 1}, {"H": -5},
                                                         [1], 1.5))
    return doc


BUDGET_DATA_MUTATIONS: dict[str, Callable] = {f.__name__: f for f in (
    hostile_quantity, hostile_glob, hostile_training, unknown_limit, hostile_bindings,
)}
BUDGET_MUTATIONS = (*BUDGET_DATA_MUTATIONS, *SPEC_DATA_MUTATIONS, *TEXT_MUTATIONS, *BYTE_MUTATIONS)


# ---------------------------------------------------------------------------------------------
# ONNX bases and protobuf-level mutations
# ---------------------------------------------------------------------------------------------

ONNX_BASES = ("conv_gemm", "loop", "if_const", "external")
ONNX_EXPLAIN_LAYER = {"conv_gemm": "conv", "loop": "loop", "if_const": "if", "external": "conv"}


def _conv_gemm_model():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "conv_gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        initializer=[weight("conv.w", (4, 3, 3, 3)), weight("conv.b", (4,)), weight("fc.w", (10, 64)),
                     weight("fc.b", (10,))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="archcalc-fuzz")
    model.ir_version = 8
    return model


def _loop_model():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("MatMul", ["v_in", "loop.w"], ["mm"], name="matmul"),
         helper.make_node("Relu", ["mm"], ["v_out"], name="relu"),
         helper.make_node("Identity", ["v_out"], ["scan_out"], name="scan")],
        "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, [2, 4])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip", "cond", "x"], ["y", "ys"], name="loop", body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("ys", TensorProto.FLOAT, [3, 2, 4])],
        initializer=[numpy_helper.from_array(np.array(3, dtype=np.int64), "trip"),
                     numpy_helper.from_array(np.array(True), "cond"),
                     numpy_helper.from_array(np.eye(4, dtype=np.float32), "loop.w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="archcalc-fuzz")
    model.ir_version = 8
    return model


def _if_const_model():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def branch(name, op):
        return helper.make_graph([helper.make_node(op, ["x"], [f"{name}_out"], name=f"{name}_op")], name, [],
                                 [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, 3, 4, 4])])

    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], name="if", then_branch=branch("then", "Relu"),
                          else_branch=branch("else", "Sigmoid"))],
        "if_const",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        initializer=[numpy_helper.from_array(np.array(True), "flag")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="archcalc-fuzz")
    model.ir_version = 8
    return model


def _base_model(name: str):
    if name in ("conv_gemm", "external"):
        return _conv_gemm_model()
    return {"loop": _loop_model, "if_const": _if_const_model}[name]()


def _is_repeated(field) -> bool:
    from google.protobuf.descriptor import FieldDescriptor

    # protobuf 5+ has is_repeated; `label` is gone from its upb descriptors.
    repeated = getattr(field, "is_repeated", None)
    return repeated if repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _messages(message, found: list | None = None) -> list:
    """Every protobuf message inside `message`, itself included."""
    from google.protobuf.descriptor import FieldDescriptor

    found = [] if found is None else found
    found.append(message)
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if _is_repeated(field):
            if field.message_type.GetOptions().map_entry:
                continue
            for item in value:
                _messages(item, found)
        else:
            _messages(value, found)
    return found


def _of_type(model, type_name: str) -> list:
    return [m for m in _messages(model) if m.DESCRIPTOR.name == type_name]


def _all_nodes(model) -> list:
    return _of_type(model, "NodeProto")


def delete_field(model, rnd):
    """A set field of a random message cleared, or one element of a repeated field removed."""
    candidates = [(m, f, v) for m in _messages(model) for f, v in m.ListFields()]
    if not candidates:
        return model
    message, field, value = rnd.choice(candidates)
    if _is_repeated(field) and len(value) > 1 and rnd.random() < 0.6:
        del value[rnd.randrange(len(value))]
    else:
        message.ClearField(field.name)
    return model


def attribute_type(model, rnd):
    attributes = _of_type(model, "AttributeProto")
    if attributes:
        attribute = rnd.choice(attributes)
        attribute.type = rnd.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14))  # a closed enum: no 99
        if rnd.random() < 0.5:
            for field in ("f", "i", "s", "ints", "floats", "strings", "t", "g", "graphs", "tensors"):
                attribute.ClearField(field)
    return model


def attribute_value(model, rnd):
    attributes = [a for a in _of_type(model, "AttributeProto") if a.ints or a.HasField("i")]
    if attributes:
        attribute = rnd.choice(attributes)
        edge = rnd.choice((0, -1, -(2**63), 2**63 - 1, 10**9, 10**15))
        if attribute.ints:
            attribute.ints[rnd.randrange(len(attribute.ints))] = edge
            if rnd.random() < 0.3:
                del attribute.ints[:]
        else:
            attribute.i = edge
    return model


def dim_edge(model, rnd):
    """A shape dim of an input/output/value_info, or an initializer's dims, set to an edge value."""
    dims = _of_type(model, "Dimension")
    tensors = [t for t in _of_type(model, "TensorProto") if t.dims]
    if tensors and (not dims or rnd.random() < 0.4):
        tensor = rnd.choice(tensors)
        tensor.dims[rnd.randrange(len(tensor.dims))] = rnd.choice((-1, 0, 10**15, 2**62, 2**63 - 1, -(2**63)))
    elif dims:
        dim = rnd.choice(dims)
        choice = rnd.randrange(4)
        if choice == 0:
            dim.dim_value = rnd.choice((-1, 0, 10**15, 2**62, 2**63 - 1, -(2**63)))
        elif choice == 1:
            dim.dim_param = rnd.choice(("", " ", "batch", "x" * 10000, "1", "-1"))
        elif choice == 2:
            dim.Clear()
        else:
            shapes = _of_type(model, "TensorShapeProto")
            if shapes:
                shape = rnd.choice(shapes)
                for _ in range(rnd.choice((1, 10, 100))):
                    shape.dim.add().dim_value = 2
    return model


def duplicate_names(model, rnd):
    nodes = _all_nodes(model)
    choice = rnd.randrange(4)
    graph = model.graph
    if choice == 0 and len(nodes) > 1:
        a, b = rnd.sample(nodes, 2)
        b.name = a.name
    elif choice == 1 and len(nodes) > 1:
        a, b = rnd.sample(nodes, 2)
        if a.output and b.output:
            b.output[0] = a.output[0]
    elif choice == 2 and graph.initializer:
        extra = graph.initializer.add()
        extra.CopyFrom(rnd.choice(graph.initializer))
        if graph.input and rnd.random() < 0.5:
            extra.name = graph.input[0].name
    elif graph.input:
        graph.input.add().CopyFrom(graph.input[0])
    return model


def rewire_missing(model, rnd):
    nodes = [n for n in _all_nodes(model) if n.input]
    if nodes:
        node = rnd.choice(nodes)
        node.input[rnd.randrange(len(node.input))] = rnd.choice(("missing_tensor", "", " ", "y"))
    return model


def rewire_cycle(model, rnd):
    """A node reads its own output or a later node's: a cycle."""
    nodes = list(model.graph.node)
    if nodes:
        i = rnd.randrange(len(nodes))
        j = rnd.randrange(i, len(nodes))
        if nodes[i].input and nodes[j].output:
            model.graph.node[i].input[0] = nodes[j].output[0]
    return model


def opset_change(model, rnd):
    choice = rnd.randrange(4)
    if choice == 0 and model.opset_import:
        model.opset_import[0].version = rnd.choice((0, 1, 6, 7, 30, 99, 2**62, -1))
    elif choice == 1 and model.opset_import:
        model.opset_import[0].domain = rnd.choice(("com.example", "ai.onnx.ml", "ai.onnx", "x" * 1000))
    elif choice == 2:
        del model.opset_import[:]
    else:
        model.opset_import.add(domain="", version=rnd.choice((1, 21, 99)))
    return model


def node_domain(model, rnd):
    nodes = _all_nodes(model)
    if nodes:
        rnd.choice(nodes).domain = rnd.choice(("com.custom", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft",
                                              "ai.onnx", "local"))
    return model


def op_type(model, rnd):
    nodes = _all_nodes(model)
    if nodes:
        rnd.choice(nodes).op_type = rnd.choice((
            "Conv", "Relu", "Loop", "If", "Scan", "Gemm", "Reshape", "NonZero", "Foo", "", "Unique", "Attention",
            "LSTM", "Resize", "ConvTranspose", "Einsum", "Split", "Concat", "MatMul", "TopK", "Range", "Expand",
            "QLinearConv", "SequenceAt", "Pad", "Slice"))
    return model


def dtype_invalid(model, rnd):
    value = rnd.choice((0, 8, 16, 17, 19, 21, 23, 25, 99, -1, 2**31 - 1))
    tensor_types = _of_type(model, "Tensor")  # TypeProto.Tensor
    tensors = _of_type(model, "TensorProto")
    if tensors and (not tensor_types or rnd.random() < 0.5):
        rnd.choice(tensors).data_type = value
    elif tensor_types:
        rnd.choice(tensor_types).elem_type = value
    return model


def external_location(model, rnd):
    """An initializer's data said to live elsewhere: outside the folder, a device, past the end."""
    from onnx import TensorProto

    tensors = list(model.graph.initializer)
    if not tensors:
        return model
    tensor = rnd.choice(tensors)
    if tensor.data_location != TensorProto.EXTERNAL:
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value="model.onnx.data")
    entries = {e.key: e for e in tensor.external_data}
    choice = rnd.randrange(5)
    if choice == 0 or "location" not in entries:
        location = rnd.choice(("../x", "/etc/passwd", "/dev/zero", "/proc/self/environ", "nonexistent.bin", "",
                               "a/../../../etc/hostname", "model.onnx", ".", "/", "C:\\x", "x\x00y", "~/.ssh/id_rsa"))
        if "location" in entries:
            entries["location"].value = location
        else:
            tensor.external_data.add(key="location", value=location)
    elif choice in (1, 2):
        key = "offset" if choice == 1 else "length"
        value = rnd.choice(("1000000000", "-1", "abc", "99999999999999999999", "0", "3", "4096", " 1", "1.5"))
        if key in entries and rnd.random() < 0.7:
            entries[key].value = value
        else:  # a second entry for the same key
            tensor.external_data.add(key=key, value=value)
    elif choice == 3:
        tensor.external_data.add(key="checksum", value="x")
        tensor.external_data.add(key="location", value="/etc/passwd")
    else:
        tensor.data_location = TensorProto.DEFAULT
    return model


def trip_count(model, rnd):
    """The Loop's trip count (or any int64 scalar initializer) set to an edge value."""
    import numpy as np
    from onnx import numpy_helper

    scalars = [t for t in model.graph.initializer if not t.dims and t.data_type == 7]
    if scalars:
        tensor = rnd.choice(scalars)
        value = rnd.choice((10**15, 2**63 - 1, -1, 0, 10**9))
        tensor.CopyFrom(numpy_helper.from_array(np.array(value, dtype=np.int64), tensor.name))
    return model


def huge_tensor_name(model, rnd):
    """One tensor renamed, everywhere it appears, to a name of up to 10 MB."""
    nodes = _all_nodes(model)
    names = sorted({name for n in nodes for name in n.output if name})
    if not names:
        return model
    old = rnd.choice(names)
    new = "t" * rnd.choice((10**4, 10**6, 10**7))
    for message in _messages(model):
        for attr in ("input", "output"):
            values = getattr(message, attr, None)
            if values is not None and message.DESCRIPTOR.name == "NodeProto":
                for i, value in enumerate(values):
                    if value == old:
                        values[i] = new
        if message.DESCRIPTOR.name == "ValueInfoProto" and message.name == old:
            message.name = new
    return model


def ir_version(model, rnd):
    model.ir_version = rnd.choice((0, 1, 3, 11, 99, -1, 2**62))
    return model


def raw_data_mismatch(model, rnd):
    tensors = [t for t in _of_type(model, "TensorProto") if t.raw_data or t.float_data or t.int64_data]
    if tensors:
        tensor = rnd.choice(tensors)
        if tensor.raw_data:
            tensor.raw_data = tensor.raw_data[: rnd.randrange(len(tensor.raw_data))] if rnd.random() < 0.7 \
                else tensor.raw_data * 3
        else:
            tensor.ClearField("float_data")
            tensor.ClearField("int64_data")
            tensor.float_data.extend([1.0] * rnd.choice((0, 1, 1000)))
    return model


def graph_attribute(model, rnd):
    """A subgraph attached where none belongs, or a node's body graph replaced by the main graph."""
    from onnx import helper

    nodes = _all_nodes(model)
    if nodes:
        node = rnd.choice(nodes)
        sub = helper.make_graph([helper.make_node("Relu", ["x"], ["z"])], "stray", [], [])
        node.attribute.append(helper.make_attribute(rnd.choice(("body", "then_branch", "extra")), sub))
    return model


def recursive_function(model, rnd):
    """A model-local function that calls itself (or two that call each other)."""
    from onnx import helper

    mutual = rnd.random() < 0.5
    f = helper.make_function("local", "F", ["a"], ["b"], [helper.make_node("G" if mutual else "F", ["a"], ["b"],
                                                                             domain="local")],
                             [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    model.functions.append(f)
    if mutual:
        model.functions.append(helper.make_function("local", "G", ["a"], ["b"],
                                                    [helper.make_node("F", ["a"], ["b"], domain="local")],
                                                    [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]))
    model.opset_import.add(domain="local", version=1)
    node = rnd.choice(list(model.graph.node))
    node.op_type, node.domain = "F", "local"
    del node.input[1:]
    del node.output[1:]
    del node.attribute[:]
    return model


def deep_subgraphs(model, rnd):
    """If inside If inside If ..., a few hundred levels."""
    from onnx import TensorProto, helper

    def leaf(name):
        return helper.make_graph([helper.make_node("Identity", ["x"], [name])], name, [],
                                 [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])

    # Only the then-branch nests: both would double the file at every level.
    inner = leaf("d0")
    for level in range(1, rnd.choice((10, 20, 30))):  # protobuf refuses ~33 levels (100 messages) deep
        inner = helper.make_graph([helper.make_node("If", ["flag"], [f"d{level}"], then_branch=inner,
                                                    else_branch=leaf(f"e{level}"))], f"g{level}", [],
                                  [helper.make_tensor_value_info(f"d{level}", TensorProto.FLOAT, None)])
    model.graph.initializer.append(helper.make_tensor("flag", TensorProto.BOOL, [], [True]))
    model.graph.node.append(helper.make_node("If", ["flag"], ["deep_out"], name="deep", then_branch=inner,
                                             else_branch=leaf("e0")))
    return model


def many_nodes(model, rnd):
    """Thousands of nodes chained after the first input."""
    from onnx import helper

    count = rnd.choice((1000, 20000))
    source = model.graph.input[0].name if model.graph.input else "x"
    for i in range(count):
        model.graph.node.append(helper.make_node("Relu", [source if i == 0 else f"chain{i - 1}"], [f"chain{i}"]))
    return model


ONNX_PROTO_MUTATIONS: dict[str, Callable] = {f.__name__: f for f in (
    delete_field, attribute_type, attribute_value, dim_edge, duplicate_names, rewire_missing, rewire_cycle,
    opset_change, node_domain, op_type, dtype_invalid, external_location, trip_count, huge_tensor_name, ir_version,
    raw_data_mismatch, graph_attribute, recursive_function, deep_subgraphs, many_nodes,
)}
ONNX_BYTE_MUTATIONS: dict[str, Callable] = {f.__name__: f for f in (flip_bytes, truncate_bytes)}
ONNX_MUTATIONS = (*ONNX_PROTO_MUTATIONS, *ONNX_BYTE_MUTATIONS)


def write_onnx(base: str, mutations: tuple[tuple[str, int], ...], folder: Path, filename: str = "model.onnx") -> Path:
    """The base model, mutated, written as `folder/filename` (and its data file for `external`)."""
    import onnx

    model = _base_model(base)
    path = folder / filename
    if base == "external":
        (folder / (filename + ".data")).unlink(missing_ok=True)  # onnx.save_model appends to it
        # Written once with its weights outside, then read back without them so mutations
        # see the external_data entries.
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=filename + ".data", size_threshold=0)
        model = onnx.load_model(path, load_external_data=False)
    proto_steps = [m for m in mutations if m[0] in ONNX_PROTO_MUTATIONS]
    byte_steps = [m for m in mutations if m[0] in ONNX_BYTE_MUTATIONS]
    for name, seed in proto_steps:
        model = ONNX_PROTO_MUTATIONS[name](model, random.Random(f"{name}:{seed}"))
    data = model.SerializeToString()
    for name, seed in byte_steps:
        data = ONNX_BYTE_MUTATIONS[name](data, random.Random(f"{name}:{seed}"))
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

SPEC_COMMANDS = ("analyze:table", "analyze:json", "analyze:csv", "analyze:markdown", "analyze:training", "explain",
                 "verify", "export", "export:external", "export:omit", "export:opset30", "check", "diff")
HOSTILE_COMMANDS = ("export:opset30",)  # hostile by their options alone, whatever the file
ONNX_COMMANDS = ("analyze:table", "analyze:json", "analyze:csv", "analyze:markdown", "analyze:training", "explain",
                 "verify", "check", "diff")
BUDGET_COMMANDS = ("check:table", "check:github", "check:junit", "check:json", "check:training")


def model_argv(command: str, model: Path, base: Path, layer: str, folder: Path) -> list[str]:
    """The argv for one command on a (mutated) model; `base` is the unmutated one diff compares."""
    name, _, variant = command.partition(":")
    if name == "analyze":
        return ["analyze", str(model), "--training"] if variant == "training" else \
            ["analyze", str(model), "--format", variant]
    if name == "explain":
        return ["explain", str(model), layer]
    if name == "verify":
        return ["verify", str(model), "--max-memory", VERIFY_MAX_MEMORY]
    if name == "export":
        argv = ["export", str(model), "-o", str(folder / "exported.onnx")]
        return argv + {"": [], "external": ["--weights", "external"], "omit": ["--weights", "omit"],
                       "opset30": ["--opset", "30"]}[variant]
    if name == "check":
        return ["check", str(model), "--budget", str(EXAMPLE_BUDGET)]
    if name == "diff":
        return ["diff", str(model), str(base)]
    raise ValueError(command)


def build_case(recipe: Recipe, folder: Path) -> list[str]:
    """Write the recipe's files into `folder` (empty or new); return the argv after `archcalc`."""
    folder.mkdir(parents=True, exist_ok=True)
    if recipe.kind == "spec":
        text = (SPECS / f"{recipe.base}.yaml").read_text()
        model = folder / "model.yaml"
        model.write_bytes(mutate_yaml(text, recipe.mutations))
        base = folder / "base.yaml"
        base.write_text(text)
        return model_argv(recipe.command, model, base, EXPLAIN_LAYER[recipe.base], folder)
    if recipe.kind == "onnx":
        model = write_onnx(recipe.base, recipe.mutations, folder)
        base = write_onnx("conv_gemm" if recipe.base == "external" else recipe.base, (), folder, "base.onnx")
        return model_argv(recipe.command, model, base, ONNX_EXPLAIN_LAYER[recipe.base], folder)
    if recipe.kind == "budget":
        budget = folder / "budget.yaml"
        budget.write_bytes(mutate_yaml(EXAMPLE_BUDGET.read_text(), recipe.mutations))
        if recipe.base == "conv_gemm":
            model = write_onnx("conv_gemm", (), folder)
        else:
            model = folder / "model.yaml"
            model.write_text((SPECS / f"{recipe.base}.yaml").read_text())
        variant = recipe.command.partition(":")[2]
        argv = ["check", str(model), "--budget", str(budget)]
        if variant == "training":
            return argv + ["--training"]
        return argv + ["--format", variant, "-o", str(folder / "report.out")] if variant == "junit" else \
            argv + ["--format", variant]
    raise ValueError(recipe.kind)


KINDS = {
    "spec": (SPEC_BASES, SPEC_MUTATIONS, SPEC_COMMANDS),
    "onnx": (ONNX_BASES, ONNX_MUTATIONS, ONNX_COMMANDS),
    "budget": (BUDGET_MODELS, BUDGET_MUTATIONS, BUDGET_COMMANDS),
}


def random_recipe(rnd: random.Random, kind: str | None = None, command: str | None = None) -> Recipe:
    """The bench's draw; tests/test_fuzz.py draws the same shape with hypothesis strategies."""
    kind = kind or rnd.choice(tuple(KINDS))
    bases, mutations, commands = KINDS[kind]
    steps = tuple((rnd.choice(mutations), rnd.randrange(2**32)) for _ in range(rnd.choice((1, 1, 1, 2, 2, 3))))
    return Recipe(kind, rnd.choice(bases), steps, command or rnd.choice(commands))


# ---------------------------------------------------------------------------------------------
# Running and judging
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    status: str  # "exit" (SystemExit or returned), "exception", "timeout", "crash", "memory", "generator"
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""  # the exception's last traceback line, or what killed the driver
    seconds: float = 0.0
    traceback_seen: bool = False  # anywhere in the full output, not only in the tails kept here
    outside_reads: list = dataclasses.field(default_factory=list)  # files opened that the case never pointed at

    @property
    def label(self) -> str:
        """A short class for tallies: exit0/1/2, traceback, timeout, memory, crash, bad-exit, silent-exit2."""
        problems = judge(self)
        if not problems:
            return f"exit{self.code}"
        return problems[0].split(":")[0]


def judge(outcome: Outcome) -> list[str]:
    """The house rules this outcome breaks (empty when none); each starts with a short class name."""
    if outcome.status == "generator":  # the harness's own bug, never archcalc's
        return [f"generator: {outcome.error}"]
    if outcome.status == "timeout":
        return [f"timeout: no result within {CASE_TIMEOUT:.0f} s"]
    if outcome.status == "memory" or "MemoryError" in outcome.error:
        return [f"memory: {outcome.error}"]
    if outcome.status == "crash":
        return [f"crash: {outcome.error}"]
    problems = []
    if outcome.status == "exception" or outcome.traceback_seen or TRACEBACK in outcome.stdout + outcome.stderr:
        problems.append(f"traceback: {outcome.error or _last_traceback_line(outcome.stdout + outcome.stderr)}")
    if outcome.code not in (0, 1, 2) and outcome.status != "exception":
        problems.append(f"bad-exit: exit code {outcome.code}")
    if outcome.code == 2 and not outcome.stderr.strip():
        problems.append("silent-exit2: exit 2 with nothing on stderr")
    if outcome.outside_reads:
        problems.append(f"outside-read: opened {', '.join(outcome.outside_reads[:3])}")
    return problems


def _last_traceback_line(text: str) -> str:
    lines = [line for line in text[text.find(TRACEBACK):].splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    os.setsid()  # its own process group, so a timeout kills it with anything it started


class Runner:
    """A driver subprocess kept alive across cases; restarted after CASES_PER_DRIVER cases, a
    timeout, a crash or a memory failure. Not thread-safe: one per thread."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.served = 0

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}  # the driver sets one per case
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.stderr_log = self.workdir / f"driver_stderr_{os.getpid()}_{id(self)}.log"
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--driver"], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_log.open("wb"),
            preexec_fn=_limit_memory)
        self.served = 0

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process.stdin.close()
            self.process.stdout.close()
            self.process = None

    def run(self, argv: list[str], folder: Path, timeout: float = CASE_TIMEOUT) -> Outcome:
        if self.process is None or self.served >= CASES_PER_DRIVER or self.process.poll() is not None:
            self.close()
            self._start()
        self.served += 1
        started = time.monotonic()
        try:
            self.process.stdin.write((json.dumps({"argv": argv, "folder": str(folder)}) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            return self._died(started)
        line = self._read_line(started + timeout)
        if line is None:
            self.close()
            return Outcome("timeout", seconds=time.monotonic() - started)
        if not line:
            return self._died(started)
        outcome = Outcome(**json.loads(line))
        if outcome.status != "exit":
            self.close()  # its state after an exception (a MemoryError above all) is not to be trusted
        return outcome

    def _read_line(self, deadline: float) -> bytes | None:
        stream = self.process.stdout
        chunks = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([stream], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(stream.fileno(), 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)

    def _died(self, started: float) -> Outcome:
        self.process.wait()
        code = self.process.returncode
        self.close()
        log = self.stderr_log.read_text(errors="replace")[-2000:] if self.stderr_log.exists() else ""
        memory = any(word in log for word in ("MemoryError", "bad_alloc", "Cannot allocate", "out of memory"))
        reason = f"driver died with {'signal ' + str(-code) if code and code < 0 else 'code ' + str(code)}"
        tail = log.strip().splitlines()[-1] if log.strip() else ""
        return Outcome("memory" if memory else "crash", code=code, error=f"{reason}: {tail}"[:500],
                       seconds=time.monotonic() - started)


def run_recipe(runner: Runner, recipe: Recipe, folder: Path) -> Outcome:
    if folder.exists():
        shutil.rmtree(folder)
    argv = build_case(recipe, folder)
    return runner.run(argv, folder)


def save_failure(recipe: Recipe, outcome: Outcome, folder: Path, into: Path) -> Path:
    """Copy the case's files beside its recipe, argv and output, for reproduction."""
    import hashlib

    digest = hashlib.sha1(str(recipe).encode()).hexdigest()[:10]
    target = into / f"{outcome.label}-{recipe.kind}-{recipe.command.replace(':', '_')}-{digest}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder, target)
    argv = build_case(recipe, target)  # rewrites the files with the target's paths in argv
    (target / "recipe.json").write_text(json.dumps(recipe.to_json(), indent=1) + "\n")
    (target / "repro.sh").write_text("cd \"$(git rev-parse --show-toplevel)\" && python3 -m archcalc "
                                     + " ".join(_shell_quote(a) for a in argv) + "\n")
    (target / "outcome.txt").write_text(
        f"{recipe}\n{'; '.join(judge(outcome))}\nstatus {outcome.status} code {outcome.code} "
        f"{outcome.seconds:.2f} s\n--- stdout (tail)\n{outcome.stdout[-4000:]}\n--- stderr (tail)\n"
        f"{outcome.stderr[-8000:]}\n")
    return target


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# ---------------------------------------------------------------------------------------------
# The driver: this file run with --driver. One JSON argv a line on stdin, one JSON outcome a
# line on the original stdout; fd 1 and 2 themselves go to stderr's log so that nothing a
# library prints from C can corrupt the protocol.
# ---------------------------------------------------------------------------------------------

# Files a hostile external-data location points at; reading any is following the model out of
# its folder. Python-level opens only (an audit hook): onnxruntime's own reads are not seen.
OUTSIDE_TARGETS = ("/etc/passwd", "/etc/hostname", "/proc/self/environ", "/dev/zero")


def _outside(path: str, folder: str) -> bool:
    resolved, inside = os.path.realpath(os.path.expanduser(path)), os.path.realpath(folder)
    if resolved == inside:  # the folder itself, opened to sync a file renamed into it
        return False
    return (resolved in OUTSIDE_TARGETS or "/.ssh/" in resolved
            or os.path.dirname(resolved) == os.path.dirname(inside))  # '../x'


def _driver() -> None:
    import gc
    import traceback

    opened: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(audit)

    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from archcalc.cli.main import main

    recursion_limit = sys.getrecursionlimit()
    for line in sys.stdin:
        request = json.loads(line)
        argv = request["argv"]
        opened.clear()
        # check --format github appends its job summary here, not to a real CI job's.
        os.environ["GITHUB_STEP_SUMMARY"] = os.path.join(request["folder"], "step_summary.md")
        out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        saved = sys.argv, sys.stdout, sys.stderr
        sys.argv, sys.stdout, sys.stderr = ["archcalc", *argv], out, err
        started = time.monotonic()
        result = {"status": "exit", "code": 0, "error": ""}
        try:
            main()
        except SystemExit as stop:
            code = stop.code
            if code is None:
                code = 0
            elif not isinstance(code, int):  # sys.exit("message") prints it and exits 1
                err.write(str(code) + "\n")
                code = 1
            result["code"] = code
        except BaseException as error:  # noqa: BLE001  every escape is the finding
            text = traceback.format_exc()
            err.write(text)
            result = {"status": "memory" if isinstance(error, MemoryError) else "exception", "code": 1,
                      "error": _last_traceback_line(text)[:500]}
        finally:
            sys.argv, sys.stdout, sys.stderr = saved
            sys.setrecursionlimit(recursion_limit)
            gc.enable()  # main() disables it for one short run; a long-lived driver must collect
            gc.collect()
        seconds = time.monotonic() - started
        out.flush()
        err.flush()
        stdout, stderr = (s.buffer.getvalue().decode("utf-8", "replace") for s in (out, err))
        if result["status"] == "exit" and TRACEBACK in stdout + stderr:
            result["error"] = _last_traceback_line(stdout + stderr)[:500]
        # The tails only: a 10 MB name may be echoed; a traceback anywhere is flagged above.
        result.update(stdout=stdout[-20000:], stderr=stderr[-20000:], seconds=seconds,
                      traceback_seen=TRACEBACK in stdout + stderr,
                      outside_reads=sorted({p for p in opened if _outside(p, request["folder"])}))
        protocol.write(json.dumps(result) + "\n")
        protocol.flush()


if __name__ == "__main__" and sys.argv[1:] == ["--driver"]:
    _driver()
