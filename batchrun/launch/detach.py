"""`--detach`: every pending job started at once, and the launch returns; a later launch collects them."""

from __future__ import annotations

import time
from fractions import Fraction

from batchrun.errors import BatchrunError, MetadataError
from batchrun.launch.events import EventKind
from batchrun.launch.oneattempt import job_env
from batchrun.launch.runner import JobRunner, next_attempt
from batchrun.launch.scheduler import Grant
from batchrun.runfile.file import Job

__all__ = ["submit_detached"]


def submit_detached(runner: JobRunner, jobs: list[Job]) -> None:
    """--detach: start every pending job and return; a later launch collects them.

    The jobs go to the executor in one `start_many` call: SLURM gets one
    job array throttled to -j, not one submission per job.
    """
    control = runner.control
    started = []
    gpus = runner.options.gpus
    share = Fraction(1, runner.options.jobs_per_gpu)
    for slot, job in enumerate(jobs):
        log_dir = f"{runner.logs}/{job.job_id}"
        attempt = next_attempt(runner, job, log_dir)
        slot_id = slot % runner.options.n_jobs
        # Nothing waits for resources here (they all start now): only plain jobs are
        # detached locally (`scheduler.check_requests`), each on its slot's GPU.
        grant = Grant(slot_id, ((gpus[slot_id % len(gpus)], share),) if gpus else ())
        with control.lock:
            rec = runner.journal.record_start(job.job_id, attempt, time.time(), slot_id, runner.host, grant.holds() if runner.scheduler.capacity else None, runner.code)
        started.append((job, rec, attempt, grant, log_dir))
    try:
        refs = runner.executor.start_many(
            [(job.job_id, job.command, log_dir, job_env(runner, job, grant, log_dir, attempt)) for job, _, attempt, grant, log_dir in started],
            [job.request for job, *_ in started],
        )
    except BatchrunError as error:
        # Some jobs may have been submitted: their start records stay,
        # and the next launch asks the executor which ones exist.
        control.fail(error)
        return
    except OSError as error:
        control.fail(MetadataError(f"{runner.logs}: cannot start jobs: {error.strerror}"))
        return
    for (job, rec, attempt, grant, _), ref in zip(started, refs, strict=True):
        with control.lock:
            runner.journal.record_ref(job.job_id, attempt, ref)
            runner.on_change(job, rec)
            runner.detached += 1
        runner.emit(EventKind.SUBMIT, job, rec, grant.slot)

