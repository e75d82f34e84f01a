"""GNU parallel's argument lists (`CMD ::: a b ::: 1 2`), expanded to the lines `parallel --dry-run` writes.

Follows GNU parallel 20221122 (`CommandLine`, `replace_placeholders`,
`shell_quote_scalar_default`): the command's words are joined with spaces;
`:::` starts an input source of the words after it, `::::` one per file (its
lines); `:::+` and `::::+` link a source to the one before (element by element,
the shortest deciding the length); the sources combine as a product, the last
varying fastest. Replacement strings: `{}`, `{.}`, `{/}`, `{//}`, `{/.}` (every
argument, joined by spaces), their positional forms `{n}`, `{n.}`, ... (`n` from
1, or negative from the end; past the end: empty), and `{#}`, the line's
number. A command without one gets the arguments appended. Arguments are
shell-quoted as parallel quotes them, except when a replacement string is
part of the command's first word. `{%}` (a job slot, unknown before the run)
and `{= perl =}` are refused.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ARG_SEPARATORS", "ParallelError", "ParallelSweep", "parse_parallel", "quote"]

ARG_SEPARATORS = (":::", ":::+", "::::", "::::+")
# A position no command has that many arguments for.
_PAST_THE_END = 2**62
_SAFE = re.compile(r"[-_.+a-zA-Z0-9/]*\Z")


class ParallelError(ValueError):
    """A `:::` command that cannot be expanded; `argument` is the 1-based word it is about."""

    def __init__(self, message: str, argument: int | None = None) -> None:
        super().__init__(message)
        self.argument = argument


def quote(text: str) -> str:
    """GNU parallel's shell_quote_scalar_default."""
    if text == "":
        return "''"
    if _SAFE.match(text):
        return text
    quoted = "'" + text.replace("'", "'\"'\"'") + "'"
    quoted = quoted.removeprefix("''")
    return quoted.removesuffix("''") if quoted.endswith("''") and len(quoted) > 2 else quoted


def _strip_trailing_sep(path: str) -> str:
    return re.sub(r"(.)/*\Z", r"\1", path, count=1, flags=re.S)


def _fileparse(path: str) -> tuple[str, str]:
    match = re.match(r"(.*/)?(.*)", path, re.S)
    assert match is not None
    return match.group(2), match.group(1) or "./"


def _dirname(path: str) -> str:
    """Perl's File::Basename::dirname on Unix, which `{//}` uses."""
    base, directory = _fileparse(path)
    directory = _strip_trailing_sep(directory)
    if not base:
        base, directory = _fileparse(directory)
        directory = _strip_trailing_sep(directory)
    return directory


def _no_ext(text: str) -> str:
    return re.sub(r"\.[^/.]*\Z", "", text, count=1)


def _basename(text: str) -> str:
    return re.sub(r".*/", "", text, count=1)


_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "": lambda a: a,
    ".": _no_ext,
    "/": _basename,
    "//": _dirname,
    "/.": lambda a: _no_ext(_basename(a)),
}
# `{//}` before `{/}` and `{/.}`: parallel replaces long shorthands first.
_RPL = re.compile(r"\{(?:(-?\d+)\s*)?(//|/\.|/|\.|#|%|)\}")


@dataclass(frozen=True)
class _Slot:
    position: int | None  # None: every argument (and {#}); else 1-based, negative from the end
    kind: str  # "", ".", "/", "//", "/." or "#"


@dataclass(frozen=True)
class ParallelSweep:
    """A command template and its input sources, grouped into the axes of the product."""

    pieces: tuple[str | _Slot, ...]
    axes: tuple[tuple[tuple[str, ...], ...], ...]  # per axis, per element, the args of its linked sources
    quote_args: bool
    skeleton: str  # the command and its separators, without the values

    def count(self) -> int:
        return math.prod(len(axis) for axis in self.axes)

    def lines(self) -> Iterator[str]:
        return _lines(self)


def _lines(sweep: ParallelSweep) -> Iterator[str]:
    q = quote if sweep.quote_args else (lambda text: text)
    seq = 0
    for combination in _product(sweep.axes):
        seq += 1
        args = [arg for element in combination for arg in element]
        out: list[str] = []
        for piece in sweep.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif piece.kind == "#":
                out.append(str(seq))
            elif piece.position is None:
                out.append(" ".join(q(_TRANSFORMS[piece.kind](a)) for a in args))
            else:
                index = piece.position - 1 if piece.position > 0 else len(args) + piece.position
                out.append(q(_TRANSFORMS[piece.kind](args[index])) if 0 <= index < len(args) else "")
        yield "".join(out)


