"""One attempt of a job, from its start line to its end line: what `JobRunner.run_job` repeats for retries and requeues.

Kept apart from the runner, which takes the slot, adopts, retries and
counts: this is the hot path of every job (its start and wait through the
executor, its journal lines and its events), in the order the journal
needs them: the start is journaled before the process exists, the end
after it is gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from batchrun.errors import BatchrunError, MetadataError
from batchrun.executors import Executor, jobfiles
from batchrun.launch.attempt import attempt_after, job_environment
from batchrun.launch.events import EventKind, JobEvent
from batchrun.launch.gpumem import GpuMemory
from batchrun.launch.launchcontrol import LaunchControl
from batchrun.launch.options import LaunchOptions
from batchrun.launch.plan import done_for_mode
from batchrun.launch.scheduler import Grant, Scheduler
from batchrun.launch.settle import AttemptEnd, record_end, watched_end
from batchrun.launch.stopnotes import StopNotes
from batchrun.launch.stopper import STARTING, JobEnds, stop_job, wait_job_warned
from batchrun.metrics.cache import record_job_metrics
from batchrun.metrics.file import METRICS_NAME, NOT_A_FILE, Skipped
from batchrun.resources import time_limit
from batchrun.runfile.file import Job
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State

__all__ = ["WITHDRAWN", "AttemptRunner", "ignore_event", "job_env", "requeue_or_fail"]

WITHDRAWN = JobRecord("")  # `AttemptRunner._start_and_wait`'s answer for a job given back unstarted by the slot it waited behind


class AttemptRunner:
    """The attempts of a launch's jobs: `JobRunner`, which sets every attribute named here, takes slots, adopts and retries around them."""

    options: LaunchOptions
    journal: Journal
    executor: Executor
    control: LaunchControl
    scheduler: Scheduler
    logs: str
    host: str
    base_env: dict[str, str]
    on_change: Callable[[Job, JobRecord], None]  # called under control.lock
    on_event: Callable[[JobEvent], None]
    on_warning: Callable[[str], None]
    running: dict[str, str | None]
    stops: StopNotes
    ends: JobEnds
    gpu_memory: GpuMemory | None
    code: str | None
    requeues_spent: set[str]
    ran: int
    _metrics_skipped: Skipped

    def emit(self, kind: EventKind, job: Job, rec: JobRecord, slot: int | None, note: str | None = None, metrics: bool = True) -> None:
        """Report an event; a display that fails (a closed pipe) never stops jobs."""
        try:
            self.on_event(JobEvent(kind, job, rec, slot, note, metrics))
        except Exception:  # noqa: BLE001 - the records, not the display, matter
            self.on_event = ignore_event

    def _start_and_wait(self, job: Job, grant: Grant, retries_left: int = 0, once: bool = False) -> JobRecord | None:
        """Run one attempt of a job in its slot: its start line, its start, its wait, its end line; None when it did not start (a stop,
        or `once` and it runs or is done already), `WITHDRAWN` when the slot it waited behind gave it back unstarted."""
        control = self.control
        log_dir = f"{self.logs}/{job.job_id}"
        if once:
            with control.lock:
                if job.job_id in self.running or done_for_mode(self.journal.records.get(job.job_id), self.options.mode):
                    return None
        prev = self.journal.records.get(job.job_id)
        attempt = attempt_after(prev, log_dir)
        start = time.time()
        noted = self.executor.notes_starts
        with control.lock:
            # Checked under the lock the stopper reads `running` with: a job
            # either sees the stop and never starts, or is visible to it.
            if control.stopping.is_set():
                return None
            if once and (job.job_id in self.running or done_for_mode(self.journal.records.get(job.job_id), self.options.mode)):
                return None
            holds = grant.holds()
            rec = prev if noted else self.journal.record_start(job.job_id, attempt, start, grant.slot, self.host, holds, self.code)
            self.running[job.job_id] = STARTING
            if not noted:
                self.on_change(job, rec)
        env = job_env(self, job, grant, log_dir, attempt, rec.requeues if rec is not None else 0)
        try:
            if noted:
                # The executor appends the start line right before the job starts (it may first wait behind the slot's job).
                line = self.journal.start_line(job.job_id, attempt, grant.slot, self.host, holds, self.code)
                started = self.executor.start_noted(job.job_id, job.command, log_dir, env, grant.slot, line, control.stopping.is_set)
                if started is None:
                    with control.lock:
                        self.running.pop(job.job_id, None)
                    return WITHDRAWN
                ref, start_text = started
            else:
                ref = self.executor.start(job.job_id, job.command, log_dir, env, job.request)
        except (OSError, BatchrunError):
            with control.lock:
                self.running.pop(job.job_id, None)
                self.journal.record_unfinished(job.job_id, attempt, start, time.time())
            raise
        with control.lock:
            if noted:
                # Its helper's clock: the line's time (or, had the helper died before it said, about then).
                rec = self.journal.note_start(line, job.job_id, attempt, start_text or f"{time.time():.6f}", grant.slot, self.host, holds, self.code)
                start = rec.start or start
            self.journal.record_ref(job.job_id, attempt, ref)
            self.running[job.job_id] = ref
            assert rec is not None
            self.on_change(job, rec)
        slot = grant.slot
        self.emit(EventKind.START, job, rec, slot)
        # The job's time limit and its checkpoint signal: the launch's to enforce, unless its cluster does (SLURM).
        timeout = None if self.executor.enforces_time_limit else time_limit(job.request, self.options.timeout)
        deadline = None if timeout is None else time.monotonic() + max(0.0, start + timeout - time.time())
        returncode = wait_job_warned(self.executor, job.job_id, ref, control.stop_now.is_set, deadline, self.options.checkpoint_signal)
        if returncode is None:
            self.stops.note_stop(job.job_id, State.TIMEOUT)
            returncode = stop_job(self.executor, job.job_id, ref, self.options.grace, control.stop_now.is_set)
        assert returncode is not None
        self.ends.wait(job.job_id)  # a stop under way (kill, early stop) is over once its group is gone
        end = time.time()
        usage = (self.executor.ended_usage(ref) if ref is not None else None) or jobfiles.read_usage(log_dir, attempt)
        gpu = self.gpu_memory.take(job.job_id) if self.gpu_memory is not None else None
        with control.lock:
            self.running.pop(job.job_id, None)
            self.ends.forget(job.job_id)
            self.journal.record_usage(job.job_id, attempt, usage, gpu, hold=True)  # written with the end line
            how = watched_end(log_dir, attempt, returncode, self.stops.taken(job.job_id, attempt), control.interrupted)
            rec = record_end(self.journal, job.job_id, attempt, start, end, requeue_or_fail(self, rec, how))
            self.ran += 1
            self.on_change(job, rec)
        if self.journal.disk_full:
            control.fail(MetadataError(f"{Path(self.logs).parent}: the disk is full; running jobs are recorded, no new job starts"))
        self._emit_end(job, rec, slot, retries_left, ref)
        return rec

    def _emit_end(self, job: Job, rec: JobRecord, slot: int, retries_left: int, ref: str | None = None) -> None:
        """Summarise the ended attempt's metrics and report its end (a retry, a requeue, or its end for good)."""
        # The job's metrics, summarised once now, spare `batchrun results` parsing them
        # (one failed open without, unless the executor saw there is no file).
        metrics = ref is None or not self.executor.left_no_metrics(ref)
        if metrics:
            skipped = self._metrics_skipped
            warned = NOT_A_FILE in skipped.counts
            record_job_metrics(os.path.dirname(self.logs), job.job_id, f"{self.logs}/{job.job_id}/{METRICS_NAME}", skipped)
            if not warned and NOT_A_FILE in skipped.counts:
                self.on_warning(f"{skipped.first[NOT_A_FILE]}: not a regular file; a job's metrics are read only from one (others like it are skipped without a word)")
        again = not self.control.stopping.is_set()
        if rec.state == State.REQUEUED and again:
            kind = EventKind.REQUEUE
        elif rec.finished and rec.state != State.SUCCEEDED and retries_left > 0 and again:
            kind = EventKind.RETRY
        else:
            kind = EventKind.END
        note = None
        if job.job_id in self.requeues_spent:
            self.requeues_spent.discard(job.job_id)
            note = f"exited 75 again after {self.options.max_requeues} requeues: --max-requeues {self.options.max_requeues} reached, failed"
        self.emit(kind, job, rec, slot, note, metrics)


