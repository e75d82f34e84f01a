"""What one attempt of a job gets: its environment, and its log files kept from earlier attempts (its slot and resources: `scheduler`)."""

from __future__ import annotations

import os

from batchrun.metrics.file import METRICS_NAME
from batchrun.runfile.file import Job
from batchrun.store.records import JobRecord

__all__ = ["attempt_after", "job_environment", "keep_old_logs", "shell_status"]

_MIB = 1 << 20


def shell_status(returncode: int) -> int:
    """A job's shell killed by a signal: the shell's convention, 128 + signal number."""
    return returncode if returncode >= 0 else 128 - returncode


def attempt_after(prev: JobRecord | None, log_dir: str) -> int:
    """The attempt a job starts after its record `prev`; an earlier attempt's logs are kept under their number."""
    attempt = (prev.attempts if prev is not None else 0) + 1
    if attempt > 1:
        keep_old_logs(log_dir, attempt - 1)
    return attempt


def keep_old_logs(log_dir: str, attempt: int) -> None:
    """Keep an earlier attempt's logs as out.<attempt>.log / err.<attempt>.log / metrics.<attempt>.jsonl.

    Metrics too: attempts must not mix their histories in one file.
    """
    for name, ext in (("out", "log"), ("err", "log"), ("metrics", "jsonl")):
        try:
            os.replace(f"{log_dir}/{name}.{ext}", f"{log_dir}/{name}.{attempt}.{ext}")
        except FileNotFoundError:
            pass


def job_environment(
    base_env: dict[str, str], job: Job, slot: int, log_dir: str, attempt: int, gpus: list[str] | None = None, requeues: int = 0
) -> dict[str, str]:
    """What a job sees: the launch's environment plus its own BATCHRUN_* variables and, when the launch has GPUs, exactly its GPUs.

    BATCHRUN_CPUS is the CPUs the job asked for (1 when it asked none),
    BATCHRUN_MEM the memory in megabytes (as SLURM_MEM_PER_NODE; 0 when it
    asked none). `gpus` None leaves CUDA_VISIBLE_DEVICES as the launch has it.
    BATCHRUN_REQUEUES: how many of its attempts since it last ran to its end
    were requeued (exited 75), so a job knows to resume from its checkpoint.
    """
    env = base_env.copy()
    env["BATCHRUN_JOB_ID"] = job.job_id
    env["BATCHRUN_SLOT"] = str(slot)
    env["BATCHRUN_LOG_DIR"] = log_dir
    env["BATCHRUN_ATTEMPT"] = str(attempt)
    env["BATCHRUN_REQUEUES"] = str(requeues)
    env["BATCHRUN_METRICS"] = f"{log_dir}/{METRICS_NAME}"
    request = job.request
    env["BATCHRUN_CPUS"] = str(request.cpus if request is not None and request.cpus else 1)
    env["BATCHRUN_MEM"] = str(-(-request.mem // _MIB) if request is not None and request.mem else 0)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env
