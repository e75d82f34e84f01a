"""Runfile bytes -> a `JobTable`: the lines, their commands, ids and line numbers, their directives, and the repeated commands.

This module is pure: no I/O, no printing.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator

from batchrun.resources import directive_request
from batchrun.runfile.jobtable import JobTable

__all__ = ["DirectiveError", "parse_commands"]

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


def _split_lines(data: bytes) -> Iterator[bytes]:
    """`data.split(b"\\n")`, a block at a time."""
    pos = 0
    while True:
        cut = data.find(b"\n", pos + _BLOCK)
        if cut < 0:
            yield from data[pos:].split(b"\n")
            return
        yield from data[pos:cut].split(b"\n")
        pos = cut + 1


def parse_commands(data: bytes) -> tuple[JobTable, list[tuple[str, int, int]]]:
    """The jobs of runfile bytes and its repeated commands (command, first line, repeated line).

    `data` is valid UTF-8 without a byte order mark, its lines ended by
    `\\n` only. A line's command is the line with `str.strip`'s whitespace
    removed at both ends; blank and `#` lines are no job; a command seen
    before is no second job. A directive line (`# batchrun: gpus=2`) sets the
    request of the jobs after it (`table.requests`).

    Raises:
        DirectiveError: a directive line that is no request.
    """
    table = JobTable()
    table._blob = data
    starts, ends, ids, lines = table._starts, table._ends, table._ids, table._lines
    sha256, from_bytes, slow = hashlib.sha256, int.from_bytes, _SLOW_END
    lineno = 0
    pos = 0  # where `raw` starts in `data`
    for raw in _split_lines(data):
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
        ids.append(from_bytes(sha256(command).digest()[:8], "big"))
        lines.append(lineno)
    duplicates = _drop_duplicates(table)
    return table, duplicates


def _directive(table: JobTable, line: bytes, lineno: int) -> None:
    """A `#` line naming batchrun: if it is a directive, the jobs after it ask for its request."""
    try:
        request = directive_request(line.decode())
    except ValueError as err:
        raise DirectiveError(str(err), lineno) from None
    if request is not None:
        table.requests.note(len(table._ids), request)


def _drop_duplicates(table: JobTable) -> list[tuple[str, int, int]]:
    """Remove repeated commands from `table`; what was removed, in line order."""
    groups = table._high_groups()
    table._ids_unique = not groups
    if not groups:
        return []
    ids = table._ids
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
    kept = JobTable()
    kept._blob = table._blob
    for name in ("_starts", "_ends", "_ids", "_lines"):
        column = getattr(table, name)
        setattr(kept, name, array(column.typecode, (v for i, v in enumerate(column) if i not in drop)))
    table._starts, table._ends, table._ids, table._lines = kept._starts, kept._ends, kept._ids, kept._lines
    table._index, table._tail = None, {}
    table.requests.drop(drop)
    return duplicates
