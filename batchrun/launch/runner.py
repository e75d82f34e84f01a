"""Running one job for a launch: its slot and resources, environment, attempts, retries, adoption.

doit's worker threads call `JobRunner.run_job`; each call takes a slot and
what the job asks for from the scheduler (`scheduler.Scheduler`), runs (or, for a job a killed launch left running, waits for) the
job and its retries, and journals every step before the next one happens.
A job adopted from a killed launch is a job like any other: its failure gets
the retries, --fail-fast and --halt-now, and it counts as running (shown and
stopped) from the moment the launch starts, even beyond -j.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from batchrun.errors import BatchrunError, MetadataError
from batchrun.executors import Executor, jobfiles
from batchrun.launch.attempt import attempt_after
from batchrun.launch.capacity import Capacity
from batchrun.launch.events import EventKind, JobEvent
from batchrun.launch.gpumem import GpuMemory
from batchrun.launch.launchcontrol import LaunchControl
from batchrun.launch.oneattempt import WITHDRAWN, AttemptRunner, ignore_event, requeue_or_fail
from batchrun.launch.options import LaunchOptions
from batchrun.launch.scheduler import Grant, Scheduler
from batchrun.launch.settle import AttemptEnd, Outcome, ended_from_files, journal_decisions, record_end, settle_one
from batchrun.launch.stopnotes import StopNotes
from batchrun.launch.stopper import JobEnds, Target
from batchrun.metrics.file import Skipped
from batchrun.runfile.file import Job
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State

__all__ = ["JobRunner", "next_attempt", "settle_unwatched"]


class JobRunner(AttemptRunner):
    """Runs the jobs of one launch, one `run_job` call per doit task."""

    def __init__(
        self, options: LaunchOptions, journal: Journal, executor: Executor, control: LaunchControl, logs: str, host: str,
        base_env: dict[str, str], on_change: Callable[[Job, JobRecord], None], request_stop: Callable[[], None],
        capacity: Capacity | None = None,
    ) -> None:
        self.options = options
        self.journal = journal
        self.executor = executor
        self.control = control
        control.on_stopping = executor.cancel_queued  # no job waiting in a slot starts once the launch stops starting jobs
        self.logs = logs
        self.host = host
        self.base_env = base_env
        self.on_change = on_change  # called under control.lock
        self.request_stop = request_stop
        self.on_event: Callable[[JobEvent], None] = ignore_event
        # Slots for -j and, for local jobs, the machine's resources (None: a cluster places jobs).
        # A job asking only for a slot may wait in its helper behind the slot's job, to start as that one ends (on a thread
        # of its own: `spare_workers`); not where each end must be seen first (-j 1's order, --fail-fast, --halt-now, --follow).
        queue = executor.queue_young if options.n_jobs > 1 and not (options.fail_fast or options.halt_now or options.follow) else 0.0
        self.scheduler = Scheduler(options.n_jobs, capacity, queue)
        self.spare_workers = options.n_jobs if queue else 0
        # One warning line for the launch (a metrics path that is no regular file, the first time).
        self.on_warning: Callable[[str], None] = _ignore_warning
        self._metrics_skipped = Skipped()
        # job id -> the executor's reference (None: unknown, STARTING), for jobs a thread waits on.
        self.running: dict[str, str | None] = {}
        # Adopted jobs no thread waits on yet: job -> its reference.
        self.adopted: dict[str, tuple[Job, str | None]] = {}
        self.adopt_ids: set[str] = set()
        # Adopted jobs an earlier launch was stopping (their note says so): job -> the state it records.
        self.restop: dict[str, str] = {}
        # The stops this launch makes, noted before their first signal.
        self.stops = StopNotes(executor, journal, control.lock, logs, lambda job_id: job_id in self.adopt_ids)
        # Jobs being stopped while the launch goes on (`stop_jobs`).
        self.ends = JobEnds(executor, options.grace, control.lock, self.running, control.stop_now.is_set, self.stops.signal_stop)
        self.ran = 0
        self.detached = 0
        # Samples each running job's GPU memory (--gpus, local jobs, nvidia-smi on PATH), set by the launch.
        self.gpu_memory: GpuMemory | None = None
        # The code version the jobs start under (`store.codeversion`), set by the launch before the first.
        self.code: str | None = None
        # Jobs that exited 75 once more than --max-requeues allows (failed for that), until their end is shown.
        self.requeues_spent: set[str] = set()

    # -- what the launch asks ---------------------------------------------

    def running_jobs(self) -> int:
        """How many jobs this launch runs or waits for now, adopted ones included."""
        with self.control.lock:
            return len(self.running) + len(self.adopted)

    def stop_targets(self) -> list[Target]:
        """Every job the stopper must stop: those a thread waits on, and adopted ones no thread watches yet."""
        with self.control.lock:
            return [(j, r, True) for j, r in self.running.items()] + [(j, r, False) for j, (_, r) in self.adopted.items()]

    def adopt_all(self, jobs: list[Job]) -> None:
        """Make every adopted job a running job of this launch, shown at once; carry on the stops an earlier launch began."""
        records = self.journal.records
        with self.control.lock:
            for job in jobs:
                self.adopted[job.job_id] = (job, records[job.job_id].ref)
                if self.scheduler.capacity is not None:
                    # What it holds is not free for new jobs until it ends.
                    self.scheduler.hold(job.job_id, records[job.job_id].holds)
            for job_id, state in self.restop.items():
                self.ends.resume(job_id, records[job_id].ref, state)
        for job in jobs:
            self.emit(EventKind.ADOPT, job, records[job.job_id], None)

    def stop_jobs(self, job_ids: list[str], state: str) -> list[str]:
        """Stop these running jobs while the launch goes on (`stopper.JobEnds.start`); the ids it stops."""
        return self.ends.start(job_ids, state)

    # -- one job ----------------------------------------------------------

    def run_job(self, job: Job, once: bool = False) -> JobRecord | None:
        """Run (or adopt) one job in a free slot, retrying failures as asked.

        `once`: the job may have been handed in twice (a job source that
        grows while the launch runs): it does not start if it runs now or
        is done for the mode, checked under the lock its start is recorded
        under.
        """
        control = self.control
        if control.stopping.is_set():
            return None
        adopt = job.job_id in self.adopt_ids
        grant = self._take(job, queue=not adopt)
        if grant is None:
            return None
        try:
            retries_left = self.options.retries
            rec = self._adopt(job, grant.slot) if adopt else None
            fresh = once and rec is None
            while True:
                if rec is None:
                    rec = self._start_and_wait(job, grant, retries_left, fresh)
                    if rec is WITHDRAWN:  # it waited behind a slot's job long enough: it waits for a slot anew
                        self.scheduler.give(grant, withdrawn=True)
                        grant = None
                        grant = self._take(job, queue=True, again=True)
                        if grant is None:
                            return None
                        rec = None
                        continue
                    fresh = False
                if rec is not None and rec.state == State.REQUEUED and not control.stopping.is_set():
                    rec = None  # it asked to run again: not a failure, no retry spent
                    continue
                if rec is None or rec.state == State.SUCCEEDED or not rec.finished:
                    return rec
                if retries_left == 0 or control.stopping.is_set():
                    _on_failure(self)
                    return rec
                retries_left -= 1
                rec = None
        except BatchrunError as error:
            control.fail(error)
            return None
        except OSError as error:
            control.fail(MetadataError(f"{self.logs}/{job.job_id}: cannot start job: {error.strerror}"))
            return None
        finally:
            if grant is not None:
                self.scheduler.give(grant)

    def _take(self, job: Job, queue: bool, again: bool = False) -> Grant | None:
        """A slot (and what the job asks) from the scheduler (`again`: the job was given back, and keeps its turn); None when the launch stops (or cannot place the job, a fatal error)."""
        try:
            return self.scheduler.take(job.job_id, job.request, self.control.stopping.is_set, queue, again)
        except BatchrunError as error:
            self.control.fail(error)
            return None

    def _adopt(self, job: Job, slot: int) -> JobRecord | None:
        """Wait for a job a killed launch left running; None if it must run again."""
        control = self.control
        rec = self.journal.records[job.job_id]
        with control.lock:
            announced = self.adopted.pop(job.job_id, None) is not None
            if job.job_id not in self.adopt_ids:
                # Settled meanwhile (a stop came first): nothing to wait for.
                return rec if rec.finished or control.stopping.is_set() else None
            self.running[job.job_id] = rec.ref  # None: the executor finds it by job id
        if not announced:
            # Under plain doit no launch announced it (`adopt_all`) up front.
            self.emit(EventKind.ADOPT, job, rec, slot)
        log_dir = Path(self.logs) / job.job_id
        # The lock is waited for first, the exit record read after (see `settle`).
        self.executor.wait_adopted(job.job_id, rec.ref, str(log_dir), control.stop_now.is_set, rec.attempts)
        self.ends.wait(job.job_id)
        how = ended_from_files(log_dir, rec.attempts)
        usage = jobfiles.read_usage(log_dir, rec.attempts)
        now = time.time()
        with control.lock:
            self.running.pop(job.job_id, None)
            self.ends.forget(job.job_id)
            self.adopt_ids.discard(job.job_id)
            self.stops.forget(job.job_id, rec.attempts)
            end = how.end if how is not None and how.end is not None else now
            self.journal.record_usage(job.job_id, rec.attempts, usage)
            rec = record_end(self.journal, job.job_id, rec.attempts, rec.start or end, end, requeue_or_fail(self, rec, how or _UNSEEN))
            self.on_change(job, rec)
        self._emit_end(job, rec, slot, self.options.retries)
        # Requeued: the caller starts it again, as a job that must run again.
        return rec if (how is not None and rec.state != State.REQUEUED) or control.stopping.is_set() else None


def _on_failure(runner: JobRunner) -> None:
    """A job failed for good: --fail-fast and --halt-now stop the launch."""
    if runner.options.halt_now:
        runner.control.halt("halt-now")
        runner.request_stop()
    elif runner.options.fail_fast:
        runner.control.halt("fail-fast")


def next_attempt(runner: JobRunner, job: Job, log_dir: str) -> int:
    """The attempt a job starts now; an earlier attempt's logs are kept under their number."""
    return attempt_after(runner.journal.records.get(job.job_id), log_dir)


