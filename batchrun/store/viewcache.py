"""Reusing metadata.json's unchanged lines when a relaunch rebuilds it.

Rendering an entry (`build_entry` plus `json.dumps`) and decoding the old
file cost most of a relaunch after a small change: 100,000 entries are
decoded and encoded again to update 100. When metadata.json is still the file
the last launch finished with (its fingerprint says so, see
`batchrun.store.fingerprint`), each of its lines is the rendering of its job's
record as the journal stood at the fingerprint's journal size; a job no
journal line names since then still has that record, so its old line can be
kept as bytes, never decoded.

The fingerprint's journal mark (that size, and a digest of the bytes just
before it) says whether the journal's first bytes are still those it saw: a
journal rewritten since (a compaction, a rebuild by a repair) no longer
matches, and the view is rebuilt whole. Nothing here raises.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchrun.store.fingerprint import journal_mark

__all__ = ["journal_ids_since", "read_rendered_lines"]

# A rendered line of `store.metadata.MetadataView`: `  "<16 hex digits>": {...}`.
_HEX = frozenset("0123456789abcdef")


def journal_ids_since(journal_path: Path, mark: tuple[int, str]) -> set[str] | None:
    """Job ids named by the journal's lines after the mark's offset.

    None when the journal's first bytes are no longer those the mark saw
    (shorter, rewritten, unreadable): then nothing of the old view is reused.
    """
    size = mark[0]
    if journal_mark(journal_path, size) != mark:
        return None
    try:
        fd = os.open(journal_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < size:
            return None
        os.lseek(fd, size, os.SEEK_SET)
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
