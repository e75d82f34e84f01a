"""Bash brace expansion of one word, as bash 5 does it, into a lazy tree that counts and streams.

A port of bash's `braces.c` (`brace_expand`, `brace_gobbler`, `expand_amble`,
`expand_seqterm`, `mkseq`): the word's text keeps its quotes, and quoted
braces, `\\{`, `${...}`, `$(...)`, backquotes, and a `{` standing alone are
left as they are. Where bash builds arrays of strings, this builds a tree
(`Node`) that counts its strings by arithmetic and yields them lazily, so
`{1..1000000}` costs no memory. The one departure: a `{` whose text runs on
with an unquoted `,` or `..` but never closes is an error (bash would leave it
as typed), since it is almost always a typo in a sweep.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from batchrun.sweeps.notation.shell import skip_substitution

__all__ = ["Literal", "Node", "Product", "Sequence_", "Union", "UnclosedBraceError", "expand_braces"]

# bash: INT_MAX - 3 elements at most; a longer sequence stays as typed.
_MAX_ELEMENTS = 2**31 - 1 - 3
_INTMAX = 2**63 - 1
_INTMIN = -(2**63)
# Strings per node kept in memory while iterating a product; longer ones are walked again on each pass.
_MATERIALIZE_LIMIT = 100_000
# C's isspace and isdigit in the C locale: ASCII only.
_NUMBER = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*\Z")
_LEADING_INT = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
_DIGITS = "0123456789"


class UnclosedBraceError(ValueError):
    """A `{` with an unquoted `,` or `..` after it and no `}`; `position` is the brace's index in the word."""

    def __init__(self, position: int) -> None:
        super().__init__("unclosed brace")
        self.position = position


