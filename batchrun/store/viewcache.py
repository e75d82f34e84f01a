"""Reusing metadata.json's unchanged lines when a relaunch rebuilds it.

Rendering an entry (`build_entry` plus `json.dumps`) and decoding the old
file cost most of a relaunch after a small change: 100,000 entries are
decoded and encoded again to update 100. When metadata.json is still the file
the last launch finished with (its stamp matches, see `batchrun.store.stamp`), each
of its lines is the rendering of its job's record as the journal stood at the
stamp's journal size; a job no journal line names since then still has that
record, so its old line can be kept as bytes, never decoded.

The journal mark (`.metadata.journal-mark`, written beside the stamp) says
that the journal's first `size` bytes are still those the stamp saw: a
digest of the bytes just before that offset. A journal rewritten since (a
compaction, a rebuild by a repair) no longer matches, and the view is
rebuilt whole. Like the stamp, the mark is only an optimisation: any file
that is missing, unreadable, of another version or garbage simply does not
match. Nothing here raises.

Mark format (one ASCII line): `1 <journal size> <blake2b-128 of the up to 4,096 bytes before it>`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["MARK_NAME", "journal_ids_since", "read_mark", "read_rendered_lines", "write_mark"]

MARK_NAME = ".metadata.journal-mark"
_VERSION = "1"
# How much of the journal before the mark's offset its digest covers: enough
# that a rewritten journal of the same size or longer does not match by chance.
_TAIL_BYTES = 4096
_MAX_BYTES = 256
# A rendered line of `store.metadata.MetadataView`: `  "<16 hex digits>": {...}`.
_HEX = frozenset("0123456789abcdef")


def _tail_digest(fd: int, size: int) -> str | None:
    """The digest of the up to 4,096 bytes before `size`; leaves the offset at `size`."""
    start = max(0, size - _TAIL_BYTES)
    try:
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, size - start)
    except OSError:
        return None
    if len(data) != size - start:
        return None
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def write_mark(runs_dir: Path, journal_path: Path) -> None:
    """Record the journal's size and the digest of its end; a failure only costs a rebuild."""
    try:
        fd = os.open(journal_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        size = os.fstat(fd).st_size
        digest = _tail_digest(fd, size)
    except OSError:
        return
    finally:
        os.close(fd)
    if digest is None:
        return
    try:
        (runs_dir / MARK_NAME).write_text(f"{_VERSION} {size} {digest}\n", encoding="ascii")
    except (OSError, UnicodeError):
        pass


def read_mark(runs_dir: Path) -> tuple[int, str] | None:
    """The (journal size, digest) of the mark; None when absent or damaged in any way."""
    try:
        with open(runs_dir / MARK_NAME, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_BYTES or not data.endswith(b"\n") or not data.isascii():
        return None
    parts = data[:-1].decode("ascii").split(" ")
    if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit() or len(parts[2]) != 32:
        return None
    return int(parts[1]), parts[2]


def journal_ids_since(journal_path: Path, mark: tuple[int, str]) -> set[str] | None:
    """Job ids named by the journal's lines after the mark's offset.

    None when the journal's first bytes are no longer those the mark saw
    (shorter, rewritten, unreadable): then nothing of the old view is reused.
    """
    size, digest = mark
    try:
        fd = os.open(journal_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < size or _tail_digest(fd, size) != digest:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    ids: set[str] = set()
    for line in b"".join(chunks).split(b"\n"):
        parts = line.split(b" ", 2)
        if len(parts) >= 2:
            # Even a torn or odd line names its job as best it can: a job
            # named wrongly is only rendered again, never wrongly kept.
            ids.add(parts[1].decode("ascii", "replace"))
        elif line:
            return None
    return ids


def read_rendered_lines(path: Path) -> dict[str, str] | None:
    """metadata.json's entries as their rendered lines (`  "<id>": {...}`), by job id.

    Only the file batchrun writes, one entry per line, is read this way
    (line by line: the 30 MB of a 100,000-job file are never held twice);
    any other shape, or an undecodable byte, gives None, and the caller
    parses the file as usual.
    """
    lines: dict[str, str] = {}
    closed = False
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if f.readline() != "{\n":
                return None
            for raw in f:
                if closed:
                    return None  # anything after the closing brace
                if raw == "}\n":
                    closed = True
                    continue
                line = raw[:-2] if raw.endswith(",\n") else raw[:-1]
                job_id = line[3:19]
                if line[:3] != '  "' or line[19:23] != '": {' or line[-1:] != "}" or not _HEX.issuperset(job_id) or job_id in lines:
                    return None
                lines[job_id] = line
    except (OSError, UnicodeDecodeError):
        return None
    return lines if closed else None
