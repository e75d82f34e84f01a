"""Gridspec YAML -> the commands of a sweep, one per grid point, streamed.

`load_gridspec` reads and validates a gridspec; every problem is a one-line
`GridspecError` naming the file, the parameter and, where known, the line.
The `Gridspec` it returns counts its points without generating them and
streams its commands, so a million-point grid never sits in memory;
`write_runfile` writes them atomically. Two dialects share the file:

* the original batchrun format (`program`, `parameters` with `values`,
  `value`, `min`/`max`/`step`), rendered byte for byte as batchrun 0.0.14
  rendered every spec it handled correctly;
* W&B sweep configurations (`method`, `command`, `run_cap`, nested
  `parameters`, `distribution`), expanded offline by `batchrun._wandb`.

Both let `${name}` place a parameter's value inside `program` or `command`,
and both shell-quote any value that needs it. This module never runs a
command and never prints; `cli.py` does both.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import random
import re
import secrets
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import yaml

from batchrun.errors import GridspecError, RunfileError

__all__ = ["Gridspec", "default_runfile_path", "load_gridspec", "write_runfile"]

# Alias bombs (billion laughs) grow exponentially once aliases are expanded;
# no honest gridspec comes near this many expanded YAML nodes.
_MAX_YAML_NODES = 1_000_000
# Ranges longer than this are rendered while streaming rather than up front,
# so a huge range costs time, not memory.
_MATERIALIZE_LIMIT = 100_000
# Lines per write(): enough to amortise the call, few enough to keep memory flat.
_WRITE_CHUNK = 8192

# Top-level keys: the original's two, W&B's schema keys, and our `seed`.
# Only the W&B keys that change what runs switch a spec to W&B rules.
_ORIGINAL_TOP_KEYS = ("program", "parameters")
_WANDB_SWITCH_KEYS = ("method", "command", "run_cap", "seed")
_WANDB_INFO_KEYS = (
    "name", "description", "project", "entity", "metric", "metrics", "early_terminate",
    "controller", "apiVersion", "kind", "job", "image_uri", "scheduler",
)
_TOP_KEYS = _ORIGINAL_TOP_KEYS + _WANDB_SWITCH_KEYS + _WANDB_INFO_KEYS
_ORIGINAL_PARAM_KEYS = ("values", "value", "min", "max", "step")
_WANDB_ONLY_PARAM_KEYS = ("distribution", "parameters", "probabilities", "q", "mu", "sigma", "a", "b")

# Characters a runfile line cannot hold: str.splitlines() breaks, NUL, lone surrogates.
_UNWRITABLE = re.compile("[\x00\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\ud800-\udfff]")
# After `--name=` only these make a value mean something else to sh; `~` and
# `#` are harmless mid-word, so values the original wrote stay unquoted.
_ARG_UNSAFE = re.compile(r"[\s'\"`\\$;&|<>()*?\[\]{}!^]")
_NAME = re.compile(r"[\w.:/@%+,-]+")
_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
# A backslash ending a line; `\Z` also drops a stray one ending the program.
_CONTINUATION = re.compile("\\\\[ \t]*(?:\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]|\\Z)")

Part = str | tuple[int, str]  # literal shell text, or (parameter index, rendering context)
Token = tuple[bool, list[Part]]  # (may render empty, parts); tokens are joined by spaces
Fail = Callable[..., NoReturn]


# ---------------------------------------------------------------- YAML loading


class _Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its line and the line of each key."""

    __slots__ = ("key_lines", "line")

    def __init__(self) -> None:
        super().__init__()
        self.line: int | None = None
        self.key_lines: dict[Any, int] = {}


