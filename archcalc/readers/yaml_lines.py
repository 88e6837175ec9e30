"""YAML loading that remembers line numbers, so errors can point at the spec line."""

from __future__ import annotations

from typing import Any

import yaml

from archcalc.core.errors import ArchcalcError, SpecError


class LineDict(dict):
    """A mapping from the YAML file, with the line it starts on and each key's line."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list):
    """A sequence from the YAML file, with the line of each item."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


class _AtLine(SpecError):
    """A problem found while building the YAML document, at a line of the file (which
    the loader does not know; load_yaml places it as `file:line` like every other error)."""

    def __init__(self, message: str, line: int, fix: str):
        super().__init__(message, fix=fix)
        self.line = line


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise _AtLine(f"key '{key}' appears twice", key_node.start_mark.line + 1, fix="remove one of them")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


def _int(loader: _Loader, node: yaml.ScalarNode) -> int:
    try:
        return loader.construct_yaml_int(node)
    except ValueError:  # more digits than Python converts (4300), far beyond any size
        raise _AtLine(f"the number {node.value[:20]}... has {len(node.value)} digits", node.start_mark.line + 1,
                      fix="sizes and counts must fit in int64 (at most 19 digits)") from None


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def read_text(path: str, error: type[ArchcalcError], what: str, fix: str) -> str:
    """The text of the YAML file at `path`; any failure is `error`, naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist", fix=fix) from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not a {what}", fix=fix) from None
    except UnicodeDecodeError:
        raise error(f"{path} is not a text file, so not a {what}", fix=fix) from None
    except OSError as failure:
        raise error(f"cannot read {what} {path}: {failure.strerror}", fix=fix) from None


def load_yaml(text: str, path: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except _AtLine as error:
        raise error.located(f"{path}:{error.line}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        problem = getattr(error, "problem", None) or str(error)
        fix = "check indentation, colons and brackets on that line"
        if "mapping values are not allowed" in problem:
            fix = ("a layer with more keys needs a colon after its type, e.g. `- relu:` "
                   "then `  name: act1` on the next line")
        raise SpecError(f"not valid YAML: {problem}", where=where, fix=fix) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise SpecError("the YAML nests too deeply to read", where=path,
                        fix="a spec needs a few levels of nesting; check for runaway brackets") from None
