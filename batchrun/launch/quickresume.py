"""A relaunch with nothing to do, answered from the last launch's fingerprint instead of a full launch.

`QuickLaunch.open` takes the runs directory's lock and checks that the
fingerprint the last launch left (`batchrun.store.fingerprint`) still
describes the runs directory exactly: the same runfile text, the same journal
bytes, the same metadata.json, no journal left to compact, and nothing to run
in this launch's mode (`plan.state_done`, the planner's own rule, over the
summary's counts). Only then does it stand in for `Launch`: the same
`prepare` -> `run` -> `finish` steps, the same `Plan` and `LaunchResult`, and
the same answers to `batchrun stop` (through a `ControlPoller`) and to
signals; it writes nothing, as the full path writes nothing that would change
on a no-op. When any of it does not hold, `open` releases the lock and
returns None: the caller takes the full path, which decides from the records
as ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from batchrun.errors import BatchrunError
from batchrun.launch.control import ControlPoller
from batchrun.launch.events import JobEvent
from batchrun.launch.options import LaunchOptions, Mode
from batchrun.launch.plan import Plan, state_done
from batchrun.launch.result import LaunchResult
from batchrun.runfile.file import runfile_digest
from batchrun.store.fingerprint import Fingerprint, Summary, journal_digest, read_fingerprint
from batchrun.store.journal import JOURNAL_NAME, Journal, compaction_due
from batchrun.store.records import IGNORED, NOT_SUCCEEDED, REMOVED, State
from batchrun.store.repair import repair_runs_dir
from batchrun.store.rundir import LaunchLock, RunsDir, acquire_lock

__all__ = ["QuickLaunch", "plan_of"]


def plan_of(summary: Summary, mode: str) -> Plan | None:
    """The plan `make_plan` makes for a launch of this mode; None when it would run something."""
    counts = summary.counts
    if any(counts[state] and not state_done(state, mode) for state in counts if state not in (IGNORED, REMOVED)):
        return None  # --rerun-all runs every job; the others run what is not done
    failed = sum(counts[state] for state in NOT_SUCCEEDED)
    return Plan(
        to_run=[],
        adopt=[],
        new=0,
        succeeded=counts[State.SUCCEEDED],
        failed=failed,
        failed_skipped=failed if mode == Mode.RESUME else 0,
        rerun_unfinished=0,
        recovered=0,
        removed=summary.removed,
        ignored=counts[IGNORED],
        stopped=counts[State.STOPPED],
    )


class QuickLaunch:
    """A launch that runs nothing, for the CLI in place of `Launch`."""

    def __init__(self, runs_dir: RunsDir, lock: LaunchLock, summary: Summary, plan: Plan) -> None:
        self.runs_dir = runs_dir
        self.summary = summary
        self.plan = plan
        self.notices: list[str] = []
        self.interrupted = False
        self.drained = False
        self._lock: LaunchLock | None = lock
        self._poller = ControlPoller(runs_dir, self._on_control_stop, self._on_control_kill)

    @classmethod
    def open(cls, runfile: Path, options: LaunchOptions) -> QuickLaunch | None:
        """The quick launch of this relaunch, holding the lock; None when the full path must answer."""
        if options.executor != "local" or options.follow or options.mode == Mode.OVERWRITE:
            return None
        runs_dir = RunsDir.for_runfile(runfile, options.accounting_dir, options.metadata_name)
        fingerprint = read_fingerprint(runs_dir.path)
        if fingerprint is None or fingerprint.summary is None or fingerprint.metadata_name != runs_dir.metadata_name:
            return None
        summary = fingerprint.summary
        plan = plan_of(summary, options.mode)
        digest = runfile_digest(runfile)
        if plan is None or digest is None or digest != fingerprint.runfile_digest:
            return None
        try:
            runs_dir.create()
            lock = acquire_lock(runs_dir)
        except BatchrunError:
            return None  # busy or unwritable: the full path says so, in its place
        quick = cls(runs_dir, lock, summary, plan)
        try:
            if not _journal_matches(runs_dir, fingerprint, summary):
                quick.release()
                return None
            # What the full path's `prepare` does first; with the journal
            # there and whole, no repair is due (a notice or an error means doubt).
            quick._poller.start()
            if repair_runs_dir(runs_dir):
                quick.release()
                return None
            Journal(runs_dir.path).make_reserve()
        except BatchrunError:
            quick.release()
            return None  # the full path meets it again, and reports it in its place
        except BaseException:
            quick.release()
            raise
        return quick

    @property
    def duplicates(self) -> list[tuple[str, int, int]]:
        """The runfile's repeated lines, for the CLI's warnings."""
        return list(self.summary.duplicates)

    @property
    def total(self) -> int:
        """Jobs in the runfile."""
        return self.summary.jobs

    def prepare(self) -> Plan:
        return self.plan

    @property
    def on_event(self) -> None:
        return None

    @on_event.setter
    def on_event(self, callback: object) -> None:
        pass  # no job starts or ends

    def emit(self, event: JobEvent) -> None:
        pass

    def request_stop(self) -> None:
        """Ctrl-C or `batchrun stop --now`: the launch counts as interrupted, as a full one would."""
        self.interrupted = True

    def should_stop_dispatch(self) -> bool:
        return self.interrupted or self.drained

    def run(self, plan: Plan, run_tasks: object) -> None:
        """Nothing to run."""

    def finish(self) -> LaunchResult:
        """Release the lock and sum up, from the fingerprint's summary."""
        self.release()
        return LaunchResult(
            counts=dict(self.summary.counts),
            failed=self.summary.failed_jobs(),
            interrupted=self.interrupted,
            ran=0,
            metadata_path=self.runs_dir.metadata,
            runs_dir=self.runs_dir.path,
            drained=self.drained and not self.interrupted,
        )

    def release(self) -> None:
        """Stop answering requests and let the lock go; safe to call twice."""
        self._poller.stop()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _on_control_stop(self, now: bool) -> None:
        if now:
            self.request_stop()
        else:
            self.drained = True

    def _on_control_kill(self, job_ids: list[str]) -> Iterable[str]:
        return ()  # no job runs


def _journal_matches(runs_dir: RunsDir, fingerprint: Fingerprint, summary: Summary) -> bool:
    """Whether metadata.json and the journal are still those the fingerprint was made with, byte for byte."""
    journal = runs_dir.path / JOURNAL_NAME
    if not fingerprint.matches(runs_dir.path, journal, runs_dir.metadata_name, fingerprint.runfile_digest):
        return False
    if compaction_due(summary.journal_lines, summary.records):
        return False  # the full path would compact the journal now
    return journal_digest(journal) == (fingerprint.journal_size, summary.journal_sha256, summary.journal_lines)
