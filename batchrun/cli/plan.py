"""`batchrun plan` and `launch --dry-run`: what a launch would do now, printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import IO, Any

from batchrun.cli.display import plan_lines
from batchrun.cli.target import target_of
from batchrun.cli.words import counts_text
from batchrun.errors import UsageError
from batchrun.launch.options import LaunchOptions
from batchrun.launch.plan import Group, Plan
from batchrun.liveness import LockTable
from batchrun.runfile.file import Runfile
from batchrun.status.compact import gridspec_names, read_jobs, usable_for
from batchrun.status.preview import Preview, preview_launch
from batchrun.status.view import GROUPS
from batchrun.store.records import IGNORED
from batchrun.store.rundir import RunsDir
from batchrun.store.target import target_runfile

__all__ = ["PLAN_SHOWN", "cmd_plan", "dry_run"]

# Jobs `plan` lists per group unless told otherwise.
PLAN_SHOWN = 5

_GROUP_LABELS = {
    "new": "new, to run",
    "interrupted": "interrupted or never finished, to run again",
    "running": "still running from an earlier launch, to adopt (wait for)",
    "recovered": "ended while no launch was watching, to collect",
    "removed": "removed from the runfile (records and logs kept)",
    IGNORED: "ignored (doit ignore), skipped until doit forget",
}


def cmd_plan(args: argparse.Namespace) -> int:
    """Run `batchrun plan`."""
    target = target_of(args)
    if target.runfile is None:
        raise UsageError(f"{target.given}: a plan needs the runfile, which says which jobs to run; give the runfile (or gridspec) instead of the runs directory")
    read = None
    runfile: Runfile | None
    if usable_for(target):
        assert target.runfile is not None
        gridspec_names(target)  # a broken gridspec is an error even beside its runfile, as `target_runfile` says
        # The fingerprint's snapshot when it holds (`compact.read_jobs`): a million finished lines without a replay.
        read = read_jobs(target.runs_dir, target.runfile, LockTable(), usage=False)
        runfile = read[1]
    else:
        runfile = target_runfile(target)
    assert runfile is not None  # a runfile or gridspec target
    shown = preview_launch(runfile, target.runs_dir, args.mode or "resume", read)
    _refuse_what_cannot_fit(runfile, shown.plan, _capacity_options(args, target.runs_dir.path))
    adaptive = None
    if target.gridspec is not None:
        from batchrun.launch.adaptive import adaptive_of

        adaptive = adaptive_of(target.gridspec)
    _write_plan(sys.stdout, str(target.given), shown, args.show, adaptive, runfile)
    return 0


def dry_run(runfile: Runfile, options: LaunchOptions, adaptive: Any = None, spec: str | None = None) -> int:
    """`batchrun launch --dry-run`: print the plan, and an `adaptive.AdaptiveSweep`'s line named by `spec`; run nothing."""
    runs_dir = RunsDir.for_runfile(runfile.path, options.accounting_dir, options.metadata_name)
    shown = preview_launch(runfile, runs_dir, options.mode)
    _refuse_what_cannot_fit(runfile, shown.plan, options)
    # Named as the user typed it (the gridspec, not its runfile), as `plan` names it.
    _write_plan(sys.stdout, spec or str(runfile.path), shown, PLAN_SHOWN, adaptive, runfile, spec)
    return 0


def _capacity_options(args: argparse.Namespace, runs_dir: Path) -> LaunchOptions:
    """`plan`'s --gpus, --cpus, --mem...: the launch options that decide which jobs could ever start."""
    from batchrun.launch.gpus import resolve_gpus

    gpus, gpus_from, _env = resolve_gpus(args.gpus or [], args.skip_busy_gpus, os.environ, str(runs_dir))
    return LaunchOptions(gpus=gpus, gpus_from=gpus_from, jobs_per_gpu=args.jobs_per_gpu, cpus=args.cpus, mem=args.mem)


def _refuse_what_cannot_fit(runfile: Runfile, plan: Plan, options: LaunchOptions) -> None:
    """The launch's own refusal (`capacity.check_plan`) of a job that asks for more than the launch has."""
    table = runfile.jobs
    if not table.requests:
        return
    from batchrun.launch.capacity import capacity_of, check_plan

    jobs = [table[i] for job in plan.to_run if (i := table.index_of(job.job_id)) >= 0]
    check_plan(jobs, capacity_of(options), runfile.path, options.detach)


def _write_plan(out: IO[str], name: str, shown: Preview, limit: int, adaptive: Any = None, runfile: Runfile | None = None, spec: str | None = None) -> None:
    if shown.launch_running:
        _write_running(out, name, shown, limit)
        return
    for line in plan_lines(shown.plan, shown.total, shown.mode):
        out.write(f"batchrun: {name}: {line}\n")
    more = 0
    if adaptive is not None and runfile is not None:
        states = shown.categories()
        out.write(f"batchrun: {spec or name}: {adaptive.plan_line(runfile, states)}\n")
        more = adaptive.to_propose(runfile, states)
    labels = dict(_GROUP_LABELS)
    labels["failed"] = "failed earlier, skipped (rerun them with --retry-failed)" if shown.mode == "resume" else "failed earlier, to run again"
    labels["succeeded"] = "succeeded, to run again" if shown.mode == "overwrite" else "already succeeded, skipped"
    labels["stopped"] = "stopped early, to run again" if shown.mode == "overwrite" else "stopped early, skipped"
    id_len = shown.id_length
    for group in (*GROUPS, IGNORED):
        jobs = shown.groups[group]
        if not jobs:
            continue
        out.write(f"  {labels[group]}: {len(jobs)}\n")
        for job in jobs[:limit]:
            where = "removed" if job.removed else f"line {job.line}"
            out.write(f"    {where:<10} {job.job_id[:id_len]}  {job.command}\n")
        if len(jobs) > limit:
            out.write(f"    ... and {len(jobs) - limit} more\n")
    if shown.plan.nothing_to_do and not more:
        out.write("nothing to do\n")


def _write_running(out: IO[str], name: str, shown: Preview, limit: int) -> None:
    """A launch runs the runfile now: what it is doing, not a plan (a launch now would be refused)."""
    pid = f" (pid {shown.launch_pid})" if shown.launch_pid else ""
    quoted = shlex.quote(name)
    out.write(f"batchrun: {name}: a launch{pid} is running it: {counts_text(shown.counts)}\n")
    out.write(f"  another launch is refused until it ends: batchrun wait {quoted} waits for it, batchrun stop {quoted} ends it\n")
    id_len = shown.id_length
    for label, jobs in (("running now", shown.groups[Group.RUNNING]), ("pending, it starts them as slots free", shown.groups[Group.NEW])):
        if not jobs:
            continue
        out.write(f"  {label}: {len(jobs)}\n")
        for job in jobs[:limit]:
            out.write(f"    line {job.line!s:<5} {job.job_id[:id_len]}  {job.command}\n")
        if len(jobs) > limit:
            out.write(f"    ... and {len(jobs) - limit} more\n")
