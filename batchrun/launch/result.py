"""What a launch hands back to the CLI, and the one rule for the exit code of a finished launch.

A module of its own so that a relaunch answered without a launch
(`batchrun.launch.quickresume`) returns the same value without importing the
launch machinery (executors, runner, doit); `batchrun wait` and
`--on-finish`'s `BATCHRUN_EXIT_CODE` take their exit code from `exit_code_of`
too, so a launch and a `wait` on its records always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchrun.errors import BatchrunError
from batchrun.runfile.file import Job
from batchrun.store.records import NOT_SUCCEEDED, JobRecord, State

__all__ = ["LaunchResult", "exit_code_of"]


def exit_code_of(counts: Mapping[str, int], *, interrupted: bool = False, halted: bool = False, error: BatchrunError | None = None) -> int:
    """The exit code of a finished launch, from how it ended and its jobs' counts (`records.category_of`).

    2 (the error's code) when the launch could not go on; 1 when a failure
    stopped it (`--fail-fast`, `--halt-now`: the jobs it stopped are left
    interrupted, but they are its doing, not the user's); 130 when it was
    interrupted (Ctrl-C, SIGTERM, `stop --now`) or a job is left interrupted
    or requeued (it runs again on the next launch); 1 when a job of the runfile failed,
    timed out or was killed; else 0. Pending jobs (lines never started, a
    launch ended by `batchrun stop`), ignored and removed ones do not change
    it; `stopped` counts as done. How a launch ended is also in its
    fingerprint, so `wait` passes the same `interrupted` and `halted`.
    """
    if error is not None:
        return error.exit_code
    if halted:
        return 1
    if interrupted or counts.get(State.INTERRUPTED, 0) or counts.get(State.REQUEUED, 0):
        return 130
    if any(counts.get(state, 0) for state in NOT_SUCCEEDED):
        return 1
    return 0


@dataclass(kw_only=True)
class LaunchResult:
    """The outcome of a launch for the jobs of its runfile."""

    counts: dict[str, int]  # jobs of the runfile by `records.category_of`
    failed: Sequence[tuple[Job, JobRecord]]  # those that failed, timed out or were killed, in runfile order
    failed_count: int | None = None  # how many did, when `failed` lists only the first (a relaunch answered from its fingerprint)
    interrupted: bool  # a signal (or `stop --now`) stopped the launch
    ran: int
    metadata_path: Path
    runs_dir: Path
    error: BatchrunError | None = None
    halted: str | None = None  # "fail-fast" or "halt-now" when a failure stopped the launch
    drained: bool = False  # ended by `batchrun stop`: no new job started, running ones finished
    detached: int = 0  # jobs submitted and left running (--detach)
    metadata_written: bool = True  # metadata_path holds this launch's last view (not so on a full disk)

    @property
    def failures(self) -> int:
        """How many jobs failed, timed out or were killed (`failed` may list only the first)."""
        return len(self.failed) if self.failed_count is None else self.failed_count

    @property
    def exit_code(self) -> int:
        """0 all succeeded, 1 some failed, 130 interrupted, 2 could not go on (`exit_code_of`)."""
        return exit_code_of(self.counts, interrupted=self.interrupted, halted=self.halted is not None, error=self.error)
