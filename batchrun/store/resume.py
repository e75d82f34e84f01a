"""A relaunch from the fingerprint's snapshot: the runfile's table and the records as the last launch left them, plus what changed since.

`launch` takes this step after the hold: `read_resume` answers with the
runfile (the jobs of its unchanged first part read back, only the rest
parsed), the records (as of the fingerprint's journal size: `Journal.load`
replays only the lines after), each job's record row, and metadata.json's
layout (`metasync.MetadataSync.resume_view` renders only what changed). It
answers None at any doubt, and the launch reads everything as ever; both give
the same jobs and records (the differential tests of `tests/test_quickresume.py`
run each case both ways).

Which part of the runfile is unchanged: the snapshot keeps a digest of each
block of the text it was parsed from (blocks of about 8 KiB, cut after a
newline); the blocks the new text still has, from the start, hold the same
jobs at the same lines. The text from the first changed block on is parsed,
and its first jobs, found the same as the old ones at the same lines and
places, keep their old index (`Resume.kept`): lines appended, or the last
ones replaced, cost what they changed.

A launch that ends leaves the snapshot through `fingerprint.write_fingerprint`
(`snapshot_of` makes it). Nothing here raises for a bad snapshot.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrun.runfile.file import Runfile, read_text
from batchrun.runfile.idindex import IdIndex, twin_of, unsorted_twin
from batchrun.runfile.idprefix import IdPrefix
from batchrun.runfile.jobtable import JobTable, dump_table, extend_table, restore_table
from batchrun.runfile.packed import PackedBytes
from batchrun.runfile.parse import parse_commands
from batchrun.store.fingerprint import Fingerprint, SnapshotRef, read_fingerprint
from batchrun.store.jobsnapshot import read_sections
from batchrun.store.journal import JOURNAL_NAME
from batchrun.store.records import USAGE_FIELDS
from batchrun.store.recordtable import RecordTable
from batchrun.store.rundir import RunsDir
from batchrun.store.summary import JournalPrefix, journal_prefix

__all__ = ["HELD_RENDERS", "Resume", "read_resume", "snapshot_of", "streams_view"]

# The runfile's text is compared a block of about this many bytes at a time (cut after a newline).
# A relaunch parses its text again from the first block that changed: at 64 KiB, 100 lines
# appended to short ones cost a parse (and a repeat check) of some 6,000 (0.13 s).
# Blocks of earlier snapshots, of another size, still compare: their ends are in the snapshot.
_BLOCK = 8 * 1024
_DIGEST_SIZE = 16
# The sections a read command may pass over (`read_resume`): metadata.json's layout, what each run used.
_VIEW = ("view.",)
_INDEXES = ("jobs.keys.index", "records.keys.index")
_USAGE = tuple(f"records.{name}" for name in USAGE_FIELDS)
# Sections often the same bytes as the job table's (every job ran in runfile order; metadata.json's first
# entries are the jobs'): read as that one array (`read_sections`), held once (`idindex.twin_of`).
_SAME = {f"{part}.keys.{name}": f"jobs.keys.{name}" for part in ("records", "view") for name in ("ids", "index")}


# A relaunch renders at most this many entries after its runfile's change into memory (about 450
# bytes each until written); more, and metadata.json is written anew, streaming (`MetadataSync.build`).
HELD_RENDERS = 1 << 15


@dataclass
class OldView:
    """metadata.json as the last launch left it: its entries' keys, in order, and where each line is."""

    keys: IdIndex
    starts: array[int]
    lens: array[int]
    logs: str  # the logs directory its entries name


@dataclass
class Resume:
    """What a relaunch starts from instead of reading everything."""

    runfile: Runfile
    kept: int  # the runfile's first jobs, the same as the snapshot's at the same index and line
    records: RecordTable  # as of the journal's first `journal_size` bytes
    rows: array[int]  # each job's record row (-1: none, or not known yet)
    journal_size: int
    journal_lines: int
    view: OldView | None  # None: not known
    fingerprint: Fingerprint
    # The journal's first `journal_size` bytes as hashed to check the records: the launch's
    # last digest (`summary.journal_digest`) goes on from there instead of hashing them again.
    journal_prefix: JournalPrefix | None = None
    # The old text's blocks the new one starts with (`_unchanged_prefix`): their ends and digests, which `snapshot_of` keeps.
    blocks: tuple[array[int], bytes] = (array("q"), b"")


