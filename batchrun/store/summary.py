"""The summary a launch leaves in its fingerprint: what a relaunch with nothing to do answers from.

Its counts and failed jobs are the launch's own tally, so that a relaunch
answered from it (`launch.quickresume`) says what the launch said. It is
valid for the exact journal bytes it names (SHA-256); `fingerprint` reads and
writes it with the rest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from batchrun.runfile.file import Job, Runfile
from batchrun.store.ledger import Ledger
from batchrun.store.records import STATES, JobRecord, State
from batchrun.store.recordtable import RecordTable

__all__ = ["MAX_LISTED", "JournalPrefix", "Summary", "is_count", "journal_digest", "journal_prefix", "summary_from_json", "summary_of"]

# A summary names every repeated line for the warnings (past this many, a
# launch leaves none: the full path answers), and the first this many failed
# jobs with the count of all (the launch's summary prints five and the count).
MAX_LISTED = 1000

@dataclass(frozen=True, kw_only=True)
class Summary:
    """What a relaunch with nothing to do answers from: valid for the exact journal bytes it names."""

    jobs: int  # jobs in the runfile
    journal_sha256: str
    journal_lines: int
    records: int  # what `Journal.needs_compaction` weighs, with the lines
    removed: int  # records of jobs no longer in the runfile
    counts: dict[str, int]  # the runfile's jobs by `records.category_of`, as the launch's summary counted them
    failed: tuple[tuple[str, int, str, int | None, str], ...]  # (job id, line, state, status, command), runfile order: the first `MAX_LISTED`
    duplicates: tuple[tuple[str, int, int], ...]  # (command, first line, repeated line)
    failed_count: int  # how many failed: more than `failed` lists when past `MAX_LISTED`

    @property
    def lists_every_failure(self) -> bool:
        return self.failed_count == len(self.failed)

    def failed_jobs(self) -> list[tuple[Job, JobRecord]]:
        """The failed jobs as the full path's tally lists them (its first `MAX_LISTED`: `failed_count` counts all)."""
        out = []
        for job_id, lineno, state, status, command in self.failed:
            rec = JobRecord(job_id)
            rec.state, rec.status = state, status
            out.append((Job(command, job_id, lineno), rec))
        return out


@dataclass(frozen=True)
class JournalPrefix:
    """A journal's first `size` bytes (whole lines), hashed once: `journal_digest` goes on from there instead of hashing them again.

    A relaunch from the snapshot hashes them to check its records
    (`resume.read_resume`); as it ends, the journal is those bytes and the
    lines appended since, unless it was rewritten (compacted: another file).
    """

    size: int
    lines: int
    sha256: Any  # hashlib's state after those bytes; copied, never updated
    file_id: tuple[int, int]  # (st_dev, st_ino) of the file they were read from