class Node:
    """The strings a piece of a word expands to, in bash's order."""

    def count(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def shape(self) -> str:
        """The text with each brace expression shown as `{…}`: what stays when a sweep widens."""
        return "{…}"


@dataclass(frozen=True)
class Literal(Node):
    text: str

    def count(self) -> int:
        return 1

    def __iter__(self) -> Iterator[str]:
        yield self.text

    def shape(self) -> str:
        return self.text


@dataclass(frozen=True)
class Union(Node):
    """The strings of each member in turn (the items of a brace list)."""

    members: tuple[Node, ...]

    def count(self) -> int:
        return sum(m.count() for m in self.members)

    def __iter__(self) -> Iterator[str]:
        for member in self.members:
            yield from member


@dataclass(frozen=True)
class Product(Node):
    """Every concatenation of one string per part, the last part varying fastest."""

    parts: tuple[Node, ...]

    def count(self) -> int:
        return math.prod(p.count() for p in self.parts)

    def __iter__(self) -> Iterator[str]:
        return map("".join, lazy_product(self.parts))

    def shape(self) -> str:
        return "".join(p.shape() for p in self.parts)


@dataclass(frozen=True)
class Sequence_(Node):  # noqa: N801 - `Sequence` is typing's
    """A sequence expression `{x..y..incr}`: integers (zero-padded to `width`) or characters."""

    start: int
    end: int
    incr: int
    chars: bool
    width: int

    def count(self) -> int:
        return abs(self.end - self.start) // abs(self.incr) + 1

    def __iter__(self) -> Iterator[str]:
        values = range(self.start, self.end + (1 if self.incr > 0 else -1), self.incr)
        if self.chars:
            return map(_char_word, values)
        if self.width:
            return (format(_as_c_int(v), f"0{self.width}d") for v in values)
        return map(str, values)


def _char_word(code: int) -> str:
    """A letter sequence passes `[ \\ ] ^ _ \\``: written so sh reads them as bash reads its own expansion."""
    char = chr(code)
    return {"\\": "''", "`": "\\`"}.get(char, char)


def _as_c_int(value: int) -> int:
    """bash passes a zero-padded term to printf as a C int: it wraps."""
    return (value + 2**31) % 2**32 - 2**31


def lazy_product(parts: Sequence[Node]) -> Iterator[tuple[str, ...]]:
    """itertools.product over nodes, but a node of many strings is walked anew instead of held."""
    columns: list[Sequence[str] | Node] = [tuple(p) if p.count() <= _MATERIALIZE_LIMIT else p for p in parts]
    if all(isinstance(c, tuple) for c in columns):
        return itertools.product(*columns)
    return _walk(columns)


def _walk(columns: Sequence[Sequence[str] | Node]) -> Iterator[tuple[str, ...]]:
    if not columns:
        yield ()
        return
    last = columns[-1]
    for prefix in _walk(columns[:-1]):
        for item in last:
            yield (*prefix, item)


# ------------------------------------------------------------------ bash's braces.c


def _whitespace(text: str, i: int) -> bool:
    """bash's brace_whitespace: the end of the text, a space, a tab or a newline."""
    return i >= len(text) or text[i] in " \t\n"


def _gobble(text: str, i: int, satisfy: str) -> tuple[str, int]:
    """bash's brace_gobbler: from i, find `satisfy` outside quotes and inner braces; ("", len) if none."""
    level = 0
    quoted = ""
    pass_next = False
    commas = 0 if satisfy == "}" else 1
    n = len(text)
    while i < n:
        c = text[i]
        if pass_next:
            pass_next = False
            i += 1
            continue
        if c == "\\" and quoted in ("", '"', "`"):
            pass_next = True
            i += 1
            continue
        if c == "$" and i + 1 < n and text[i + 1] == "{" and quoted != "'":
            pass_next = True  # ${...} is not a brace expansion: step over its brace
            i += 1
            if not quoted:
                level += 1
            continue
        if quoted:
            if c == quoted:
                quoted = ""
            elif quoted == '"' and c == "$" and i + 1 < n and text[i + 1] == "(":
                i = skip_substitution(text, i + 2) - 1
            i += 1
            continue
        if c in "\"'`":
            quoted = c
            i += 1
            continue
        if c in "$<>" and i + 1 < n and text[i + 1] == "(":
            i = skip_substitution(text, i + 2) - 1  # at its `)`
            i += 1
            continue
        if c == satisfy and level == 0 and commas > 0:
            # A `{` standing alone (or `{}`) opens nothing.
            if c == "{" and (i == 0 or _whitespace(text, i - 1)) and (_whitespace(text, i + 1) or text[i + 1] == "}"):
                i += 1
                continue
            return c, i
        if c == "{":
            level += 1
        elif c == "}" and level:
            level -= 1
        elif satisfy == "}" and c == "," and level == 0:
            commas += 1
        elif satisfy == "}" and text.startswith("..", i) and (i + 2 >= n or text[i + 2] != satisfy) and level == 0:
            commas += 1
        i += 1
    return "", n


def expand_braces(text: str, offset: int = 0) -> Node:
    """Brace-expand one word (quotes kept) as bash does.

    Raises:
        UnclosedBraceError: a `{` is followed by an unquoted `,` or `..` but never closed.
    """
    i = 0
    while True:
        c, i = _gobble(text, i, "{")
        if not c:
            break
        c2, _ = _gobble(text, i + 1, "}")
        if c2:
            break
        _check_closed(text, i, offset)
        i += 1
    if not c:
        return Literal(text)
    preamble = text[:i]
    start = i + 1
    c, i = _gobble(text, start, "}")
    amble = text[start:i]
    tack: Node
    if not _has_separator(amble):
        seq = _sequence(amble)
        tack = seq if seq is not None else Literal(text[start - 1 : i + 1])
    else:
        tack = _expand_amble(amble, offset + start)
    postamble = text[i + 1 :]
    parts = [p for p in (Literal(preamble) if preamble else None, tack,
                         expand_braces(postamble, offset + i + 1) if postamble else None) if p is not None]
    return parts[0] if len(parts) == 1 else Product(tuple(parts))


def _check_closed(text: str, brace: int, offset: int) -> None:
    """Refuse `{a,b` (no closing brace at all) where bash would leave it as typed."""
    amble = text[brace + 1 :]
    level = 0
    separated = False
    for position, c in _unquoted(amble):
        if c == "{":
            level += 1
        elif c == "}":
            if not level:
                return  # closed, just not a valid expansion (`{1..}`, `{a}`): text, as in bash
            level -= 1
        elif level == 0 and (c == "," or (c == "." and amble.startswith("..", position))):
            separated = True
    if separated:
        raise UnclosedBraceError(offset + brace)


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """The characters of text outside quotes and backslash escapes, with their positions."""
    i = 0
    quoted = ""
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted != "'":
            i += 2
            continue
        if c == "$" and quoted != "'" and text[i + 1 : i + 2] in ("(", "{"):
            i = skip_substitution(text, i + 2, ")" if text[i + 1] == "(" else "}")
            continue
        if quoted:
            quoted = "" if c == quoted else quoted
        elif c in "\"'`":
            quoted = c
        else:
            yield i, c
        i += 1


def _has_separator(amble: str) -> bool:
    """bash: does the amble hold an unescaped comma (quotes are not looked at here)."""
    i = 0
    while i < len(amble):
        if amble[i] == "\\":
            i += 2
            continue
        if amble[i] == ",":
            return True
        i += 1
    return False


def _expand_amble(amble: str, offset: int) -> Node:
    members: list[Node] = []
    start = i = 0
    while True:
        c, i = _gobble(amble, i, ",")
        members.append(expand_braces(amble[start:i], offset + start))
        if not c:
            break
        i += 1
        start = i
    return Union(tuple(members))


def _strtoimax(text: str) -> tuple[int | None, int]:
    """C's strtoimax base 10: (value or None on overflow, index after the digits; 0 if none)."""
    match = _LEADING_INT.match(text)
    if match is None:
        return 0, 0
    value = int(match.group())
    return (value if _INTMIN <= value <= _INTMAX else None), match.end()


def _sequence(amble: str) -> Node | None:
    """bash's expand_seqterm: `x..y[..incr]` of integers or single letters, else None."""
    dots = amble.find("..")
    if dots < 0:
        return None
    lhs, rhs = amble[:dots], amble[dots + 2 :]
    if not lhs or not rhs:
        return None
    if _NUMBER.match(lhs) and _INTMIN <= int(lhs) <= _INTMAX:
        lhs_chars = False
    elif lhs.isascii() and lhs.isalpha() and len(lhs) == 1:
        lhs_chars = True
    else:
        return None
    if rhs[0] in _DIGITS or (rhs[0] in "+-" and rhs[1:2] in _DIGITS and len(rhs) > 1):
        rhs_value, ep = _strtoimax(rhs)
        if rhs_value is None or (ep < len(rhs) and rhs[ep] != "."):
            return None
        rhs_chars = False
    elif rhs[0].isascii() and rhs[0].isalpha() and (len(rhs) == 1 or rhs[1] == "."):
        rhs_value, ep, rhs_chars = ord(rhs[0]), 1, True
    else:
        return None
    incr = 1
    number_end = ep
    if rhs[ep : ep + 2] == ".." and len(rhs) > ep + 2:
        step, used = _strtoimax(rhs[ep + 2 :])
        if step is None:
            return None
        incr, ep = step, ep + 2 + used
    if ep != len(rhs) or lhs_chars != rhs_chars:
        return None
    if lhs_chars:
        start, end, width = ord(lhs), rhs_value, 0
    else:
        start, end = int(lhs), rhs_value
        width = _width(lhs, rhs[:number_end])
    return _mkseq(start, end, incr, lhs_chars, width)


def _width(lhs: str, rhs: str) -> int:
    """bash pads every term to the longer side when either side starts with 0 (or -0)."""
    pad = 0
    for side in (lhs, rhs):
        if (len(side) > 1 and side[0] == "0") or (len(side) > 2 and side.startswith("-0")):
            pad = max(pad, len(side))
    if pad:
        pad = max(pad, len(lhs), len(rhs))
    return pad


def _mkseq(start: int, end: int, incr: int, chars: bool, width: int) -> Node | None:
    if incr == 0:
        incr = 1
    if start > end and incr > 0:
        incr = -incr
    elif start < end and incr < 0:
        incr = -incr
    if not (_INTMIN + 3 <= end - start <= _INTMAX - 2):
        return None
    if abs(end - start) // abs(incr) > _MAX_ELEMENTS:
        return None
    return Sequence_(start, end, incr, chars, width)