class _SpecError(yaml.MarkedYAMLError):
    """A YAML problem found by our loader rather than by PyYAML."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and alias bombs and keeps lines."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> node count with aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            size = self._sizes.get(id(node))
            if size is None:  # the anchor is still open: the alias is inside itself
                raise _SpecError(None, None, "recursive alias", event.start_mark)
        else:
            if isinstance(node, yaml.ScalarNode):
                size = 1
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._sizes[id(item)] for item in node.value)
            else:
                size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            self._sizes[id(node)] = size
        if size > _MAX_YAML_NODES:
            raise _SpecError(
                None, None,
                f"aliases expand to more than {_MAX_YAML_NODES:,} nodes (an alias bomb?)",
                event.start_mark,
            )
        return node


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map()
    data.line = node.start_mark.line + 1
    yield data
    # Keys written in this mapping may override keys merged in with `<<`, but
    # not each other.
    explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    first_line: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=False)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _SpecError(None, None, "a mapping key must be a scalar", key_node.start_mark) from None
        if id(key_node) in explicit:
            if key in first_line:
                raise _SpecError(
                    None, None,
                    f"duplicate key {_show(key)} (first on line {first_line[key]})",
                    key_node.start_mark,
                )
            first_line[key] = line
        data[key] = loader.construct_object(value_node, deep=False)
        data.key_lines[key] = line


def _reject_tag(loader: _Loader, node: yaml.Node) -> NoReturn:
    raise _SpecError(
        None, None, f"tag {node.tag!r} is not allowed: a gridspec holds plain data only",
        node.start_mark,
    )


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor(None, _reject_tag)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise GridspecError("no such gridspec", path) from err
    except IsADirectoryError as err:
        raise GridspecError("is a directory, not a gridspec", path) from err
    except PermissionError as err:
        raise GridspecError("permission denied reading the gridspec", path) from err
    except OSError as err:
        raise GridspecError(f"cannot read the gridspec: {err.strerror or err}", path) from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        raise GridspecError("not UTF-8 text, not a gridspec", path, lineno) from err


def _parse_yaml(text: str, path: Path) -> Any:
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except _SpecError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else None
        raise GridspecError(str(err.problem), path, line) from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = "; ".join(str(p) for p in (err.context, err.problem) if p)
        raise GridspecError(
            f"invalid YAML: {_one_line(problem)}", path, mark.line + 1 if mark else None
        ) from err
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise GridspecError(
            f"invalid YAML: character #x{err.character:04x} is not allowed", path, line
        ) from err
    except yaml.YAMLError as err:
        raise GridspecError(f"invalid YAML: {_one_line(str(err))}", path) from err
    except RecursionError as err:
        raise GridspecError("invalid YAML: nested too deeply", path) from err
    finally:
        loader.dispose()


# ------------------------------------------------------------ shared helpers


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(value: Any, limit: int = 60) -> str:
    """Quote a user's value for a message: always one line, never huge."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"the text {_show(value)}"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def _did_you_mean(word: Any, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1) if isinstance(word, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(key: Any, known: Iterable[str]) -> str:
    return f"unknown key {_show(key)}{_did_you_mean(key, known)}"


def _check_name(name: Any, line: int | None, fail: Fail) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        fail(
            f"parameter name {_show(name)} must be text made of letters, digits and _ . : / @ % + , -",
            line,
        )
    return name


def _check_writable(what: str, values: Iterable[Any], line: int | None, fail: Fail) -> None:
    for value in values:
        if _UNWRITABLE.search(str(value)):
            fail(f"{what}: value {_show(value)} contains a line break or a character a runfile line cannot hold", line)


