"""What a launch would do now (`batchrun plan`, `launch --dry-run`): the launch's own planner over the jobs as they stand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchrun.launch.options import parse_mode
from batchrun.launch.plan import Group, Plan, classify, is_ignored, make_plan
from batchrun.runfile.file import (
    Job,
    Runfile,
)
from batchrun.status.view import GROUPS, JobStatus, RunsStatus, read_status
from batchrun.store.records import IGNORED, JobRecord, State
from batchrun.store.rundir import RunsDir

__all__ = ["Preview", "preview", "preview_launch"]


@dataclass
class Preview:
    """What a launch of a runfile would do now, and which jobs it concerns."""

    plan: Plan
    mode: str
    total: int
    launch_running: bool
    launch_pid: int | None
    groups: dict[str, list[JobStatus]] = field(default_factory=dict)  # GROUPS (and IGNORED) -> jobs, in listing order
    counts: dict[str, int] = field(default_factory=dict)  # the jobs by state, as `status` counts them


def preview_launch(runfile: Runfile, runs_dir: RunsDir, mode: str = "resume") -> Preview:
    """Plan a launch of `runfile` with the launch's planner, touching nothing (`launch --dry-run`).

    While a launch runs, this is the plan of the next one if it stopped now.

    Raises:
        UsageError: unknown mode.
        MetadataError: the journal or metadata.json is corrupt.
    """
    return preview(read_status(runs_dir, runfile), mode)


def preview(status: RunsStatus, mode: str = "resume") -> Preview:
    """What a launch in `mode` would do with the jobs of `status` (read with a runfile).

    The plan is `plan.make_plan`'s, the launch's own; the groups list
    the jobs it concerns.

    Raises:
        UsageError: unknown mode.
    """
    parsed = parse_mode(mode)
    groups: dict[str, list[JobStatus]] = {name: [] for name in (*GROUPS, IGNORED)}
    runfile_jobs: list[Job] = []
    removed_jobs: list[Job] = []
    records: dict[str, JobRecord] = {}
    adopt_ids = set()
    for job in status.jobs:
        rec = job.record
        if rec is not None:
            records[job.job_id] = rec
        running = job.state == State.RUNNING
        if running:
            adopt_ids.add(job.job_id)
        if job.unwatched:
            groups[Group.RECOVERED].append(job)
        if job.removed:
            groups[Group.REMOVED].append(job)
            removed_jobs.append(Job(job.command, job.job_id, 0))
            continue
        runfile_jobs.append(Job(job.command, job.job_id, job.line or 0))
        # Set aside by `doit ignore`: listed apart, as the plan counts it (not among the succeeded).
        groups[IGNORED if not running and is_ignored(rec) else classify(rec, running)].append(job)
    plan = make_plan(runfile_jobs, records, parsed, recovered=len(groups[Group.RECOVERED]), adopt_ids=adopt_ids, removed_jobs=removed_jobs)
    total = len(status.runfile.jobs) if status.runfile is not None else 0
    return Preview(plan, parsed, total, status.launch_running, status.launch_pid, groups, status.counts())
