"""`batchrun launch` as a chain of small steps: load, lock, recover, plan, run, finish.

The launch owns the state of one runs directory for its whole run: the lock,
the journal, the metadata view and the running processes. doit (through
`doit_tasks`) decides which jobs to run and calls back `run_job` from its
worker threads. The launch never prints: it reports `JobEvent`s to a callback
the CLI renders, and returns a `LaunchResult` the CLI turns into an exit code.
"""

from __future__ import annotations

import heapq
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.errors import BatchrunError, MetadataError, UsageError
from batchrun.executors import ExecutorOptions, local, make_executor
from batchrun.journal import JobRecord, Journal, State
from batchrun.metadata import (
    LaunchLock,
    MetadataView,
    RunsDir,
    acquire_lock,
    build_entry,
    iter_metadata,
    legacy_record,
)
from batchrun.runfile import Job, Runfile

__all__ = ["JobEvent", "Launch", "LaunchOptions", "LaunchResult", "Plan", "MODES"]

MODES = ("resume", "retry_failed", "overwrite")

# How often metadata.json is brought up to date while jobs finish.
_METADATA_INTERVAL = 1.0
# Name of the file recording which journal size and runfile metadata.json reflects.
_STAMP_NAME = ".metadata.stamp"
# Placeholder reference in `_running` for a job between its start record and its start.
_STARTING = "starting"


@dataclass
class LaunchOptions:
    """What the user asked of one launch."""

    n_jobs: int = 1
    mode: str = "resume"
    accounting_dir: Path | None = None
    metadata_name: str = "metadata.json"
    grace: float = 10.0
    env: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    timeout: float | None = None
    fail_fast: bool = False
    halt_now: bool = False
    gpus: list[str] = field(default_factory=list)
    jobs_per_gpu: int = 1
    order: str = "file"
    seed: int = 0
    executor: str = "local"
    sbatch_args: list[str] = field(default_factory=list)
    scheduler: str | None = None
    detach: bool = False


@dataclass(frozen=True)
class JobEvent:
    """Something that happened to a job, for the CLI to show."""

    kind: str  # "start" | "adopt" | "retry" (ended, will run again) | "end"
    job: Job
    record: JobRecord
    slot: int | None = None


@dataclass
class Plan:
    """What a launch will do, decided before anything runs."""

    to_run: list[Job]
    adopt: list[Job]
    new: int
    succeeded: int
    failed: int  # finished with a non-zero status
    failed_skipped: int
    rerun_unfinished: int  # interrupted or crashed, to run again
    recovered: int  # ended while no launch was watching, collected now
    removed: int  # records of jobs no longer in the runfile

    @property
    def nothing_to_do(self) -> bool:
        return not self.to_run and not self.adopt


@dataclass
class LaunchResult:
    """The outcome of a launch for the jobs of its runfile."""

    counts: dict[str, int]
    failed: list[tuple[Job, JobRecord]]
    interrupted: bool
    ran: int
    metadata_path: Path
    runs_dir: Path
    error: BatchrunError | None = None
    halted: str | None = None  # "fail-fast" or "halt-now" when a failure stopped the launch
    detached: int = 0  # jobs submitted and left running (--detach)

    @property
    def exit_code(self) -> int:
        """0 all succeeded, 1 some failed, 130 interrupted, 2 could not go on."""
        if self.error is not None:
            return self.error.exit_code
        if self.halted:
            return 1
        if self.interrupted:
            return 130
        if self.failed:
            return 1
        return 0