def _as_number(value: Any) -> int | float | None:
    """Return a finite int or float, also from text such as '1e-5', else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return None


class _DecimalRange:
    """An arithmetic progression of floats computed exactly (0.1 steps give 0.3, not 0.30000000000000004)."""

    def __init__(self, start: Decimal, stop: Decimal, step: Decimal) -> None:
        # Scale to integers so the count and every term are exact.
        places = max(0, *(-int(d.as_tuple().exponent) for d in (start, stop, step)))
        self._places = places
        self._range = range(*(int(d.scaleb(places)) for d in (start, stop, step)))

    def __len__(self) -> int:
        return len(self._range)

    def __iter__(self) -> Iterator[float]:
        places = self._places
        # float() of decimal text is correctly rounded: the nearest float to the exact term.
        return (float(f"{n}e-{places}") for n in self._range)


def _arange(start: int | float, stop: int | float, step: int | float) -> Sequence[Any] | _DecimalRange:
    """Return start, start+step, ... up to stop excluded, like range() but for floats too."""
    if all(isinstance(x, int) for x in (start, stop, step)):
        return range(start, stop, step)  # type: ignore[arg-type]
    return _DecimalRange(*(Decimal(repr(x)) for x in (start, stop, step)))


# ------------------------------------------------------------------ rendering


def _quote_arg(text: str) -> str:
    return shlex.quote(text) if _ARG_UNSAFE.search(text) else text


def _render_nobool(param: _Param, value: Any) -> str:
    # W&B's ${args_no_boolean_flags}: True -> --flag, False -> nothing.
    if value is True:
        return f" --{param.name}"
    if value is False:
        return ""
    return f" --{param.name}={_quote_arg(str(value))}"


_RENDER: dict[str, Callable[[_Param, Any], str]] = {
    "q": lambda p, v: _quote_arg(str(v)),  # after `--name=`: the original's text unless unsafe
    "w": lambda p, v: shlex.quote(str(v)),  # a whole word, or part of one
    "dq": lambda p, v: re.sub(r'([\\"$`])', r"\\\1", str(v)),  # inside "..."
    "sq": lambda p, v: str(v).replace("'", "'\\''"),  # inside '...'
    "json": lambda p, v: json.dumps(v, default=str).replace("'", "'\\''"),  # inside '...'
    "nobool": _render_nobool,
}


@dataclass(eq=False)
class _Param:
    """One swept parameter: grid values or a random draw."""

    name: str  # dotted, as written on the command line
    lineno: int | None
    values: Sequence[Any] | _DecimalRange | None = None
    draw: Callable[[random.Random], Any] | None = None
    path: tuple[str, ...] = ()  # W&B nesting, for ${args_json}


def _scan_shell_text(text: str, index_of: dict[str, int], what: str, fail: Fail) -> list[Part]:
    """Split shell text into literal parts and `${name}` slots, normalising whitespace.

    Outside quotes, runs of whitespace become one space and a backslash ending
    a line (or, after YAML folded it, a backslash between spaces) joins the
    lines. Quoted text and other backslashes are kept as written.
    """
    parts: list[Part] = []
    buf: list[str] = []
    quote = ""
    space = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and (m := _PLACEHOLDER.match(text, i)) and m.group(1) in index_of:
            if space and (buf or parts):
                buf.append(" ")
            space = False
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append((index_of[m.group(1)], {"": "w", "'": "sq", '"': "dq"}[quote]))
            i = m.end()
            continue
        if c == "\\" and quote != "'":
            m = _CONTINUATION.match(text, i)
            if m or (space and not quote and text[i + 1 : i + 2] in (" ", "\t")):
                space = space or not quote
                i = m.end() if m else i + 1
                continue
            chunk = text[i : i + 2]  # an escaped character stays escaped
        elif quote:
            quote = "" if c == quote else quote
            chunk = " " if _UNWRITABLE.match(c) else c
        elif c.isspace():
            space = True
            i += 1
            continue
        else:
            quote = c if c in "'\"" else ""
            chunk = c
        if space and (buf or parts):
            buf.append(" ")
        space = False
        buf.append(chunk)
        i += len(chunk) if c == "\\" else 1
    if quote:
        fail(f"{what}: unterminated {quote} quote")
    if buf:
        parts.append("".join(buf))
    return parts


def _compile(tokens: list[Token], params: Sequence[_Param]) -> tuple[str, list[Callable[[Any], Any]], bool]:
    """Turn tokens into one str.format template and a renderer per parameter."""
    contexts: list[list[str]] = [[] for _ in params]
    for _, parts in tokens:
        for part in parts:
            if not isinstance(part, str) and part[1] not in contexts[part[0]]:
                contexts[part[0]].append(part[1])
    pieces: list[str] = []
    for position, (optional, parts) in enumerate(tokens):
        if position and not optional:  # optional tokens carry their own leading space
            pieces.append(" ")
        for part in parts:
            if isinstance(part, str):
                pieces.append(part.replace("{", "{{").replace("}", "}}"))
            else:
                index, ctx = part
                ctxs = contexts[index]
                pieces.append(f"{{{index}}}" if len(ctxs) == 1 else f"{{{index}[{ctxs.index(ctx)}]}}")
    renderers = [_renderer(param, ctxs) for param, ctxs in zip(params, contexts)]
    return "".join(pieces), renderers, bool(tokens) and tokens[0][0]


def _renderer(param: _Param, ctxs: list[str]) -> Callable[[Any], Any]:
    fns = [_RENDER[ctx] for ctx in ctxs]
    if len(fns) == 1:
        fn = fns[0]
        return lambda value: fn(param, value)
    return lambda value: tuple(fn(param, value) for fn in fns)


# ------------------------------------------------------------ the original format


def _original_params(spec: _Map, fail: Fail) -> list[_Param]:
    section = spec["parameters"]
    params: list[_Param] = []
    for raw_name, body in section.items():
        line = section.key_lines.get(raw_name)
        name = _check_name(raw_name, line, fail)
        where = f"parameter {name!r}"
        if not isinstance(body, dict):
            fail(f"{where}: expected a mapping such as 'values: [1, 2]', not {_kind(body)}", line)
        for key in body:
            if key not in _ORIGINAL_PARAM_KEYS:
                if key in _WANDB_ONLY_PARAM_KEYS:
                    message = f"{where}: {key!r} is a W&B sweep key; add 'method: grid' (or random) to use W&B rules"
                else:
                    message = f"{where}: {_unknown_key(key, _ORIGINAL_PARAM_KEYS)}"
                fail(message, body.key_lines.get(key, line))
        ranged = [k for k in ("min", "max", "step") if k in body]
        given = [k for k in ("values", "value") if k in body] + ranged[:1]
        if not given:
            fail(f"{where}: no values; give 'values', 'value' or 'max' (with optional 'min' and 'step')", line)
        if len(given) > 1:
            fail(f"{where}: give only one of 'values', 'value' or a min/max/step range, not both {given[0]!r} and {given[1]!r}", line)
        if "values" in body:
            values = body["values"]
            if not isinstance(values, list):
                fail(f"{where}: 'values' must be a list such as [1, 2], not {_kind(values)} (for one value write 'value:')", line)
            if not values:
                fail(f"{where}: 'values' is an empty list", line)
        elif "value" in body:
            values = [body["value"]]
        else:
            values = _original_range(where, body, line, fail)
        if isinstance(values, list):
            _check_writable(where, values, line, fail)
        params.append(_Param(name, line, values=values))
    return params


def _original_range(where: str, body: _Map, line: int | None, fail: Fail) -> Sequence[Any] | _DecimalRange:
    if "max" not in body:
        fail(f"{where}: a range needs 'max' (the range stops before it)", line)
    bounds = {}
    for key, default in (("min", 0), ("max", None), ("step", 1)):
        raw = body.get(key, default)
        number = _as_number(raw)
        if number is None:
            fail(f"{where}: {key!r} must be a number, not {_kind(raw)}", body.key_lines.get(key, line))
        bounds[key] = number
    start, stop, step = bounds["min"], bounds["max"], bounds["step"]
    if step == 0:
        fail(f"{where}: 'step' is 0, so the range would never reach max", line)
    values = _arange(start, stop, step)
    if not len(values):
        if start == stop:
            fail(f"{where}: min and max are both {start}, so the range is empty (max is excluded)", line)
        fail(f"{where}: step {step} never reaches max {stop} from min {start}", line)
    return values


def _original_tokens(program: str, params: list[_Param], fail: Fail) -> list[Token]:
    index_of = {p.name: i for i, p in enumerate(params)}
    parts = _scan_shell_text(program, index_of, "'program'", fail)
    if not parts:
        fail("'program' is empty")
    placed = {part[0] for part in parts if not isinstance(part, str)}
    tokens: list[Token] = [(False, parts)]
    for i, param in enumerate(params):
        if i not in placed:
            tokens.append((False, [f"--{param.name}=", (i, "q")]))
    return tokens


# ------------------------------------------------------------------ the API


@dataclass(frozen=True, eq=False)
class Gridspec:
    """A validated gridspec: where it came from, what it runs, and its points.

    `program` is the program text (normalised, in the original format);
    `command` is the W&B command list, or None. `method` is "grid" or
    "random"; `run_cap` caps a grid and sizes a random sweep, whose draws
    are reproducible from `seed`.
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

    def parameter_names(self) -> list[str]:
        """Return the dotted parameter names, in the order they are written."""
        return [p.name for p in self._params]

    def count(self) -> int:
        """Return the number of commands, without generating them."""
        if self.method == "random":
            return self.run_cap or 0
        total = math.prod(len(p.values) for p in self._params if p.values is not None)
        return total if self.run_cap is None else min(total, self.run_cap)

    def iter_commands(self) -> Iterator[str]:
        """Yield each command, without a newline, streaming (the last parameter varies fastest)."""
        fmt = self._template.format
        if self.method == "random":
            lines: Iterator[str] = self._random_lines(fmt)
        else:
            columns = [_column(p.values, r) for p, r in zip(self._params, self._renderers) if p.values is not None]
            if all(isinstance(c, list) for c in columns):
                points: Iterator[tuple[Any, ...]] = itertools.product(*columns)
            else:
                points = _lazy_product(columns)
            if self.run_cap is not None:
                points = itertools.islice(points, self.run_cap)
            lines = itertools.starmap(fmt, points)
        if self._lstrip:
            lines = (line.lstrip(" ") for line in lines)
        yield from lines

    def _random_lines(self, fmt: Callable[..., str]) -> Iterator[str]:
        rng = random.Random(self.seed)
        draws = [(p.draw, r) for p, r in zip(self._params, self._renderers)]
        for _ in range(self.run_cap or 0):
            yield fmt(*[render(draw(rng)) for draw, render in draws])  # type: ignore[misc]


