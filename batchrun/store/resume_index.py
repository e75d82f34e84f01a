"""The resume index: what a cleanly finished launch leaves to answer a relaunch that changes nothing.

A no-op relaunch of a big runfile used to replay the whole journal, parse
every line of the runfile and plan every job only to find nothing to run.
A launch that ends cleanly therefore leaves a resume index beside its stamp:
the counts its summary and plan line are made of, valid for the exact bytes
of the journal and the exact text of the runfile it finished with. The next
launch checks, under the runs directory's lock, that both are still those
bytes (a SHA-256 of each, the stamp and the viewcache mark agree, nothing
to compact, no job in flight) and that its mode has nothing to run; it then
answers with the same plan and the same `LaunchResult` the full path would
give, without building a record or a `Job` per line.

The index is only an optimisation. What a launch decides follows from the
journal's bytes, the runfile's text and the mode alone once the stamp says
metadata.json is the view of that journal (no legacy entries to import, no
repair to make), so an index that matches both digests gives the full path's
answer. Anything else - no index, a truncated or garbage one, another
version, a journal rewritten, shorter or longer, a runfile edited anywhere,
another metadata file name, a job left running - answers None and the
caller takes the full path. Nothing here raises for a bad index.

Format of `.resume.index` (UTF-8, two lines, written atomically):

    batchrun-resume-index 1 <SHA-256 hex of the second line, newline excluded>
    <one JSON object>

The object's keys: `metadata_name` (str); `runfile_digest` (the stamp's
digest of the runfile text, `Runfile.digest`); `jobs` (jobs in the runfile);
`journal_size`, `journal_sha256` (of the whole journal file), `journal_lines`
and `records` (what `Journal.needs_compaction` weighs); `removed` (records of
jobs no longer in the runfile); `counts` (state -> jobs of the runfile, as
`launch._tally` counts them) and `ignored` (state -> those among them that
`doit ignore` set aside); `failed` (every job of the runfile that ended
without succeeding, in runfile order, as `[job_id, line, state, status or
null, command]`); `duplicates` (`[command, first line, repeated line]`).
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrun.atomic import write_atomic
from batchrun.runfile.file import Job, Runfile
from batchrun.store.records import JobRecord, State
from batchrun.store.stamp import read_small_record

__all__ = ["INDEX_NAME", "ResumeIndex", "index_of", "journal_digest", "read_index", "remove_index", "runfile_digest", "write_index"]

INDEX_NAME = ".resume.index"
_MAGIC = "batchrun-resume-index"
_VERSION = "1"
# An index names every failed job and repeated line for the summary and the
# warnings; past these, a launch writes none (the full path answers).
MAX_LISTED = 1000
# An index is a few kilobytes; anything far larger is not one and is not read whole.
_MAX_BYTES = 16 * 1024 * 1024
_STATES = frozenset(str(state) for state in State.ALL)


@dataclass(frozen=True)
class ResumeIndex:
    """What a cleanly finished launch left: its counts, for the journal and runfile it finished with."""

    metadata_name: str
    runfile_digest: str
    jobs: int
    journal_size: int
    journal_sha256: str
    journal_lines: int
    records: int
    removed: int
    counts: dict[str, int]
    ignored: dict[str, int]
    failed: tuple[tuple[str, int, str, int | None, str], ...]
    duplicates: tuple[tuple[str, int, int], ...]

    def failed_jobs(self) -> list[tuple[Job, JobRecord]]:
        """The failed jobs as the full path's `_tally` lists them."""
        out = []
        for job_id, lineno, state, status, command in self.failed:
            rec = JobRecord(job_id)
            rec.state, rec.status = state, status
            out.append((Job(command, job_id, lineno), rec))
        return out

    def render(self) -> str:
        body = json.dumps(
            {
                "metadata_name": self.metadata_name, "runfile_digest": self.runfile_digest, "jobs": self.jobs,
                "journal_size": self.journal_size, "journal_sha256": self.journal_sha256,
                "journal_lines": self.journal_lines, "records": self.records, "removed": self.removed,
                "counts": {str(k): v for k, v in self.counts.items()}, "ignored": {str(k): v for k, v in self.ignored.items()},
                "failed": [list(item) for item in self.failed], "duplicates": [list(item) for item in self.duplicates],
            },
            ensure_ascii=False, separators=(",", ":"),
        )
        return f"{_MAGIC} {_VERSION} {_sha256(body.encode())}\n{body}\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def runfile_digest(path: Path) -> str | None:
    """`Runfile.digest` of the runfile as it is on disk now, without parsing it; None when unreadable.

    The digest is of the decoded text (a byte order mark left out); valid
    UTF-8 encodes back to the same bytes, so the bytes are hashed as they
    come, in blocks, and only checked to decode.
    """
    digest = hashlib.sha256()
    check = codecs.getincrementaldecoder("utf-8")()
    first = True
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                check.decode(block)
                if first and block.startswith(codecs.BOM_UTF8):
                    block = block[len(codecs.BOM_UTF8) :]  # as `parse_runfile_text` does before its digest
                first = False
                digest.update(block)
        check.decode(b"", final=True)
    except (OSError, UnicodeDecodeError):
        return None
    return digest.hexdigest()[:32]


