"""Hydra's override functions (`choice`, `range`, `interval`, `glob`, `sort`, `shuffle`, `tag` and the casts),
and how a sweep's values are written back into overrides.

Ports of `hydra/_internal/grammar/grammar_functions.py` (with the argument
checks of `functions.py`) and of `Override.sweep_string_iterator` /
`_get_value_element_as_str` in `hydra/core/override_parser/types.py`. Where
Hydra shuffles with unseeded randomness, this shuffles with a fixed seed, so
the same command gives the same order.
"""

from __future__ import annotations

import builtins
import decimal
import inspect
import random
import re
from collections.abc import Callable, Iterator
from copy import copy
from typing import Any

from batchrun.sweeps.notation.hydra_values import ChoiceSweep, HydraSyntaxError, IntervalSweep, QuotedString, RangeSweep, Special

__all__ = ["call", "sweep_strings", "value_string"]

_SHUFFLE_SEED = 0
_ESC = "\\()[]{}:=, \t"
_ESC_REGEX = re.compile(f"[{re.escape(_ESC)}]+")
_SWEEPS = (ChoiceSweep, RangeSweep, IntervalSweep, Special)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float))


def _is_element(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, dict, list))


def _cast(convert: Callable[[Any], Any], name: str) -> Callable[..., Any]:
    def cast(*args: Any, value: Any = None) -> Any:
        if args and value is not None:
            raise TypeError("cannot use both position and named arguments")
        if value is None:
            if not args:
                raise TypeError("No positional args or value specified")
            value = args[0] if len(args) == 1 else ChoiceSweep(list(args), simple_form=True)
        if isinstance(value, QuotedString):
            return cast(value.text)
        if isinstance(value, dict):
            return {k: cast(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cast(v) for v in value]
        if isinstance(value, ChoiceSweep):
            return ChoiceSweep([cast(v) for v in value.items], simple_form=value.simple_form)
        if isinstance(value, RangeSweep):
            if name not in ("int", "float"):
                raise ValueError("Range can only be cast to int or float")
            return RangeSweep(convert(value.start), convert(value.stop), convert(value.step))
        if isinstance(value, IntervalSweep):
            if name not in ("int", "float"):
                raise ValueError(f"Intervals cannot be cast to {name}")
            return IntervalSweep(convert(value.start), convert(value.end))
        return convert(value)

    return cast


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"Cannot cast '{value}' to bool")
    return bool(value)


def _to_str(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _choice(*args: Any) -> ChoiceSweep:
    if not args:
        raise ValueError("empty choice is not legal")
    for arg in args:
        if not (_is_element(arg) or isinstance(arg, ChoiceSweep)):
            raise TypeError(f"mismatch type argument args: {type(arg).__name__} is incompatible")
    if len(args) == 1 and isinstance(args[0], ChoiceSweep):
        if not args[0].simple_form:
            raise ValueError("nesting choices is not supported")
        args[0].simple_form = False
        return args[0]
    return ChoiceSweep(list(args))


def _range(start: Any, stop: Any = None, step: Any = 1) -> RangeSweep:
    for name, arg in (("start", start), ("step", step)) + ((("stop", stop),) if stop is not None else ()):
        if not _is_number(arg):
            raise TypeError(f"mismatch type argument {name}: {type(arg).__name__} is incompatible with Union[int, float]")
    if stop is None:
        start, stop = 0, start
    return RangeSweep(start, stop, step)


def _interval(start: Any, end: Any) -> IntervalSweep:
    if not (_is_number(start) and _is_number(end)):
        raise TypeError("mismatch type argument: interval takes numbers")
    return IntervalSweep(float(start), float(end))


def _tag(*args: Any, sweep: Any = None) -> Any:
    if sweep is not None:
        return _tag(*args, sweep)
    if not args:
        raise ValueError("Not enough arguments to tag, must take at least a sweep")
    if not isinstance(args[-1], _SWEEPS):
        raise ValueError("Last argument to tag() must be a choice(), range() or interval()")
    for t in args[:-1]:
        if not isinstance(t, str):
            raise ValueError(f"tag arguments type must be string, got {type(t).__name__}")
    return args[-1]  # tags steer other sweepers; the basic sweep ignores them


def _shuffle(*args: Any, sweep: Any = None, list: Any = None) -> Any:  # noqa: A002 - Hydra's argument name
    if list is not None:
        return _shuffle(list)
    if sweep is not None:
        return _shuffle(sweep)
    if len(args) == 1:
        arg = args[0]
        if isinstance(arg, (ChoiceSweep, RangeSweep)):
            shuffled = copy(arg)
            shuffled.shuffle = True
            return shuffled
        if isinstance(arg, builtins.list):
            items = builtins.list(arg)
            random.Random(_SHUFFLE_SEED).shuffle(items)
            return items
        return [arg]
    return ChoiceSweep(builtins.list(args), simple_form=True, shuffle=True)


def _sort(*args: Any, sweep: Any = None, list: Any = None, reverse: bool = False) -> Any:  # noqa: A002
    if list is not None:
        return _sort(list, reverse=reverse)
    if sweep is not None:
        return _sort_sweep(sweep, reverse)
    if len(args) == 1:
        arg = args[0]
        if isinstance(arg, (ChoiceSweep, RangeSweep)):
            return _sort_sweep(arg, reverse)
        if isinstance(arg, builtins.list):
            return sorted(arg, reverse=reverse)
        return arg
    if not args:
        raise ValueError("empty sort input")
    if not all(isinstance(a, (int, float, bool, str)) for a in args):
        raise TypeError(f"Invalid arguments: {args}")
    return _sort_sweep(ChoiceSweep(builtins.list(args), simple_form=True), reverse)


def _sort_sweep(sweep: Any, reverse: bool) -> Any:
    sweep = copy(sweep)
    if isinstance(sweep, ChoiceSweep):
        sweep.items = sorted(sweep.items, reverse=reverse)
        return sweep
    if not reverse and sweep.start > sweep.stop:
        sweep.start, sweep.stop, sweep.step = sweep.stop + abs(sweep.step), sweep.start + abs(sweep.step), -sweep.step
    elif reverse and sweep.start < sweep.stop:
        sweep.start, sweep.stop, sweep.step = sweep.stop - abs(sweep.step), sweep.start - abs(sweep.step), -sweep.step
    return sweep


def _glob(include: Any, exclude: Any = None) -> Special:
    return Special("glob", [include, exclude])


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "int": _cast(int, "int"), "float": _cast(float, "float"), "str": _cast(_to_str, "str"), "bool": _cast(_to_bool, "bool"),
    "choice": _choice, "range": _range, "interval": _interval, "tag": _tag, "sort": _sort, "shuffle": _shuffle, "glob": _glob,
}


