"""What this machine offers a launch's jobs (`Capacity`), and the checks and defaults made from it before anything runs.

The capacity is `--cpus` (default: the CPUs this process may use), `--mem`
(default: the machine's memory, or the cgroup's limit if lower) and
`--gpus`. `launch`, `launch --dry-run` and `plan` refuse the same way a job
that asks for more than the whole capacity (`check_plan`): one line naming
its runfile line, at plan time, instead of a job that waits forever.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from batchrun.errors import UsageError
from batchrun.launch.options import LaunchOptions
from batchrun.resources import NO_REQUEST, Request, format_size
from batchrun.runfile.file import Job
from batchrun.runfile.requestruns import RequestRuns

__all__ = ["Capacity", "Need", "capacity_of", "check_plan", "check_requests", "default_n_jobs", "launch_capacity", "machine_cpus", "machine_mem"]

_ZERO = Fraction(0)
# cgroup v2's memory limit of this process, when it runs in one.
_CGROUP_MEMORY = "/sys/fs/cgroup/memory.max"


@dataclass(frozen=True)
class Capacity:
    """What this machine offers the launch's jobs, and where each figure came from (for messages)."""

    cpus: int
    mem: int  # bytes
    gpus: tuple[str, ...] = ()
    jobs_per_gpu: int = 1
    cpus_from: str = ""  # e.g. "--cpus 4", "this machine's 8 CPUs"
    mem_from: str = ""
    gpus_from: str = ""

    def need(self, request: Request | None) -> Need:
        """What a job asking `request` takes of this capacity."""
        request = request or NO_REQUEST
        legacy = request.gpus is None and bool(self.gpus)
        gpus = Fraction(1, self.jobs_per_gpu) if legacy else (request.gpus or _ZERO)
        return Need(gpus, request.cpus or 0, request.mem or 0, legacy)

    def refusal(self, request: Request | None) -> str | None:
        """Why a job asking `request` can never start here; None when it can."""
        need = self.need(request)
        if need.gpus and not self.gpus:
            return f"{Request(gpus=need.gpus).text()} but the launch has no GPU (give them with --gpus 0,1,... or --gpus auto)"
        if need.gpus > len(self.gpus):
            return f"{Request(gpus=need.gpus).text()}, more than the launch's {_count(len(self.gpus), 'GPU')} ({self.gpus_from})"
        if need.cpus > self.cpus:
            return f"cpus={need.cpus}, more than the launch's {_count(self.cpus, 'CPU')} ({self.cpus_from})"
        if need.mem > self.mem:
            return f"mem={format_size(need.mem)}, more than the launch's {format_size(self.mem)} of memory ({self.mem_from})"
        return None


# eq=False: each waiting job is its own entry of the scheduler's waiting list, even when two ask alike.
@dataclass(frozen=True, eq=False)
class Need:
    gpus: Fraction  # whole count, or a fraction of one GPU
    cpus: int
    mem: int
    legacy: bool  # a plain job's share under --gpus: its slot's GPU first

    @property
    def empty(self) -> bool:
        return not (self.gpus or self.cpus or self.mem)


def check_requests(jobs: Iterable[tuple[int, Request | None]], capacity: Capacity, runfile: Path) -> None:
    """Refuse, in one line, a launch in which some job (line number, request) can never start on this capacity.

    Raises:
        UsageError: naming the first such job's line, what it asks, and how many ask as much.
    """
    first: tuple[int, str] | None = None
    count = 0
    refused: dict[Request | None, str | None] = {}
    for lineno, request in jobs:
        if request not in refused:
            refused[request] = capacity.refusal(request)
        reason = refused[request]
        if reason is not None:
            count += 1
            first = first or (lineno, reason)
    if first is not None:
        others = f"; {count} jobs ask too much" if count > 1 else ""
        raise UsageError(f"{runfile}:{first[0]}: this job asks for {first[1]}{others}")


def default_n_jobs(requests: Sequence[Request | None], capacity: Capacity, legacy: int) -> int:
    """-j when not given: as many jobs as fit at once, for the request that fits most often; `legacy` when none is bounded.

    A request bounds the jobs at once by what it asks of each kind
    (capacity / its share); one that asks nothing is bounded by -j alone.
    """
    best = 0
    for request in requests:
        need = capacity.need(request)
        bounds = []
        if need.cpus:
            bounds.append(capacity.cpus // need.cpus)
        if need.mem:
            bounds.append(capacity.mem // need.mem)
        if need.gpus:
            bounds.append(int(len(capacity.gpus) / need.gpus) if need.gpus < 1 or need.legacy else len(capacity.gpus) // int(need.gpus))
        if bounds:
            best = max(best, min(bounds))
    return max(legacy, best, 1)


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity: taskset, a cpuset), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_mem() -> int:
    """The machine's memory in bytes, or this process's cgroup limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open(_CGROUP_MEMORY) as f:
            limit = f.read().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def capacity_of(options: LaunchOptions) -> Capacity | None:
    """The capacity a launch packs its jobs into; None for a cluster executor (the cluster places jobs)."""
    if options.executor != "local":
        return None
    cpus = options.cpus or machine_cpus()
    mem = options.mem or machine_mem()
    return Capacity(
        cpus,
        mem,
        tuple(options.gpus),
        options.jobs_per_gpu,
        cpus_from=f"--cpus {cpus}" if options.cpus else "this machine's, --cpus to change",
        mem_from=f"--mem {format_size(mem)}" if options.mem else "this machine's, --mem to change",
        gpus_from=options.gpus_from or f"--gpus {','.join(options.gpus)}",
    )


def launch_capacity(options: LaunchOptions, requests: RequestRuns) -> Capacity | None:
    """`capacity_of` the launch; and when -j was not given and lines ask for resources, -j set to as many jobs as fit (`default_n_jobs`)."""
    capacity = capacity_of(options)
    if options.auto_jobs and capacity is not None and requests:
        options.n_jobs = default_n_jobs(requests.distinct(), capacity, options.n_jobs)
    return capacity


def check_plan(jobs: Iterable[Job], capacity: Capacity | None, runfile: Path, detach: bool) -> None:
    """Refuse, in one line, a launch of these jobs (those it would run) that could never place one of them.

    Raises:
        UsageError: a job asks for more than the whole capacity; or, with
            --detach, a job asks for anything (every job starts at once then,
            so nothing could wait for room).
    """
    if capacity is None:
        return
    if detach:
        for job in jobs:
            # A plain job's share of its slot's GPU needs no waiting; anything the job asks for itself may.
            if job.request and (job.request.gpus or job.request.cpus or job.request.mem):
                raise UsageError(
                    f"{runfile}:{job.lineno}: --detach starts every job at once, so a job that asks for "
                    f"{job.request.text()} cannot wait for room; launch without --detach"
                )
        return
    check_requests(((job.lineno, job.request) for job in jobs), capacity, runfile)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