def job_env(runner: AttemptRunner, job: Job, grant: Grant, log_dir: str, attempt: int, requeues: int | None = None) -> dict[str, str]:
    """The job's environment; CUDA_VISIBLE_DEVICES names exactly the GPUs it holds when the launch has GPUs (`requeues`: None, from its record)."""
    capacity, gpus = runner.scheduler.capacity, runner.options.gpus
    if capacity is not None:
        shown = grant.gpu_ids if capacity.gpus else None
    else:
        # A cluster executor: --gpus maps slot s to GPU s mod len, as it always did.
        shown = [gpus[grant.slot % len(gpus)]] if gpus else None
    if requeues is None:
        rec = runner.journal.records.get(job.job_id)
        requeues = rec.requeues if rec is not None else 0
    return job_environment(runner.base_env, job, grant.slot, log_dir, attempt, shown, requeues)


def requeue_or_fail(runner: AttemptRunner, rec: JobRecord, how: AttemptEnd) -> AttemptEnd:
    """A requeue (exit 75) past --max-requeues is a failure (`rec`: the job's record); any other end stays as it is."""
    if how.state != State.REQUEUED or rec.requeues < runner.options.max_requeues:
        return how
    runner.requeues_spent.add(rec.job_id)
    return AttemptEnd(State.FAILED, how.status, how.end, how.recorded)


def ignore_event(event: JobEvent) -> None:
    pass