def call(name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Evaluate a function of the grammar as Hydra's Functions.eval does (quoted arguments unquoted first)."""
    if name not in _FUNCTIONS:
        raise HydraSyntaxError(f"unknown function '{name}' (Hydra has: {', '.join(sorted(_FUNCTIONS))})")
    args = [a.text if isinstance(a, QuotedString) else a for a in args]
    kwargs = {k: (v.text if isinstance(v, QuotedString) else v) for k, v in kwargs.items()}
    function = _FUNCTIONS[name]
    try:
        inspect.signature(function).bind(*args, **kwargs)
        return function(*args, **kwargs)
    except (TypeError, ValueError) as err:
        raise HydraSyntaxError(f"{type(err).__name__} while evaluating {name}(): {err}") from err


class _FloatRange:
    """Hydra's FloatRange: Decimal steps from the floats' exact values."""

    def __init__(self, start: Any, stop: Any, step: Any) -> None:
        self.start, self.stop, self.step = decimal.Decimal(start), decimal.Decimal(stop), decimal.Decimal(step)

    def __iter__(self) -> Iterator[float]:
        current = self.start
        if self.step == 0:
            raise HydraSyntaxError(f"Invalid range values (start:{self.start}, stop:{self.stop}, step:{self.step})")
        while (self.step > 0 and current < self.stop) or (self.step < 0 and current > self.stop):
            yield float(current)
            current += self.step


def sweep_values(sweep: ChoiceSweep | RangeSweep) -> Any:
    """The values a choice or range sweep takes, in Hydra's order (a range lazily)."""
    if isinstance(sweep, ChoiceSweep):
        items = list(sweep.items)
    elif all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
        if sweep.step == 0:
            raise HydraSyntaxError("range() step must not be zero")
        items = range(sweep.start, sweep.stop, sweep.step)  # type: ignore[assignment]
    else:
        items = _FloatRange(sweep.start, sweep.stop, sweep.step)  # type: ignore[assignment]
    if sweep.shuffle:
        items = list(items)
        random.Random(_SHUFFLE_SEED).shuffle(items)
    return items


def sweep_strings(sweep: ChoiceSweep | RangeSweep) -> Iterator[str]:
    """Override.sweep_string_iterator: each value as the text after `key=`."""
    return map(value_string, sweep_values(sweep))


def _escape(text: str) -> str:
    """escape_special_characters: a backslash before each of \\ ( ) [ ] { } : = , space and tab."""
    if not _ESC_REGEX.search(text):
        return text
    return re.sub(r"([\\()\[\]{}:=, \t])", r"\\\1", text)


def _with_quotes(value: QuotedString) -> str:
    """QuotedString.with_quotes: the quote escaped, and backslashes before a quote doubled."""
    qc = value.quote
    pattern = re.compile(r"(\\)+" + re.escape(qc))
    text = value.text
    match = pattern.search(text + qc) if "\\" in text else None
    if match is None:
        return f"{qc}{text.replace(qc, chr(92) + qc)}{qc}"
    text = text + qc
    tokens = []
    while match is not None:
        start, stop = match.span()
        tokens.append(text[:start])
        tokens.append("\\" * ((stop - start - 1) * 2))
        if stop < len(text):
            tokens.append(qc)
        text = text[stop:]
        match = pattern.search(text)
    if len(text) > 1:
        tokens.append(text[:-1])
    return f"{qc}{''.join(tokens).replace(qc, chr(92) + qc)}{qc}"


def value_string(value: Any) -> str:
    """Override._get_value_element_as_str."""
    if value is None:
        return "null"
    if isinstance(value, QuotedString):
        return _with_quotes(value)
    if isinstance(value, list):
        return "[" + ",".join(value_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{value_string(k)}:{value_string(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise HydraSyntaxError(f"a sweep inside a sweep cannot be written as one value ({type(value).__name__})")
