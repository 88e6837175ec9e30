"""archcalc's import graph, read from the source with `ast`: which module imports which,
at module level or inside a function, and what that says about the layering.

Run it to print the figures a restructuring note quotes (modules, floors, circles,
imports inside functions, imports against the layering):

    python3 tests/import_graph.py

tests/test_architecture.py pins the same facts.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "archcalc"

# The data flow, lowest first: a subpackage may import its own modules and those of any
# lower layer, never one above it. Subpackages on one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("rules",),
    ("readers",),
    ("engine",),
    ("hardware",),  # devices and the roofline over an analysis; calibration runs in runtime
    ("runtime", "compare"),
    ("report",),
    ("cli",),
    ("",),  # the top package's own modules: __init__.py and api.py (the public API), __main__.py
)


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _function_lines(tree: ast.AST) -> set[int]:
    """Line numbers of imports written inside a function body."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines |= {inner.lineno for inner in ast.walk(node) if isinstance(inner, ast.Import | ast.ImportFrom)}
    return lines


def imports() -> Iterator[Import]:
    """Every import of an archcalc module by another, resolved to the module it names; those
    under `if TYPE_CHECKING:` too, since a type a module names is knowledge it depends on."""
    modules = module_names()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_function = _function_lines(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name)
                if target and target != importer and not importer.startswith(target + "."):
                    yield Import(importer, target, node.lineno, node.lineno in in_function)


def subpackage_of(module: str) -> str:
    """`core` for archcalc.core.dims; "" for the top package's own modules (archcalc, api, __main__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""


def layer_of(module: str) -> int:
    subpackage = subpackage_of(module)
    for level, names in enumerate(LAYERS):
        if subpackage in names:
            return level
    raise ValueError(f"{module} is in no layer of tests/import_graph.py's LAYERS")


def graph() -> nx.DiGraph:
    result = nx.DiGraph()
    result.add_nodes_from(module_names())
    for edge in imports():
        result.add_edge(edge.importer, edge.imported)
    return result


def circles() -> list[list[str]]:
    return [sorted(component) for component in nx.strongly_connected_components(graph()) if len(component) > 1]


def against_layering() -> list[Import]:
    """Imports of a module on the same layer in another subpackage, or on a higher layer."""
    wrong = []
    for edge in imports():
        low, high = layer_of(edge.imported), layer_of(edge.importer)
        same_subpackage = subpackage_of(edge.importer) == subpackage_of(edge.imported)
        if low > high or (low == high and not same_subpackage):
            wrong.append(edge)
    return wrong


def floors() -> int:
    """The longest chain of imports, counted in modules (the graph must have no circle)."""
    dag = graph()
    return nx.dag_longest_path_length(dag) + 1 if nx.is_directed_acyclic_graph(dag) else -1


def main() -> None:
    edges = list(imports())
    print(f"modules: {len(module_names())}")
    print(f"imports between them: {len(edges)} ({sum(e.in_function for e in edges)} inside functions)")
    print(f"floors: {floors()}")
    print(f"circles: {len(circles())}")
    for circle in circles():
        print(f"  {len(circle)} modules: {', '.join(circle)}")
    wrong = against_layering()
    print(f"imports against the layering: {len(wrong)}")
    for edge in wrong:
        print(f"  {edge.importer}:{edge.line} -> {edge.imported}")


if __name__ == "__main__":
    sys.exit(main())
