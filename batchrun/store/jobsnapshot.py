"""The fingerprint's snapshot of a runs directory's jobs, in binary: the runfile's job table, the records, metadata.json's layout.

A relaunch after a small change should cost what changed. Without this, it
parses every line of the runfile, replays every line of the journal and
reads every line of metadata.json: a second or two for 100,000 jobs to run
100 new ones. The launch that writes the fingerprint (`store.fingerprint`)
also writes this file beside it: its `JobTable` (all but the runfile's own
bytes), its `RecordTable` as of the journal's size then, each job's record
row, and where each entry's line sits in metadata.json. A relaunch whose
runfile only grew, whose journal still starts with those bytes and whose
metadata.json is the one the fingerprint names reads the arrays back (no
parse, no sort, no replay), parses the runfile's new bytes, replays the
journal's new lines and renders what changed.

Format of `.fingerprint.jobs` (written atomically, after it the fingerprint
that names its token):

    batchrun-jobs 2 <little|big>
    <one JSON object: token, sections [[name, typecode, count, crc32], ...], side data>
    <each section's bytes, in order>

Anything unexpected (another version or byte order, a short or damaged
section, another token) reads as None: the relaunch takes the full path.
Only `fingerprint` calls this module: one writer, one reader.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from batchrun.atomic import write_atomic

__all__ = ["SNAPSHOT_NAME", "new_token", "read_sections", "write_sections"]

SNAPSHOT_NAME = ".fingerprint.jobs"
_MAGIC = "batchrun-jobs"
# 2: the record columns in as few bytes a row as their values need (`columns.Ints`), CPU seconds
# as milliseconds. A release that reads 1 only takes its full path on a 2, as this one does on a 1.
_VERSION = "2"
# Bytes compared at a time by `_read_same`.
_BLOCK = 1 << 20
# The header is a few kilobytes (side data: odd values, hosts); far larger is not one.
_MAX_HEADER = 64 * 1024 * 1024


def new_token() -> str:
    """A token that ties a snapshot to the fingerprint written after it."""
    return secrets.token_hex(16)


def write_sections(runs_dir: Path, token: str, sections: dict[str, Any], side: dict[str, Any]) -> bool:
    """Write the snapshot: named arrays (or bytes-likes, or sections made a block at a time: `typecode`,
    `len` and `chunks()`, as `idprefix.PatchedIds`) and JSON-able side data; False when it could not be written."""
    listed = []
    # The sections' own bytes, written as they are: a copy of each would
    # double the snapshot in memory (14 MB at 100,000 jobs) as the launch ends.
    views = {name: memoryview(values).cast("B") for name, values in sections.items() if not hasattr(values, "chunks")}
    try:
        for name, values in sections.items():
            view = views.get(name)
            if view is None:  # made a block at a time: checked in a first pass, written in a second
                crc = 0
                for chunk in values.chunks():
                    crc = zlib.crc32(memoryview(chunk).cast("B"), crc)
                listed.append([name, values.typecode, len(values), crc])
            else:
                listed.append([name, values.typecode if isinstance(values, array) else "B", len(values), zlib.crc32(view)])
        header = json.dumps({"token": token, "sections": listed, "side": side}, separators=(",", ":"), allow_nan=True)
        head = f"{_MAGIC} {_VERSION} {sys.byteorder}\n{header}\n".encode()
        write_atomic(runs_dir / SNAPSHOT_NAME, _pieces(head, sections, views))
    except (OSError, ValueError):
        return False
    finally:
        for view in views.values():
            view.release()
    return True


def _pieces(head: bytes, sections: dict[str, Any], views: dict[str, memoryview]) -> Iterator[bytes | memoryview]:
    yield head
    for name, values in sections.items():
        if name in views:
            yield views[name]
        else:
            yield from (memoryview(chunk).cast("B") for chunk in values.chunks())


def read_sections(
    runs_dir: Path, token: str, skip: tuple[str, ...] = (), same: dict[str, str] | None = None
) -> tuple[dict[str, array[Any]], dict[str, Any]] | None:
    """The arrays and side data of the snapshot with this token; None when absent, another, or damaged in any way.

    Sections whose names start with one of `skip` are passed over, unread (and unchecked).
    `same` maps a section to an earlier one it often equals: when its bytes are
    the earlier one's, the earlier array is handed out for both (the same
    object: the caller must not change one as if it were its own), and no
    second copy is ever in memory.
    """
    try:
        with open(runs_dir / SNAPSHOT_NAME, "rb") as f:
            if f.readline(256) != f"{_MAGIC} {_VERSION} {sys.byteorder}\n".encode():
                return None
            line = f.readline(_MAX_HEADER)
            if not line.endswith(b"\n"):
                return None
            header = json.loads(line)
            if header["token"] != token:
                return None
            sections: dict[str, array[Any]] = {}
            for name, typecode, count, crc in header["sections"]:
                values = array(typecode)
                if skip and str(name).startswith(skip):
                    f.seek(values.itemsize * count, 1)
                    continue
                earlier = sections.get((same or {}).get(name, ""))
                if earlier is not None and earlier.typecode == typecode and len(earlier) == count and _read_same(f, earlier):
                    sections[str(name)] = earlier
                    continue
                # Read into the array's own memory: `fromfile` reads a bytes copy first (8 MB more at a million jobs).
                size = values.itemsize * count
                if size > os.fstat(f.fileno()).st_size - f.tell():
                    return None  # damaged: not that many bytes left
                values = array(typecode, [0]) * count
                if f.readinto(memoryview(values).cast("B")) != size:
                    return None
                if zlib.crc32(memoryview(values).cast("B")) != crc:
                    return None
                sections[str(name)] = values
            if f.read(1):
                return None
    except (OSError, EOFError, ValueError, KeyError, TypeError, RecursionError):
        return None
    side = header["side"]
    return (sections, side) if isinstance(side, dict) else None


def _read_same(f: BinaryIO, earlier: array[Any]) -> bool:
    """Whether the next bytes of `f` are `earlier`'s, read a block at a time; if not, `f` is back where it was."""
    start = f.tell()
    view = memoryview(earlier).cast("B")
    try:
        for pos in range(0, len(view), _BLOCK):
            block = f.read(min(_BLOCK, len(view) - pos))
            if view[pos : pos + _BLOCK] != block:
                f.seek(start)
                return False
    finally:
        view.release()
    return True


def drop(runs_dir: Path) -> None:
    """Remove the snapshot (a fingerprint without one is about to be written)."""
    try:
        (runs_dir / SNAPSHOT_NAME).unlink(missing_ok=True)
    except OSError:
        pass