def _column(values: Any, render: Callable[[Any], Any]) -> Sequence[Any] | Iterable[Any]:
    if len(values) <= _MATERIALIZE_LIMIT:
        return [render(v) for v in values]
    return _LazyColumn(values, render)


@dataclass
class _LazyColumn:
    """A long column rendered each time it is walked instead of kept."""

    values: Any
    render: Callable[[Any], Any]

    def __iter__(self) -> Iterator[Any]:
        return map(self.render, self.values)


def _lazy_product(columns: list[Any]) -> Iterator[tuple[Any, ...]]:
    if not columns:
        yield ()
        return
    *head, last = columns
    for prefix in _lazy_product(head):
        for item in last:
            yield (*prefix, item)


def load_gridspec(path: Path) -> Gridspec:
    """Read and validate a gridspec.

    Raises:
        GridspecError: the file is missing or unreadable, is not UTF-8 YAML,
            or is not a valid sweep; one line naming the file, the parameter
            and, where known, the line.
    """
    path = Path(path)
    spec = _parse_yaml(_read_text(path), path)

    def fail(message: str, line: int | None = None) -> NoReturn:
        raise GridspecError(_one_line(message), path, line)

    if spec is None:
        fail("the gridspec is empty; it needs 'program' and 'parameters'")
    if not isinstance(spec, dict):
        fail(f"expected a mapping with 'program' and 'parameters' at the top level, not {_kind(spec)}", 1)
    for key in spec:
        if key not in _TOP_KEYS:
            fail(_unknown_key(key, _TOP_KEYS), spec.key_lines.get(key))
    if "parameters" not in spec:
        fail("missing 'parameters': the mapping of parameter names to their values")
    if not isinstance(spec["parameters"], dict):
        fail(f"'parameters' must be a mapping of names to values, not {_kind(spec['parameters'])}", spec.key_lines["parameters"])
    if _is_wandb(spec):
        from batchrun import _wandb  # W&B rules are only needed for W&B specs

        sweep = _wandb.parse(spec, fail)
        template, renderers, lstrip = _compile(sweep.tokens, sweep.params)
        return Gridspec(
            path, sweep.program, sweep.command, True, sweep.method, sweep.run_cap, sweep.seed,
            tuple(sweep.params), template, tuple(renderers), lstrip,
        )
    program = spec.get("program")
    if program is None:
        fail("missing 'program' (or a W&B 'command' list): the command to run, e.g. 'program: python3 train.py'")
    if not isinstance(program, str):
        fail(f"'program' must be text, not {_kind(program)}", spec.key_lines["program"])
    if _UNWRITABLE.search(program.translate(_LINE_BREAKS_TO_SPACES)):
        fail("'program' contains a character a runfile line cannot hold", spec.key_lines["program"])
    params = _original_params(spec, fail)
    tokens = _original_tokens(program, params, fail)
    template, renderers, _ = _compile(tokens, params)
    normalised = "".join(p if isinstance(p, str) else f"${{{params[p[0]].name}}}" for p in tokens[0][1])
    return Gridspec(path, normalised, None, False, "grid", None, None, tuple(params), template, tuple(renderers))


