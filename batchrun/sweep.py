"""Gridspec YAML -> the commands of a sweep, one per grid point, streamed.

`load_gridspec` reads and validates a gridspec; every problem is a one-line
`GridspecError` naming the file, the parameter and, where known, the line.
The `Gridspec` it returns counts its points without generating them and
streams its commands, so a million-point grid never sits in memory;
`write_runfile` writes them atomically. Two dialects share the file:

* the original batchrun format (`program`, `parameters` with `values`,
  `value`, `min`/`max`/`step`), written byte for byte as batchrun 0.0.14
  wrote every spec it handled correctly;
* W&B sweep configurations (`method`, `command`, `run_cap`, nested
  `parameters`, `distribution`), expanded offline by `batchrun._wandb`.

In both, `${name}` places a value inside `program` or `command`, and values
are shell-quoted when they need it. Commands compile to one `str.format`
template, so streaming costs a format call per line. This module never runs
a command and never prints; `cli.py` does both.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import random
import re
import secrets
import shlex
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from batchrun.errors import GridspecError, RunfileError

if TYPE_CHECKING:
    from batchrun.hyperband import HyperbandConfig
    from batchrun.objective import Metric

__all__ = ["Gridspec", "default_runfile_path", "load_gridspec", "write_runfile"]

# Alias bombs (billion laughs) grow exponentially once aliases are expanded;
# no honest gridspec comes near this many expanded YAML nodes.
_MAX_YAML_NODES = 1_000_000
# Longer value lists are rendered while streaming instead of up front, so a
# huge range costs time, not memory.
_MATERIALIZE_LIMIT = 100_000
# Lines per write(): enough to amortise the call, few enough to keep memory flat.
_WRITE_CHUNK = 8192

# Top-level keys: the original's, W&B's schema keys, and our `seed`. Only W&B
# keys that change what runs switch a spec to W&B rules; the others are notes.
_WANDB_SWITCH_KEYS = ("method", "command", "run_cap", "seed")
_TOP_KEYS = ("program", "parameters", *_WANDB_SWITCH_KEYS, "name", "description", "project",
             "entity", "metric", "metrics", "early_terminate", "controller", "apiVersion",
             "kind", "job", "image_uri", "scheduler")
_ORIGINAL_PARAM_KEYS = ("values", "value", "min", "max", "step")
_WANDB_PARAM_KEYS = ("distribution", "parameters", "probabilities", "q", "mu", "sigma", "a", "b")

_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines() splits
# A runfile line cannot hold a line break, NUL or a lone surrogate.
_UNWRITABLE = re.compile(f"[\x00{_LINE_BREAKS}\ud800-\udfff]")
# After `--name=` only these change what sh makes of a value; `~` and `#` are
# harmless mid-word, so every value the original wrote stays unquoted.
_ARG_UNSAFE = re.compile(r"[\s'\"`\\$;&|<>()*?\[\]{}!^]")
_NAME = re.compile(r"[\w.:/@%+,-]+")
_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_BACKSLASH_BLANK = re.compile(r"\\(?=\s)")
_LINE_END = re.compile(r"\\[ \t]*\r?\n")
# A backslash ending a line; `\Z` also drops one that ends the program.
_CONTINUATION = re.compile(f"\\\\[ \t]*(?:\r\n|[{_LINE_BREAKS}]|\\Z)")

_Render = Callable[["_Param", Any], str]  # renders a parameter's value for one context
_Part = str | tuple[int, _Render]  # literal shell text, or (parameter index, how to render it)
_Token = tuple[bool, list[_Part]]  # (optional: carries its own leading space, parts)
_Fail = Callable[..., NoReturn]


class _Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of each of its keys."""

    __slots__ = ("key_lines",)

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}


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


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map()
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
                message = f"duplicate key {_show(key)} (first on line {first_line[key]})"
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