def settle_unwatched(runner: JobRunner) -> None:
    """Once dispatch is over, wait for the adopted jobs no thread came to, and settle them.

    Dispatch ends early on a stop (their processes are then being
    stopped), --fail-fast or a fatal error (running jobs may end): either
    way they are this launch's running jobs, so it waits for them. Each
    stays a stop target while it is waited for.
    """
    control = runner.control
    while True:
        with control.lock:
            if not runner.adopted:
                return
            job_id, (job, ref) = next(iter(runner.adopted.items()))
        log_dir = Path(runner.logs) / job_id
        runner.executor.wait_adopted(job_id, ref, str(log_dir), control.stop_now.is_set)
        runner.scheduler.release(job_id)
        with control.lock:
            runner.adopted.pop(job_id, None)
            if job_id not in runner.adopt_ids:
                continue
            decision = settle_one(runner.journal.records[job_id], log_dir, functools.partial(_still_running, runner.executor), time.time())
            if decision.outcome == Outcome.ADOPTED:
                continue  # outlived the stop: the next launch adopts it again
            runner.adopt_ids.discard(job_id)
            journal_decisions(runner.journal, [decision])
            rec = runner.journal.records[job_id]
            runner.on_change(job, rec)
        runner.emit(EventKind.END, job, rec, None)

def _still_running(executor: Executor, rec: JobRecord, log_dir: Path) -> bool:
    return executor.still_running(rec.job_id, rec.ref, str(log_dir))


def _ignore_warning(text: str) -> None:
    pass


# An adopted job gone with no record and no stop note: it did not finish, and runs again.
_UNSEEN = AttemptEnd(State.INTERRUPTED)