_LINE_BREAKS_TO_SPACES = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))


def _is_wandb(spec: _Map) -> bool:
    if any(key in spec for key in _WANDB_SWITCH_KEYS):
        return True

    def nested(section: Any) -> bool:
        return any(
            isinstance(body, dict) and ("distribution" in body or "parameters" in body)
            for body in section.values()
        )

    return nested(spec["parameters"])


def write_runfile(gridspec: Gridspec, out: Path) -> int:
    """Write the gridspec's commands to `out`, one per line; return how many.

    The lines go to a temporary file in the same directory that replaces
    `out` only once complete, so `out` is never left half-written.

    Raises:
        RunfileError: `out` is a directory, is the gridspec itself, or
            cannot be written.
    """
    out = Path(out)
    if out.is_dir():
        raise RunfileError("is a directory; give a file name for the runfile", out)
    with suppress(OSError):
        if os.path.samefile(out, gridspec.path):
            raise RunfileError("is the gridspec itself; give another name for the runfile", out)
    temp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    count = 0
    try:
        # O_EXCL: never write through a file (or symlink) someone else made;
        # mode 0o666 lets the umask decide, as for any new file.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            lines = gridspec.iter_commands()
            while chunk := list(itertools.islice(lines, _WRITE_CHUNK)):
                handle.write("\n".join(chunk))
                handle.write("\n")
                count += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, out)
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
