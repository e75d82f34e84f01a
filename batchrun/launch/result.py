"""What a launch hands back to the CLI: counts, failures, and why it ended.

A module of its own so that a relaunch answered without a launch
(`batchrun.launch.quickresume`) returns the same value without importing the
launch machinery (executors, runner, doit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchrun.errors import BatchrunError
from batchrun.runfile.file import Job
from batchrun.store.records import JobRecord

__all__ = ["LaunchResult"]


@dataclass
class LaunchResult:
    """The outcome of a launch for the jobs of its runfile."""

    counts: dict[str, int]
    failed: list[tuple[Job, JobRecord]]
    interrupted: bool
    ran: int
    metadata_path: Path
    runs_dir: Path
    error: BatchrunError | None = None
    halted: str | None = None  # "fail-fast" or "halt-now" when a failure stopped the launch
    drained: bool = False  # ended by `batchrun stop`: no new job started, running ones finished
    detached: int = 0  # jobs submitted and left running (--detach)

    @property
    def exit_code(self) -> int:
        """0 all succeeded, 1 some failed, 130 interrupted, 2 could not go on."""
        if self.error is not None:
            return self.error.exit_code
        if self.halted:
            return 1
        if self.interrupted:
            return 130
        if self.failed:
            return 1
        return 0
