"""What a launch reports while it runs: `JobEvent`s of a closed set of kinds.

The launch's parts emit them; only the CLI's display renders them.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchrun.launch.options import ValueEnum
from batchrun.runfile.file import Job
from batchrun.store.records import JobRecord

__all__ = ["EventKind", "JobEvent"]


class EventKind(ValueEnum):
    """What happened to a job."""

    START = "start"  # this launch started it
    ADOPT = "adopt"  # a killed launch left it running; this launch waits for it
    RETRY = "retry"  # it ended and failed, and runs again
    REQUEUE = "requeue"  # it exited 75 (requeued), and runs again
    END = "end"  # it ended for this launch
    SUBMIT = "submit"  # --detach: started and left running
    QUEUE = "queue"  # --follow: its line entered the runfile; it runs when its turn comes
    DROP = "drop"  # --follow: its line left the runfile before it started; it will not run


@dataclass(frozen=True)
class JobEvent:
    """Something that happened to a job, for the CLI to show."""

    kind: str  # an EventKind
    job: Job
    record: JobRecord
    slot: int | None = None
    note: str | None = None  # why it ended as it did, where the state does not say (--max-requeues spent)
    metrics: bool = True  # False: it surely left no metrics file (its helper looked), so none is read for it
