"""Hydra's command-line override grammar (hydra-core 1.3), parsed without ANTLR.

A port of `OverrideLexer.g4` / `OverrideParser.g4` and of the visitor in
`hydra/core/override_parser/overrides_visitor.py`: the lexer takes the longest
token (the first rule on a tie), the parser is recursive descent over the same
rules, and values come out as Hydra builds them (`QuotedString`, int, float,
bool, None, str, lists, dicts, and the sweeps `ChoiceSweep` and `RangeSweep`).
The functions are Hydra's (`hydra/_internal/grammar/grammar_functions.py`);
`interval()` and `glob()` are parsed and then refused by the caller, since
the first needs a sampler and the second the app's config groups. Hydra's own
parser is the reference: `tests/data/notation/` holds its answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from batchrun.sweeps.notation.hydra_functions import call
from batchrun.sweeps.notation.hydra_values import ChoiceSweep, HydraSyntaxError, IntervalSweep, QuotedString, RangeSweep, Special

__all__ = ["Override", "parse_override"]


@dataclass(frozen=True)
class Override:
    """One parsed override: its prefix (`~`, `+`, `++` or none), key, and value (None when `~key`)."""

    prefix: str
    key: str  # key_or_group, with `@package` when given
    value: Any
    has_value: bool

    @property
    def key_element(self) -> str:
        return f"{self.prefix}{self.key}"

    @property
    def is_sweep(self) -> bool:
        return isinstance(self.value, (ChoiceSweep, RangeSweep, IntervalSweep, Special))


# ------------------------------------------------------------------ the key (DEFAULT_MODE)

_KEY_SPECIAL = r"[A-Za-z_$][A-Za-z0-9_$-]*"
_INT_UNSIGNED = r"(?:0|[1-9](?:_?[0-9])*)"
_SEGMENT = rf"(?:{_KEY_SPECIAL}|{_INT_UNSIGNED})"
_PACKAGE = rf"(?:{_SEGMENT}(?:\.{_SEGMENT})+|{_KEY_SPECIAL})?"
_ID = r"[A-Za-z_][A-Za-z0-9_-]*"
_KEY = re.compile(rf"(~|\+\+|\+)?({_ID}(?:/{_ID})+|{_PACKAGE})(?:@({_PACKAGE}))?(?:=[ \t]*(.*))?\Z", re.S)

# ------------------------------------------------------------------ the value (VALUE_MODE)

_WS = r"[ \t]"
# The alternative that can match more comes first: Python takes the first that matches.
_POINT_FLOAT = r"(?:(?:0|[1-9](?:_?[0-9])*)?\.[0-9](?:_?[0-9])*|(?:0|[1-9](?:_?[0-9])*)\.)"
_EXPONENT_FLOAT = rf"(?:(?:{_POINT_FLOAT}|0|[1-9](?:_?[0-9])*)[eE][+-]?[0-9](?:_?[0-9])*)"
# (name, pattern), in the lexer's order: on equal lengths the first wins.
_TOKENS = [
    ("POPEN", rf"{_WS}*\({_WS}*"),
    ("COMMA", rf"{_WS}*,{_WS}*"),
    ("PCLOSE", rf"{_WS}*\)"),
    ("BRACKET_OPEN", rf"\[{_WS}*"),
    ("BRACKET_CLOSE", rf"{_WS}*\]"),
    ("BRACE_OPEN", rf"\{{{_WS}*"),
    ("BRACE_CLOSE", rf"{_WS}*\}}"),
    ("COLON", rf"{_WS}*:{_WS}*"),
    ("EQUAL", rf"{_WS}*={_WS}*"),
    ("FLOAT", rf"[+-]?(?:{_EXPONENT_FLOAT}|{_POINT_FLOAT}|[Ii][Nn][Ff]|[Nn][Aa][Nn])"),
    ("INT", rf"[+-]?{_INT_UNSIGNED}"),
    ("BOOL", r"[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]"),
    ("NULL", r"[Nn][Uu][Ll][Ll]"),
    ("UNQUOTED_CHAR", r"[/\-\\+.$%*@?|]"),
    ("ID", _ID),
    ("ESC", r"(?:\\\\|\\\(|\\\)|\\\[|\\\]|\\\{|\\\}|\\:|\\=|\\,|\\ |\\\t)+"),
    ("WS", rf"{_WS}+"),
    ("QUOTED_VALUE", r"\"(?:(?:\\\\)*|.*?[^\\](?:\\\\)*)\"|'(?:(?:\\\\)*|.*?[^\\](?:\\\\)*)'"),
    ("INTERPOLATION", r"\$\{[^}]+\}"),
]
_COMPILED = [(name, re.compile(pattern, re.S)) for name, pattern in _TOKENS]
_PRIMITIVE = {"ID", "NULL", "INT", "FLOAT", "BOOL", "INTERPOLATION", "UNQUOTED_CHAR", "COLON", "ESC", "WS"}
_DICT_KEY = _PRIMITIVE - {"COLON", "INTERPOLATION"}


def _lex(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        best: tuple[str, str] | None = None
        for name, pattern in _COMPILED:
            match = pattern.match(text, i)
            if match and match.end() > i and (best is None or match.end() - i > len(best[1])):
                best = (name, match.group())
        if best is None:
            raise HydraSyntaxError(f"no token can start at {text[i:i + 10]!r} (column {i + 1})")
        tokens.append(best)
        i += len(best[1])
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.tokens[j][0] if j < len(self.tokens) else "EOF"

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            found = self.tokens[self.i][1] if self.i < len(self.tokens) else "the end"
            raise HydraSyntaxError(f"expected {kind.lower().replace('_', ' ')} at {found!r}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def value(self) -> Any:
        first = self.element()
        if self.peek() != "COMMA":
            return first
        items = [first]
        while self.peek() == "COMMA":
            self.take("COMMA")
            items.append(self.element())
        return ChoiceSweep(items, simple_form=True)

    def element(self) -> Any:
        kind = self.peek()
        if kind == "ID" and self.peek(1) == "POPEN":
            return self.function()
        if kind == "BRACKET_OPEN":
            self.take("BRACKET_OPEN")
            items = []
            if self.peek() != "BRACKET_CLOSE":
                items.append(self.element())
                while self.peek() == "COMMA":
                    self.take("COMMA")
                    items.append(self.element())
            self.take("BRACKET_CLOSE")
            return items
        if kind == "BRACE_OPEN":
            self.take("BRACE_OPEN")
            pairs: dict[Any, Any] = {}
            if self.peek() != "BRACE_CLOSE":
                while True:
                    key = self.primitive(_DICT_KEY)
                    self.take("COLON")
                    pairs[key] = self.element()
                    if self.peek() != "COMMA":
                        break
                    self.take("COMMA")
            self.take("BRACE_CLOSE")
            return pairs
        return self.primitive(_PRIMITIVE)

    def primitive(self, allowed: set[str]) -> Any:
        if self.peek() == "QUOTED_VALUE" and allowed is _PRIMITIVE:
            text = self.take("QUOTED_VALUE")
            return QuotedString(_unescape_quoted(text), text[0])
        start = self.i
        while self.peek() in allowed:
            self.i += 1
        parts = self.tokens[start : self.i]
        if not parts:
            found = self.tokens[self.i][1] if self.i < len(self.tokens) else "the end"
            raise HydraSyntaxError(f"expected a value at {found!r}")
        return _primitive_value(parts)

    def function(self) -> Any:
        name = self.take("ID")
        self.take("POPEN")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        while self.peek() != "PCLOSE":
            if args or kwargs:
                self.take("COMMA")
            if self.peek() == "ID" and self.peek(1) == "EQUAL":
                arg_name = self.take("ID")
                self.take("EQUAL")
                kwargs[arg_name] = self.element()
            else:
                if kwargs:
                    raise HydraSyntaxError("positional argument follows keyword argument")
                args.append(self.element())
        self.take("PCLOSE")
        return call(name, args, kwargs)


def _primitive_value(parts: list[tuple[str, str]]) -> Any:
    """Hydra's _createPrimitive: outer blanks dropped; several tokens make text, one keeps its type."""
    if parts[0][0] == "WS" and len(parts) == 1:
        raise HydraSyntaxError("trying to parse a primitive that is all whitespaces")
    first = 1 if parts[0][0] == "WS" else 0
    last = len(parts) - 1 if parts[-1][0] == "WS" else len(parts)
    inner = parts[first:last]
    if len(inner) > 1:
        return "".join(text[1::2] if kind == "ESC" else text for kind, text in inner)
    kind, text = inner[0]
    if kind in ("ID", "INTERPOLATION"):
        return text
    if kind == "INT":
        return int(text)
    if kind == "FLOAT":
        return float(text)
    if kind == "NULL":
        return None
    if kind == "BOOL":
        return text.lower() == "true"
    if kind == "ESC":
        return text[1::2]
    return text


