"""A runs directory given by path, read through its runfile when that is still beside it and unchanged (`status runs/x` of a million jobs).

A runs directory alone lists its jobs from metadata.json and the journal
(`view.read_status` without a runfile: every entry held, 2-3 GB at a million).
When the runfile the last launch finished with is still where its runs
directory's name says (`<dir>/runs/<stem>/` beside `<dir>/<stem>.*`, with
the text the fingerprint's digest names), and the view holds exactly the
runfile's jobs (no record of a job no line has any more, and as many
metadata.json entries as jobs, in the file the launch wrote), that view
lists the runfile's jobs in the runfile's order, with the same lines and
commands: the runfile's compact read (`compact.read_compact`) then gives
what the held read gives, a window at a time. Otherwise None, and the caller
holds every job as before. Pure: no printing.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from batchrun.runfile.file import runfile_digest
from batchrun.status.compact import CompactStatus, read_compact, usable_for
from batchrun.store.fingerprint import read_fingerprint
from batchrun.store.target import Target

__all__ = ["entry_lines", "read_streamable", "runfile_beside"]

# metadata.json is counted a block at a time: flat memory, whatever its size.
_BLOCK = 1 << 20


def read_streamable(target: Target, **options: Any) -> CompactStatus | None:
    """`read_compact(target, **options)` of a runfile or gridspec target (`usable_for`), or of a runs directory's
    runfile beside it when that gives exactly the runs directory's own view; None: only the held read does.

    Raises:
        UsageError, InputError, MetadataError: as `read_compact`.
    """
    if usable_for(target):
        return read_compact(target, **options)
    runfile = runfile_beside(target)
    if runfile is None:
        return None
    status = read_compact(dataclasses.replace(target, runfile=runfile), **options)
    return status if _lists_the_runfile(status) else None


def runfile_beside(target: Target) -> Path | None:
    """For a runs directory given by path: the runfile beside it with the text its last launch finished with; else None.

    Only the default layout is looked in (`runs/<stem>/` made for `<stem>.*`
    in the directory above `runs/`); a runs directory elsewhere
    (`--accounting_dir`) or without a fingerprint is read as before.
    """
    if target.runfile is not None or target.gridspec is not None:
        return None
    runs = target.runs_dir.path
    fingerprint = read_fingerprint(runs)
    if fingerprint is None or fingerprint.metadata_name != target.runs_dir.metadata_name:
        return None
    if fingerprint.summary is not None and fingerprint.summary.removed:
        return None  # records of jobs no line has any more: listed by line, among the runfile's jobs
    try:
        names = sorted(entry.name for entry in os.scandir(runs.parent.parent) if entry.is_file() and Path(entry.name).stem == runs.name)
    except OSError:
        return None
    for name in names:
        path = runs.parent.parent / name
        if runfile_digest(path) == fingerprint.runfile_digest:
            return path
    return None


def _lists_the_runfile(status: CompactStatus) -> bool:
    """Whether the runs directory's own view (metadata.json's entries and the journal's records) is the runfile's jobs, each once.

    Every runfile job has an entry in the file a launch writes, in the
    runfile's order, then the jobs no line has any more: with no removed
    record and as many entries as jobs, there are no others (a line deleted
    before it ran leaves an entry). The file must be the launch's own: the
    running launch's, or the one the fingerprint vouches for.
    """
    if status.removed:
        return False
    runs_dir = status.runs_dir
    if not status.launch_running:
        fingerprint = read_fingerprint(runs_dir.path)
        if fingerprint is None or not fingerprint.vouches_for_metadata(runs_dir.path, runs_dir.metadata_name):
            return False
    return entry_lines(runs_dir.metadata) == len(status.runfile.jobs)


def entry_lines(path: Path) -> int:
    """How many entries a metadata.json in batchrun's layout (`{`, a line per entry, `}`) holds; -1 for any other file."""
    lines = 0
    head = tail = b""
    try:
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                if not head:
                    head = block[:2]
                lines += block.count(b"\n")
                tail = (tail + block)[-2:]
    except OSError:
        return -1
    if head != b"{\n" or tail != b"}\n" or lines < 2:
        return -1
    return lines - 2
