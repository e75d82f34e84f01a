"""Repairs of a damaged runs directory, done by a launch before it plans.

The journal is the truth about jobs; metadata.json is a view of it; each
job's exit record (`logs/<job id>/exit`) is written by the job's own wrapper.
When one of them is damaged or lost, what survives in the others still
counts: nothing that finished runs again because a file beside it broke.

- Temporary files of metadata writers killed mid-write are removed
  (never a live writer's: the pid in the name must be dead).
- A damaged metadata.json is kept aside, its whole entries are salvaged, and
  the launch rebuilds the view from the journal.
- A missing or emptied journal is rebuilt from metadata.json's entries and
  the exit records in logs/.

Each repair that changed what the user sees returns one line for the CLI to
print; nothing here prints. The launch calls these under the runs
directory's lock; `surviving_records` alone is read-only, for `status`.
"""

from __future__ import annotations

import math
import os
import re
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchrun.errors import MetadataError
from batchrun.executors import jobfiles
from batchrun.liveness import MAX_PID, pid_alive
from batchrun.store.journal import JOURNAL_NAME, Journal
from batchrun.store.metadata import salvage_metadata
from batchrun.store.metascan import EntryScan
from batchrun.store.records import AttemptEnd, JobRecord, State
from batchrun.store.rundir import RunsDir

__all__ = [
    "iter_metadata_repairing",
    "rebuild_lost_journal",
    "remove_dead_temp_files",
    "repair_runs_dir",
    "surviving_records",
]

# `atomic.write_atomic`'s temporary files: `.<name>.<pid>.tmp` (or
# `.<name>.<pid>.<n>.tmp`, a second writer in one process). A pid has no
# leading zero and is at most pid_max's ceiling, so other tools' temporary
# files (such as 8 hex digits) are never taken for ours.
_TEMP_FILE = re.compile(r"\.(.+)\.([1-9][0-9]{0,6})(?:\.[1-9][0-9]*)?\.tmp")
# What `Journal.compact` wrote before renaming it over the journal, before
# compaction went through `write_atomic`: a runs directory may still hold one.
_COMPACT_TEMP = JOURNAL_NAME + ".tmp"
_JOB_ID = re.compile(r"[0-9a-f]{16}")
# Hosts, refs and states go into space-separated journal lines: one word each.
_WORD = re.compile(r"[A-Za-z0-9._:@/+-]{1,200}")
_STATE_WORD = re.compile(r"[a-z_]{1,32}")
# An earlier attempt's log, kept by a retry: out.<attempt>.log.
_OLD_OUT_LOG = re.compile(r"out\.([0-9]{1,6})\.log")


def repair_runs_dir(runs_dir: RunsDir) -> list[str]:
    """The repairs due before a launch reads its records; one notice per repair made."""
    remove_dead_temp_files(runs_dir.path)
    notice = rebuild_lost_journal(runs_dir)
    return [notice] if notice is not None else []