_ESC_QUOTED = {"'": re.compile(r"(\\)+'"), '"': re.compile(r'(\\)+"')}


def _unescape_quoted(text: str) -> str:
    """Hydra's _unescape_quoted_string: a backslash before a quote is taken off."""
    quote = text[0]
    text = text[1:]
    pattern = _ESC_QUOTED[quote]
    match = pattern.search(text)
    if match is None:
        return text[:-1]
    tokens = []
    while match is not None:
        start, stop = match.span()
        tokens.append(text[:start])
        tokens.append(text[start + 1 : stop : 2])
        text = text[stop:]
        match = pattern.search(text)
    if len(text) > 1:
        tokens.append(text[:-1])
    return "".join(tokens)


def parse_override(text: str) -> Override:
    """Parse one command-line override as Hydra's OverridesParser.parse_override does.

    Raises:
        HydraSyntaxError: not an override, or a function refused its arguments.
    """
    match = _KEY.match(text)
    if match is None:
        raise HydraSyntaxError("not a Hydra override (key=value, +key=value, ++key=value or ~key)")
    prefix, key, package, value_text = match.groups()
    prefix = prefix or ""
    if package is not None:
        key = f"{key}@{package}"
    if value_text is None:
        if prefix != "~":
            raise HydraSyntaxError("missing '=value'")
        return Override(prefix, key, None, False)
    if value_text == "":
        return Override(prefix, key, "", True)
    parser = _Parser(_lex(value_text))
    value = parser.value()
    if parser.peek() != "EOF":
        raise HydraSyntaxError(f"unexpected {parser.tokens[parser.i][1]!r}")
    return Override(prefix, key, value, True)