def _read_yaml(path: Path) -> Any:
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
        raise GridspecError(prefix + _one_line(problem), path, mark.line + 1 if mark else None) from err
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise GridspecError(f"invalid YAML: character #x{err.character:04x} is not allowed", path, line) from err
    except RecursionError as err:
        raise GridspecError("invalid YAML: nested too deeply", path) from err


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(value: Any, limit: int = 60) -> str:
    """Quote a user's value for a message: always one line, never huge."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """Name what a YAML value is, for 'must be X, not Y' messages."""
    if isinstance(value, str):
        return f"the text {_show(value)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    kinds = ((type(None), "null"), (bool, "a boolean"), (dict, "a mapping"), (list, "a list"))
    return next((name for types, name in kinds if isinstance(value, types)), type(value).__name__)


def _unknown(word: Any, known: Iterable[str], what: str = "key") -> str:
    """Say a word is unknown and suggest the nearest known one."""
    close = difflib.get_close_matches(word, list(known), n=1) if isinstance(word, str) else []
    return f"unknown {what} {_show(word)}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _check_name(name: Any, line: int | None, fail: _Fail) -> str:
    if isinstance(name, bool):  # YAML 1.1 reads yes/no/on/off/true/false as booleans
        fail(f"parameter name {name} is a YAML boolean: quote it, e.g. 'on': or \"off\":", line)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        fail(f"parameter name {_show(name)} must be text made of letters, digits and _ . : / @ % + , -", line)
    return name


def _check_writable(what: str, values: Iterable[Any], line: int | None, fail: _Fail) -> None:
    for value in values:
        if _UNWRITABLE.search(str(value)):
            fail(f"{what}: {_show(value)} contains a line break or a character a runfile line cannot hold", line)


def _values_list(where: str, body: _Map, line: int | None, fail: _Fail) -> list[Any]:
    """Return a parameter's non-empty `values` list, every value writable."""
    values = body["values"]
    if not isinstance(values, list):
        fail(f"{where}: 'values' must be a list such as [1, 2], not {_kind(values)} "
             "(for one value write 'value:')", line)
    if not values:
        fail(f"{where}: 'values' is an empty list", line)
    _check_writable(where, values, line, fail)
    return values


def _as_number(value: Any) -> int | float | None:
    """Return a finite int or float, also from text such as '1e-5', else None."""
    if isinstance(value, str):
        for convert in (int, float):
            with suppress(ValueError):
                value = convert(value)
                break
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


class _DecimalRange:
    """A progression of floats computed exactly: 0.1 steps give 0.3, not 0.30000000000000004."""

    def __init__(self, start: Decimal, stop: Decimal, step: Decimal) -> None:
        # Scaled to integers, the count and every term are exact.
        self._places = max(0, *(-int(d.as_tuple().exponent) for d in (start, stop, step)))
        self._range = range(*(int(d.scaleb(self._places)) for d in (start, stop, step)))

    def __len__(self) -> int:
        return len(self._range)

    def __iter__(self) -> Iterator[float]:
        # float() of decimal text is correctly rounded: the float nearest the exact term.
        return (float(f"{n}e-{self._places}") for n in self._range)


_Values = range | list[Any] | _DecimalRange  # a parameter's grid values


def _arange(start: float, stop: float, step: float) -> _Values:
    """Return start, start + step, ... before stop, like range() but floats too."""
    if isinstance(start, int) and isinstance(stop, int) and isinstance(step, int):
        return range(start, stop, step)
    return _DecimalRange(*(Decimal(repr(x)) for x in (start, stop, step)))


@dataclass(eq=False)
class _Param:
    """One swept parameter: its grid values or its random draw."""

    name: str  # dotted, as written on the command line
    lineno: int | None
    values: _Values | None = None
    draw: Callable[[random.Random], Any] | None = None
    path: tuple[str, ...] = ()  # W&B nesting, for ${args_json}


def _quote_arg(text: str) -> str:
    return shlex.quote(text) if _ARG_UNSAFE.search(text) else text


def _render_arg(param: _Param, value: Any) -> str:
    """Render a value after `--name=`: the original's text, quoted only if sh would change it."""
    return _quote_arg(str(value))


def _render_word(param: _Param, value: Any) -> str:
    """Render a value as a whole shell word, or as part of one."""
    return shlex.quote(str(value))


# How to render a `${name}` placed outside quotes, inside '...' and inside "...".
_QUOTE_CONTEXT: dict[str, _Render] = {
    "": _render_word,
    "'": lambda p, v: str(v).replace("'", "'\\''"),
    '"': lambda p, v: re.sub(r'([\\"$`])', r"\\\1", str(v)),
}


