"""Runfile bytes -> a `JobTable`: the lines, their commands, ids and line numbers, their directives, and the repeated commands.

Parsing runs in C-level passes (`map`, `accumulate`, `compress` over a block
of lines) wherever a block is plain ASCII with no whitespace to strip and no
directive (`# batchrun: gpus=2`), which is most runfiles; other blocks are
parsed line by line, with the same result.
A million lines parse in about a second, where a Python loop per line took three.

This module is pure: no I/O, no printing.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate, compress, repeat
from operator import add, methodcaller

from batchrun.resources import directive_request
from batchrun.runfile.idindex import groups_of, ids_from_digests
from batchrun.runfile.jobtable import SMALL_MAX, JobTable
from batchrun.runfile.packed import PackedBytes, packed_if_long

__all__ = ["DirectiveError", "parse_blocks", "parse_commands"]

# Bytes at a stripped line's ends that need the str path: `str.strip` also
# strips the ASCII separators \x1c-\x1f and non-ASCII spaces (NBSP, U+3000...),
# which `bytes.strip` leaves.
_SLOW_END = frozenset(range(0x1C, 0x20)) | frozenset(range(0x80, 0x100))
# Lines are split a block of about this many bytes at a time, so a big
# runfile never exists as a list of one bytes object per line.
_BLOCK = 1 << 20


class DirectiveError(ValueError):
    """Raised by `parse_commands` for a directive line it cannot read; carries the line number."""

    def __init__(self, message: str, lineno: int) -> None:
        super().__init__(message)
        self.lineno = lineno


def _blocks(data: bytes | PackedBytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of `data[start:]` in blocks of whole lines, about `_BLOCK` bytes each.

    Splitting each block at `\n` gives `data[start:].split(b"\n")`, a block at a time.
    """
    pos = start
    while True:
        cut = data.find(b"\n", pos + _BLOCK)
        if cut < 0:
            yield pos, data[pos:]
            return
        yield pos, data[pos:cut]
        pos = cut + 1


def _plain(block: bytes) -> bool:
    """Whether every line of a block is its own command or blank: ASCII, no whitespace but
    inner spaces, so `str.strip` leaves each line as it is, and no line names batchrun
    (a directive, read line by line): its lines are parsed in C."""
    if not block.isascii() or block[:1] == b" " or block[-1:] == b" " or b"batchrun:" in block:
        return False
    return not any(c in block for c in _NOT_PLAIN)


