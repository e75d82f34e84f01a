"""Run jobs as tasks of SLURM job arrays, and find them again.

Jobs that start together go to SLURM together: `start` queues its job, and a
submitter thread sends every job queued within a short window (or as soon as
every free slot asked) as one `sbatch --array=0-K%N`; `start_many` (--detach)
sends all pending jobs as one array. Before submitting, the executor writes a
manifest under `<runs_dir>/slurm/`: line K+1 holds task K's job id, the
environment it needs beyond batchrun's own, and its command, shell-quoted.
Every task runs one script that reads its line and hands the command to the
job supervisor (`executors/supervisor.py`), which runs it in the launch's
directory as every executor does and writes `<log dir>/exit`. Results never
depend on SLURM's accounting (`sacct` is not used).

One monitor thread serves every `wait`: it reads the exit records every
quarter second and asks `squeue` about all watched tasks once a second. A
task SLURM no longer runs that leaves no exit record within a few seconds was
lost (cancelled, node failure, launch failure) and ends with status -9, never
as a success. Signals are gathered the same way into a few `scancel` calls.

A job's time limit (its `time`, else --timeout) is SLURM's `--time`, which
SLURM enforces from the task's start (`enforces_time_limit`): a task it ended
TIMEOUT with no exit record is recorded `timeout`. The checkpoint signal is
`--signal=B:SIG@SECONDS`, passed on to the job by its supervisor.

References are `ARRAYID_TASK`. A later launch asks `squeue` whether a task is
still queued or running and adopts it; a job whose reference the journal
missed (batchrun killed between sbatch and the journal line) is found again
through its manifest line and the `submitted` log, or the command squeue shows.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.errors import ExecutorError
from batchrun.executors.base import Executor, ExecutorName, ExecutorOptions, Unwatched
from batchrun.executors.jobfiles import Unrecorded, attempt_of, job_lock_held, read_exit_record, wait_for_job_lock
from batchrun.executors.processes import group_alive, kill_group
from batchrun.executors.slurm import cluster
from batchrun.executors.slurm.commands import SlurmCommands
from batchrun.executors.slurm.settings import SlurmSettings
from batchrun.executors.slurm.submit import (
    Submission,
    Submitter,
    append_line,
    index_manifests,
    prepare_log_dir,
    remove_spent,
    submitted_arrays,
    write_task_script,
)
from batchrun.executors.slurm.text import (
    ENDED,
    SUBMITTED_NAME,
    TASK_SCRIPT_NAME,
    cluster_option,
    is_slurm_ref,
    last_line,
    manifest_line,
    parse_squeue,
    refused_sbatch_args,
    shell_quote,
)
from batchrun.liveness import LockTable
from batchrun.resources import Request

__all__ = ["SUBMITTED_NAME", "TASK_SCRIPT_NAME", "SlurmExecutor", "SlurmSettings", "is_slurm_ref", "manifest_line", "parse_squeue", "shell_quote"]

log = logging.getLogger(__name__)

# How long signals gather before one round of scancel.
_SIGNAL_WINDOW = 0.02
# How often waited-for jobs' exit records are read.
_FILE_POLL = 0.25
# How often the monitor asks squeue about the jobs it watches.
_SQUEUE_INTERVAL = 1.0
# How long a job SLURM no longer runs may take to show its exit record (a
# shared filesystem can show a new file late) before it counts as lost.
_LOST_GRACE = 5.0
# The same for a job batchrun itself signalled.
_CANCELLED_GRACE = 1.0
# What `wait` returns for a lost job: killed, as by SIGKILL; never a success.
_LOST_STATUS = -9
# How old an answer `alive` accepts (the stopper asks every 50 ms).
_ALIVE_MAX_AGE = 0.25
_OPEN_TIMEOUT = 20.0


@dataclass
class _Tracked:
    """A job the monitor watches for a `wait`."""

    log_dir: str
    owned: bool = False  # started by start(): counts against -j
    attempt: int | None = None  # the attempt whose record ends it (None: any, the newest)
    done: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    gone_since: float | None = None
    signalled: int | None = None  # the last signal batchrun sent it

    def settle_gone(self, ref: str, state: str, slurm_dir: Path) -> None:
        """SLURM no longer runs it: its exit record's status, else timed out (SLURM's --time), else lost (noted in err.log)."""
        record = read_exit_record(Path(self.log_dir), self.attempt)
        if record is not None:
            self.status = record[0]
        else:
            how = f"ended {state}" if state else "is no longer known to squeue"
            note = f"batchrun: SLURM job {ref} {how} without an exit record; SLURM's output: {slurm_dir}/{ref.split('_')[0]}.out\n"
            append_line(Path(self.log_dir) / "err.log", note)
            # Stopped by SLURM at its time limit (its supervisor died of the SIGTERM, how the job ended is unknown);
            # else killed by the signal batchrun sent, as the local executor reports it.
            self.status = Unrecorded.TIMED_OUT if state == "TIMEOUT" else -self.signalled if self.signalled else _LOST_STATUS
        self.done.set()


class SlurmExecutor(Executor):
    """Jobs as tasks of SLURM job arrays, submitted with sbatch."""

    name = ExecutorName.SLURM
    Settings = SlurmSettings
    cluster = "SLURM"
    cluster_query = "squeue"
    enforces_time_limit = True

    def __init__(self, options: ExecutorOptions, settings: SlurmSettings | None = None) -> None:
        super().__init__(options, settings)
        self.settings: SlurmSettings
        self.slurm_dir = Path(options.runs_dir) / "slurm"
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tracked: dict[str, _Tracked] = {}
        self._log_dirs: dict[str, str] = {}  # jobs of start_many, in case someone waits
        self._attempts: dict[str, int | None] = {}  # log directory -> the attempt submitted: its record is that one's
        self._signals: list[tuple[str, int]] = []
        self._resolved: dict[str, str | None] = {}
        self._manifest_index: dict[str, tuple[str, int]] | None = None
        # sbatch hands this environment to the tasks; manifests add what jobs need on top.
        env = dict(os.environ)
        self._commands = SlurmCommands(options.cwd, env, cluster_option(self.settings.sbatch_args), self._watched_refs)
        self._submitter = Submitter(options, self._commands, self.slurm_dir, env, self._cond, self._closed, self._register, self.settings)

    @classmethod
    def made(cls, ref: str) -> bool:
        return is_slurm_ref(ref)

    @classmethod
    def unwatched_alive(cls, jobs: Unwatched, locks: LockTable | None, ask_cluster: bool) -> dict[str, bool | None]:
        """One squeue call for all of them; not asked, or no answer: cannot tell."""
        active = cluster.slurm_active([ref for ref, _ in jobs.values() if ref is not None]) if ask_cluster else None
        if active is None:
            return dict.fromkeys(jobs)
        return {job_id: ref in active for job_id, (ref, _) in jobs.items()}

    def adopts(self, ref: str | None) -> bool:
        """Any job: its own by squeue, others (a local job an earlier launch left) by their lock and process group."""
        return True

    def _watched_refs(self) -> list[str]:
        with self._lock:
            return list(self._tracked)

    def _register(self, ref: str, log_dir: str, track: bool) -> None:
        """A task was submitted (called under the condition): watch it for `wait`, or remember where it logs."""
        if track:
            self._tracked[ref] = _Tracked(log_dir, owned=True, attempt=self._attempts.get(log_dir))
        else:
            self._log_dirs[ref] = log_dir

    # -- set-up -------------------------------------------------------------

    def open(self) -> None:
        refusal = refused_sbatch_args(self.settings.sbatch_args)
        if refusal is not None:
            raise ExecutorError(refusal)
        if shutil.which("sbatch") is None:
            raise ExecutorError("sbatch not found on PATH: --executor slurm needs the SLURM client commands (sbatch, squeue, scancel)")
        answer = self._commands.run(["sinfo", "-h", "-o", "%P", *self._commands.clusters], _OPEN_TIMEOUT)
        if answer.returncode != 0:
            raise ExecutorError(f"the SLURM controller does not answer (sinfo: {last_line(answer.stderr)}); is slurmctld running?")
        config = self._commands.run(["scontrol", "show", "config"], _OPEN_TIMEOUT)
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config.stdout, re.MULTILINE)
        if config.returncode == 0 and match:
            self._submitter.max_array = max(1, int(match.group(1)))
        try:
            forward = self.settings.checkpoint_signal[0] if self.settings.checkpoint_signal is not None else None
            write_task_script(self.slurm_dir, self.options.cwd, forward, self.launch)
        except OSError as err:
            raise ExecutorError(f"{self.slurm_dir}: cannot write the SLURM task script: {err.strerror}") from err
        for name, target in (("submit", self._submitter.loop), ("monitor", self._monitor_loop), ("signal", self._signal_loop)):
            thread = threading.Thread(target=target, name=f"batchrun-slurm{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        with self._cond:
            self._closed.set()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        if self._threads:
            self._threads = []
            remove_spent(self.slurm_dir, lambda: self._commands.squeue_user(all_states=False), patience=3.0)

    # -- submitting ---------------------------------------------------------

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str], request: Request | None = None) -> str:
        prepare_log_dir(log_dir)
        self._attempts[log_dir] = attempt_of(env)
        submission = Submission(job_id, command, log_dir, env, request)
        with self._cond:
            if self._closed.is_set() or not self._threads:
                raise ExecutorError("the SLURM executor is not open")
            self._submitter.queue.append(submission)
            self._cond.notify_all()
        submission.done.wait()
        if submission.error is not None:
            raise submission.error
        assert submission.ref is not None
        return submission.ref

    def start_many(self, jobs: Sequence[tuple[str, str, str, dict[str, str]]], requests: Sequence[Request | None] | None = None) -> list[str]:
        """Submit jobs (job_id, command, log_dir, env) as arrays, one per distinct request, of which at most -j tasks run.

        An array larger than SLURM's MaxArraySize is split, and arrays of
        different requests follow each other, each part waiting for the one
        before, so that -j still holds.
        """
        asks = list(requests) if requests is not None else [None] * len(jobs)
        submissions = []
        for (job_id, command, log_dir, env), request in zip(jobs, asks, strict=True):
            prepare_log_dir(log_dir)
            self._attempts[log_dir] = attempt_of(env)
            submissions.append(Submission(job_id, command, log_dir, env, request))
        self._submitter.submit(submissions, chain=True, track=False)
        return [submission.ref or "" for submission in submissions]

    # -- waiting ------------------------------------------------------------

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        with self._lock:
            tracked = self._tracked.get(ref) or self._tracked.setdefault(ref, _Tracked(self._log_dirs[ref], attempt=self._attempts.get(self._log_dirs[ref])))
        if not tracked.done.wait(timeout):
            return None
        self._untrack(ref, tracked)
        assert tracked.status is not None
        return tracked.status

    def _untrack(self, ref: str, tracked: _Tracked) -> None:
        with self._cond:
            if self._tracked.get(ref) is tracked:
                del self._tracked[ref]
                if tracked.owned:
                    self._submitter.outstanding -= 1
                    self._cond.notify_all()

    def _monitor_loop(self) -> None:
        last_asked = 0.0
        while not self._closed.wait(_FILE_POLL):
            try:
                last_asked = self._monitor_once(last_asked)
            except Exception:  # noqa: BLE001 - the monitor must outlive a bug in one round
                log.exception("SLURM monitor round failed")

    def _monitor_once(self, last_asked: float) -> float:
        with self._lock:
            watched = [(ref, t) for ref, t in self._tracked.items() if not t.done.is_set()]
        return _monitor_round(watched, self._commands, self.slurm_dir, last_asked)

    # -- stopping -----------------------------------------------------------

    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        if ref is not None and ref.isdigit():
            return kill_group(int(ref), job_id, sig)  # a local job an earlier launch left
        ref = self._resolve(job_id, ref)
        if ref is None:
            return False
        with self._cond:
            tracked = self._tracked.get(ref)
            if (tracked is not None and tracked.done.is_set()) or self._commands.ended(ref):
                return False
            if tracked is not None:
                tracked.signalled = sig
            self._signals.append((ref, sig))
            self._cond.notify_all()
        if not self._threads:
            self._flush_signals()
        return True

    def _signal_loop(self) -> None:
        while True:
            with self._cond:
                while not self._signals and not self._closed.is_set():
                    self._cond.wait()
                if not self._signals:
                    return
            time.sleep(_SIGNAL_WINDOW)
            try:
                self._flush_signals()
            except Exception:  # noqa: BLE001 - go on stopping jobs after a bug
                log.exception("scancel round failed")

    def _flush_signals(self) -> None:
        """scancel what was asked: a signal reaches running tasks; TERM and KILL also cancel queued ones."""
        with self._cond:
            signals, self._signals = self._signals, []
        self._commands.deliver(signals)

    def alive(self, job_id: str, ref: str | None) -> bool:
        if ref is not None and ref.isdigit():
            return group_alive(int(ref))  # a local job an earlier launch left
        ref = self._resolve(job_id, ref)
        if ref is None:
            return False
        # Asked every few ms while a job is being stopped: fresh, but shared.
        states = self._commands.states_for([ref], max_age=_ALIVE_MAX_AGE)
        if states is None:
            return True  # SLURM did not answer: assume it still runs
        return ref in states and states[ref][0] not in ENDED

    # -- adopting -----------------------------------------------------------

    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        resolved = None if ref is not None and ref.isdigit() else self._resolve(job_id, ref)
        if resolved is None:
            return job_lock_held(Path(log_dir))  # a local job an earlier launch left?
        tasks = self._commands.squeue_user(all_states=True, max_age=2 * _SQUEUE_INTERVAL)
        if tasks is None:
            raise ExecutorError(f"cannot tell whether SLURM job {resolved} (job {job_id}) still runs: squeue does not answer")
        state, command = tasks.get(resolved, ("", ""))
        # The command guards against a job id SLURM reused after its state was wiped.
        return bool(state) and state not in ENDED and TASK_SCRIPT_NAME in command

    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool], attempt: int | None = None) -> None:
        resolved = None if ref is not None and ref.isdigit() else self._resolve(job_id, ref)
        if resolved is None:
            wait_for_job_lock(Path(log_dir), should_stop)
            return
        with self._lock:
            tracked = self._tracked.setdefault(resolved, _Tracked(log_dir, attempt=attempt))
        while not tracked.done.wait(0.2) and not should_stop():
            pass
        self._untrack(resolved, tracked)

    def _resolve(self, job_id: str, ref: str | None) -> str | None:
        """The job's array task: `ref`, or, when the journal has none, the one its newest manifest line went to."""
        if ref is not None:
            return ref if is_slurm_ref(ref) else None
        with self._lock:
            if job_id in self._resolved:
                return self._resolved[job_id]
            index = self._manifest_index
        if index is None:
            index = index_manifests(self.slurm_dir)
        found = None
        if job_id in index:
            name, task = index[job_id]
            arrays = submitted_arrays(self.slurm_dir, name)
            array_id = arrays[-1] if arrays else self._commands.find_array(self.slurm_dir / name, max_age=2 * _SQUEUE_INTERVAL)
            found = f"{array_id}_{task}" if array_id else None
        with self._lock:
            self._manifest_index = index
            self._resolved[job_id] = found
        return found


def _monitor_round(watched: list[tuple[str, _Tracked]], commands: SlurmCommands, slurm_dir: Path, last_asked: float) -> float:
    """One look at the watched jobs: their exit records, then (at most every few seconds) squeue for the rest; when it asked."""
    waiting = []
    for ref, tracked in watched:
        record = read_exit_record(Path(tracked.log_dir), tracked.attempt)
        if record is not None:
            tracked.status = record[0]
            tracked.done.set()
        else:
            waiting.append((ref, tracked))
    now = time.monotonic()
    if not waiting or now - last_asked < _SQUEUE_INTERVAL:
        return last_asked
    states = commands.states_for([ref for ref, _ in waiting], max_age=_SQUEUE_INTERVAL / 2)
    if states is None:
        return now  # SLURM did not answer: nothing is known to be lost
    for ref, tracked in waiting:
        state = states.get(ref, ("", ""))[0]
        if state and state not in ENDED:
            tracked.gone_since = None
        elif tracked.gone_since is None:
            tracked.gone_since = now
        elif now - tracked.gone_since >= (_LOST_GRACE if tracked.signalled is None else _CANCELLED_GRACE):
            tracked.settle_gone(ref, state, slurm_dir)
    return now