def _scan_program(text: str, index_of: dict[str, int], line: int | None, fail: _Fail) -> list[_Part]:
    """Split shell text into literal parts and `${name}` slots, normalising whitespace.

    Outside quotes, runs of whitespace become one space and a backslash that
    ends a line joins the lines. Quoted text and other backslashes stay.
    """
    parts: list[_Part] = []
    buf: list[str] = []
    quote, space, i = "", False, 0
    while i < len(text):
        c = text[i]
        if c == "$" and (m := _PLACEHOLDER.match(text, i)) and m.group(1) in index_of:
            if space and (buf or parts):
                buf.append(" ")
            space = False
            parts.extend(["".join(buf)] if buf else [])
            buf = []
            parts.append((index_of[m.group(1)], _QUOTE_CONTEXT[quote]))
            i = m.end()
            continue
        if c == "\\" and quote != "'":
            m = _CONTINUATION.match(text, i)
            if m:
                space, i = space or not quote, m.end()
                continue
            chunk = text[i : i + 2]  # an escaped character stays escaped
        elif quote:
            quote = "" if c == quote else quote
            chunk = " " if c in _LINE_BREAKS else c
        elif c.isspace():
            space, i = True, i + 1
            continue
        else:
            quote, chunk = (c if c in "'\"" else ""), c
        if space and (buf or parts):
            buf.append(" ")
        space = False
        buf.append(chunk)
        i += len(chunk)
    if quote:
        fail(f"'program': unterminated {quote} quote", line)
    return parts + (["".join(buf)] if buf else [])


def _compile(tokens: list[_Token], params: list[_Param]) -> tuple[str, list[Callable[[Any], Any]], bool]:
    """Turn tokens into one str.format template and a renderer per parameter.

    A parameter used in one context fills `{i}`; one used in several fills
    `{i[j]}` from a tuple, so each value is rendered once per context. The
    flag says lines need their leading space stripped: an optional token
    (which brings its own space) came first.
    """
    contexts: list[list[_Render]] = [[] for _ in params]
    for _, parts in tokens:
        for part in parts:
            if not isinstance(part, str) and part[1] not in contexts[part[0]]:
                contexts[part[0]].append(part[1])
    pieces: list[str] = []
    for position, (optional, parts) in enumerate(tokens):
        pieces.append(" " if position and not optional else "")
        for part in parts:
            if isinstance(part, str):
                pieces.append(part.replace("{", "{{").replace("}", "}}"))
            else:
                ctxs = contexts[part[0]]
                pieces.append(f"{{{part[0]}}}" if len(ctxs) == 1 else f"{{{part[0]}[{ctxs.index(part[1])}]}}")
    renderers = [_renderer(p, ctxs) for p, ctxs in zip(params, contexts, strict=True)]
    return "".join(pieces), renderers, bool(tokens) and tokens[0][0]


def _renderer(param: _Param, fns: list[_Render]) -> Callable[[Any], Any]:
    if len(fns) == 1:
        return lambda value: fns[0](param, value)
    return lambda value: tuple(fn(param, value) for fn in fns)


def _original_params(section: _Map, fail: _Fail) -> list[_Param]:
    params: list[_Param] = []
    for raw_name, body in section.items():
        line = section.key_lines.get(raw_name)
        name = _check_name(raw_name, line, fail)
        where = f"parameter {name!r}"
        if not isinstance(body, _Map):
            fail(f"{where}: expected a mapping such as 'values: [1, 2]', not {_kind(body)}", line)
        for key in body:
            if key in _WANDB_PARAM_KEYS:
                fail(f"{where}: {key!r} is a W&B sweep key; add 'method: grid' (or random) to use W&B rules",
                     body.key_lines[key])
            if key not in _ORIGINAL_PARAM_KEYS:
                fail(f"{where}: {_unknown(key, _ORIGINAL_PARAM_KEYS)}", body.key_lines[key])
        given = [k for k in ("values", "value") if k in body] + [k for k in ("min", "max", "step") if k in body][:1]
        if not given:
            fail(f"{where}: no values; give 'values', 'value' or 'max' (with optional 'min' and 'step')", line)
        if len(given) > 1:
            fail(f"{where}: give only one of 'values', 'value' or a min/max/step range, "
                 f"not both {given[0]!r} and {given[1]!r}", line)
        if "values" in body:
            values: _Values = _values_list(where, body, line, fail)
        elif "value" in body:
            values = [body["value"]]
            _check_writable(where, values, line, fail)
        else:
            values = _original_range(where, body, line, fail)
        params.append(_Param(name, line, values=values))
    return params


