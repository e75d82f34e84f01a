"""`batchrun launch` as a chain of steps, the way nox's `workflow.execute` runs a session.

Each step takes the launch's state, fills in what it found, and returns None
to go on or an exit code to stop there. The CLI composes the chain from these
core steps, doit's steps (`batchrun._doit`: the sweep, running the jobs) and
its own printing steps, so no step calls back into the CLI and the order of
a launch reads top to bottom in one list:

    take the hold (lock) -> sweep a gridspec -> answer from the fingerprint,
    or load the runfile and prepare (settle, plan) -> run -> finish

`execute` releases the hold whatever ends the chain, so a refused, failed or
interrupted launch never leaves its runs directory locked. This module never
prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchrun.launch.hold import RunsDirHold
from batchrun.launch.options import LaunchOptions, Mode
from batchrun.launch.plan import Plan
from batchrun.launch.quickresume import QuickAnswer, answer_from_fingerprint
from batchrun.launch.result import LaunchResult
from batchrun.runfile.file import Runfile, load_runfile
from batchrun.store.resume import Resume, read_resume
from batchrun.store.target import Target

if TYPE_CHECKING:
    # Imported when used: a relaunch answered from the fingerprint loads neither the launch machinery nor a sweep's.
    from batchrun.launch.adaptive import AdaptiveSweep
    from batchrun.launch.launch import Launch

__all__ = ["LaunchState", "Step", "execute", "finish", "load", "prepare", "quick_answer", "take_hold"]


@dataclass
class LaunchState:
    """What the steps of one launch hand on to each other."""

    target: Target  # what the user named, resolved to its runs directory
    options: LaunchOptions
    runfile_path: Path  # the runfile the launch runs (a gridspec's `<stem>.runfile`)
    sweep: AdaptiveSweep | None = None  # a W&B spec's bayes search and hyperband, if it has either
    hold: RunsDirHold | None = None
    quick: QuickAnswer | None = None
    runfile: Runfile | None = None
    resume: Resume | None = None  # the last launch's snapshot, when it still holds
    total: int = 0  # jobs of the runfile
    duplicates: list[tuple[str, int, int]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # repairs made, for the CLI to print
    launch: Launch | None = None
    plan: Plan | None = None
    result: LaunchResult | None = None

    @property
    def bayes(self) -> bool:
        return self.sweep is not None and self.sweep.bayes is not None


Step = Callable[[LaunchState], "int | None"]


def execute(state: LaunchState, steps: Sequence[Step]) -> int:
    """Run the steps in order until one returns an exit code; the result's exit code when none does."""
    try:
        for step in steps:
            code = step(state)
            if code is not None:
                return code
        return state.result.exit_code if state.result is not None else 0
    finally:
        if state.hold is not None:
            state.hold.release()


def take_hold(state: LaunchState) -> int | None:
    """Lock the runs directory before anything is written (LockedError when another launch holds it)."""
    state.hold = RunsDirHold(state.target.runs_dir)
    state.hold.take()
    return None


def quick_answer(state: LaunchState) -> int | None:
    """A relaunch of a plain runfile with nothing to do: the answer from the fingerprint, no runfile parsed."""
    assert state.hold is not None
    if state.target.gridspec is None:
        state.quick = answer_from_fingerprint(state.hold, state.runfile_path, state.options)
    if state.quick is not None:
        state.plan = state.quick.plan
        state.total = state.quick.summary.jobs
        state.duplicates = list(state.quick.summary.duplicates)
    return None


def load(state: LaunchState) -> int | None:
    """Parse the runfile (a bayes search's may not exist yet: it starts empty).

    When the last launch's snapshot still describes it (`store.resume`), its
    old lines are read back and only the bytes added since are parsed.
    """
    if state.quick is not None:
        return None
    path = state.runfile_path
    if state.bayes and not path.exists():
        state.runfile = Runfile(path, [])
    else:
        assert state.hold is not None
        if state.options.mode != Mode.OVERWRITE:
            state.resume = read_resume(state.hold.runs_dir, path)
        state.runfile = state.resume.runfile if state.resume is not None else load_runfile(path)
    state.total = len(state.runfile.jobs)
    state.duplicates = list(state.runfile.duplicates)
    return None


def prepare(state: LaunchState) -> int | None:
    """Load the records, repair, settle what a killed launch left, and plan (`Launch.prepare`)."""
    if state.quick is not None:
        return None
    from batchrun.launch.launch import Launch

    assert state.runfile is not None and state.hold is not None
    state.launch = Launch(state.runfile, state.options, state.hold, resume=state.resume)
    state.plan = state.launch.prepare()
    state.notices = list(state.launch.notices)
    return None


def finish(state: LaunchState) -> int | None:
    """Write the last records, leave the fingerprint, release the hold, and sum up."""
    if state.launch is not None:
        state.result = state.launch.finish()
    elif state.quick is not None and state.hold is not None:
        state.hold.release()
        state.result = state.quick.result(state.hold)
    return None
