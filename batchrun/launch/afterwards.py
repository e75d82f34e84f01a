"""What a launch leaves for the next one: the fingerprint, with its summary and its snapshot (`store.fingerprint`).

`leave_fingerprint` is a finishing launch's last write; `kept_view` is the
other end, in the next launch: whether metadata.json may be kept as the
snapshot describes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from batchrun.executors.exitlog import FOLDER, drop_all
from batchrun.launch.launchcontrol import LaunchControl
from batchrun.launch.options import LaunchOptions, Mode
from batchrun.runfile.file import Job, Runfile
from batchrun.runfile.idindex import IdIndex
from batchrun.runfile.idprefix import IdPrefix
from batchrun.store.fingerprint import Fingerprint, SnapshotRef, journal_digest, summary_of, write_fingerprint
from batchrun.store.journal import Journal
from batchrun.store.ledger import Ledger
from batchrun.store.metasync import MetadataSync
from batchrun.store.records import JobRecord
from batchrun.store.resume import OldView, Resume, snapshot_of
from batchrun.store.rundir import RunsDir
from batchrun.store.viewcache import read_old_view

__all__ = ["kept_view", "leave_fingerprint", "view_layout"]

Layout = tuple[IdIndex | IdPrefix, Any, Any]


class Finishing(Protocol):
    """What `leave_fingerprint` reads of the finishing launch (`launch.Launch`), named here so this module imports none of it."""

    runfile: Runfile
    first_digest: str
    journal: Journal
    runs_dir: RunsDir
    options: LaunchOptions
    mode: Mode
    metadata: MetadataSync
    resume: Resume | None
    control: LaunchControl


def leave_fingerprint(launch: Finishing, counts: dict[str, int], failed: Sequence[tuple[Job, JobRecord]], ledger: Ledger) -> None:
    """What lets the next launch skip work and `wait` answer as this one did (`store.fingerprint`).

    No summary and no snapshot for a runfile that grew while jobs ran
    (--follow, bayes): the lines it gained are in `runfile.jobs`, but other
    edits made meanwhile are not.
    """
    runfile, journal, runs_dir = launch.runfile, launch.journal, launch.runs_dir
    summary = snapshot = ref = None
    if not launch.options.follow and runfile.digest == launch.first_digest:
        # A relaunch from the snapshot hashed the journal's first bytes already (`resume.read_resume`).
        prefix = launch.resume.journal_prefix if launch.resume is not None and not launch.metadata.notices else None
        digest = journal_digest(journal.path, prefix)
        summary = summary_of(runfile, journal.records, counts, failed, journal.path, journal.size, ledger, digest)
        if digest is not None and digest[0] == journal.size:
            layout = view_layout(launch.metadata, kept_view(launch.resume, launch.mode, runs_dir, launch.metadata.notices), runs_dir)
            snapshot = snapshot_of(runfile, journal.records, ledger.rows, layout, str(runs_dir.logs), launch.resume)
            ref = SnapshotRef(token="", runfile_size=len(runfile.jobs.blob), journal_sha256=digest[1], journal_lines=digest[2])
    fingerprint = Fingerprint.take(
        runs_dir.path,
        journal.path,
        runs_dir.metadata_name,
        runfile.digest,
        interrupted=launch.control.interrupted,
        halted=launch.control.halted is not None,
        summary=summary,
        snapshot=ref,
    )
    if fingerprint is not None:  # else no journal to vouch for: the next launch reads everything
        write_fingerprint(runs_dir.path, fingerprint, snapshot)


def drop_exit_logs(journal: Journal, runs_dir: RunsDir) -> None:
    """Remove the earlier launches' exit logs once the journal holds every record, synced, and no job runs (`exitlog.drop_all`).

    Taken after settlement, before any job of this launch starts: what a
    killed launch left was read for the jobs it left running, and a launch
    that ended leaves its log until then (for `status` and `wait`).
    """
    # No sync when there is no exit log to drop: the last launch ran no job (or this one is the first).
    if (runs_dir.path / FOLDER).is_dir() and not journal.records.running_rows():
        journal.sync()
        drop_all(runs_dir.path)


def kept_view(resume: Resume | None, mode: str, runs_dir: RunsDir, notices: list[str]) -> tuple[OldView, tuple[int, str]] | None:
    """metadata.json's layout from the snapshot, and the journal mark it reflects, when the file may be kept as it is.

    Only when the fingerprint still vouches for metadata.json (its size and
    mtime), the runs directory has not moved (each entry names its log
    directory), and nothing was repaired.
    """
    if resume is None or resume.view is None or mode == Mode.OVERWRITE or notices:
        return None
    fingerprint = resume.fingerprint
    if not fingerprint.vouches_for_metadata(runs_dir.path, runs_dir.metadata_name) or resume.view.logs != str(runs_dir.logs):
        return None
    return resume.view, (fingerprint.journal_size, fingerprint.journal_tail)


def view_layout(metadata: MetadataSync, kept: tuple[OldView, tuple[int, str]] | None, runs_dir: RunsDir) -> Layout | None:
    """metadata.json's keys and where each entry's line is, as a launch leaves it, when each entry has a state (for the snapshot).

    None when not known, or when an entry of the original batchrun is kept
    as it was (a relaunch must read those).
    """
    view = metadata.view.file
    if metadata.stateless:
        return None
    if len(view.keys):
        written = view.layout()
        return (view.keys, *written) if written is not None else None
    # Never written by this launch: the file is the one the last launch left.
    if kept is not None:
        return kept[0].keys, kept[0].starts, kept[0].lens
    old = read_old_view(runs_dir.metadata)
    if old is None:
        return None
    try:
        if not all(b'}, "state": "' in old.line(pos) for pos in range(len(old))):
            return None
        return old.keys, old.starts, old.lens
    finally:
        old.close()