def journal_prefix(path: Path, size: int) -> JournalPrefix | None:
    """The journal's first `size` bytes, hashed; None when shorter, unreadable, or not ending a line."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            file_id = _file_id(f.fileno())
            read, lines, last = _hash_blocks(f, digest, size)
    except OSError:
        return None
    return JournalPrefix(size, lines, digest, file_id) if read == size and last == b"\n" else None


def journal_digest(path: Path, prefix: JournalPrefix | None = None) -> tuple[int, str, int] | None:
    """(size, SHA-256, lines) of a journal file; None when unreadable or not whole lines.

    `prefix`: its first bytes as hashed before, taken as they are while the
    file is the one they were read from, no shorter. Even if they were
    changed in place since, the digest is of the bytes the caller's records
    came from, so a later reader that hashes the file finds no match and
    reads it whole: never records of other bytes.
    """
    digest = hashlib.sha256()
    size = lines = 0
    last = b""
    try:
        with open(path, "rb") as f:
            if prefix is not None and _file_id(f.fileno()) == prefix.file_id and os.fstat(f.fileno()).st_size >= prefix.size:
                f.seek(prefix.size)
                digest, size, lines, last = prefix.sha256.copy(), prefix.size, prefix.lines, b"\n"
            read, more, tail = _hash_blocks(f, digest)
    except OSError:
        return None
    if (tail or last) != b"\n":
        return None  # empty, or a torn last line the full path would cut off
    return size + read, digest.hexdigest(), lines + more


def _hash_blocks(f: BinaryIO, digest: Any, limit: int | None = None) -> tuple[int, int, bytes]:
    """Hash the file from where it is, to its end or `limit` bytes: (bytes read, newlines among them, the last byte)."""
    read = lines = 0
    last = b""
    # In blocks: a million-line journal is 72 MB, and need not be in memory at once.
    while block := f.read(1 << 20 if limit is None else min(limit - read, 1 << 20)):
        digest.update(block)
        read += len(block)
        lines += block.count(b"\n")
        last = block[-1:]
    return read, lines, last


def _file_id(fd: int) -> tuple[int, int]:
    meta = os.fstat(fd)
    return meta.st_dev, meta.st_ino


def summary_of(
    runfile: Runfile,
    records: Mapping[str, JobRecord],
    counts: Mapping[str, int],
    failed: Sequence[tuple[Job, JobRecord]],
    journal_path: Path,
    journal_size: int,
    ledger: Ledger | None = None,
    digest: tuple[int, str, int] | None = None,
) -> Summary | None:
    """The summary of a launch that ended with these records; None when none may be written.

    `counts` and `failed` are the launch's own tally of the runfile's jobs, so
    that the summary says what its summary said. Call it once the journal is
    closed (and compacted): the digest is taken of the file as it is then, and
    `journal_size` is what the records reflect (`Journal.size`): a file of
    another size had lines appended by another writer. None while any job is
    running (a relaunch must settle it), for an empty runfile, and past
    `MAX_LISTED` repeated lines. `digest`: the journal's
    `journal_digest`, when the caller took it already.
    """
    if not runfile.jobs or not runfile.digest or len(runfile.duplicates) > MAX_LISTED:
        return None
    running = records.running_rows() if isinstance(records, RecordTable) else [rec for rec in records.values() if rec.state == State.RUNNING]
    if counts[State.RUNNING] or running:
        return None  # a removed job left running counts too
    digest = digest if digest is not None else journal_digest(journal_path)
    if digest is None or digest[0] != journal_size:
        return None
    return Summary(
        jobs=len(runfile.jobs),
        journal_sha256=digest[1],
        journal_lines=digest[2],
        records=len(records),
        removed=len(ledger.removed_ids() if ledger is not None else runfile.jobs.ids_missing(records)),
        counts={state: counts[state] for state in STATES},
        failed=tuple((job.job_id, job.lineno, str(rec.state), rec.status, job.command) for job, rec in failed[:MAX_LISTED]),
        duplicates=tuple(runfile.duplicates),
        failed_count=len(failed),
    )


def summary_from_json(obj: Any) -> Summary | None:
    ints = [obj[key] for key in ("jobs", "journal_lines", "records", "removed")]
    if not all(is_count(value) for value in ints) or not isinstance(obj["journal_sha256"], str):
        return None
    counts = obj["counts"]
    if not isinstance(counts, dict) or set(counts) != set(STATES) or not all(is_count(v) for v in counts.values()):
        return None
    if sum(counts.values()) != obj["jobs"]:
        return None
    failed = []
    for job_id, lineno, state, status, command in obj["failed"]:
        if not (isinstance(job_id, str) and is_count(lineno) and state in State.ALL and isinstance(command, str)):
            return None
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            return None
        failed.append((job_id, lineno, state, status, command))
    # Written since summaries list only the first failures: absent, every failure is listed.
    failed_count = obj.get("failed_count", len(failed))
    if not is_count(failed_count) or failed_count < len(failed) or (len(failed) < failed_count and len(failed) != MAX_LISTED):
        return None
    duplicates = []
    for command, first, again in obj["duplicates"]:
        if not (isinstance(command, str) and is_count(first) and is_count(again)):
            return None
        duplicates.append((command, first, again))
    jobs, journal_lines, records, removed = ints
    return Summary(
        jobs=jobs,
        journal_sha256=obj["journal_sha256"],
        journal_lines=journal_lines,
        records=records,
        removed=removed,
        # Keyed and ordered as the launch's tally keys them: the CLI hands these on (--on-finish).
        counts={state: int(counts[state]) for state in STATES},
        failed=tuple(failed),
        duplicates=tuple(duplicates),
        failed_count=failed_count,
    )


def is_count(value: Any) -> bool:
    """Whether a value read back is a count: an int (not a bool), not negative."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
