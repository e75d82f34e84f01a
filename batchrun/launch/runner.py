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
import os
import time
from collections.abc import Callable
from pathlib import Path

from batchrun.errors import BatchrunError, MetadataError
from batchrun.executors import Executor, jobfiles
from batchrun.launch.attempt import attempt_after, job_environment
from batchrun.launch.capacity import Capacity
from batchrun.launch.events import EventKind, JobEvent
from batchrun.launch.gpumem import GpuMemory
from batchrun.launch.launchcontrol import LaunchControl
from batchrun.launch.options import LaunchOptions
from batchrun.launch.plan import done_for_mode
from batchrun.launch.scheduler import Grant, Scheduler
from batchrun.launch.settle import AttemptEnd, Outcome, ended_from_files, journal_decisions, record_end, settle_one, watched_end
from batchrun.launch.stopnotes import StopNotes
from batchrun.launch.stopper import STARTING, JobEnds, Target, stop_job, wait_job_warned
from batchrun.metrics.cache import record_job_metrics
from batchrun.metrics.file import METRICS_NAME, NOT_A_FILE, Skipped
from batchrun.resources import time_limit
from batchrun.runfile.file import Job
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State

__all__ = ["JobRunner", "job_env", "next_attempt", "settle_unwatched"]


class JobRunner:
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
        self.on_event: Callable[[JobEvent], None] = _ignore_event
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

    def emit(self, kind: EventKind, job: Job, rec: JobRecord, slot: int | None, note: str | None = None, metrics: bool = True) -> None:
        """Report an event; a display that fails (a closed pipe) never stops jobs."""
        try:
            self.on_event(JobEvent(kind, job, rec, slot, note, metrics))
        except Exception:  # noqa: BLE001 - the records, not the display, matter
            self.on_event = _ignore_event

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
                        self.scheduler.give(grant)
                        grant = None
                        grant = self._take(job, queue=True)
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

    def _take(self, job: Job, queue: bool) -> Grant | None:
        """A slot (and what the job asks) from the scheduler; None when the launch stops (or cannot place the job, a fatal error)."""
        try:
            return self.scheduler.take(job.job_id, job.request, self.control.stopping.is_set, queue)
        except BatchrunError as error:
            self.control.fail(error)
            return None

    def _start_and_wait(self, job: Job, grant: Grant, retries_left: int = 0, once: bool = False) -> JobRecord | None:
        control = self.control
        log_dir = f"{self.logs}/{job.job_id}"
        with control.lock:
            if once and (job.job_id in self.running or done_for_mode(self.journal.records.get(job.job_id), self.options.mode)):
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
            rec = prev if noted else self.journal.record_start(job.job_id, attempt, start, grant.slot, self.host, grant.holds(), self.code)
            self.running[job.job_id] = STARTING
            if not noted:
                self.on_change(job, rec)
        env = job_env(self, job, grant, log_dir, attempt, rec)
        try:
            if noted:
                # The executor appends the start line right before the job starts (it may first wait behind the slot's job).
                line = self.journal.start_line(job.job_id, attempt, grant.slot, self.host, grant.holds(), self.code)
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
                rec = self.journal.note_start(job.job_id, attempt, start_text or f"{time.time():.6f}", grant.slot, self.host, grant.holds(), self.code)
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
            rec = record_end(self.journal, job.job_id, attempt, start, end, _requeue_or_fail(self, rec, how))
            self.ran += 1
            self.on_change(job, rec)
        if self.journal.disk_full:
            control.fail(MetadataError(f"{Path(self.logs).parent}: the disk is full; running jobs are recorded, no new job starts"))
        self._emit_end(job, rec, slot, retries_left, ref)
        return rec

    def _emit_end(self, job: Job, rec: JobRecord, slot: int, retries_left: int, ref: str | None = None) -> None:
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
            rec = record_end(self.journal, job.job_id, rec.attempts, rec.start or end, end, _requeue_or_fail(self, rec, how or _UNSEEN))
            self.on_change(job, rec)
        self._emit_end(job, rec, slot, self.options.retries)
        # Requeued: the caller starts it again, as a job that must run again.
        return rec if (how is not None and rec.state != State.REQUEUED) or control.stopping.is_set() else None


WITHDRAWN = JobRecord("")  # `_start_and_wait`'s answer for a job given back unstarted by the slot it waited behind


def _on_failure(runner: JobRunner) -> None:
    """A job failed for good: --fail-fast and --halt-now stop the launch."""
    if runner.options.halt_now:
        runner.control.halt("halt-now")
        runner.request_stop()
    elif runner.options.fail_fast:
        runner.control.halt("fail-fast")


def job_env(runner: JobRunner, job: Job, grant: Grant, log_dir: str, attempt: int, rec: JobRecord | None = None) -> dict[str, str]:
    """The job's environment; CUDA_VISIBLE_DEVICES names exactly the GPUs it holds when the launch has GPUs."""
    capacity, gpus = runner.scheduler.capacity, runner.options.gpus
    if capacity is not None:
        shown = grant.gpu_ids if capacity.gpus else None
    else:
        # A cluster executor: --gpus maps slot s to GPU s mod len, as it always did.
        shown = [gpus[grant.slot % len(gpus)]] if gpus else None
    rec = rec if rec is not None else runner.journal.records.get(job.job_id)
    return job_environment(runner.base_env, job, grant.slot, log_dir, attempt, shown, rec.requeues if rec is not None else 0)


def _requeue_or_fail(runner: JobRunner, rec: JobRecord, how: AttemptEnd) -> AttemptEnd:
    """A requeue (exit 75) past --max-requeues is a failure (`rec`: the job's record); any other end stays as it is."""
    if how.state != State.REQUEUED or rec.requeues < runner.options.max_requeues:
        return how
    runner.requeues_spent.add(rec.job_id)
    return AttemptEnd(State.FAILED, how.status, how.end, how.recorded)


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


def _ignore_event(event: JobEvent) -> None:
    pass


def _ignore_warning(text: str) -> None:
    pass


# An adopted job gone with no record and no stop note: it did not finish, and runs again.
_UNSEEN = AttemptEnd(State.INTERRUPTED)