def _original_range(where: str, body: _Map, line: int | None, fail: _Fail) -> _Values:
    if "max" not in body:
        fail(f"{where}: a range needs 'max' (the range stops before it)", line)
    bounds = []
    for key, default in (("min", 0), ("max", None), ("step", 1)):
        number = _as_number(body.get(key, default))
        if number is None:
            fail(f"{where}: {key!r} must be a number, not {_kind(body[key])}", body.key_lines[key])
        bounds.append(number)
    start, stop, step = bounds
    if step == 0:
        fail(f"{where}: 'step' is 0, so the range would never reach max", line)
    values = _arange(start, stop, step)
    if not len(values):
        if start == stop:
            fail(f"{where}: min and max are both {start}, so the range is empty (max is excluded)", line)
        fail(f"{where}: step {step} never reaches max {stop} from min {start}", line)
    return values


@dataclass(frozen=True, eq=False)
class Gridspec:
    """A validated gridspec: where it came from, what it runs, and its points.

    `program` is the program text (whitespace and line continuations
    normalised in the original format); `command` is a W&B command list, or
    None. `method` is "grid", "random" or "bayes"; `run_cap` caps a grid and
    sizes a random sweep, whose draws are reproducible from `seed`, or a bayes
    one, which has no commands up front (`batchrun.bayes` proposes them).
    """

    path: Path
    program: str | None
    command: tuple[str, ...] | None
    is_wandb: bool
    method: str
    run_cap: int | None
    seed: int | None
    _params: tuple[_Param, ...] = field(repr=False)
    _template: str = field(repr=False)
    _renderers: tuple[Callable[[Any], Any], ...] = field(repr=False)
    _lstrip: bool = field(repr=False, default=False)
    metric: Metric | None = None  # what bayes optimizes and hyperband judges
    early_terminate: HyperbandConfig | None = None

    def parameter_names(self) -> list[str]:
        """Return the dotted parameter names, in output order."""
        return [p.name for p in self._params]

    def count(self) -> int:
        """Return the number of commands, without generating them."""
        try:
            return self._count()
        except _HOSTILE as err:
            raise GridspecError(_one_line(f"cannot count this gridspec's points: {type(err).__name__}: {err}"), self.path) from err

    def _count(self) -> int:
        if self.method in ("random", "bayes"):
            return self.run_cap or 0
        total = math.prod(len(p.values) for p in self._params if p.values is not None)
        return total if self.run_cap is None else min(total, self.run_cap)

    def iter_commands(self) -> Iterator[str]:
        """Yield each command without a newline, streaming; the last parameter varies fastest.

        Raises:
            GridspecError: a value cannot be rendered (a range or draw out of bounds).
        """
        try:
            yield from self._iter_commands()
        except _HOSTILE as err:
            raise GridspecError(_one_line(f"cannot expand this gridspec: {type(err).__name__}: {err}"), self.path) from err

    def _iter_commands(self) -> Iterator[str]:
        points: Iterator[Sequence[Any]]
        if self.method == "bayes":
            raise GridspecError("method 'bayes' picks each run from the results of finished runs, so it needs "
                                f"results and a launch: run 'batchrun launch {self.path}', not 'batchrun sweep'", self.path)
        if self.method == "random":
            from batchrun._wandb import random_points

            points = random_points(self._params, self._renderers, self.seed)
        else:
            columns = [  # long ones stay (values, render), rendered as walked, to keep memory flat
                [r(v) for v in p.values] if len(p.values) <= _MATERIALIZE_LIMIT else (p.values, r)
                for p, r in zip(self._params, self._renderers, strict=True) if p.values is not None
            ]
            lazy = not all(isinstance(c, list) for c in columns)
            points = _lazy_product(columns) if lazy else itertools.product(*columns)
        lines: Iterator[str] = itertools.starmap(self._template.format, itertools.islice(points, self.run_cap))
        if self._lstrip:
            lines = map(str.lstrip, lines)
        yield from lines


def _lazy_product(columns: list[Any]) -> Iterator[tuple[Any, ...]]:
    """itertools.product, but a (values, render) column is rendered anew at each pass."""
    if not columns:
        yield ()
        return
    last = columns[-1]
    for prefix in _lazy_product(columns[:-1]):
        for item in last if isinstance(last, list) else map(last[1], last[0]):
            yield (*prefix, item)


# What PyYAML's constructors and numeric conversions raise on hostile input
# (`!!int ''`, `!!timestamp abc`, 5,000-digit integers, ranges longer than
# sys.maxsize): reported as the gridspec's fault, never as a traceback.
_HOSTILE = (ValueError, IndexError, AttributeError, KeyError, TypeError, OverflowError, RecursionError)


