"""The fingerprint of the last launch: the one record, beside the journal and the view, of how a launch left a runs directory.

A launch that finishes (cleanly, interrupted or not) writes it last; it says:
- which metadata.json it left (name, size, mtime) and how far into the journal
  that view reflects (the journal's size then, and a digest of its last 4 KiB
  before that size): while both still hold, metadata.json need not be parsed
  (`status`) and a relaunch keeps its unchanged lines (`metasync`, `viewcache`);
- the runfile text it finished with (`Runfile.digest`);
- how the launch ended: interrupted (Ctrl-C, SIGTERM, `stop --now`), or halted
  by a failure (`--fail-fast`, `--halt-now`), which its records cannot tell,
  so that `wait` exits as it did;
- when it may (no job in flight, the runfile unchanged, not too many failures
  to list), a summary valid for the exact journal bytes (SHA-256): the counts
  and failed jobs its own summary printed, so that a relaunch with nothing to
  do answers from it without replaying the journal or parsing the runfile
  (`launch.quickresume`).

It is only an optimisation and a note: a fingerprint that is missing,
truncated, unsigned, of another version or of bad types reads as None, and
anything it no longer matches is read from the journal, metadata.json and the
runfile as ever. Nothing here raises for a bad fingerprint. One writer
(`write_fingerprint`, by a finishing launch, under the runs directory's lock)
and one reader (`read_fingerprint`).

Format of `.fingerprint` (UTF-8, two lines, written atomically):

    batchrun-fingerprint 1 <SHA-256 hex of the second line, newline excluded>
    <one JSON object: the fields of `Fingerprint`, `summary` null or the fields of `Summary`>

Before it, three files held these parts (`.metadata.stamp`,
`.metadata.journal-mark`, `.resume.index`); a launch that writes a fingerprint
removes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from batchrun.atomic import write_atomic
from batchrun.runfile.file import Job, Runfile
from batchrun.store.records import STATES, JobRecord, State

__all__ = [
    "FINGERPRINT_NAME",
    "MAX_LISTED",
    "Fingerprint",
    "Summary",
    "drop_summary",
    "last_launch",
    "journal_digest",
    "journal_mark",
    "metadata_id",
    "metadata_unchanged",
    "read_fingerprint",
    "summary_of",
    "write_fingerprint",
]

FINGERPRINT_NAME = ".fingerprint"
# The files the fingerprint replaces; a launch that writes one removes them.
_LEGACY_NAMES = (".metadata.stamp", ".metadata.journal-mark", ".resume.index")
_MAGIC = "batchrun-fingerprint"
_VERSION = "1"
# A summary names every failed job and repeated line for the summary and the
# warnings; past these, a launch leaves none (the full path answers).
MAX_LISTED = 1000
# A fingerprint is a few kilobytes; anything far larger is not one and is not read whole.
_MAX_BYTES = 16 * 1024 * 1024
# How much of the journal before the mark's offset its digest covers: enough
# that a rewritten journal of the same size or longer does not match by chance.
_TAIL_BYTES = 4096


@dataclass(frozen=True, kw_only=True)
class Summary:
    """What a relaunch with nothing to do answers from: valid for the exact journal bytes it names."""

    jobs: int  # jobs in the runfile
    journal_sha256: str
    journal_lines: int
    records: int  # what `Journal.needs_compaction` weighs, with the lines
    removed: int  # records of jobs no longer in the runfile
    counts: dict[str, int]  # the runfile's jobs by `records.category_of`, as the launch's summary counted them
    failed: tuple[tuple[str, int, str, int | None, str], ...]  # (job id, line, state, status, command), runfile order
    duplicates: tuple[tuple[str, int, int], ...]  # (command, first line, repeated line)

    def failed_jobs(self) -> list[tuple[Job, JobRecord]]:
        """The failed jobs as the full path's tally lists them."""
        out = []
        for job_id, lineno, state, status, command in self.failed:
            rec = JobRecord(job_id)
            rec.state, rec.status = state, status
            out.append((Job(command, job_id, lineno), rec))
        return out


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """How the last launch that finished left the runs directory."""

    metadata_name: str
    metadata_id: str  # "<size>:<mtime_ns>" of metadata.json, or "none"
    runfile_digest: str
    journal_size: int  # the journal's size metadata.json reflects
    journal_tail: str  # the digest of the journal's up to 4 KiB before `journal_size`
    interrupted: bool
    halted: bool = False
    summary: Summary | None = None

    @classmethod
    def take(
        cls,
        runs_dir: Path,
        journal_path: Path,
        metadata_name: str,
        runfile_digest: str,
        *,
        interrupted: bool = False,
        halted: bool = False,
        summary: Summary | None = None,
    ) -> Fingerprint | None:
        """The fingerprint of the runs directory as it is now; None when the journal cannot be read."""
        mark = journal_mark(journal_path)
        if mark is None:
            return None
        return cls(
            metadata_name=metadata_name,
            metadata_id=metadata_id(runs_dir / metadata_name),
            runfile_digest=runfile_digest,
            journal_size=mark[0],
            journal_tail=mark[1],
            interrupted=interrupted,
            halted=halted,
            summary=summary,
        )

    def render(self) -> str:
        fields = asdict(self)
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        return f"{_MAGIC} {_VERSION} {_sha256(body.encode())}\n{body}\n"

    def vouches_for_metadata(self, runs_dir: Path, metadata_name: str) -> bool:
        """Whether metadata.json is still the file this launch left (its name, size and mtime)."""
        return self.metadata_name == metadata_name and self.metadata_id == metadata_id(runs_dir / metadata_name)

    def matches(self, runs_dir: Path, journal_path: Path, metadata_name: str, runfile_digest: str) -> bool:
        """Whether metadata.json, the journal's size and the runfile are still those this launch left."""
        try:
            size = journal_path.stat().st_size
        except OSError:
            size = 0
        return self.runfile_digest == runfile_digest and self.journal_size == size and self.vouches_for_metadata(runs_dir, metadata_name)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata_id(path: Path) -> str:
    """Size and mtime of metadata.json: an edited or damaged file no longer matches."""
    try:
        meta = path.stat()
    except OSError:
        return "none"
    return f"{meta.st_size}:{meta.st_mtime_ns}"