class Launch:
    """One launch of one runfile."""

    def __init__(self, runfile: Runfile, options: LaunchOptions, on_event: Callable[[JobEvent], None] | None = None) -> None:
        if options.mode not in MODES:
            raise UsageError(f"unknown mode {options.mode!r}; choose one of {', '.join(MODES)}")
        if options.n_jobs < 1:
            raise UsageError(f"-j must be at least 1, not {options.n_jobs}")
        if options.gpus and options.n_jobs > len(options.gpus) * options.jobs_per_gpu:
            raise UsageError(
                f"-j {options.n_jobs} would put more than {options.jobs_per_gpu} job(s) on a GPU "
                f"({len(options.gpus)} GPUs); lower -j or raise --jobs-per-gpu"
            )
        self.runfile = runfile
        self.options = options
        self.on_event = on_event or (lambda event: None)
        self.runs_dir = RunsDir.for_runfile(runfile.path, options.accounting_dir, options.metadata_name)
        self.journal = Journal(self.runs_dir.path)
        self.metadata = MetadataView(self.runs_dir.metadata)
        self.host = socket.gethostname().split(".")[0] or "localhost"
        self.plan: Plan | None = None
        self._jobs_by_id = {job.job_id: job for job in runfile.jobs}
        self._old_entries: dict[str, dict[str, Any]] = {}
        # Jobs whose metadata entry changed since the last flush.
        self._changed: dict[str, Job] = {}
        self._lock: LaunchLock | None = None
        self._state_lock = threading.RLock()
        self._adopt_ids: set[str] = set()
        self._slots = _SlotPool(options.n_jobs)
        # job id -> the executor's reference to it (None: unknown, _STARTING).
        self._running: dict[str, str | None] = {}
        self._stopping = threading.Event()
        self._stop_now = threading.Event()
        self._stopper: threading.Thread | None = None
        self.fatal: BatchrunError | None = None
        self.halted: str | None = None
        self._detached = 0
        self._ran = 0
        self._flusher_done = threading.Event()
        self._flusher: threading.Thread | None = None
        self._base_env = dict(os.environ)
        self._base_env.update(options.env)
        self._base_env["BATCHRUN_RUNS_DIR"] = str(self.runs_dir.path)
        self._logs = str(self.runs_dir.logs)
        self.executor = make_executor(
            options.executor,
            ExecutorOptions(
                n_jobs=options.n_jobs,
                cwd=os.getcwd(),
                runs_dir=str(self.runs_dir.path),
                sbatch_args=options.sbatch_args,
                scheduler=options.scheduler,
            ),
        )
        self._redo_failed = options.mode == "retry_failed"

    # -- step 1: lock, load and recover -------------------------------------

    def prepare(self) -> Plan:
        """Lock the runs directory, load the records, collect what ended, plan."""
        self.runs_dir.create()
        self._lock = acquire_lock(self.runs_dir)
        try:
            self.journal.load()
            # metadata.json is only read and rebuilt when something changed
            # since the last launch wrote it: a no-op resume stays cheap.
            stamp_ok = self._stamp_matches()
            if not stamp_ok:
                self._read_old_metadata()
            self.journal.open()
            self._import_legacy()
            recovered = self._recover_in_flight()
            if self.options.mode == "overwrite":
                self._reset_for_rerun()
            self.plan = self._make_plan(recovered)
            if not stamp_ok or recovered or not self.plan.nothing_to_do or self.options.mode == "overwrite":
                if stamp_ok:
                    self._read_old_metadata()
                self._build_view()
        except BaseException:
            self.journal.close()
            self._lock.release()
            self._lock = None
            raise
        return self.plan

    def _stamp(self) -> str:
        """What metadata.json reflects: the journal's size, its own size and
        mtime (an edited or damaged file is read again), and the runfile."""
        size = self.journal.path.stat().st_size if self.journal.path.exists() else 0
        try:
            meta = self.runs_dir.metadata.stat()
            meta_id = f"{meta.st_size}:{meta.st_mtime_ns}"
        except OSError:
            meta_id = "none"
        return f"1 {size} {self.runs_dir.metadata_name} {meta_id} {self.runfile.digest}\n"

    def _stamp_matches(self) -> bool:
        try:
            text = (self.runs_dir.path / _STAMP_NAME).read_text()
        except OSError:
            return False
        return text == self._stamp()

    def _write_stamp(self) -> None:
        try:
            (self.runs_dir.path / _STAMP_NAME).write_text(self._stamp())
        except OSError:
            pass  # only an optimisation for the next no-op launch

    def _read_old_metadata(self) -> None:
        """Keep what the old metadata.json has that the journal may not.

        That is the entries of jobs no longer in the runfile (kept, never
        deleted) and entries the original batchrun wrote (no `state`), which
        are imported; entries of current jobs are rebuilt from the journal.
        """
        self._old_entries = {}
        for job_id, entry in iter_metadata(self.runs_dir.metadata):
            if job_id not in self._jobs_by_id or "state" not in entry:
                self._old_entries[job_id] = entry

    def _import_legacy(self) -> None:
        """Entries the original batchrun wrote count as finished: journal them."""
        records = self.journal.records
        for job_id, entry in self._old_entries.items():
            if job_id in records or "state" in entry:
                continue
            rec = legacy_record(job_id, entry)
            if rec is not None and rec.status is not None and rec.start is not None and rec.end is not None:
                self.journal.record_end(job_id, rec.attempts, rec.status, rec.start, rec.end)

    def _recover_in_flight(self) -> int:
        """Settle jobs a previous launch left running: collect, adopt or rerun."""
        recovered = 0
        now = time.time()
        for rec in list(self.journal.records.values()):
            if rec.state != State.RUNNING:
                continue
            if self.executor.name == "local" and rec.ref is not None and not rec.ref.isdigit():
                # Started on a cluster by an earlier launch: local checks would
                # wrongly call it dead and run it a second time.
                raise UsageError(
                    f"{self.runs_dir.path}: job {rec.job_id} was started by another executor ({rec.ref}) "
                    "and may still run there; launch again with the same --executor"
                )
            log_dir = self.runs_dir.log_dir(rec.job_id)
            exit_record = local.read_exit_record(log_dir)
            if exit_record is not None:
                status, end = exit_record
                self.journal.record_end(rec.job_id, rec.attempts, status, rec.start or end, end)
                recovered += 1
            elif self.executor.still_running(rec.job_id, rec.ref, str(log_dir)):
                self._adopt_ids.add(rec.job_id)
            else:
                self.journal.record_unfinished(rec.job_id, rec.attempts, rec.start or now, now)
        return recovered

    def _reset_for_rerun(self) -> None:
        ids = [job.job_id for job in self.runfile.jobs if job.job_id not in self._adopt_ids]
        self.journal.record_reset(ids)

    def _make_plan(self, recovered: int) -> Plan:
        records = self.journal.records
        to_run: list[Job] = []
        adopt: list[Job] = []
        new = succeeded = failed = failed_skipped = unfinished = 0
        for job in self.runfile.jobs:
            rec = records.get(job.job_id)
            if job.job_id in self._adopt_ids:
                adopt.append(job)
            elif rec is None or rec.state == State.PENDING:
                new += 1
                to_run.append(job)
            elif rec.state == State.SUCCEEDED:
                succeeded += 1
            elif rec.finished:
                failed += 1
                if self._redo_failed:
                    to_run.append(job)
                else:
                    failed_skipped += 1
            else:
                unfinished += 1
                to_run.append(job)
        # Adopted jobs whose line was removed from the runfile still finish.
        for job_id in self._adopt_ids:
            if job_id not in self._jobs_by_id:
                old = self._old_entries.get(job_id, {})
                adopt.append(Job(str(old.get("command", "")), job_id, 0))
        removed = sum(1 for job_id in records if job_id not in self._jobs_by_id)
        if self.options.order == "shuffle":
            random.Random(self.options.seed).shuffle(to_run)
        return Plan(to_run, adopt, new, succeeded, failed, failed_skipped, unfinished, recovered, removed)

    def _build_view(self) -> None:
        records = self.journal.records
        old = self._old_entries
        for job in self.runfile.jobs:
            self.metadata.set(job.job_id, build_entry(job, records.get(job.job_id), f"{self._logs}/{job.job_id}", old.get(job.job_id)))
        for job_id, entry in old.items():
            if job_id not in self._jobs_by_id:
                rec = records.get(job_id)
                if rec is not None and "command" in entry:
                    job = Job(str(entry["command"]), job_id, entry.get("line") or 0)
                    entry = build_entry(job, rec, f"{self._logs}/{job_id}", entry)
                self.metadata.set(job_id, entry)
        # Rendered now; the parsed file would only hold memory from here on.
        self._old_entries = {}

    # -- step 2: run --------------------------------------------------------

    def run(self) -> None:
        """Run the plan's jobs through doit; returns when all ended or stopped."""
        assert self.plan is not None
        jobs = self.plan.adopt + self.plan.to_run
        if not jobs:
            return
        self.executor.open()
        if self.options.detach:
            self._submit_detached(self.plan.to_run)
            return
        from batchrun.doit_tasks import run_job_tasks

        self.start_background()
        try:
            run_job_tasks(self, jobs, self.options.n_jobs)
        finally:
            self.stop_background()

    def start_background(self) -> None:
        """Start keeping metadata.json up to date while jobs run."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="batchrun-metadata", daemon=True)
            self._flusher.start()

    def stop_background(self) -> None:
        """Stop the metadata thread and wait for a stop in progress to end."""
        if self._flusher is not None:
            self._flusher_done.set()
            self._flusher.join()
            self._flusher = None
        if self._stopper is not None:
            self._stopper.join()

    def running_jobs(self) -> int:
        """How many jobs this launch is running or adopting now."""
        with self._state_lock:
            return len(self._running)

    def _submit_detached(self, jobs: list[Job]) -> None:
        """--detach: start every pending job and return; a later launch collects them.

        The jobs go to the executor in one `start_many` call: SLURM gets one
        job array throttled to -j, not one submission per job.
        """
        started = []
        for slot, job in enumerate(jobs):
            log_dir = f"{self._logs}/{job.job_id}"
            prev = self.journal.records.get(job.job_id)
            attempt = (prev.attempts if prev is not None else 0) + 1
            if attempt > 1:
                _keep_old_logs(log_dir, attempt - 1)
            slot_id = slot % self.options.n_jobs
            with self._state_lock:
                rec = self.journal.record_start(job.job_id, attempt, time.time(), slot_id, self.host)
            started.append((job, rec, attempt, slot_id, log_dir))
        try:
            refs = self.executor.start_many(
                [(job.job_id, job.command, log_dir, self._job_env(job, slot_id, log_dir)) for job, _, _, slot_id, log_dir in started]
            )
        except BatchrunError as error:
            # Some jobs may have been submitted: their start records stay,
            # and the next launch asks the executor which ones exist.
            self._fail(error)
            return
        except OSError as error:
            self._fail(MetadataError(f"{self._logs}: cannot start jobs: {error.strerror}"))
            return
        for (job, rec, attempt, slot_id, _), ref in zip(started, refs, strict=True):
            with self._state_lock:
                self.journal.record_ref(job.job_id, attempt, ref)
                self._update_entry(job, rec)
                self._detached += 1
            self._emit(JobEvent("submit", job, rec, slot_id))

    def is_done(self, job_id: str) -> bool:
        """Whether a job is finished for this launch's mode (doit's uptodate)."""
        rec = self.journal.records.get(job_id)
        if rec is None or job_id in self._adopt_ids:
            return False
        if self._redo_failed:
            return rec.state == State.SUCCEEDED
        return rec.finished

    def should_stop_dispatch(self) -> bool:
        return self._stopping.is_set()

    def run_job(self, job: Job) -> JobRecord | None:
        """Run (or adopt) one job in a free slot, retrying failures as asked.

        Called from doit's worker threads.
        """
        if self._stopping.is_set():
            return None
        slot = self._slots.take()
        try:
            if job.job_id in self._adopt_ids:
                rec = self._adopt(job, slot)
                if rec is not None:
                    return rec
            retries_left = self.options.retries
            while True:
                rec = self._start_and_wait(job, slot, retries_left)
                if rec is None or rec.state == State.SUCCEEDED or not rec.finished:
                    return rec
                if retries_left == 0 or self._stopping.is_set():
                    self._on_failure()
                    return rec
                retries_left -= 1
        except BatchrunError as error:
            self._fail(error)
            return None
        except OSError as error:
            self._fail(MetadataError(f"{self.runs_dir.log_dir(job.job_id)}: cannot start job: {error.strerror}"))
            return None
        finally:
            self._slots.give(slot)

    def _on_failure(self) -> None:
        """A job failed for good: --fail-fast and --halt-now stop the launch."""
        if self.options.halt_now:
            with self._state_lock:
                self.halted = self.halted or "halt-now"
            self.request_stop()
        elif self.options.fail_fast:
            with self._state_lock:
                self.halted = self.halted or "fail-fast"
            self._stopping.set()

    def _emit(self, event: JobEvent) -> None:
        """Report an event; a display that fails (a closed pipe) never stops jobs."""
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001 - the records, not the display, matter
            self.on_event = _ignore_event

    def _fail(self, error: BatchrunError) -> None:
        """A storage or environment fault: start nothing more, let jobs end."""
        with self._state_lock:
            if self.fatal is None:
                self.fatal = error
        self._stopping.set()

    def _job_env(self, job: Job, slot: int, log_dir: str) -> dict[str, str]:
        env = self._base_env.copy()
        env["BATCHRUN_JOB_ID"] = job.job_id
        env["BATCHRUN_SLOT"] = str(slot)
        env["BATCHRUN_LOG_DIR"] = log_dir
        env["BATCHRUN_METRICS"] = f"{log_dir}/metrics.jsonl"
        gpus = self.options.gpus
        if gpus:
            # Slots 0..N-1 map round-robin onto the GPUs, so with
            # N = len(gpus) * K each GPU serves exactly K slots.
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        return env

    def _start_and_wait(self, job: Job, slot: int, retries_left: int = 0) -> JobRecord | None:
        log_dir = f"{self._logs}/{job.job_id}"
        prev = self.journal.records.get(job.job_id)
        attempt = (prev.attempts if prev is not None else 0) + 1
        if attempt > 1:
            _keep_old_logs(log_dir, attempt - 1)
        start = time.time()
        with self._state_lock:
            # Checked under the lock the stopper reads `_running` with: a job
            # either sees the stop and never starts, or is visible to it.
            if self._stopping.is_set():
                return None
            rec = self.journal.record_start(job.job_id, attempt, start, slot, self.host)
            self._running[job.job_id] = _STARTING
            self._update_entry(job, rec)
        try:
            ref = self.executor.start(job.job_id, job.command, log_dir, self._job_env(job, slot, log_dir))
        except (OSError, BatchrunError):
            with self._state_lock:
                self._running.pop(job.job_id, None)
                self.journal.record_unfinished(job.job_id, attempt, start, time.time())
            raise
        with self._state_lock:
            self.journal.record_ref(job.job_id, attempt, ref)
            self._running[job.job_id] = ref
            self._update_entry(job, rec)
        self._emit(JobEvent("start", job, rec, slot))
        timed_out = False
        if self.options.timeout is None:
            returncode = self.executor.wait(ref)
        else:
            returncode = self.executor.wait(ref, max(0.0, start + self.options.timeout - time.time()))
            if returncode is None:
                timed_out = True
                returncode = self._stop_one(job.job_id, ref)
        assert returncode is not None
        end = time.time()
        with self._state_lock:
            self._running.pop(job.job_id, None)
            if timed_out and self._stopper is None:
                status = returncode if returncode >= 0 else 128 - returncode
                rec = self.journal.record_end(job.job_id, attempt, status, start, end, State.TIMEOUT)
            elif returncode != 0 and self._stopper is not None:
                # Stopped by us (or it chose to fail as we stopped it).
                rec = self.journal.record_unfinished(job.job_id, attempt, start, end)
            else:
                # A wrapper killed by a signal we did not send: the shell's
                # convention, 128 + signal number.
                status = returncode if returncode >= 0 else 128 - returncode
                rec = self.journal.record_end(job.job_id, attempt, status, start, end)
            self._ran += 1
            self._update_entry(job, rec)
        if self.journal.disk_full:
            self._fail(MetadataError(f"{self.runs_dir.path}: the disk is full; running jobs are recorded, no new job starts"))
        retry = rec.finished and rec.state != State.SUCCEEDED and retries_left > 0 and not self._stopping.is_set()
        self._emit(JobEvent("retry" if retry else "end", job, rec, slot))
        return rec

    def _stop_one(self, job_id: str, ref: str) -> int:
        """Stop a job that ran past --timeout: SIGTERM, then SIGKILL after the grace.

        Waits for every process of the job, not just the wrapper: children
        that ignore SIGTERM still get the SIGKILL.
        """
        self.executor.signal(job_id, ref, signal.SIGTERM)
        deadline = time.monotonic() + self.options.grace
        while self.executor.alive(job_id, ref) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.executor.signal(job_id, ref, signal.SIGKILL)
        returncode = self.executor.wait(ref)
        assert returncode is not None
        return returncode

    def _adopt(self, job: Job, slot: int) -> JobRecord | None:
        """Wait for a job a killed launch left running; None if it must run again."""
        rec = self.journal.records[job.job_id]
        log_dir = self.runs_dir.log_dir(job.job_id)
        with self._state_lock:
            self._running[job.job_id] = rec.ref  # None: the executor finds it by job id
        self._emit(JobEvent("adopt", job, rec, slot))
        self.executor.wait_adopted(job.job_id, rec.ref, str(log_dir), self._stop_now.is_set)
        exit_record = local.read_exit_record(log_dir)
        now = time.time()
        with self._state_lock:
            self._running.pop(job.job_id, None)
            self._adopt_ids.discard(job.job_id)
            if exit_record is not None:
                status, end = exit_record
                rec = self.journal.record_end(job.job_id, rec.attempts, status, rec.start or end, end)
            else:
                rec = self.journal.record_unfinished(job.job_id, rec.attempts, rec.start or now, now)
            self._update_entry(job, rec)
        self._emit(JobEvent("end", job, rec, slot))
        return rec if exit_record is not None or self._stopping.is_set() else None

    def _update_entry(self, job: Job, rec: JobRecord) -> None:
        """Note that a job's entry changed; it is rendered at the next flush.

        Rendering lazily, once per flush, turns a job's start, pid and end
        (often within one second) into one JSON encoding instead of three,
        off the worker threads' path. Called under `_state_lock`.
        """
        self._changed[job.job_id] = job
        self.metadata.dirty = True

    def _render_changed(self) -> None:
        """Render the entries noted by `_update_entry`. Called under `_state_lock`."""
        records = self.journal.records
        for job_id, job in self._changed.items():
            self.metadata.set(job_id, build_entry(job, records.get(job_id), f"{self._logs}/{job_id}"))
        self._changed.clear()

    def _flush_loop(self) -> None:
        while not self._flusher_done.wait(_METADATA_INTERVAL):
            self._flush_metadata()

    def _flush_metadata(self) -> None:
        with self._state_lock:
            if not self.metadata.dirty:
                return
            self._render_changed()
            parts = self.metadata.snapshot()
            self.metadata.dirty = False
        try:
            self.metadata.write(parts)
        except MetadataError as err:
            self._fail(err)

    # -- stopping -----------------------------------------------------------

    def request_stop(self) -> None:
        """Ctrl-C / SIGTERM: start no new job, stop the running ones.

        A second call skips what is left of the grace period.
        """
        with self._state_lock:
            if self._stopper is not None:
                self._stop_now.set()
                return
            self._stopping.set()
            self._stopper = threading.Thread(target=self._stop_jobs, name="batchrun-stopper", daemon=True)
            self._stopper.start()

    def _stop_jobs(self) -> None:
        """SIGTERM every running job's process group, SIGKILL after the grace.

        Loops until no job is running: jobs still starting are signalled as
        soon as their process exists, and groups whose wrapper already died
        but whose children ignored SIGTERM still get the SIGKILL.
        """
        self.executor.cancel_queued()
        deadline = time.monotonic() + self.options.grace
        sig = signal.SIGTERM
        signalled: dict[str, str | None] = {}
        kill_deadline = None
        while True:
            with self._state_lock:
                running = list(self._running.items())
            for job_id, ref in running:
                if ref == _STARTING or job_id in signalled:
                    continue
                if self.executor.signal(job_id, ref, sig):
                    signalled[job_id] = ref
            signalled = {j: r for j, r in signalled.items() if self.executor.alive(j, r)}
            if not running and not signalled:
                return
            if sig == signal.SIGTERM and (time.monotonic() >= deadline or self._stop_now.is_set()):
                sig = signal.SIGKILL
                kill_deadline = time.monotonic() + 10.0
                for job_id, ref in signalled.items():
                    self.executor.signal(job_id, ref, signal.SIGKILL)
            elif sig == signal.SIGKILL:
                for job_id, ref in signalled.items():
                    self.executor.signal(job_id, ref, signal.SIGKILL)
                if kill_deadline is not None and time.monotonic() > kill_deadline:
                    # Nothing more can be done; release adopters waiting on locks.
                    self._stop_now.set()
                    return
            time.sleep(0.05)

    # -- step 3: finish -----------------------------------------------------

    def finish(self) -> LaunchResult:
        """Write the final metadata, release the lock, and sum up."""
        interrupted = self._stopper is not None
        error = self.fatal
        try:
            with self._state_lock:
                self._render_changed()
            if len(self.metadata) or self.metadata.dirty:
                try:
                    self.metadata.write()
                except MetadataError as err:
                    error = error or err
            self.journal.close()
            if error is None and not self._running and not self._detached:
                self.journal.compact()
            if error is None:
                self._write_stamp()
        finally:
            if self._lock is not None:
                self._lock.release()
        counts = {state: 0 for state in State.ALL}
        failed = []
        records = self.journal.records
        for job in self.runfile.jobs:
            rec = records.get(job.job_id)
            state = rec.state if rec is not None else State.PENDING
            counts[state] += 1
            if rec is not None and rec.finished and rec.state != State.SUCCEEDED:
                failed.append((job, rec))
        self.executor.close()
        return LaunchResult(counts, failed, interrupted, self._ran, self.runs_dir.metadata, self.runs_dir.path, error, self.halted, self._detached)


def _keep_old_logs(log_dir: str, attempt: int) -> None:
    """Keep an earlier attempt's logs as out.<attempt>.log / err.<attempt>.log / metrics.<attempt>.jsonl."""
    for name, ext in (("out", "log"), ("err", "log"), ("metrics", "jsonl")):
        try:
            os.replace(f"{log_dir}/{name}.{ext}", f"{log_dir}/{name}.{attempt}.{ext}")
        except FileNotFoundError:
            pass


class _SlotPool:
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


def _ignore_event(event: JobEvent) -> None:
    pass
