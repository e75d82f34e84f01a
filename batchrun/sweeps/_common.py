"""What the two gridspec dialects share: values, parameters, checks, messages and shell rendering.

`sweeps/gridspec.py` (the original format, and the `Gridspec` both produce) and
`sweeps/wandb.py` (W&B sweep configurations) build on these; neither imports the
other's private names. Pure functions, no I/O.
"""

from __future__ import annotations

import difflib
import math
import random
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

__all__ = [
    "LINE_BREAKS",
    "PLACEHOLDER",
    "UNWRITABLE",
    "Fail",
    "Map",
    "Param",
    "Part",
    "Render",
    "Token",
    "Values",
    "arange",
    "as_number",
    "check_name",
    "check_writable",
    "kind",
    "lazy_product",
    "one_line",
    "paired",
    "quote_arg",
    "render_arg",
    "render_word",
    "same",
    "show",
    "unknown",
    "values_list",
]

LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines() splits
# A runfile line cannot hold a line break, NUL or a lone surrogate.
UNWRITABLE = re.compile(f"[\x00{LINE_BREAKS}\ud800-\udfff]")
# After `--name=` only these change what sh makes of a value; `~` and `#` are
# harmless mid-word, so every value the original wrote stays unquoted.
_ARG_UNSAFE = re.compile(r"[\s'\"`\\$;&|<>()*?\[\]{}!^]")
_NAME = re.compile(r"[\w.:/@%+,-]+")
PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")

Render = Callable[["Param", Any], str]  # renders a parameter's value for one context
Part = str | tuple[int, Render]  # literal shell text, or (parameter index, how to render it)
Token = tuple[bool, list[Part]]  # (optional: carries its own leading space, parts)
Fail = Callable[..., NoReturn]


class Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of each of its keys."""

    __slots__ = ("key_lines",)

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}


def one_line(text: str) -> str:
    return " ".join(text.split())


def show(value: Any, limit: int = 60) -> str:
    """Quote a user's value for a message: always one line, never huge."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind(value: Any) -> str:
    """Name what a YAML value is, for 'must be X, not Y' messages."""
    if isinstance(value, str):
        return f"the text {show(value)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    kinds = ((type(None), "null"), (bool, "a boolean"), (dict, "a mapping"), (list, "a list"))
    return next((name for types, name in kinds if isinstance(value, types)), type(value).__name__)


def unknown(word: Any, known: Iterable[str], what: str = "key") -> str:
    """Say a word is unknown and suggest the nearest known one."""
    close = difflib.get_close_matches(word, list(known), n=1) if isinstance(word, str) else []
    return f"unknown {what} {show(word)}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_name(name: Any, line: int | None, fail: Fail) -> str:
    if isinstance(name, bool):  # YAML 1.1 reads yes/no/on/off/true/false as booleans
        fail(f"parameter name {name} is a YAML boolean: quote it, e.g. 'on': or \"off\":", line)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        fail(f"parameter name {show(name)} must be text made of letters, digits and _ . : / @ % + , -", line)
    return name


def check_writable(what: str, values: Iterable[Any], line: int | None, fail: Fail) -> None:
    for value in values:
        if UNWRITABLE.search(str(value)):
            fail(f"{what}: {show(value)} contains a line break or a character a runfile line cannot hold", line)


def values_list(where: str, body: Map, line: int | None, fail: Fail) -> list[Any]:
    """Return a parameter's non-empty `values` list, every value writable."""
    values = body["values"]
    if not isinstance(values, list):
        fail(f"{where}: 'values' must be a list such as [1, 2], not {kind(values)} "
             "(for one value write 'value:')", line)
    if not values:
        fail(f"{where}: 'values' is an empty list", line)
    check_writable(where, values, line, fail)
    return values


def as_number(value: Any) -> int | float | None:
    """Return a finite int or float, also from text such as '1e-5', else None."""
    if isinstance(value, str):
        for convert in (int, float):
            with suppress(ValueError):
                value = convert(value)
                break
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


class DecimalRange:
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


Values = range | list[Any] | DecimalRange  # a parameter's grid values


def arange(start: float, stop: float, step: float) -> Values:
    """Return start, start + step, ... before stop, like range() but floats too."""
    if isinstance(start, int) and isinstance(stop, int) and isinstance(step, int):
        return range(start, stop, step)
    return DecimalRange(*(Decimal(repr(x)) for x in (start, stop, step)))


@dataclass(eq=False)
class Param:
    """One swept parameter: its grid values or its random draw."""

    name: str  # dotted, as written on the command line
    lineno: int | None
    values: Values | None = None
    draw: Callable[[random.Random], Any] | None = None
    path: tuple[str, ...] = ()  # W&B nesting, for ${args_json}


def quote_arg(text: str) -> str:
    return shlex.quote(text) if _ARG_UNSAFE.search(text) else text


def render_arg(param: Param, value: Any) -> str:
    """Render a value after `--name=`: the original's text, quoted only if sh would change it."""
    return quote_arg(str(value))


def render_word(param: Param, value: Any) -> str:
    """Render a value as a whole shell word, or as part of one."""
    return shlex.quote(str(value))


def paired(render: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """A renderer that keeps the value beside its text."""
    return lambda value: (value, render(value))


def same(value: Any) -> Any:
    return value


def lazy_product(columns: list[Any]) -> Iterator[tuple[Any, ...]]:
    """itertools.product, but a (values, render) column is rendered anew at each pass."""
    if not columns:
        yield ()
        return
    last = columns[-1]
    for prefix in lazy_product(columns[:-1]):
        for item in last if isinstance(last, list) else map(last[1], last[0]):
            yield (*prefix, item)
