"""`batchrun launch` as a chain of small steps: check, lock, settle, plan, run, finish.

The launch owns the state of one runs directory for its whole run: the lock,
the journal, the metadata view and the running processes. It only
orchestrates; each step is a part of its own: `options.check_options`,
`settle` (jobs a killed launch left running), `plan.make_plan`,
`runner.JobRunner` (attempts, retries, slots, adoption), `metasync`
(metadata.json) and `stopper` (SIGTERM, grace, SIGKILL). doit (through
`_doit.runner`) decides which jobs to run and calls back `run_job` from its
worker threads. The launch never prints: it reports `JobEvent`s to a callback
the CLI renders, and returns a `LaunchResult` the CLI turns into an exit code.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from batchrun.errors import BatchrunError, UsageError
from batchrun.executors import Executor, ExecutorOptions, make_executor
from batchrun.launch.afterwards import drop_exit_logs, kept_view, leave_fingerprint
from batchrun.launch.capacity import check_plan, launch_capacity
from batchrun.launch.detach import submit_detached
from batchrun.launch.events import EventKind, JobEvent
from batchrun.launch.feed import FixedJobs, JobQueue
from batchrun.launch.gpumem import sample_gpu_memory
from batchrun.launch.hold import RunsDirHold
from batchrun.launch.launchcontrol import LaunchControl
from batchrun.launch.livequeue import Follow, Follower
from batchrun.launch.options import MODES, LaunchOptions, Mode, Order, check_options
from batchrun.launch.plan import Plan, done_for_mode, make_plan
from batchrun.launch.result import LaunchResult
from batchrun.launch.runner import JobRunner, settle_unwatched
from batchrun.launch.settle import Outcome, carried_stops, journal_decisions, settle_in_flight
from batchrun.launch.stopper import GroupStopper
from batchrun.runfile.file import Job, Runfile
from batchrun.store.codeversion import capture, name_of, snapshot_of_cwd
from batchrun.store.fingerprint import drop_summary
from batchrun.store.journal import JOURNAL_NAME, Journal, excluding_writers
from batchrun.store.ledger import Ledger
from batchrun.store.metasync import MetadataSync
from batchrun.store.records import JobRecord, State
from batchrun.store.recordtable import RecordTable
from batchrun.store.repair import repair_runs_dir
from batchrun.store.resume import Resume
from batchrun.store.rundir import RunsDir
from batchrun.store.viewcache import journal_ids_since

# How a launch hands its jobs to doit: `doit_runner.run_job_tasks(launch, jobs, n_jobs)`;
# the jobs are a list, or a `JobQueue` that grows while the launch runs (--follow, bayes).
RunTasks = Callable[["Launch", "Sequence[Job] | JobQueue", int], int]

__all__ = ["MODES", "EventKind", "JobEvent", "Launch", "LaunchOptions", "LaunchResult", "Mode", "Order", "Plan"]


class Launch:
    """One launch of one runfile."""

    def __init__(
        self, runfile: Runfile, options: LaunchOptions, hold: RunsDirHold | None = None, on_event: Callable[[JobEvent], None] | None = None, resume: Resume | None = None
    ) -> None:
        check_options(options)
        self.runfile = runfile
        self.resume = resume  # what the fingerprint's snapshot gave (`store.resume`): the records as the last launch left them
        self.first_digest = runfile.digest  # the fingerprint's summary is only for a runfile that did not grow
        self.options = options
        self.mode = options.mode
        # The chain of `batchrun launch` takes the hold first; plain doit (`batchrun.dodo`) leaves it to `prepare`.
        self.hold = hold if hold is not None else RunsDirHold(RunsDir.for_runfile(runfile.path, options.accounting_dir, options.metadata_name))
        self.runs_dir = self.hold.runs_dir
        self.journal = Journal(self.runs_dir.path)
        self.control = LaunchControl()
        self.metadata = MetadataSync(self.runs_dir, runfile, self.journal, self.control.lock, self.control.fail)
        self.plan: Plan | None = None
        # The runfile's jobs beside their records, once `prepare` loaded them.
        self.ledger: Ledger | None = None
        # --follow: what watches the runfile (a gridspec's follower, set before `run`; else the runfile's own), and the feed.
        self.follower: Follower | None = None
        self.follow: Follow | None = None
        # Where warnings go (--follow's repeated lines and unreadable files, a metrics path that is no regular file): one line each; set before `run`.
        self.on_warning: Callable[[str], None] = _ignore_warning
        self._stopper: GroupStopper | None = None
        base_env = {**os.environ, **options.env, "BATCHRUN_RUNS_DIR": str(self.runs_dir.path)}
        # Locally, what the jobs are packed into (None: a cluster places them); -j, unless given, as many as fit.
        self.capacity = launch_capacity(options, runfile.jobs.requests)
        code, cwd = snapshot_of_cwd(self.runs_dir.path) if options.snapshot else (None, os.getcwd())  # --snapshot: a copy made before any job starts
        self.executor = _executor_of(options, self.runs_dir, cwd)
        host = socket.gethostname().split(".")[0] or "localhost"
        self.runner = JobRunner(
            options, self.journal, self.executor, self.control, str(self.runs_dir.logs), host, base_env, self.metadata.update, self.request_stop,
            self.capacity,
        )
        self.runner.code = name_of(code)
        if on_event is not None:
            self.on_event = on_event

    @property
    def on_event(self) -> Callable[[JobEvent], None]:
        return self.runner.on_event

    @on_event.setter
    def on_event(self, callback: Callable[[JobEvent], None]) -> None:
        self.runner.on_event = callback

    @property
    def fatal(self) -> BatchrunError | None:
        return self.control.fatal

    @property
    def notices(self) -> list[str]:
        """One line per repair of a damaged runs directory, for the CLI to print."""
        return self.metadata.notices

    # -- step 1: lock, load, settle, plan ----------------------------------

    def prepare(self) -> Plan:
        """Lock the runs directory, load the records, settle what a killed launch left, plan.

        Returns the plan `run` takes.
        """
        hold = self.hold
        if not hold.held:
            hold.take()
        metadata = self.metadata
        try:
            # `batchrun stop` and `kill` reach this launch from now on (one noted before is acted on now).
            hold.answer_with(functools.partial(_on_control_stop, self), functools.partial(self.stop_jobs, state=State.KILLED))
            drop_summary(self.runs_dir.path)  # the records may change: it vouches for them no more
            with excluding_writers(self.journal.path):  # a dead launch's helper adds no start line while the journal is read
                metadata.notices[:] = repair_runs_dir(self.runs_dir)
                resume = self.resume if not metadata.notices else None
                stamp_ok, kept, resumed = _load_records(self, resume)
                self.journal.open()
            metadata.import_legacy()
            records = self.journal.records
            # Only the records in state running are settled: a dict of those few, not a walk of every record.
            running = {rec.job_id: rec for rec in map(records.view, records.running_rows())}
            decisions = settle_in_flight(running, self.runs_dir.log_dir, functools.partial(_still_running, self.executor, self.runs_dir), time.time())
            journal_decisions(self.journal, decisions)
            drop_exit_logs(self.journal, self.runs_dir)
            self.runner.adopt_ids = adopt_ids = {d.job_id for d in decisions if d.outcome == Outcome.ADOPTED}
            self.runner.restop = carried_stops(decisions)
            recovered = sum(1 for d in decisions if d.outcome == Outcome.COLLECTED)
            self.plan = _plan(self, adopt_ids, recovered, resume)
            if not stamp_ok or recovered or not self.plan.nothing_to_do or self.mode == Mode.OVERWRITE:
                _rebuild_view(metadata, self.journal.path, stamp_ok, kept)
        except BaseException:
            self.journal.close()
            hold.release()
            raise
        return self.plan

    # -- step 2: run --------------------------------------------------------

    def run(self, plan: Plan, run_tasks: RunTasks, queue: JobQueue | None = None) -> None:
        """Run `prepare`'s plan; returns when all ended or stopped.

        `run_tasks` is `_doit.runner.run_job_tasks`, passed in by the caller so
        that this module and doit's never import each other. `queue`, when
        given, hands out the plan's jobs and then the ones it makes while the
        launch runs (`adaptive.BayesFeed`: a bayes search's points).
        """
        if plan.nothing_to_do and not self.options.follow and queue is None:
            return
        if self.runner.code is None:  # which code the jobs run under: asked only of a launch that runs some
            self.runner.code = name_of(capture(os.getcwd(), self.runs_dir.path))
        if self.options.detach:
            self.executor.open()
            submit_detached(self.runner, list(plan.to_run))
            return
        self.start(plan)
        self.executor.warm(min(self.options.n_jobs, len(plan.to_run)))  # its slots' helpers start while doit loads
        try:
            jobs = itertools.chain(plan.adopt, plan.to_run)  # a `Job` at a time from the plan's indices, as doit's windows take them
            source: JobQueue
            if self.options.follow:
                follower = self.follower or Follow.of_runfile(self.runfile, None, None)
                count = len(plan.adopt) + len(plan.to_run)
                self.follow = Follow(self.runfile, follower, jobs, self.control, self.journal, self.metadata, self.runner, count)
                self.follow.on_warning = self.on_warning
                source = self.follow.feed
            else:
                source = queue if queue is not None else FixedJobs(jobs)
            run_tasks(self, source, self.options.n_jobs)
        finally:
            self.stop_background()

    def start(self, plan: Plan) -> None:
        """Get ready to run jobs: the executor, the adopted jobs, the metadata thread.

        `run` calls it; so does a plain `doit` run of batchrun tasks
        (`batchrun.dodo`), where doit rather than `run` then picks the jobs.
        """
        self.executor.open()
        self.runner.on_warning = self.on_warning
        self.runner.adopt_all(plan.adopt)
        self.start_background()

    def start_background(self) -> None:
        """Start keeping metadata.json up to date while jobs run, and (--gpus, local jobs) sampling their GPU memory."""
        self.metadata.start()
        if self.options.gpus and self.executor.name == "local" and self.runner.gpu_memory is None:
            self.runner.gpu_memory = sample_gpu_memory(self.runner.running, self.control.lock)

    def stop_background(self) -> None:
        """Wait for adopted jobs dispatch never reached and for a stop in progress, then stop the metadata thread."""
        settle_unwatched(self.runner)
        if self._stopper is not None:
            self._stopper.join()
        if self.runner.gpu_memory is not None:
            self.runner.gpu_memory.close()
        self.metadata.stop()

    def running_jobs(self) -> int:
        """How many jobs this launch is running or adopting now."""
        return self.runner.running_jobs()

    def is_done(self, job_id: str) -> bool:
        """Whether a job is finished for this launch's mode (doit's uptodate)."""
        if job_id in self.runner.adopt_ids:
            return False
        return done_for_mode(self.journal.records.get(job_id), self.mode)

    def should_stop_dispatch(self) -> bool:
        return self.control.stopping.is_set()

    def queued(self) -> int:
        """--follow: jobs handed out or waiting for a slot, not started yet (for the display)."""
        return self.follow.queued() if self.follow is not None else 0

    def is_running(self, job_id: str) -> bool:
        """Whether a thread of this launch runs (or waits for) the job now."""
        with self.control.lock:
            return job_id in self.runner.running

    def run_job(self, job: Job) -> JobRecord | None:
        """Run (or adopt) one job in a free slot; called from doit's worker threads.

        A following launch's job whose line left the runfile while it waited
        does not start; an adopted one always runs (it runs already).
        """
        follow = self.follow
        if follow is None or job.job_id in self.runner.adopt_ids:
            return self.runner.run_job(job)
        current = follow.may_start(job)  # the job as the runfile has it now (its directive may have changed)
        return None if current is None else self.runner.run_job(current, once=True)

    # -- stopping -----------------------------------------------------------

    def stop_jobs(self, job_ids: list[str], state: str = State.KILLED) -> list[str]:
        """`batchrun kill` (`killed`), an early stop (`stopped`): SIGTERM to each job's group, SIGKILL after --grace, recorded as `state`
        (not retried, no --fail-fast); the launch goes on. Returns at once the ids it is stopping (jobs not running now are left out)."""
        return self.runner.stop_jobs(job_ids, state)

    def request_stop(self) -> None:
        """Ctrl-C / SIGTERM: start no new job, stop the running ones.

        A second call skips what is left of the grace period.
        """
        control = self.control
        with control.lock:
            if self._stopper is not None:
                control.stop_now.set()
                return
            control.stopping.set()  # the stopper withdraws the jobs waiting to start first (`cancel_queued`), off this signal handler
            control.interrupted = True
            self._stopper = GroupStopper(self.executor, self.options.grace, self.runner.stop_targets, control.stop_now, self.runner.stops.signal_stop)
            self._stopper.start()

    # -- step 3: finish -----------------------------------------------------

    def finish(self) -> LaunchResult:
        """Write the final metadata, release the lock, and sum up."""
        self.stop_background()
        runner = self.runner
        error = self.control.fatal
        try:
            final_error = self.metadata.write_final()
            error = error or final_error
            self.journal.close()
            if error is None and not runner.running and not runner.adopted and not runner.detached:
                self.journal.compact()
            ledger = self.ledger if self.ledger is not None else Ledger(self.runfile.jobs, self.journal.records)
            keys = ledger.keys()
            counts, failed = ledger.counts(keys), ledger.failed(keys)
            if error is None:
                leave_fingerprint(self, counts, failed, ledger)
        finally:
            self.hold.release()
        self.executor.close()
        control = self.control
        return LaunchResult(
            counts=counts,
            failed=failed,
            interrupted=control.interrupted,
            ran=runner.ran,
            metadata_path=self.runs_dir.metadata,
            runs_dir=self.runs_dir.path,
            error=error,
            halted=control.halted,
            detached=runner.detached,
            drained=control.drained and not control.interrupted,
            metadata_written=final_error is None and self.runs_dir.metadata.exists(),
        )


def _load_records(launch: Launch, resume: Resume | None) -> tuple[bool, tuple[int, str] | None, bool]:
    """`prepare`'s reading: the journal (from the snapshot's records, when it holds), and metadata.json's old entries when needed.

    metadata.json is only read and rebuilt when something changed since the last launch wrote it: a no-op resume
    stays cheap, and one whose runfile only grew keeps the file and adds to it. Returns whether the stamp
    matched, the journal mark of the snapshot's view of the file when it was taken, and whether it was.
    """
    metadata = launch.metadata
    # The records as of the snapshot, and only the journal's lines since; else all of it, into rows that follow the runfile from the first.
    records, start, lines = (resume.records, resume.journal_size, resume.journal_lines) if resume else (RecordTable.following(launch.runfile.jobs), 0, 0)
    launch.journal.load(records, start, lines)
    launch.journal.records.follow(launch.runfile.jobs)  # rows added in runfile order hold no ids of their own
    stamp_ok = metadata.unchanged()
    kept = kept_view(launch.resume, launch.mode, launch.runs_dir, metadata.notices)
    resumed = kept is not None and resume is not None and metadata.resume_view(kept[0], resume.kept)
    if resumed and resume is not None:  # the view holds the old layout now: held here too, it outlived a rebuild (28 MB a million)
        resume.view = None
    elif not stamp_ok:
        metadata.read_old()
    return stamp_ok, kept[1] if kept is not None and resumed else None, resumed


def _plan(launch: Launch, adopt_ids: set[str], recovered: int, resume: Resume | None) -> Plan:
    """`prepare`'s plan over the ledger, refused when a job asks for more than the launch has (`capacity.check_plan`)."""
    jobs, options = launch.runfile.jobs, launch.options
    if launch.mode == Mode.OVERWRITE:
        # Before the records are forgotten: a refused launch forgets nothing.
        check_plan((job for job in jobs if job.job_id not in adopt_ids) if jobs.requests else (), launch.capacity, launch.runfile.path, options.detach)
        launch.journal.record_reset([job_id for job_id in jobs.job_ids() if job_id not in adopt_ids])
    launch.ledger = Ledger(jobs, launch.journal.records, resume.rows if resume is not None else None)
    plan = make_plan(launch.ledger, None, launch.mode, options.order, options.seed, adopt_ids, recovered, launch.metadata.removed_jobs())
    check_plan(plan.to_run if jobs.requests and launch.mode != Mode.OVERWRITE else (), launch.capacity, launch.runfile.path, options.detach)
    return plan