def _product(axes: Sequence[Sequence[tuple[str, ...]]]) -> Iterator[tuple[tuple[str, ...], ...]]:
    if not axes:
        yield ()
        return
    for prefix in _product(axes[:-1]):
        for element in axes[-1]:
            yield (*prefix, element)


def _template(command: str) -> tuple[tuple[str | _Slot, ...], bool]:
    """Split the joined command into text and replacement strings; append `{}` if it has none."""
    if "{=" in command:
        raise ParallelError("'{= perl expression =}' needs GNU parallel's Perl; batchrun supports {}, {.}, {/}, {//}, {/.}, {#} and {n}")
    pieces: list[str | _Slot] = []
    position = 0
    first_word_slot = False
    for match in _RPL.finditer(command):
        if match.group(2) == "%":
            raise ParallelError("'{%}' is a job slot, known only when the job starts: use $BATCHRUN_SLOT (counted from 0) in the command instead")
        if match.start() > position:
            pieces.append(command[position : match.start()])
        number = match.group(1)
        slot_position = int(number) if number is not None and int(number) != 0 else None
        if number is not None and number.startswith("-") and int(number) == 0:
            slot_position = _PAST_THE_END  # `{-0}`: parallel reads it as the argument after the last
        pieces.append(_Slot(slot_position, match.group(2)))
        if not re.search(r"[ \t\n=]", command[: match.start()]):
            first_word_slot = True
        position = match.end()
    if not any(isinstance(p, _Slot) for p in pieces):
        return (command, " ", _Slot(None, "")), True
    if position < len(command):
        pieces.append(command[position:])
    return tuple(pieces), not first_word_slot


def _read_source(name: str, argument: int) -> tuple[str, ...]:
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as err:
        raise ParallelError(f"'::::' cannot read {name!r}: {err.strerror or err}", argument) from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParallelError(f"'::::' file {name!r} is not UTF-8 text", argument) from err
    records = text.split("\n")
    if records and records[-1] == "":
        records.pop()  # the newline that ends the last line
    return tuple(records)


def parse_parallel(words: Sequence[str]) -> ParallelSweep:
    """Read `CMD... ::: args ... ::::+ file ...` as parallel does.

    Raises:
        ParallelError: no command before the first separator, a separator with
            nothing after it, an unreadable `::::` file, `{%}` or `{= =}`.
    """
    first = next(i for i, w in enumerate(words) if w in ARG_SEPARATORS)
    if first == 0:
        raise ParallelError(f"'{words[0]}' with no command before it (write the command first: CMD ::: a b)", 1)
    sources: list[tuple[bool, tuple[str, ...]]] = []  # (linked to the previous, args)
    separators: list[str] = []
    i = first
    while i < len(words):
        separator = words[i]
        j = i + 1
        while j < len(words) and words[j] not in ARG_SEPARATORS:
            j += 1
        given = words[i + 1 : j]
        if not given:
            raise ParallelError(f"'{separator}' with no {'file' if separator.startswith('::::') else 'values'} after it", i + 1)
        linked = separator.endswith("+")
        separators.append(separator if not separator.startswith("::::") else " ".join([separator] * len(given)))
        if separator.startswith("::::"):
            for k, name in enumerate(given):
                args = _read_source(name, i + 2 + k)
                sources.append((linked, args))  # `::::+ f g`: each file linked
        else:
            sources.append((linked, tuple(given)))
        i = j
    for position, (_, args) in enumerate(sources):
        for arg in args:
            if any(c in arg for c in "\n\r\x00"):
                raise ParallelError(f"input source {position + 1}: the value {arg!r} holds a line break or NUL, which a runfile line cannot hold")
    axes: list[list[tuple[str, ...]]] = []
    for linked, args in sources:
        if linked and axes:
            axes[-1] = [(*element, arg) for element, arg in zip(axes[-1], args, strict=False)]
        else:
            axes.append([(arg,) for arg in args])
    command = " ".join(words[:first])
    pieces, quote_args = _template(command)
    return ParallelSweep(pieces, tuple(tuple(axis) for axis in axes), quote_args, " ".join([command, *separators]))
