"""A command line with a sweep in it -> its lines: which notation, how many lines, the lines streamed.

One notation per command: GNU parallel's when a word is `:::`, `:::+`, `::::`
or `::::+`; Hydra's when the app's `-m`/`--multirun` is there; bash braces
otherwise (a command without braces is one line). A command given as one
word is shell text; given as several words, parallel's and bash's are joined
with spaces, as parallel joins them, while Hydra's are taken as the words the
app receives and quoted where the shell needs it.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from batchrun.errors import UsageError
from batchrun.sweeps._common import UNWRITABLE
from batchrun.sweeps.notation.braces import Literal, Node, UnclosedBraceError, expand_braces, lazy_product
from batchrun.sweeps.notation.hydra import HydraError, multirun_flag, parse_hydra, quote_word
from batchrun.sweeps.notation.parallel import ARG_SEPARATORS, ParallelError, parse_parallel
from batchrun.sweeps.notation.shell import UnbalancedError, Word, split_words, unquote

__all__ = ["Expansion", "NotationError", "default_name", "expand_command"]

_SCRIPT = re.compile(r".+\.(?:py|sh|bash|zsh|r|R|jl|js|mjs|ts|pl|rb|lua|m|exe)\Z")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.+-]+")
_NAME_LIMIT = 40


class NotationError(UsageError):
    """A command line whose sweep notation is malformed: names the argument and the place."""


@dataclass(frozen=True)
class Expansion:
    """The lines a command gives: counted without generating them, streamed on demand."""

    notation: str  # "braces", "parallel", "hydra", or "none" (one line)
    total: int
    make_lines: Callable[[], Iterator[str]]
    # The command with each sweep's values left out: widening a sweep keeps it, another command changes it.
    skeleton: str

    def count(self) -> int:
        return self.total

    def lines(self) -> Iterator[str]:
        """Yield each line (stripped, as a runfile holds it), in order.

        Raises:
            NotationError: a line would be empty or a `#` comment.
        """
        for number, line in enumerate(self.make_lines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                what = "an empty line" if not line else f"a line starting with '#' ({line[:40]!r}), which a runfile reads as a comment"
                raise NotationError(f"the expansion's line {number} is {what}")
            yield line


@dataclass(frozen=True)
class _Slot:
    index: int  # the word's index among the command's words
    node: Node


def _where(words: Sequence[str], word: int, column: int | None = None) -> str:
    at = f" at column {column + 1}" if column is not None else ""
    return f"in {words[word]!r} (argument {word + 1} of the command{at})" if len(words) > 1 else f"in the command{at}"


def _locate(words: Sequence[str], offset: int) -> tuple[int, int]:
    """Word index and column of an offset in the words joined by spaces."""
    for i, word in enumerate(words):
        if offset <= len(word):
            return i, offset
        offset -= len(word) + 1
    return len(words) - 1, len(words[-1])


def _check_writable(words: Sequence[str]) -> None:
    for i, word in enumerate(words):
        bad = UNWRITABLE.search(word)
        if bad:
            raise NotationError(f"{_where(words, i, bad.start())}: a line break, NUL or undecodable byte, which a runfile line cannot hold")


def _split(words: Sequence[str], text: str) -> list[Word]:
    try:
        return split_words(text)
    except UnbalancedError as err:
        i, column = _locate(words, err.position) if len(words) > 1 else (0, err.position)
        raise NotationError(f"{err.what} {_where(words, i, column)}") from err


def expand_command(words: Sequence[str]) -> Expansion:
    """Pick the command's notation and expand it.

    Raises:
        NotationError: no command, or a malformed notation (one line naming the argument and the place).
    """
    if not words or not "".join(words).strip():
        raise NotationError("no command given: batchrun run [OPTIONS] COMMAND (quote a brace or Hydra sweep so the shell leaves it alone)")
    _check_writable(words)
    if any(w in ARG_SEPARATORS for w in words):
        try:
            sweep = parse_parallel(words)
        except ParallelError as err:
            at = f" (argument {err.argument} of the command)" if err.argument else ""
            raise NotationError(f"{err}{at}") from err
        return Expansion("parallel", sweep.count(), sweep.lines, sweep.skeleton)
    if len(words) == 1:
        text = words[0]
        spans = _split(words, text)
        values = [unquote(w.text) for w in spans]
    else:
        values = list(words)
        spans = []
    flag = multirun_flag(values)
    if flag is not None:
        return _hydra(words, text if len(words) == 1 else None, spans, values, flag)
    return _braces(words)


def _hydra(words: Sequence[str], text: str | None, spans: list[Word], values: list[str], flag: int) -> Expansion:
    try:
        sweeps, dropped = parse_hydra(values, flag)
    except HydraError as err:
        raise NotationError(f"{err} ({_hydra_where(words, err.word)})") from err
    if text is None:  # the app's own words: each quoted where sh needs it
        parts = [piece for value in values for piece in (" ", quote_word(value))]
        parts[0] = ""
        parts.append("")
        word_part = {i: 2 * i + 1 for i in range(len(values))}
    else:
        parts, word_part = _text_parts(text, spans)
    for i in dropped:
        parts[word_part[i]] = ""
    slots = [_Slot(word_part[i], _Texts([quote_word(t) for t in texts])) for i, texts in sweeps]
    markers = {word_part[i]: values[i].partition("=")[0] + "=…" for i, _ in sweeps}
    return _template_expansion("hydra", parts, slots, markers)


def _hydra_where(words: Sequence[str], index: int) -> str:
    return f"argument {index + 1} of the command" if len(words) > 1 else f"word {index + 1} of the command"


def _text_parts(text: str, spans: list[Word]) -> tuple[list[str], dict[int, int]]:
    """The text cut into [between, word, between, word, ..., after]; word i at parts[word_part[i]]."""
    parts: list[str] = []
    word_part: dict[int, int] = {}
    position = 0
    for i, word in enumerate(spans):
        parts.append(text[position : word.start])
        word_part[i] = len(parts)
        parts.append(word.text)
        position = word.end
    parts.append(text[position:])
    return parts, word_part


def _braces(words: Sequence[str]) -> Expansion:
    text = " ".join(words)
    spans = _split(words, text)
    parts, word_part = _text_parts(text, spans)
    slots: list[_Slot] = []
    for i, word in enumerate(spans):
        if word.assignment:
            continue  # bash expands no braces in VAR=value before the command
        try:
            node = expand_braces(word.text)
        except UnclosedBraceError as err:
            index, column = _locate(words, word.start + err.position) if len(words) > 1 else (0, word.start + err.position)
            raise NotationError(f"unclosed brace {_where(words, index, column)}: a '{{' with ',' or '..' after it needs its '}}' "
                                "(quote it, or write \\{, to keep it as text)") from err
        if not isinstance(node, Literal):
            slots.append(_Slot(word_part[i], node))
    markers = {slot.index: slot.node.shape() for slot in slots}
    return _template_expansion("braces" if slots else "none", parts, slots, markers)


class _Texts(Node):
    """Alternatives given as a list."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def count(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)