def index_of(
    runfile: Runfile, records: Mapping[str, JobRecord], counts: Mapping[str, int], failed: Sequence[tuple[Job, JobRecord]],
    journal_path: Path, journal_size: int, metadata_name: str,
) -> ResumeIndex | None:
    """The index of a launch that ended with these records; None when none may be written.

    `counts` and `failed` are the launch's own tally of the runfile's jobs
    (`launch._tally`), so that the index says what its summary said. Call it
    once the journal is closed (and compacted): the digest is taken of the
    file as it is then, and `journal_size` is what the records reflect
    (`Journal.size`): a file of another size had lines appended by another
    writer. None while any job is running (a relaunch must settle it), for
    an empty runfile, and past `MAX_LISTED` failures.
    """
    if not runfile.jobs or not runfile.digest or len(runfile.duplicates) > MAX_LISTED or len(failed) > MAX_LISTED:
        return None
    if counts[State.RUNNING]:
        return None
    running = State.RUNNING
    # One pass over the records: a removed job left running, and the ignored ones.
    odd = [rec for rec in records.values() if rec.ignored or rec.state == running]
    if any(rec.state == running for rec in odd):
        return None
    ids = {job.job_id for job in runfile.jobs}
    ignored: dict[str, int] = dict.fromkeys(State.ALL, 0)
    for rec in odd:
        if rec.job_id in ids:
            ignored[rec.state] += 1
    removed = len(records) - len(ids & records.keys())
    digest = journal_digest(journal_path)
    if digest is None or digest[0] != journal_size:
        return None
    listed = tuple((job.job_id, job.lineno, str(rec.state), rec.status, job.command) for job, rec in failed)
    return ResumeIndex(
        metadata_name, runfile.digest, len(runfile.jobs), digest[0], digest[1], digest[2], len(records), removed,
        {state: counts[state] for state in State.ALL}, ignored, listed, tuple(runfile.duplicates),
    )


def write_index(runs_dir: Path, index: ResumeIndex | None) -> None:
    """Replace the index (or remove it, for None); a failure only costs the next relaunch the full path."""
    path = runs_dir / INDEX_NAME
    try:
        if index is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, index.render())
    except (OSError, UnicodeError):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def remove_index(runs_dir: Path) -> None:
    """Forget the index: the next relaunch takes the full path."""
    write_index(runs_dir, None)


def read_index(runs_dir: Path) -> ResumeIndex | None:
    """The index the last launch left; None when absent or damaged in any way."""
    data = read_small_record(runs_dir / INDEX_NAME, _MAX_BYTES)
    if data is None:
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


def _from_json(obj: Any) -> ResumeIndex | None:
    if not isinstance(obj, dict):
        return None
    ints = [obj[key] for key in ("jobs", "journal_size", "journal_lines", "records", "removed")]
    if not all(_count(value) for value in ints):
        return None
    texts = [obj[key] for key in ("metadata_name", "runfile_digest", "journal_sha256")]
    if not all(isinstance(value, str) for value in texts):
        return None
    counts, ignored = _state_counts(obj["counts"]), _state_counts(obj["ignored"])
    if counts is None or ignored is None or sum(counts.values()) != obj["jobs"]:
        return None
    failed = []
    for item in obj["failed"]:
        job_id, lineno, state, status, command = item
        if not (isinstance(job_id, str) and _count(lineno) and state in _STATES and isinstance(command, str)):
            return None
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            return None
        failed.append((job_id, lineno, state, status, command))
    duplicates = []
    for item in obj["duplicates"]:
        command, first, again = item
        if not (isinstance(command, str) and _count(first) and _count(again)):
            return None
        duplicates.append((command, first, again))
    jobs, journal_size, journal_lines, records, removed = ints
    metadata_name, digest, journal_sha256 = texts
    return ResumeIndex(
        metadata_name, digest, jobs, journal_size, journal_sha256, journal_lines, records, removed, counts, ignored, tuple(failed), tuple(duplicates)
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _state_counts(obj: Any) -> dict[str, int] | None:
    if not isinstance(obj, dict) or set(obj) != _STATES or not all(_count(v) for v in obj.values()):
        return None
    # Keyed and ordered as `launch._tally` keys them: the CLI hands these on (--on-finish).
    counts: dict[str, int] = {state: int(obj[str(state)]) for state in State.ALL}
    return counts