def remove_dead_temp_files(path: Path) -> list[Path]:
    """Remove temporary files left by writers killed mid-write; returns them.

    Called under the runs directory's lock, so only this launch writes
    metadata now; the pid check keeps a live writer's file even so.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(path)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_FILE.fullmatch(name)
        if match is not None:
            pid = int(match.group(2))
            if pid > MAX_PID or pid == os.getpid() or pid_alive(pid):
                continue
        elif name != _COMPACT_TEMP:
            continue
        try:
            os.unlink(path / name)
        except OSError:
            continue  # gone already, or a directory: not ours to touch
        removed.append(path / name)
    return removed


def iter_metadata_repairing(runs_dir: RunsDir, notices: list[str], wanted: Callable[[str], bool] = lambda job_id: True) -> Iterator[tuple[str, dict[str, Any]]]:
    """The entries of metadata.json; a damaged file is set aside and salvaged.

    `wanted`: batchrun's own entries in its one rendering (`metascan`: of a
    job never run or one that ran, each with a `state`) are decoded and given
    only for the ids it wants; every other entry is given (`iter_metadata`'s).

    What the damaged file held whole (entries of the original batchrun,
    of removed lines) is yielded as if read; the launch then writes a fresh
    view. The damaged bytes stay in `<name>.damaged-<time>` for the user.
    Entries read before the damage showed are yielded again: callers
    store them by job id.

    Raises:
        MetadataError: the file cannot be read or set aside (permissions, I/O).
    """
    path = runs_dir.metadata
    try:
        scan = EntryScan(path, ran=True)  # fails as `iter_metadata` does, on the same bytes
        for job_id, entry in scan:
            if entry is None:
                if not wanted(job_id):
                    continue
                entry = scan.entry()
            yield job_id, entry
        return
    except MetadataError as err:
        damage = err
    try:
        entries = salvage_metadata(path)
    except OSError:
        raise damage from None  # not damaged bytes but an unreadable file: nothing to repair
    aside = _aside_path(path)
    try:
        os.replace(path, aside)
    except OSError as err:
        raise MetadataError(f"{path}: damaged, and cannot be moved aside to rebuild it: {err.strerror}") from damage
    # The error's own "<path>:<line>: what" part, without its advice.
    what = str(damage).split("; ")[0]
    notices.append(f"{what}; rebuilt from the job journal, {len(entries)} whole entries kept, the damaged file moved to {aside.name}")
    yield from entries.items()


def _aside_path(path: Path) -> Path:
    """`<name>.damaged-<time>`, never the name of an earlier damaged copy."""
    base = f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    aside, n = path.with_name(base), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{base}.{n}")
    return aside


def _read_entries(path: Path) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """metadata.json's entries, salvaged if damaged, without moving the file; None for a job never run (`metascan`)."""
    try:
        yield from EntryScan(path)
        return
    except MetadataError:
        pass
    try:
        yield from salvage_metadata(path).items()
    except OSError:
        return


def surviving_records(runs_dir: RunsDir) -> Iterator[JobRecord]:
    """What metadata.json and the exit records in logs/ say about jobs.

    For a runs directory whose journal is lost. An entry batchrun wrote
    counts as its state says (a running one is settled later, as any job a
    killed launch left running); a job with no entry but an exit record
    finished with that status. An entry still pending (a --rerun-all not yet
    run) is believed over an older exit record. Entries of the original
    batchrun (no `state`) are left to `legacy_record`.
    """
    # The ids as integers, in an array (a set of a million id strings is 100 MB; most logs/ are smaller).
    seen = array("Q")
    for job_id, entry in _read_entries(runs_dir.metadata):
        if entry is None:  # pending, never run: no record, and believed over any exit record
            seen.append(int(job_id, 16))
            continue
        if not _JOB_ID.fullmatch(job_id) or "state" not in entry:
            continue
        seen.append(int(job_id, 16))
        rec = _record_from_entry(job_id, entry)
        state = entry.get("state")
        if rec is None and (state in State.FINISHED or not isinstance(state, str) or not _STATE_WORD.fullmatch(state)):
            # The entry says it finished but not how, or nothing readable:
            # the job's own exit record decides. A pending or interrupted
            # entry is believed over an exit record older than it.
            rec = _record_from_exit(runs_dir, job_id, _int(entry.get("attempts"), 0))
        if rec is not None:
            yield rec
    try:
        names = os.listdir(runs_dir.logs)
    except OSError:
        return
    names = [name for name in names if _JOB_ID.fullmatch(name)]
    known = set(seen) if names else set()
    for job_id in names:
        if int(job_id, 16) not in known:
            rec = _record_from_exit(runs_dir, job_id, 0)
            if rec is not None:
                yield rec


def _record_from_entry(job_id: str, entry: dict[str, Any]) -> JobRecord | None:
    state = entry.get("state")
    if not isinstance(state, str) or not _STATE_WORD.fullmatch(state):
        return None
    rec = JobRecord(job_id)
    rec.attempts = max(_int(entry.get("attempts"), 1), 1)
    rec.start = _time(entry.get("start"))
    rec.end = _time(entry.get("end"))
    status = entry.get("status")
    if state in State.FINISHED:
        if not isinstance(status, int) or isinstance(status, bool) or rec.start is None or rec.end is None:
            return None  # says finished but not how: the exit record decides
        rec.status = status
    elif state == State.RUNNING:
        if rec.start is None:
            rec.start = time.time()
        rec.slot = max(_int(entry.get("slot"), 0), 0)
        host, ref = entry.get("host"), entry.get("job_ref")
        rec.host = host if isinstance(host, str) and _WORD.fullmatch(host) else "unknown"
        rec.ref = ref if isinstance(ref, str) and _WORD.fullmatch(ref) else None
    elif state == State.PENDING:
        if _int(entry.get("attempts"), 0) < 1:
            return None
    elif rec.start is None or rec.end is None:
        return None
    rec.state = state
    return rec


def _record_from_exit(runs_dir: RunsDir, job_id: str, attempts: int) -> JobRecord | None:
    log_dir = runs_dir.log_dir(job_id)
    exit_record = jobfiles.read_exit_record(log_dir)
    if exit_record is None:
        return None
    rec = JobRecord(job_id)
    how = AttemptEnd.from_record(*exit_record)
    rec.state, rec.end = how.state, how.end
    rec.status = how.status if how.state in State.FINISHED else None
    # When it started is not kept outside the journal: its end stands in.
    rec.start = rec.end
    rec.attempts = attempts if attempts >= 1 else 1 + _earlier_attempts(log_dir)
    return rec


def _earlier_attempts(log_dir: Path) -> int:
    try:
        return max((int(m.group(1)) for name in os.listdir(log_dir) if (m := _OLD_OUT_LOG.fullmatch(name))), default=0)
    except OSError:
        return 0


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31 else default


def _time(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < 1e11:
        return float(value)
    return None


def rebuild_lost_journal(runs_dir: RunsDir) -> str | None:
    """Rebuild a missing or emptied journal from the records that survive.

    Returns the notice for the user, or None when there was nothing to
    rebuild (a new runs directory, or a journal that is there).

    Raises:
        MetadataError: the rebuilt journal cannot be written.
    """
    path = runs_dir.path / JOURNAL_NAME
    try:
        if path.stat().st_size > 0:
            return None
    except FileNotFoundError:
        pass
    except OSError:
        return None  # `Journal.load` reports it
    journal = Journal(runs_dir.path)
    finished = unsettled = 0
    journal.open()
    try:
        for rec in surviving_records(runs_dir):
            _append(journal, rec)
            if rec.finished:
                finished += 1
            elif rec.state == State.RUNNING:
                unsettled += 1
    finally:
        journal.close()
    if not finished and not unsettled:
        return None
    left = f", {unsettled} left running to settle" if unsettled else ""
    return (
        f"{path}: missing or empty; rebuilt from {runs_dir.metadata_name} and the exit records in logs/: "
        f"{finished} finished jobs kept{left} (to run every job again on purpose: launch --rerun-all)"
    )


def _append(journal: Journal, rec: JobRecord) -> None:
    """Journal one surviving record with the journal's own API."""
    job_id, attempt = rec.job_id, rec.attempts
    if rec.finished:
        assert rec.status is not None and rec.start is not None and rec.end is not None
        default = State.SUCCEEDED if rec.status == 0 else State.FAILED
        journal.record_end(job_id, attempt, rec.status, rec.start, rec.end, None if rec.state == default else rec.state)
    elif rec.state == State.RUNNING:
        assert rec.start is not None
        journal.record_start(job_id, attempt, rec.start, rec.slot or 0, rec.host or "unknown")
        if rec.ref is not None:
            journal.record_ref(job_id, attempt, rec.ref)
    else:
        now = time.time()
        journal.record_unfinished(job_id, attempt, rec.start or now, rec.end or now, State.INTERRUPTED if rec.state == State.PENDING else rec.state)
        if rec.state == State.PENDING:
            # Pending again after a --rerun-all: the attempts count survives.
            journal.record_reset([job_id])