def _template_expansion(notation: str, parts: list[str], slots: list[_Slot], markers: dict[int, str]) -> Expansion:
    total = math.prod(slot.node.count() for slot in slots)
    skeleton = _join([markers.get(k, part) for k, part in enumerate(parts)]).strip()
    if not slots:
        line = _join(parts)
        return Expansion(notation, 1, lambda: iter((line,)), skeleton)
    positions = [slot.index for slot in slots]

    def lines() -> Iterator[str]:
        current = list(parts)
        for choice in lazy_product([slot.node for slot in slots]):
            for position, alternative in zip(positions, choice, strict=True):
                current[position] = alternative
            yield _join(current)

    return Expansion(notation, total, lines, skeleton)


def _join(parts: list[str]) -> str:
    """Join [between, word, between, ...], dropping an empty word with the blank before it."""
    out: list[str] = [parts[0]]
    for k in range(1, len(parts) - 1, 2):
        word, after = parts[k], parts[k + 1]
        if word == "":
            if out[-1].endswith((" ", "\t")) and after[:1] in (" ", "\t", ""):
                out[-1] = out[-1].rstrip(" \t") if after[:1] == "" else out[-1][:-1]
            out.append(after)
        else:
            out.append(word)
            out.append(after)
    return "".join(out)


def default_name(words: Sequence[str]) -> str:
    """A runs name from the command's program (`python train.py --lr={1,2}` -> `train`).

    It leaves out every value, so widening a sweep keeps the name and its records.
    """
    words = list(words)
    separator = next((i for i, w in enumerate(words) if w in ARG_SEPARATORS), None)
    if separator is not None:  # parallel's command: its words joined, as parallel joins them
        text = " ".join(words[:separator])
    else:
        text = words[0] if len(words) == 1 else shlex.join(words)
    values: Iterable[str]
    try:
        values = [unquote(w.text) for w in split_words(text) if not w.assignment]
    except (UnbalancedError, IndexError, ValueError):
        values = text.split()
    usable = [v for v in values if not any(c in v for c in "{}$`")]
    name = ""
    for k, value in enumerate(usable):
        if value == "-m" and k > 0 and k + 1 < len(usable):
            name = usable[k + 1].rsplit(".", 1)[-1]  # python -m pkg.module
            break
        if value.startswith("-") or "=" in value:
            continue
        if _SCRIPT.match(value) or "/" in value:
            name = PurePosixPath(value).stem if _SCRIPT.match(value) else PurePosixPath(value).name
            break
    if not name and usable:
        name = PurePosixPath(usable[0]).name
    name = _NAME_CHARS.sub("-", name).strip("-.")[:_NAME_LIMIT].strip("-.")
    return name or "run"