def _rebuild_view(metadata: MetadataSync, journal: Path, stamp_ok: bool, mark: tuple[int, str] | None) -> None:
    """metadata.json after the plan: only what the journal named since the snapshot (`mark`), when its view was taken; else rebuilt."""
    touched = journal_ids_since(journal, mark) if mark is not None else None
    if touched is not None:
        metadata.finish_resumed_view(touched)
        return
    if stamp_ok or mark is not None:
        metadata.read_old()
    metadata.build()


def _on_control_stop(launch: Launch, now: bool) -> None:
    """`batchrun stop` (drain: no new job) or `stop --now` (as Ctrl-C)."""
    if now:
        launch.request_stop()
    else:
        launch.control.drain()


def _executor_of(options: LaunchOptions, runs_dir: RunsDir, cwd: str) -> Executor:
    """The launch's executor, its jobs run in `cwd`; each keeps those of the options that are its own settings."""
    return make_executor(
        options.executor,
        ExecutorOptions(options.n_jobs, cwd, str(runs_dir.path), None if options.detach else str(runs_dir.path / JOURNAL_NAME)),  # not --detach's one helper
        sbatch_args=options.sbatch_args, scheduler=options.scheduler, timeout=options.timeout, checkpoint_signal=options.checkpoint_signal,
    )


def _ignore_warning(text: str) -> None:
    pass


def _still_running(executor: Executor, runs_dir: RunsDir, rec: JobRecord, log_dir: Path) -> bool:
    """Settlement's liveness question for a job a killed launch left running.

    The executor that made the job's reference answers; this launch's own
    executor also answers for jobs it can follow (`Executor.adopts`). A job
    another executor may still run elsewhere is not run a second time here.
    """
    if not executor.adopts(rec.ref):
        raise UsageError(
            f"{runs_dir.path}: job {rec.job_id} was started by another executor ({rec.ref}) "
            "and may still run there; launch again with the same --executor"
        )
    return executor.still_running(rec.job_id, rec.ref, str(log_dir))


def _tally(jobs: Sequence[Job], records: Mapping[str, JobRecord]) -> tuple[dict[str, int], Sequence[tuple[Job, JobRecord]]]:
    """Counts of the runfile's jobs by `category_of`, and those that ended without succeeding (stopped is no failure)."""
    ledger = Ledger.of(jobs, records)
    keys = ledger.keys()
    return ledger.counts(keys), ledger.failed(keys)
