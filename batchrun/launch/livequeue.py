"""A launch that takes jobs while it runs: `--follow`'s feed, seen from the launch.

The launch hands its doit run a `feed.JobFeed` (a `feed.JobQueue` that can
say "nothing yet") instead of its plan's list. This part keeps the launch's
view of its runfile in step with what the follower reports:
- a job that enters the file is a job of this launch from then on: counted
  by `finish`, given a pending metadata.json entry, reported as a QUEUE event
  (the display's totals grow);
- a job whose line leaves the file before it ever ran is no longer one: its
  pending entry goes, it is reported as a DROP event, and if it waits in a
  window it does not start when its turn comes (`may_start`). A job that ran
  keeps its record and entry and still counts, as for this launch it did;
- a repeated command, or a file that cannot be read now, is one warning
  line for the CLI (`on_warning`); the launch follows on.

This module never prints and never imports doit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from batchrun.launch.events import EventKind
from batchrun.launch.feed import JobFeed
from batchrun.launch.launchcontrol import LaunchControl
from batchrun.launch.runner import JobRunner
from batchrun.runfile.file import Job, Runfile
from batchrun.runfile.follow import FollowChange, RunfileFollower
from batchrun.runfile.follow_gridspec import GridspecFollower
from batchrun.store.journal import Journal
from batchrun.store.metasync import MetadataSync
from batchrun.store.records import JobRecord

__all__ = ["Follow", "Follower"]

Follower = RunfileFollower | GridspecFollower


class Follow:
    """The feed of a following launch and what its changes do to the launch's state."""

    def __init__(
        self, runfile: Runfile, follower: Follower, pending: Iterable[Job], control: LaunchControl, journal: Journal,
        metadata: MetadataSync, runner: JobRunner, count: int | None = None,
    ) -> None:
        self.runfile = runfile
        self.follower = follower
        self.control = control
        self.journal = journal
        self.metadata = metadata
        self.runner = runner
        self.on_warning: Callable[[str], None] = _ignore_warning
        self.feed = JobFeed(pending, follower, control.stopping, self._on_change, count)

    @classmethod
    def of_runfile(cls, runfile: Runfile, gridspec: Path | None, resweep: Callable[[], object] | None) -> Follower:
        """The follower of a runfile, or of the gridspec it is swept from."""
        if gridspec is not None:
            return GridspecFollower(gridspec, runfile.path, runfile, resweep)
        return RunfileFollower(runfile.path, runfile)

    def may_start(self, job: Job) -> Job | None:
        """Just before a queued job starts: the job as the file shows it now (its directive may have
        changed what it asks for), or None if its line left the file (or the launch is stopping)."""
        if not self.feed.should_start(job.job_id):
            return None
        return self.follower.job(job.job_id) or job

    def queued(self) -> int:
        return self.feed.queued()

    def _on_change(self, change: FollowChange) -> None:
        path = self.runfile.path
        if change.error is not None:
            self.on_warning(f"{change.error}; still following the last readable version")
        for _command, first, again in change.duplicates:
            self.on_warning(f"{path}:{again}: same command as line {first}; it runs once")
        added = []
        metadata = self.metadata
        with self.control.lock:
            # The launch's jobs are the runfile's table: looked up by id, never a dict of every job.
            table = self.runfile.jobs
            gone_ids = [job_id for job_id in dict.fromkeys(change.removed) if table.has_id(job_id) and self._never_ran(job_id)]
            gone = [table[table.index_of(job_id)] for job_id in gone_ids]
            if gone:
                table.remove_ids(set(gone_ids))
                for job_id in gone_ids:
                    metadata.forget(job_id)
            for job in change.added:
                if not table.has_id(job.job_id):
                    table.append(job)
                    added.append(job)
                    metadata.update(job, self.journal.records.get(job.job_id) or JobRecord(job.job_id))
        for job in gone:
            self.runner.emit(EventKind.DROP, job, JobRecord(job.job_id), None)
        for job in added:
            self.runner.emit(EventKind.QUEUE, job, self.journal.records.get(job.job_id) or JobRecord(job.job_id), None)

    def _never_ran(self, job_id: str) -> bool:
        rec = self.journal.records.get(job_id)
        return (rec is None or rec.attempts == 0) and job_id not in self.runner.running and job_id not in self.runner.adopt_ids


def _ignore_warning(text: str) -> None:
    pass
