"""Reading a gridspec's YAML: line numbers kept, duplicate keys, alias bombs and tags refused.

`read_yaml` returns plain data whose mappings are `Map`s that remember the
line of each key, for messages; every problem is one `GridspecError`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml

from batchrun.errors import GridspecError
from batchrun.sweeps._common import Map, one_line, show

__all__ = ["read_yaml"]

# Alias bombs (billion laughs) grow exponentially once aliases are expanded;
# no honest gridspec comes near this many expanded YAML nodes.
_MAX_YAML_NODES = 1_000_000
_BACKSLASH_BLANK = re.compile(r"\\(?=\s)")
_LINE_END = re.compile(r"\\[ \t]*\r?\n")


class _SpecError(yaml.MarkedYAMLError):
    """A YAML problem our loader finds: duplicate key, alias bomb, unsafe tag."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and alias bombs and keeps lines."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> its node count with aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            size = self._sizes.get(id(node))
            if size is None:  # its anchor is still open: the alias is inside itself
                raise _SpecError(None, None, "recursive alias", mark)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else (
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
            size = 1 + sum(self._sizes[id(child)] for child in children)
            self._sizes[id(node)] = size
        if size > _MAX_YAML_NODES:
            message = f"aliases expand to more than {_MAX_YAML_NODES:,} nodes (an alias bomb?)"
            raise _SpecError(None, None, message, mark)
        return node


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[Map]:
    data = Map()
    yield data
    # Keys written here may override keys merged in with `<<`, not each other.
    explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    first_line: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=False)
        line = key_node.start_mark.line + 1
        if not isinstance(key, Hashable):
            raise _SpecError(None, None, "a mapping key must be a scalar", key_node.start_mark)
        if id(key_node) in explicit:
            if key in first_line:
                message = f"duplicate key {show(key)} (first on line {first_line[key]})"
                raise _SpecError(None, None, message, key_node.start_mark)
            first_line[key] = line
        data[key] = loader.construct_object(value_node, deep=False)
        data.key_lines[key] = line
        if key == "program" and isinstance(value_node, yaml.ScalarNode) and isinstance(data[key], str):
            data[key] = _restore_continuations(value_node, data[key])


def _restore_continuations(node: yaml.ScalarNode, value: str) -> str:
    r"""Turn each backslash that ended a source line back into backslash + newline.

    YAML folds the line breaks of plain, `'` and `>` scalars into spaces, so
    `a\` ending a line reads as `a\ `, an escaped space to the shell. The
    source says which backslashes ended lines: the n-th backslash before
    whitespace in the value is the n-th in the source.
    """
    start, end = node.start_mark, node.end_mark
    if node.style not in (None, ">", "'") or start.line == end.line or start.buffer is None:
        return value
    source = start.buffer[start.index : end.index]
    ended = [_LINE_END.match(source, m.start()) is not None for m in _BACKSLASH_BLANK.finditer(source)]
    found = [m.start() for m in _BACKSLASH_BLANK.finditer(value)]
    if len(ended) != len(found):  # not the correspondence we rely on: leave YAML's text
        return value
    chars = list(value)
    for position, was_line_end in zip(found, ended, strict=True):
        if was_line_end:
            chars[position + 1] = "\n"
    return "".join(chars)


def _reject_tag(loader: _Loader, node: yaml.Node) -> NoReturn:
    raise _SpecError(None, None, f"tag {node.tag!r} is not allowed: a gridspec holds plain data only", node.start_mark)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor(None, _reject_tag)


def read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as err:
        reasons = {FileNotFoundError: "no such gridspec", IsADirectoryError: "is a directory, not a gridspec",
                   PermissionError: "permission denied reading the gridspec"}
        reason = reasons.get(type(err), f"cannot read the gridspec: {err.strerror or err}")
        raise GridspecError(reason, path) from err
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise GridspecError("not UTF-8 text, not a gridspec", path, data.count(b"\n", 0, err.start) + 1) from err
    try:
        loader = _Loader(text)  # checks every character: may raise ReaderError
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark: Any = err.problem_mark or err.context_mark
        problem = "; ".join(str(p) for p in (err.context, err.problem) if p)
        prefix = "" if isinstance(err, _SpecError) else "invalid YAML: "
        raise GridspecError(prefix + one_line(problem), path, mark.line + 1 if mark else None) from err
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise GridspecError(f"invalid YAML: character #x{err.character:04x} is not allowed", path, line) from err
    except RecursionError as err:
        raise GridspecError("invalid YAML: nested too deeply", path) from err
