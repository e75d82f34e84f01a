"""A relaunch with nothing to do, answered from the last launch's fingerprint: a step of the launch.

Once the launch holds its runs directory (`hold.RunsDirHold`),
`answer_from_fingerprint` checks that the fingerprint the last launch left
(`batchrun.store.fingerprint`) still describes the runs directory exactly:
the same runfile text, the same journal bytes, the same metadata.json, no
journal left to compact, and nothing to run in this launch's mode
(`plan.state_done`, the planner's own rule, over the summary's counts). Only
then it answers: the same `Plan` the full path would make and, at the end,
the same `LaunchResult`, without replaying the journal or parsing the
runfile; it writes nothing, as the full path writes nothing that would change
on a no-op. When any of it does not hold it answers None and the launch
takes the full path, which decides from the records as ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchrun.errors import BatchrunError
from batchrun.launch.hold import RunsDirHold
from batchrun.launch.options import LaunchOptions, Mode
from batchrun.launch.plan import Plan, state_done
from batchrun.launch.result import LaunchResult
from batchrun.runfile.file import runfile_digest
from batchrun.store.fingerprint import Fingerprint, Summary, journal_digest, read_fingerprint
from batchrun.store.journal import JOURNAL_NAME, Journal, compaction_due
from batchrun.store.records import IGNORED, NOT_SUCCEEDED, REMOVED, State
from batchrun.store.repair import repair_runs_dir
from batchrun.store.rundir import RunsDir

__all__ = ["QuickAnswer", "answer_from_fingerprint", "plan_of"]


@dataclass(frozen=True)
class QuickAnswer:
    """What a relaunch with nothing to do answers: its plan now, its result at the end."""

    plan: Plan
    summary: Summary

    def result(self, hold: RunsDirHold) -> LaunchResult:
        """The launch's result, from the summary (and the requests it got meanwhile)."""
        return LaunchResult(
            counts=dict(self.summary.counts),
            failed=self.summary.failed_jobs(),
            failed_count=self.summary.failed_count,
            interrupted=hold.interrupted,
            ran=0,
            metadata_path=hold.runs_dir.metadata,
            runs_dir=hold.runs_dir.path,
            drained=hold.drained and not hold.interrupted,
        )


def answer_from_fingerprint(hold: RunsDirHold, runfile: Path, options: LaunchOptions) -> QuickAnswer | None:
    """The answer to this relaunch from the fingerprint, with the runs directory held; None: take the full path."""
    if options.executor != "local" or options.follow or options.mode == Mode.OVERWRITE:
        return None
    runs_dir = hold.runs_dir
    fingerprint = read_fingerprint(runs_dir.path)
    if fingerprint is None or fingerprint.summary is None or fingerprint.metadata_name != runs_dir.metadata_name:
        return None
    summary = fingerprint.summary
    plan = plan_of(summary, options.mode)
    if plan is None or runfile_digest(runfile) != fingerprint.runfile_digest:
        return None
    try:
        if not _journal_matches(runs_dir, fingerprint, summary):
            return None
        # What the full path's `prepare` does first; with the journal there
        # and whole, no repair is due (a notice means doubt).
        if repair_runs_dir(runs_dir):
            return None
        Journal(runs_dir.path).make_reserve()
    except BatchrunError:
        return None  # the full path meets it again, and reports it in its place
    return QuickAnswer(plan, summary)


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


def _journal_matches(runs_dir: RunsDir, fingerprint: Fingerprint, summary: Summary) -> bool:
    """Whether metadata.json and the journal are still those the fingerprint was made with, byte for byte."""
    journal = runs_dir.path / JOURNAL_NAME
    if not fingerprint.matches(runs_dir.path, journal, runs_dir.metadata_name, fingerprint.runfile_digest):
        return False
    if compaction_due(summary.journal_lines, summary.records):
        return False  # the full path would compact the journal now
    return journal_digest(journal) == (fingerprint.journal_size, summary.journal_sha256, summary.journal_lines)
