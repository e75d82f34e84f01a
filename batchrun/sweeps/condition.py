"""Conditions over a point's parameters (`exclude`, `when`), read with `ast` and evaluated safely.

Never Python's `eval`: the expression is parsed and walked, and only these
are allowed: comparisons (`== != < <= > >= in`, `not in`), `and`/`or`/`not`,
arithmetic on numbers (`+ - * / // % **`, powers bounded), parameter names
(dotted names for W&B's nested parameters), numbers, text, `true`/`false`/
`null`, and lists or tuples of these. Anything else is a `GridspecError`
naming the gridspec, the expression and its YAML line. A condition that
names a parameter the point does not have (a conditional parameter that does
not apply) is false for that point.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrun.errors import GridspecError
from batchrun.sweeps._common import show, unknown

__all__ = ["Condition", "compile_condition"]

# Longer expressions are refused: a condition is one line of a gridspec, and ast.parse of a huge one is slow.
_MAX_LENGTH = 2000
# A power whose result would pass this many bits is refused (10 ** 10 ** 10 would never finish).
_MAX_POWER_BITS = 4096
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


class _Refused(Exception):
    """Inside the walk: what is not allowed, said in words."""


@dataclass(frozen=True)
class Condition:
    """A checked condition: its text, the parameter names it reads, and where it was written."""

    text: str
    names: frozenset[str]
    tree: ast.Expression
    path: Path
    line: int | None
    what: str  # "exclude" or "parameter 'momentum': when"

    def holds(self, point: Mapping[str, Any]) -> bool:
        """Whether the condition is true at the point (False when it names a parameter the point lacks).

        Raises:
            GridspecError: the values cannot be compared or computed (text < number, division by zero).
        """
        if not self.names <= point.keys():
            return False
        try:
            return bool(_value(self.tree.body, point))
        except (TypeError, ZeroDivisionError, OverflowError, ValueError, _Refused) as err:
            values = ", ".join(f"{n}={show(point[n], 30)}" for n in sorted(self.names))
            raise GridspecError(f"{self.what} {self.text!r}: cannot evaluate at {values}: {err}", self.path, self.line) from err


def compile_condition(text: Any, names: list[str], path: Path, line: int | None, what: str) -> Condition:
    """Parse and check a condition against the gridspec's parameter names.

    Raises:
        GridspecError: not text, not an expression, a construct that is not
            allowed, or a name that is no parameter.
    """
    if not isinstance(text, str) or not text.strip():
        raise GridspecError(f"{what}: expected a condition as text, such as \"lr > 0.01 and layers > 4\", not {show(text)}", path, line)
    if len(text) > _MAX_LENGTH:
        raise GridspecError(f"{what}: the condition is longer than {_MAX_LENGTH} characters", path, line)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        reason = err.msg if isinstance(err, SyntaxError) else type(err).__name__
        raise GridspecError(f"{what} {text!r}: not an expression ({reason})", path, line) from err
    used: set[str] = set()
    try:
        _check(tree.body, used)
    except _Refused as err:
        raise GridspecError(f"{what} {text!r}: {err} is not allowed (comparisons, and/or/not, arithmetic, parameter names, "
                            "numbers, text, lists)", path, line) from err
    except RecursionError as err:
        raise GridspecError(f"{what} {text!r}: nested too deeply", path, line) from err
    for name in sorted(used):
        if name not in names:
            raise GridspecError(f"{what} {text!r}: {unknown(name, names, 'parameter')}", path, line)
    return Condition(text, frozenset(used), tree, path, line, what)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _check(node: ast.expr, used: set[str]) -> None:
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name is None:
            raise _Refused("an attribute of a value")
        if name not in _CONSTANTS:
            used.add(name)
        return
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (str, int, float, bool)) and node.value is not None:
            raise _Refused(f"the constant {node.value!r}")
        return
    if isinstance(node, ast.BoolOp):
        children: list[ast.expr] = list(node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
        children = [node.operand]
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        children = [node.left, node.right]
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        children = [node.left, *node.comparators]
    elif isinstance(node, (ast.List, ast.Tuple)):
        children = list(node.elts)
    else:
        raise _Refused(_describe(node))
    for child in children:
        _check(child, used)


def _describe(node: ast.AST) -> str:
    names = {ast.Call: "a function call", ast.Subscript: "indexing", ast.Lambda: "lambda", ast.IfExp: "if/else",
             ast.Dict: "a mapping", ast.Set: "a set", ast.ListComp: "a comprehension", ast.JoinedStr: "an f-string",
             ast.NamedExpr: "':='", ast.Starred: "'*'"}
    if isinstance(node, ast.Compare):
        return "'is'" if any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops) else "this comparison"
    if isinstance(node, ast.BinOp):
        return "a bitwise operator"
    if isinstance(node, ast.UnaryOp):
        return "'~'"
    return names.get(type(node), type(node).__name__)


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"arithmetic takes numbers, not {show(value, 30)}")
    return value


def _value(node: ast.expr, point: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        assert name is not None
        return _CONSTANTS[name] if name in _CONSTANTS and name not in point else point[name]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_value(v, point) for v in node.values)
        return any(_value(v, point) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, point)
        if isinstance(node.op, ast.Not):
            return not operand
        return -_number(operand) if isinstance(node.op, ast.USub) else +_number(operand)
    if isinstance(node, ast.BinOp):
        left, right = _number(_value(node.left, point)), _number(_value(node.right, point))
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right > 0 and right * abs(left).bit_length() > _MAX_POWER_BITS:
                raise _Refused(f"{left} ** {right} is too large")
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _value(node.left, point)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _value(comparator, point)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, point) for e in node.elts]
    raise _Refused(_describe(node))
