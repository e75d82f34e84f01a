"""A relaunch with nothing to do, answered from the resume index instead of a full launch.

`QuickLaunch.open` takes the runs directory's lock and checks that the
index the last launch left (`batchrun.store.resume_index`) still describes the
runs directory exactly: the same runfile text, the same journal bytes, the
stamp and the viewcache mark of that journal, no journal left to compact,
and nothing to run in this launch's mode. Only then does it stand in for
`Launch`: the same `prepare` -> `run` -> `finish` steps, the same `Plan`
and `LaunchResult`, and the same answers to `batchrun stop` (through a
`ControlPoller`) and to signals; it writes nothing, as the full path writes
nothing that would change on a no-op. When any of it does not hold, `open`
releases the lock and returns None: the caller takes the full path, which
decides from the records as ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from batchrun.errors import BatchrunError
from batchrun.launch.control import ControlPoller
from batchrun.launch.events import JobEvent
from batchrun.launch.options import LaunchOptions, Mode
from batchrun.launch.plan import Plan
from batchrun.launch.result import LaunchResult
from batchrun.store.journal import JOURNAL_NAME, Journal, compaction_due
from batchrun.store.records import State
from batchrun.store.repair import repair_runs_dir
from batchrun.store.resume_index import ResumeIndex, journal_digest, read_index, runfile_digest
from batchrun.store.rundir import LaunchLock, RunsDir, acquire_lock
from batchrun.store.stamp import Stamp, read_stamp
from batchrun.store.viewcache import read_mark

__all__ = ["QuickLaunch", "plan_of"]

# States a job of the runfile (not ignored) may be in for each mode to have nothing to run.
_TO_RUN = {
    Mode.RESUME: (State.PENDING, State.INTERRUPTED, State.RUNNING),
    Mode.RETRY_FAILED: (State.PENDING, State.INTERRUPTED, State.RUNNING, State.FAILED, State.TIMEOUT, State.KILLED),
}


def plan_of(index: ResumeIndex, mode: str) -> Plan | None:
    """The plan `make_plan` makes for a launch of this mode; None when it would run something."""
    states = _TO_RUN.get(Mode(mode))
    if states is None:
        return None  # --rerun-all runs every job
    active = {state: index.counts[state] - index.ignored[state] for state in State.ALL}
    if any(active[state] for state in states):
        return None
    failed = active[State.FAILED] + active[State.TIMEOUT] + active[State.KILLED]
    return Plan(
        [], [], 0, active[State.SUCCEEDED], failed, failed if mode == Mode.RESUME else 0, 0, 0,
        index.removed, sum(index.ignored.values()), active[State.STOPPED],
    )


class QuickLaunch:
    """A launch that runs nothing, for the CLI in place of `Launch`."""

    def __init__(self, runs_dir: RunsDir, lock: LaunchLock, index: ResumeIndex, plan: Plan) -> None:
        self.runs_dir = runs_dir
        self.index = index
        self.plan = plan
        self.notices: list[str] = []
        self.interrupted = False
        self.drained = False
        self._lock: LaunchLock | None = lock
        self._poller = ControlPoller(runs_dir, self._on_control_stop, self._on_control_kill)

    @classmethod
    def open(cls, runfile: Path, options: LaunchOptions) -> QuickLaunch | None:
        """The quick launch of this relaunch, holding the lock; None when the full path must answer."""
        if options.executor != "local" or options.follow or options.mode not in _TO_RUN:
            return None
        runs_dir = RunsDir.for_runfile(runfile, options.accounting_dir, options.metadata_name)
        index = read_index(runs_dir.path)
        if index is None or index.metadata_name != runs_dir.metadata_name:
            return None
        plan = plan_of(index, options.mode)
        digest = runfile_digest(runfile)
        if plan is None or digest is None or digest != index.runfile_digest:
            return None
        try:
            runs_dir.create()
            lock = acquire_lock(runs_dir)
        except BatchrunError:
            return None  # busy or unwritable: the full path says so, in its place
        quick = cls(runs_dir, lock, index, plan)
        try:
            if not _journal_matches(runs_dir, index):
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
        return list(self.index.duplicates)

    @property
    def total(self) -> int:
        """Jobs in the runfile."""
        return self.index.jobs

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
        """Release the lock and sum up, from the index."""
        self.release()
        index = self.index
        return LaunchResult(
            dict(index.counts), index.failed_jobs(), self.interrupted, 0, self.runs_dir.metadata, self.runs_dir.path,
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


def _journal_matches(runs_dir: RunsDir, index: ResumeIndex) -> bool:
    """Whether the journal, the stamp and the mark are still those the index was made with."""
    stamp = read_stamp(runs_dir.path)
    journal = runs_dir.path / JOURNAL_NAME
    expected = Stamp.now(runs_dir.path, journal, runs_dir.metadata_name, index.runfile_digest)
    if stamp is None or stamp != expected or stamp.journal_size != index.journal_size:
        return False
    mark = read_mark(runs_dir.path)
    if mark is None or mark[0] != index.journal_size:
        return False
    if compaction_due(index.journal_lines, index.records):
        return False  # the full path would compact the journal now
    return journal_digest(journal) == (index.journal_size, index.journal_sha256, index.journal_lines)
