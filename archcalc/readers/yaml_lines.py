"""YAML loading that remembers line numbers, so errors can point at the spec line."""

from __future__ import annotations

from collections.abc import Hashable
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


# Spec and budget files are a few KiB; the cap keeps a symlink to /dev/zero or a stray
# multi-gigabyte file from being read into memory.
MAX_FILE_BYTES = 16 * 2**20
# Aliases (`*name`) stay allowed: anchors and merge keys (`<<: *conv_defaults`) are plain
# YAML a spec or budget may use to share fields. What makes them dangerous is expansion:
# PyYAML shares an aliased node, but whatever reads the document afterwards (an error
# message's repr, expression substitution, str()) walks it in full, so nine lines of
# nested aliases (billion laughs) become 10**9 values. Counting the values each alias
# stands for while composing refuses that before anything walks it.
MAX_ALIAS_NODES = 100_000


class _AtLine(SpecError):
    """A problem found while building the YAML document, at a line of the file (which
    the loader does not know; load_yaml places it as `file:line` like every other error)."""

    def __init__(self, message: str, line: int, fix: str):
        super().__init__(message, fix=fix)
        self.line = line


class _Loader(yaml.SafeLoader):
    """A safe loader that builds LineDict and LineList, and bounds what aliases expand to."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.expanded_sizes: dict[int, int] = {}  # id of a composed node -> its values, aliases expanded
        self.alias_nodes = 0  # values added by aliases so far

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            if event.anchor in self.anchors:  # an undefined alias is PyYAML's own error
                self._count_alias(event, self.anchors[event.anchor])
            return super().compose_node(parent, index)
        node = super().compose_node(parent, index)
        self.expanded_sizes[id(node)] = 1 + sum(self.expanded_sizes[id(child)] for child in _children(node))
        return node

    def _count_alias(self, event: yaml.events.AliasEvent, target: yaml.Node) -> None:
        line = event.start_mark.line + 1
        size = self.expanded_sizes.get(id(target))
        if size is None:  # the anchored collection is still being composed: `&a [*a]`
            raise _AtLine(f"alias *{event.anchor} refers to the collection it is inside", line,
                          fix="an alias may only repeat a value that is complete before it")
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise _AtLine(f"aliases expand to more than {MAX_ALIAS_NODES:,} values (alias *{event.anchor} "
                          f"stands for {size:,})", line,
                          fix="write the values out, or nest fewer aliases (sharing a few fields needs only a few)")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    own_keys = {id(key_node) for key_node, _ in node.value}
    loader.flatten_mapping(node)  # puts the pairs of `<<: *defaults` first
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    merged: set[Any] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):  # `? [a, b]`: a list or mapping as a key
            raise _AtLine(f"a key is {_kind(key)}, not a name", key_node.start_mark.line + 1,
                          fix="write keys as plain names (`name: value`); a `?` key holds one word")
        if id(key_node) not in own_keys:
            merged.add(key)  # YAML's merge: a later merged mapping and the mapping's own keys override it
        elif key in result and key not in merged:
            raise _AtLine(f"key '{key}' appears twice", key_node.start_mark.line + 1, fix="remove one of them")
        else:
            merged.discard(key)
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
        with open(path, "rb") as handle:
            # Read one byte past the cap rather than trust stat: /dev/zero and pipes report size 0.
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise error(f"{what} {path} is larger than {MAX_FILE_BYTES // 2**20} MiB, the most archcalc reads",
                        fix=f"check the path: a {what} is a few KiB of YAML") from None
        return data.decode("utf-8")
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