# What makes a line's command differ from the line, in a block of ASCII.
_NOT_PLAIN = (b" \n", b"\n ", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f", b"\r")
_DIGEST = methodcaller("digest")


def _parse_plain(table: JobTable, offset: int, block: bytes, lineno: int) -> int:
    """Add the jobs of a plain block (see `_plain`) in C-level passes; the number of lines it had."""
    raw = block.split(b"\n")
    code = table._starts.typecode
    lens = array(code, map(len, raw))
    # Where each line starts in the whole runfile: its offset plus the lines before it and their newlines.
    starts = array(code, accumulate(map(add, lens, repeat(1)), initial=offset))
    starts.pop()
    numbers: Iterable[int] = range(lineno + 1, lineno + 1 + len(raw))
    commands: Iterable[bytes] = raw
    keep = None
    if 0 in lens:
        keep = bytearray(map(bool, lens))
    if block[:1] == b"#" or b"\n#" in block:
        keep = keep if keep is not None else bytearray(b"\x01") * len(raw)
        for line in _comment_lines(block):
            keep[line] = 0
    if keep is not None:
        commands = list(compress(raw, keep))
        lens = array(code, compress(lens, keep))
        starts = array(code, compress(starts, keep))
        numbers = compress(numbers, keep)
    table._starts.extend(starts)
    table._ends.extend(map(add, starts, lens))
    table._lines.extend(numbers)
    # Whole digests end to end, then every fourth 8-byte word: no slice per line.
    table._keys.extend_digests(ids_from_digests(b"".join(map(_DIGEST, map(hashlib.sha256, commands))), stride=4))
    return len(raw)


def _comment_lines(block: bytes) -> Iterator[int]:
    """The numbers (from 0) of the block's lines that start with `#`."""
    line = 0
    pos = 0  # the start of line `line`
    if block[:1] == b"#":
        yield 0
    while (found := block.find(b"\n#", pos)) >= 0:
        line += block.count(b"\n", pos, found + 1)
        pos = found + 1
        yield line


def _parse_lines(table: JobTable, offset: int, block: bytes, lineno: int) -> int:
    """Add the jobs of any block, line by line; the number of lines it had."""
    starts, ends, lines = table._starts, table._ends, table._lines
    keys = table._keys
    sha256, from_bytes, slow = hashlib.sha256, int.from_bytes, _SLOW_END
    pos = offset  # where `raw` starts in the runfile
    raw_lines = block.split(b"\n")
    for raw in raw_lines:
        lineno += 1
        line_start, pos = pos, pos + len(raw) + 1
        command = raw.strip()
        if not command:
            continue
        if command[0] in slow or command[-1] in slow:
            text = raw.decode()
            stripped = text.strip()
            if not stripped:
                continue
            command = stripped.encode()
            line_start += len(text[: len(text) - len(text.lstrip())].encode())
        else:
            line_start += raw.index(command[0])
        if command[0] == 0x23:  # '#'
            if b"batchrun:" in command:
                _directive(table, command, lineno)
            continue
        starts.append(line_start)
        ends.append(line_start + len(command))
        keys.append_digest(from_bytes(sha256(command).digest()[:8], "big"))
        lines.append(lineno)
    return len(raw_lines)


def _directive(table: JobTable, line: bytes, lineno: int) -> None:
    """A `#` line naming batchrun: if it is a directive, the jobs after it ask for its request."""
    try:
        request = directive_request(line.decode())
    except ValueError as err:
        raise DirectiveError(str(err), lineno) from None
    if request is not None:
        table.requests.note(len(table), request)


def parse_commands(data: bytes | PackedBytes, first_line: int = 1, start: int = 0) -> tuple[JobTable, list[tuple[str, int, int]]]:
    """The jobs of runfile bytes and its repeated commands (command, first line, repeated line).

    `data` is valid UTF-8 without a byte order mark, its lines ended by
    `\n` only. A line's command is the line with `str.strip`'s whitespace
    removed at both ends; blank and `#` lines are no job; a command seen
    before is no second job. A directive line (`# batchrun: gpus=2`) sets the
    request of the jobs after it (`table.requests`). `first_line`: the line
    number of data's first line (the new lines of a runfile that grew).
    `start`: parse only `data[start:]` (just after a newline), whose first
    line is `first_line`; the jobs' places still count from data's start and
    the table's bytes are `data` itself: a relaunch parses a changed part
    without a copy of it (`jobtable.extend_table` adds it to the kept jobs).

    Raises:
        DirectiveError: a directive line that is no request.
    """
    return parse_blocks(_blocks(data, start), len(data), lambda: packed_if_long(data), first_line)


def parse_blocks(blocks: Iterable[tuple[int, bytes]], size: int, blob: Callable[[], bytes | bytearray | PackedBytes], first_line: int = 1) -> tuple[JobTable, list[tuple[str, int, int]]]:
    """`parse_commands` of bytes given a block at a time: (offset, bytes) between the newlines
    `_blocks` cuts at, at most `size` bytes in all; `blob()`, asked after the last, gives them whole."""
    table = JobTable()
    if size + first_line >= SMALL_MAX:
        table._widen()
    lineno = first_line - 1
    for offset, block in blocks:
        parse = _parse_plain if _plain(block) else _parse_lines
        lineno += parse(table, offset, block, lineno)
    table._blob = blob()
    return table, _drop_duplicates(table)


def _drop_duplicates(table: JobTable) -> list[tuple[str, int, int]]:
    """Remove repeated commands from `table`; what was removed, in line order."""
    keys = table._keys
    groups = groups_of(keys)
    table._ids_unique = not groups
    if not groups:
        return []
    ids = keys.digests
    repeated: list[tuple[int, int]] = []  # (repeated index, first index)
    for members in groups:
        first_of: dict[tuple[int, bytes], int] = {}
        for i in sorted(members):
            text = (ids[i], table._command_bytes(i))
            if text in first_of:
                repeated.append((i, first_of[text]))
            else:
                first_of[text] = i
    drop = {i for i, _first in repeated}
    table._ids_unique = all(len({ids[i] for i in group if i not in drop}) == len([i for i in group if i not in drop]) for group in groups)
    if not repeated:
        return []
    repeated.sort()
    lines = table._lines
    duplicates = [(table._command_bytes(i).decode(), lines[first], lines[i]) for i, first in repeated]
    unique = table._ids_unique
    table._keep([i for i in range(len(table)) if i not in drop])
    table._ids_unique = unique
    return duplicates