def load_gridspec(path: Path) -> Gridspec:
    """Read and validate a gridspec.

    Raises:
        GridspecError: the file is missing or unreadable, is not UTF-8 YAML,
            or is not a valid sweep; one line naming the file, the parameter
            and, where known, the line.
    """
    try:
        return _load_gridspec(Path(path))
    except GridspecError:
        raise
    except _HOSTILE as err:
        raise GridspecError(_one_line(f"cannot use this gridspec: {type(err).__name__}: {err}"), Path(path)) from err


def _load_gridspec(path: Path) -> Gridspec:
    spec = _read_yaml(path)

    def fail(message: str, line: int | None = None) -> NoReturn:
        raise GridspecError(_one_line(message), path, line)

    if spec is None:
        fail("the gridspec is empty; it needs 'program' and 'parameters'")
    if not isinstance(spec, _Map):
        fail(f"expected a mapping with 'program' and 'parameters' at the top level, not {_kind(spec)}", 1)
    line = spec.key_lines.get
    for key in spec:
        if key not in _TOP_KEYS:
            fail(_unknown(key, _TOP_KEYS), line(key))
    if "parameters" not in spec:
        fail("missing 'parameters': the mapping of parameter names to their values")
    if not isinstance(spec["parameters"], _Map):
        fail(f"'parameters' must be a mapping of names to values, not {_kind(spec['parameters'])}", line("parameters"))
    if any(key in spec for key in _WANDB_SWITCH_KEYS) or any(
        isinstance(body, _Map) and ("distribution" in body or "parameters" in body)
        for body in spec["parameters"].values()
    ):
        from batchrun import _wandb  # W&B rules load only for W&B specs

        sweep = _wandb.parse(spec, fail)
        template, renderers, lstrip = _compile(sweep.tokens, sweep.params)
        return Gridspec(path, sweep.program, sweep.command, True, sweep.method, sweep.run_cap,
                        sweep.seed, tuple(sweep.params), template, tuple(renderers), lstrip,
                        metric=sweep.metric, early_terminate=sweep.early_terminate)
    program = spec.get("program")
    if program is None:
        fail("missing 'program' (or a W&B 'command' list): the command to run, e.g. 'program: python3 train.py'")
    if not isinstance(program, str):
        fail(f"'program' must be text, not {_kind(program)}", line("program"))
    if _UNWRITABLE.search(program.translate(dict.fromkeys(map(ord, _LINE_BREAKS), " "))):
        fail("'program' contains a character a runfile line cannot hold", line("program"))
    params = _original_params(spec["parameters"], fail)
    parts = _scan_program(program, {p.name: i for i, p in enumerate(params)}, line("program"), fail)
    if not parts:
        fail("'program' is empty", line("program"))
    placed = {part[0] for part in parts if not isinstance(part, str)}
    tokens: list[_Token] = [(False, parts)]
    tokens += [(False, [f"--{p.name}=", (i, _render_arg)]) for i, p in enumerate(params) if i not in placed]
    template, renderers, _ = _compile(tokens, params)
    normalised = "".join(p if isinstance(p, str) else f"${{{params[p[0]].name}}}" for p in parts)
    return Gridspec(path, normalised, None, False, "grid", None, None, tuple(params), template, tuple(renderers))


def write_runfile(gridspec: Gridspec, out: Path) -> int:
    """Write the gridspec's commands to `out`, one per line; return how many.

    The lines stream into a temporary file in the same directory, which
    replaces `out` only once complete: `out` is never left half-written.

    Raises:
        RunfileError: `out` is a directory, is the gridspec itself, or
            cannot be written.
    """
    out = Path(out)
    if out.is_dir():
        raise RunfileError("is a directory; give a file name for the runfile", out)
    with suppress(OSError):
        if out.samefile(gridspec.path):
            raise RunfileError("is the gridspec itself; give another name for the runfile", out)
    temp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    count = 0
    try:
        # O_EXCL: never write through a file or symlink someone else made;
        # 0o666 lets the umask decide the mode, as for any new file.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            lines = gridspec.iter_commands()
            while chunk := list(itertools.islice(lines, _WRITE_CHUNK)):
                handle.write("\n".join(chunk) + "\n")
                count += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(out)
    except BaseException as err:
        with suppress(OSError):
            temp.unlink()
        if isinstance(err, OSError):
            raise RunfileError(f"cannot write the runfile: {err.strerror or err}", out) from err
        raise
    return count


def default_runfile_path(spec_path: Path) -> Path:
    """Return `<spec stem>.runfile` in the current directory, as the original did."""
    return Path(f"{Path(spec_path).stem}.runfile")