def snapshot_of(
    runfile: Runfile,
    records: RecordTable,
    rows: array[int],
    view: tuple[IdIndex | IdPrefix, array[int], array[int]] | None,
    logs: str,
    resume: Resume | None = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The snapshot's sections and side data for a launch that ends with these; None when none may be written.

    None while a record is running (a relaunch must settle it), when the
    table is not the runfile's own bytes (jobs were appended while it ran),
    or when the runfile has directives (a parse of its changed part alone
    could not tell which request is in effect where it starts).
    `resume`: what this launch started from; the blocks of the runfile it
    found unchanged keep their digests (not hashed again).
    `view`: metadata.json's keys and layout, when every entry is one batchrun
    rendered from a record (it has a state).
    """
    jobs = runfile.jobs
    if records.running_rows() or isinstance(jobs.blob, bytearray) or len(rows) != len(jobs) or jobs.requests:
        return None
    sections: dict[str, Any] = {}
    job_sections, job_side = dump_table(jobs)
    sections.update({f"jobs.{name}": values for name, values in job_sections.items()})
    record_sections, record_side = records.dump()
    sections.update({f"records.{name}": values for name, values in record_sections.items()})
    # A row of a deleted record is no job's row any more.
    present = records.present
    sections["rows"] = array(rows.typecode, (row if row >= 0 and present[row] else -1 for row in rows)) if 0 in present else rows
    ends, digests = _block_digests(jobs.blob, resume.blocks if resume is not None and resume.runfile.jobs is jobs else None)
    sections["blocks.ends"], sections["blocks.digests"] = ends, digests
    side: dict[str, Any] = {"jobs": job_side, "records": record_side, "duplicates": runfile.duplicates, "blob": len(jobs.blob), "view": None}
    if view is not None:
        # Without a sort of its own at the end (8 MB at a million): entries that are not the jobs in order are looked up seldom.
        view_sections, view_side = view[0].dump(sort=False)
        sections.update({f"view.keys.{name}": values for name, values in view_sections.items()})
        sections["view.starts"], sections["view.lens"] = view[1], view[2]
        side["view"] = {"keys": view_side, "logs": logs}
    return sections, side


def read_resume(runs_dir: RunsDir, runfile_path: Path, *, light: bool = False, usage: bool = True, indexes: bool = True) -> Resume | None:
    """The relaunch's start from the fingerprint's snapshot; None at any doubt (the launch then reads everything).

    `light`, for a read command: without metadata.json's layout (`Resume.view`
    None: only a launch that keeps the file uses it); with `usage=False` also
    without what each run used (None in every record read back: `status`'s
    table shows none of it, its CSV does). Their bytes are passed over.
    `indexes=False`: without the ids' sorted indexes (16 MB at a million
    jobs), for a read that looks no job up by id; one that does sorts them then.
    """
    fingerprint = read_fingerprint(runs_dir.path)
    if fingerprint is None or fingerprint.snapshot is None:
        return None
    ref = fingerprint.snapshot
    prefix = journal_prefix(runs_dir.path / JOURNAL_NAME, fingerprint.journal_size)
    if prefix is None or prefix.sha256.hexdigest() != ref.journal_sha256:
        return None  # rewritten (compacted, repaired) or shorter: the records are not of it
    read = read_text(runfile_path)
    if read is None:
        return None  # the full read reports what is wrong with it
    text, digest = read
    snapshot = read_sections(runs_dir.path, ref.token, skip=(_VIEW if light else ()) + (_USAGE if not usage else ()) + (_INDEXES if not indexes else ()), same=_SAME)
    if snapshot is None:
        return None
    try:
        resume = _restore(snapshot[0], snapshot[1], runfile_path, text, digest, fingerprint)
    except (ValueError, KeyError, TypeError, IndexError, OverflowError):
        return None
    if resume is not None:
        resume.journal_prefix = prefix
    return resume


def _restore(sections: dict[str, array[Any]], side: dict[str, Any], path: Path, text: bytes | PackedBytes, digest: str, fingerprint: Fingerprint) -> Resume | None:
    def part(name: str) -> dict[str, array[Any]]:
        # Taken out of `sections`: a table's arrays are then its own to let go (the old ids and sorted index of a truncated job table).
        return {key[len(name) + 1 :]: sections.pop(key) for key in [key for key in sections if key.startswith(f"{name}.")]}

    assert fingerprint.snapshot is not None
    ref: SnapshotRef = fingerprint.snapshot
    old_size = side["blob"]
    old_ends, old_block_digests = sections["blocks.ends"], sections["blocks.digests"].tobytes()
    cut = _unchanged_prefix(text, old_size, old_ends, old_block_digests)
    matched = bisect_left(old_ends, cut) + 1 if cut else 0  # `cut` is the end of the last block matched
    # The new text holds the kept jobs where the old one did (the blocks before `cut` are the same bytes).
    jobs = restore_table(text, part("jobs"), side["jobs"])
    # Before the job table changes: sections read as its own (`_SAME`) become twins of its ids (`idindex.twin_of`).
    records = RecordTable.restore(part("records"), side["records"], twin=jobs.keys)
    view_keys = twin_of(IdIndex.restore(part("view.keys"), side["view"]["keys"]), jobs.keys) if side["view"] is not None and "view.keys.ids" in sections else None
    old_rows = sections["rows"]
    starts, _ends, lines = jobs.columns()
    if len(old_rows) != len(jobs) or ref.runfile_size != old_size:
        return None
    kept_jobs = bisect_left(starts, cut)  # jobs wholly in the unchanged blocks
    if view_keys is not None and streams_view(len(jobs), kept_jobs):
        # More old entries after the change than a relaunch holds rendered: metadata.json is most likely written anew, its old
        # entries not looked up by id (else sorted when first asked), and their sorted index (8 MB a million) would outlive the job table's.
        view_keys = unsorted_twin(view_keys)
    # The jobs after them, as they were (only those are compared below; a copy of all would be the peak).
    old_digests, old_lines, old_starts = jobs.keys.digests[kept_jobs:], lines[kept_jobs:], starts[kept_jobs:]
    jobs.truncate(kept_jobs)
    first_line = _newlines(text, cut) + 1
    duplicates = [(str(command), int(first), int(again)) for command, first, again in side["duplicates"] if int(again) < first_line]
    new = _append_new_lines(jobs, duplicates, text, cut, first_line)
    # The first new jobs that are the old ones at the same line and place keep their index (and record row).
    kept = kept_jobs
    new_starts, _, new_lines = new.columns()
    while (
        kept - kept_jobs < len(old_digests)
        and kept - kept_jobs < len(new)
        and new.keys.digests[kept - kept_jobs] == old_digests[kept - kept_jobs]
        and new_lines[kept - kept_jobs] == old_lines[kept - kept_jobs]
        and new_starts[kept - kept_jobs] == old_starts[kept - kept_jobs]
    ):
        kept += 1
    # The old rows themselves when every job is kept (a read's common case): a copy would be the read's peak.
    rows = old_rows if kept == len(old_rows) else old_rows[:kept]
    view = None
    if view_keys is not None and "view.starts" in sections:
        view_starts, view_lens = sections["view.starts"], sections["view.lens"]
        if len(view_starts) == len(view_lens) == len(view_keys):
            view = OldView(view_keys, view_starts, view_lens, str(side["view"]["logs"]))
    runfile = Runfile(path, jobs, duplicates, digest)
    blocks = (old_ends[:matched], old_block_digests[: matched * _DIGEST_SIZE])
    return Resume(runfile, kept, records, rows, fingerprint.journal_size, ref.journal_lines, view, fingerprint, blocks=blocks)


def streams_view(jobs: int, same: int) -> bool:
    """Whether a relaunch writes metadata.json anew, streaming, when its first `same` of `jobs` entries stay as they are."""
    return jobs - same > HELD_RENDERS


def _append_new_lines(jobs: JobTable, duplicates: list[tuple[str, int, int]], text: bytes | PackedBytes, cut: int, first_line: int) -> JobTable:
    """Parse the text from `cut` and add its jobs; a command the kept lines have is a repeat, as a full parse finds."""
    unique = not jobs.ids_repeat()
    new, new_repeats = parse_commands(text, first_line, start=cut)
    keys = jobs.keys
    old_lines = jobs.columns()[2]
    dropped: set[int] = set()  # new jobs that repeat a kept line's command (a list of every kept one was 18 MB at 500,000)
    repeats: list[tuple[str, int, int]] = []
    for command_text, first, again in new_repeats:
        # Repeated among the new lines, and maybe of a kept line first.
        data = command_text.encode()
        old = next((row for row in keys.rows_of_digest(_digest(data)) if jobs.command_bytes(row) == data), None)
        repeats.append((command_text, old_lines[old] if old is not None else first, again))
    new_lines = new.columns()[2]
    for i in range(len(new)):
        matches = keys.rows_of_digest(new.keys.digests[i]) if len(jobs) else []
        if matches:
            command = new.command_bytes(i)
            first_row = next((row for row in matches if jobs.command_bytes(row) == command), None)
            if first_row is not None:
                repeats.append((command.decode(), old_lines[first_row], new_lines[i]))
                dropped.add(i)
                continue
            unique = False
    if dropped:
        new._keep([i for i in range(len(new)) if i not in dropped])
    unique = unique and not new.ids_repeat()
    extend_table(jobs, new, cut)
    jobs._ids_unique = unique
    duplicates.extend(sorted(repeats, key=lambda repeat: repeat[2]))
    return new


def _block_digests(blob: bytes | PackedBytes, kept: tuple[array[int], bytes] | None = None) -> tuple[array[int], array[int]]:
    """The ends of the text's blocks (each cut just after a newline, the last at its end) and their digests.

    `kept`: the first blocks' ends and digests, known to be of this text's
    first bytes. A block shorter than `_BLOCK` ended where the old text did,
    and a walk from the start would make it longer now: it is hashed again.
    """
    ends, digests = array("q"), bytearray()
    if kept is not None and len(kept[1]) == len(kept[0]) * _DIGEST_SIZE and (not kept[0] or kept[0][-1] <= len(blob)):
        count = len(kept[0])
        if count and kept[0][-1] - (kept[0][-2] if count > 1 else 0) < _BLOCK:
            count -= 1
        ends.extend(kept[0][:count])
        digests += kept[1][: count * _DIGEST_SIZE]
    start = ends[-1] if ends else 0
    while start < len(blob):
        cut = blob.find(b"\n", start + _BLOCK - 1)
        end = len(blob) if cut < 0 else cut + 1
        ends.append(end)
        digests += hashlib.blake2b(blob[start:end], digest_size=_DIGEST_SIZE).digest()
        start = end
    return ends, array("B", digests)


def _unchanged_prefix(text: bytes | PackedBytes, old_size: int, ends: array[int], digests: bytes) -> int:
    """How many bytes from the start of `text` are blocks of the old text, each ending with a newline."""
    cut = start = 0
    for i, end in enumerate(ends):
        if end > len(text) or end > old_size or text[end - 1 : end] != b"\n":
            break
        if hashlib.blake2b(text[start:end], digest_size=_DIGEST_SIZE).digest() != digests[i * _DIGEST_SIZE : (i + 1) * _DIGEST_SIZE]:
            break
        cut = start = end
    return cut


def _digest(command: bytes) -> int:
    return int.from_bytes(hashlib.sha256(command).digest()[:8], "big")


def _newlines(text: bytes | PackedBytes, end: int) -> int:
    """How many newlines `text` has before `end` (a packed one counted a block at a time)."""
    if isinstance(text, PackedBytes):
        return sum(block.count(b"\n") for block in text.blocks(end))
    return text.count(b"\n", 0, end)
