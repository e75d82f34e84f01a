"""What one attempt of a job gets: a slot number, its environment, and its log files kept from earlier attempts."""

from __future__ import annotations

import heapq
import os
import threading

from batchrun.metrics.file import METRICS_NAME
from batchrun.runfile.file import Job

__all__ = ["SlotPool", "job_environment", "keep_old_logs", "shell_status"]


def shell_status(returncode: int) -> int:
    """A job's shell killed by a signal: the shell's convention, 128 + signal number."""
    return returncode if returncode >= 0 else 128 - returncode


def keep_old_logs(log_dir: str, attempt: int) -> None:
    """Keep an earlier attempt's logs as out.<attempt>.log / err.<attempt>.log / metrics.<attempt>.jsonl.

    Metrics too: attempts must not mix their histories in one file.
    """
    for name, ext in (("out", "log"), ("err", "log"), ("metrics", "jsonl")):
        try:
            os.replace(f"{log_dir}/{name}.{ext}", f"{log_dir}/{name}.{attempt}.{ext}")
        except FileNotFoundError:
            pass


def job_environment(base_env: dict[str, str], gpus: list[str], job: Job, slot: int, log_dir: str, attempt: int, requeues: int = 0) -> dict[str, str]:
    """What a job sees: the launch's environment plus its own BATCHRUN_* variables and GPU.

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
    if gpus:
        # Slots 0..N-1 map round-robin onto the GPUs, so with
        # N = len(gpus) * K each GPU serves exactly K slots.
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


class SlotPool:
    """Worker slots 0..N-1; a job takes the lowest free one.

    Lowest-first keeps BATCHRUN_SLOT within 0..(jobs running at once - 1)
    even when the pool is larger than the number of threads using it (under
    plain doit, batchrun does not know doit's -n).
    """

    def __init__(self, size: int) -> None:
        self._free = list(range(size))
        self._cond = threading.Condition()

    def take(self) -> int:
        with self._cond:
            while not self._free:
                self._cond.wait()
            return heapq.heappop(self._free)

    def give(self, slot: int) -> None:
        with self._cond:
            heapq.heappush(self._free, slot)
            self._cond.notify()