def journal_mark(journal_path: Path, size: int | None = None) -> tuple[int, str] | None:
    """(size, digest of the up to 4 KiB before it) of the journal: its first `size` bytes, in brief.

    `size` defaults to the file's size now; None when unreadable or shorter.
    """
    try:
        fd = os.open(journal_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if size is None:
            size = os.fstat(fd).st_size
        start = max(0, size - _TAIL_BYTES)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, size - start)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != size - start:
        return None
    return size, hashlib.blake2b(data, digest_size=16).hexdigest()


def journal_digest(path: Path) -> tuple[int, str, int] | None:
    """(size, SHA-256, lines) of a journal file; None when unreadable or not whole lines."""
    digest = hashlib.sha256()
    size = lines = 0
    last = b""
    try:
        with open(path, "rb") as f:
            # In blocks: a million-line journal is 72 MB, and need not be in memory at once.
            while block := f.read(1 << 20):
                digest.update(block)
                size += len(block)
                lines += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return None
    if last != b"\n":
        return None  # empty, or a torn last line the full path would cut off
    return size, digest.hexdigest(), lines


def summary_of(
    runfile: Runfile, records: Mapping[str, JobRecord], counts: Mapping[str, int], failed: Sequence[tuple[Job, JobRecord]], journal_path: Path, journal_size: int
) -> Summary | None:
    """The summary of a launch that ended with these records; None when none may be written.

    `counts` and `failed` are the launch's own tally of the runfile's jobs, so
    that the summary says what its summary said. Call it once the journal is
    closed (and compacted): the digest is taken of the file as it is then, and
    `journal_size` is what the records reflect (`Journal.size`): a file of
    another size had lines appended by another writer. None while any job is
    running (a relaunch must settle it), for an empty runfile, and past
    `MAX_LISTED` failures or repeated lines.
    """
    if not runfile.jobs or not runfile.digest or len(runfile.duplicates) > MAX_LISTED or len(failed) > MAX_LISTED:
        return None
    if counts[State.RUNNING] or any(rec.state == State.RUNNING for rec in records.values()):
        return None  # a removed job left running counts too
    digest = journal_digest(journal_path)
    if digest is None or digest[0] != journal_size:
        return None
    return Summary(
        jobs=len(runfile.jobs),
        journal_sha256=digest[1],
        journal_lines=digest[2],
        records=len(records),
        removed=len(runfile.jobs.ids_missing(records)),
        counts={state: counts[state] for state in STATES},
        failed=tuple((job.job_id, job.lineno, str(rec.state), rec.status, job.command) for job, rec in failed),
        duplicates=tuple(runfile.duplicates),
    )


