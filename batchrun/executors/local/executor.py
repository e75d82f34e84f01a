"""Run jobs as local processes, each in its own session, and find them again.

A launch runs each job through a long-lived helper process per slot
(`helpers`, `_slot_helper`), which runs it under the supervisor
(`executors/supervisor.py`): exactly `/bin/sh -c LINE`, leading its own
session and process group, out.log flocked while any of its processes
lives, its exit status written to `<log dir>/exit` by the supervisor, not by
batchrun, so a job that ends in the instant batchrun dies still leaves its
result behind. `--detach` starts its jobs through one helper in its detach
mode, which supervises all of them and outlives batchrun.

A later launch tells "still running" (lock held) from "ended or never
started" (lock free) by out.log's lock, with no pid bookkeeping and no
pid-reuse hazard, and waits for an adopted job by waiting for the lock.
References are the pids of the jobs' shells (each its group's leader).

The launch is a child subreaper (`open`), so a job whose helper died is
reparented to it, and reaped and recorded by it (`helpers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from batchrun.executors.base import Executor, ExecutorName, ExecutorOptions
from batchrun.executors.jobfiles import attempt_of, job_lock_held, wait_for_job_lock, wait_unwatched
from batchrun.executors.local.helpers import QUEUE_HOLD, Dispatcher, queues_starts
from batchrun.executors.local.pool import HelperPool
from batchrun.executors.processes import find_job_processes, group_alive, kill_group
from batchrun.executors.supervisor import become_subreaper
from batchrun.resources import Request

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Jobs as processes of this machine, each in its own session, started by per-slot helpers."""

    name = ExecutorName.LOCAL

    def __init__(self, options: ExecutorOptions, settings: object = None) -> None:
        super().__init__(options, settings)
        # With the journal named, the helpers append the start lines (`start_noted`), where they can hold a queued job.
        self.notes_starts = options.journal is not None and queues_starts()
        self.queue_young = QUEUE_HOLD if self.notes_starts else 0.0
        self._slots = HelperPool(options.cwd, self.launch, options.journal if self.notes_starts else None)
        # ref (pid) -> (log directory, attempt), for detached jobs this launch started and has not waited for.
        self._detached: dict[str, tuple[str, int | None]] = {}
        # refs of ended jobs whose helper saw no metrics file (`left_no_metrics`).
        self._no_metrics: set[str] = set()
        # ref -> what an ended job used, as its helper said (`ended_usage`).
        self._usage: dict[str, tuple[int, float, float]] = {}

    @classmethod
    def made(cls, ref: str) -> bool:
        return ref.isdigit()

    def open(self) -> None:
        # A job whose helper dies is reparented here, to be reaped and recorded (`helpers`).
        become_subreaper()

    def warm(self, slots: int) -> None:
        self._slots.warm(slots)

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str], request: Request | None = None) -> str:
        return str(self._slots.start(job_id, command, log_dir, env))

    def start_noted(
        self, job_id: str, command: str, log_dir: str, env: dict[str, str], slot: int, line: tuple[str, str], give_up: Callable[[], bool]
    ) -> tuple[str, str | None] | None:
        started = self._slots.start_in(slot, job_id, command, log_dir, env, line, give_up)
        return None if started is None else (str(started[0]), started[1])

    def start_many(self, jobs: Sequence[tuple[str, str, str, dict[str, str]]], requests: Sequence[Request | None] | None = None) -> list[str]:
        """--detach: every job started and supervised by one helper that outlives batchrun (a Python per job would cost 20 ms and 1.5 MB each)."""
        dispatcher = Dispatcher(self.options.cwd, self.launch)
        try:
            return [self.start_detached(dispatcher, *job) for job in jobs]
        finally:
            dispatcher.close()

    def start_detached(self, dispatcher: Dispatcher, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> str:
        """Start one job of `start_many` through its dispatcher; its reference."""
        ref = str(dispatcher.start(job_id, command, log_dir, env))
        self._detached[ref] = (log_dir, attempt_of(env))
        return ref

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        detached = self._detached.get(ref)
        if detached is None:
            ended = self._slots.wait(int(ref), timeout)
            if ended is None:
                return None
            returncode, no_metrics, usage = ended
            if no_metrics:
                self._no_metrics.add(ref)
            if usage is not None:
                self._usage[ref] = usage
        else:
            # Its supervisor answers to nobody: its lock, then its record, say how it ended.
            status = wait_unwatched(*detached, timeout)
            if status is None:
                return None
            del self._detached[ref]
            returncode = status
        return returncode

    def ended_usage(self, ref: str) -> tuple[int, float, float] | None:
        return self._usage.pop(ref, None)

    def left_no_metrics(self, ref: str) -> bool:
        try:
            self._no_metrics.remove(ref)
        except KeyError:
            return False
        return True

    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        pids = [int(ref)] if ref is not None and self.made(ref) else find_job_processes(job_id)
        hit = False
        for pid in pids:
            if kill_group(pid, job_id, sig):
                hit = True
        return hit

    def alive(self, job_id: str, ref: str | None) -> bool:
        if ref is not None and self.made(ref):
            return group_alive(int(ref))
        return bool(find_job_processes(job_id))

    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        return job_lock_held(Path(log_dir))

    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool], attempt: int | None = None) -> None:
        wait_for_job_lock(Path(log_dir), should_stop)

    def cancel_queued(self) -> None:
        self._slots.cancel_queued()

    def close(self) -> None:
        """Let the helpers go: each exits once its job, if any, ended and is recorded."""
        self._slots.close()
