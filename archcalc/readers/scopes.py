"""Blocks from the scopes exporters write into node names, for an ONNX graph's layers.

A spec, the torch reader and the Keras reader give each layer its block themselves; an ONNX
file's front end gives none, but its exporter usually wrote each node's scope into its name.
`name_scopes` turns those scopes into blocks once, as the graph is read, so the terminal's
`--depth`, JSON, CSV, check, diff and the HTML report all fold by the same blocks:

- TorchScript's `/layer1/layer1.0/conv1/Conv` is in `layer1.0.conv1`, dotted as torch names
  modules (a scope that extends its parent's name, `layer1.0` under `layer1`, adds only what
  follows it);
- the dynamo exporter's `pkg.torch.onnx.name_scopes` node metadata names the module path
  itself (passed in as `module_paths`): `layer1.0.conv1`;
- another `a/b/c` name (tf2onnx's `model/conv1_bn/batchnorm/mul`) is in `model/conv1_bn/batchnorm`,
  its scope as written;
- a name without `/` is split at its last dot, as module paths and `archcalc export`'s names
  are written: `layer1.0.conv1` is in `layer1.0`.

The last part of a name is the node's own. In a graph whose names have `/` scopes, a name
without one (TorchScript's `Shape_7`, tf2onnx's `Conv__339`, made outside any scope) takes the
block of the first layer that reads it, so it folds with that layer instead of splitting its
block's run of rows in two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from archcalc.core.graph import Node

# The dynamo exporter's node metadata: the module scopes, outermost first, then the op's own name.
TORCH_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def name_block(name: str) -> str:
    """The block the scope written into `name` stands for; '' when it has none."""
    if name.startswith("/"):  # TorchScript: "/layer1/layer1.0/conv1/Conv"
        path: list[str] = []
        parent = ""
        for part in name.split("/")[1:-1]:
            if not part:
                return ""
            path.append(part[len(parent) + 1:] if parent and part.startswith(parent + ".") else part)
            parent = part
        return ".".join(path)
    if "/" in name:
        return name.rpartition("/")[0]
    return name.rpartition(".")[0]


def name_scopes(nodes: Sequence[Node], module_paths: Mapping[str, str]) -> None:
    """Set the block of every node that has none from its scope (see the module's docstring);
    `module_paths`: {node name: module path} from the dynamo exporter's metadata."""
    unset = [node for node in nodes if not node.block]
    if not unset:
        return
    for node in unset:
        node.block = module_paths.get(node.name) or name_block(node.name)
    if not any("/" in node.name for node in unset):
        return
    reader: dict[str, Node] = {}  # tensor -> the first node that reads it
    for node in reversed(nodes):
        for tensor in node.inputs:
            reader[tensor] = node
    order = {id(node): index for index, node in enumerate(nodes)}
    for node in reversed(unset):  # readers come later: a chain of unscoped nodes resolves back to front
        if "/" not in node.name and node.name not in module_paths:
            readers = [reader[t] for t in node.outputs if t in reader]
            if readers:
                node.block = min(readers, key=lambda other: order[id(other)]).block