def write_fingerprint(runs_dir: Path, fingerprint: Fingerprint) -> None:
    """Replace the fingerprint; a failure only costs the next launch the work it saves."""
    path = runs_dir / FINGERPRINT_NAME
    try:
        write_atomic(path, fingerprint.render())
    except (OSError, UnicodeError):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    for name in _LEGACY_NAMES:
        try:
            (runs_dir / name).unlink(missing_ok=True)
        except OSError:
            pass


def drop_summary(runs_dir: Path) -> None:
    """A full launch is about to change the records: the summary vouches for them no more (the rest stays true until it ends)."""
    fingerprint = read_fingerprint(runs_dir)
    if fingerprint is not None and fingerprint.summary is not None:
        write_fingerprint(runs_dir, dataclasses.replace(fingerprint, summary=None))


def read_fingerprint(runs_dir: Path) -> Fingerprint | None:
    """The fingerprint the last launch left; None when absent or damaged in any way."""
    try:
        with open(runs_dir / FINGERPRINT_NAME, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError:
        return None
    # Written in one piece: a missing final newline means a torn write.
    if len(data) > _MAX_BYTES or not data.endswith(b"\n"):
        return None
    head, sep, rest = data.partition(b"\n")
    if not sep or rest.count(b"\n") != 1:
        return None
    body = rest[:-1]
    if head != f"{_MAGIC} {_VERSION} {_sha256(body)}".encode():
        return None
    try:
        return _from_json(json.loads(body.decode("utf-8")))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


def last_launch(runs_dir: Path, journal_path: Path) -> Fingerprint | None:
    """The last launch's fingerprint while nothing touched the journal since: how it ended is then how the records stand."""
    fingerprint = read_fingerprint(runs_dir)
    if fingerprint is None or journal_mark(journal_path) != (fingerprint.journal_size, fingerprint.journal_tail):
        return None
    return fingerprint


def metadata_unchanged(runs_dir: Path, metadata_name: str) -> bool:
    """Whether metadata.json is still the file the last launch finished with (`status` then need not parse it)."""
    fingerprint = read_fingerprint(runs_dir)
    return fingerprint is not None and fingerprint.vouches_for_metadata(runs_dir, metadata_name)


def _from_json(obj: Any) -> Fingerprint | None:
    texts = [obj[key] for key in ("metadata_name", "metadata_id", "runfile_digest", "journal_tail")]
    if not all(isinstance(value, str) for value in texts) or not _count(obj["journal_size"]):
        return None
    if not isinstance(obj["interrupted"], bool) or not isinstance(obj["halted"], bool):
        return None
    summary = None
    if obj["summary"] is not None:
        summary = _summary_from_json(obj["summary"])
        if summary is None:
            return None
    metadata_name, metadata_id_, runfile_digest, journal_tail = texts
    return Fingerprint(
        metadata_name=metadata_name,
        metadata_id=metadata_id_,
        runfile_digest=runfile_digest,
        journal_size=obj["journal_size"],
        journal_tail=journal_tail,
        interrupted=obj["interrupted"],
        halted=obj["halted"],
        summary=summary,
    )


def _summary_from_json(obj: Any) -> Summary | None:
    ints = [obj[key] for key in ("jobs", "journal_lines", "records", "removed")]
    if not all(_count(value) for value in ints) or not isinstance(obj["journal_sha256"], str):
        return None
    counts = obj["counts"]
    if not isinstance(counts, dict) or set(counts) != set(STATES) or not all(_count(v) for v in counts.values()):
        return None
    if sum(counts.values()) != obj["jobs"]:
        return None
    failed = []
    for job_id, lineno, state, status, command in obj["failed"]:
        if not (isinstance(job_id, str) and _count(lineno) and state in State.ALL and isinstance(command, str)):
            return None
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            return None
        failed.append((job_id, lineno, state, status, command))
    duplicates = []
    for command, first, again in obj["duplicates"]:
        if not (isinstance(command, str) and _count(first) and _count(again)):
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
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
