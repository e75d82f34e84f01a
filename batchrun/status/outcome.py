"""The outcome of a runfile's launches: its exit code from the records, waiting for it, and `--on-finish`.

`batchrun wait` answers what the launch answers, from what the launch left
in the runs directory (`status.view.load_status`), so it works for a launch that
runs now, one that ended before, and jobs left running by `--detach`:
- it waits while a launch holds the lock, then while any job is still
  running, as the executor that made it answers (`executors.unwatched_alive`):
  a local job while its processes hold out.log's lock, a SLURM job while
  `squeue` shows it queued or running, a Dask job until its exit record
  appears (no scheduler address is recorded to ask);
- then the exit code is that of the records of the runfile's jobs, as
  `LaunchResult.exit_code` orders them: 130 if any is interrupted (a
  detached cluster job that ended without an exit record, e.g. cancelled
  with `scancel`, counts as interrupted: the next launch runs it again);
  else 1 if any failed, timed out or was killed by `batchrun kill` (it did
  not succeed, though the launch went on); else 0. Pending jobs (a launch
  ended by `stop`, lines added since) do not change it; `stopped` (early
  termination) counts as finished.

This module never prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.errors import UsageError
from batchrun.executors import executor_of_ref, unwatched_alive
from batchrun.launch.result import exit_code_of
from batchrun.status.compact import CompactStatus, read_compact, usable_for
from batchrun.status.view import RunsStatus, load_status
from batchrun.store.fingerprint import last_launch
from batchrun.store.journal import JOURNAL_NAME
from batchrun.store.records import State
from batchrun.store.rundir import RunsDir, launch_holder
from batchrun.store.target import Target

__all__ = [
    "KILLED",
    "ON_FINISH_LOG",
    "STOPPED",
    "WAIT_POLL",
    "OnFinishResult",
    "LaunchOutcome",
    "outcome_of",
    "run_on_finish",
    "wait_for",
]

# The states `batchrun kill` and early termination record.
KILLED = State.KILLED
STOPPED = State.STOPPED
# How often `wait` looks again.
WAIT_POLL = 0.5
# How long `wait` gives a launch started just before it to take its lock.
START_GRACE = 1.0
# How long a cluster job squeue no longer shows may take to show its exit
# record (a shared filesystem can show a new file late) before it counts as lost.
LOST_GRACE = 5.0
# Where --on-finish's output goes: the launch's summary stays readable.
ON_FINISH_LOG = "on-finish.log"
ON_FINISH_TIMEOUT = 60.0


@dataclass
class LaunchOutcome:
    """What the records of a runfile's jobs say, once nothing runs."""

    counts: dict[str, int]
    exit_code: int
    lost: list[str] = field(default_factory=list)  # cluster jobs gone without an exit record


def outcome_of(status: RunsStatus | CompactStatus, lost: Iterable[str] = ()) -> LaunchOutcome:
    """The exit code the records of the runfile's jobs give: the launch's own rule, `result.exit_code_of`.

    How the last launch ended (interrupted with no job left interrupted, a
    Ctrl-C before any job started; halted by a failure, its stopped jobs left
    interrupted) is not in the records: its fingerprint says so, while nothing
    touched the journal since.
    """
    counts = status.counts()
    lost = list(lost)
    if lost:
        counts[State.RUNNING] -= len(lost)
        counts[State.INTERRUPTED] += len(lost)
    runs = status.runs_dir.path
    last = last_launch(runs, runs / JOURNAL_NAME)
    code = exit_code_of(counts, interrupted=last is not None and last.interrupted, halted=last is not None and last.halted)
    return LaunchOutcome(counts, code, lost)


class _Waiter:
    """One `wait`: looks at the runs directory until nothing of the target runs."""

    def __init__(self, target: Target, on_wait: Callable[[str], None]) -> None:
        self.target = target
        self.on_wait = on_wait
        self.gone_since: dict[str, float] = {}  # cluster job -> when squeue first did not show it
        self.said: set[str] = set()

    def tell(self, what: str) -> None:
        if what not in self.said:
            self.said.add(what)
            self.on_wait(what)

    def look(self, now: float) -> LaunchOutcome | None:
        """The outcome, or None while something still runs."""
        pid = launch_holder(self.target.runs_dir)
        if pid is not None:
            self.tell(f"waiting for the launch (pid {pid})")
            return None
        status: RunsStatus | CompactStatus
        if usable_for(self.target):  # a runfile's jobs held by column: a million lines in tens of MB
            status = read_compact(self.target, ask_cluster=False, usage=False)
            running = [job for job in status.running_jobs() if job.record is not None]
        else:
            status = load_status(self.target, ask_cluster=False)
            running = [job for job in status.jobs if job.state == State.RUNNING and job.record is not None]
        # Jobs on a cluster (SLURM) are asked about here, all in one query; the
        # others status settled already (by their locks) or cannot tell about.
        cluster: dict[str, tuple[str | None, Path]] = {}
        kinds = set()
        for job in running:
            assert job.record is not None
            kind = executor_of_ref(job.record.ref)
            if kind is not None and kind.cluster is not None:
                cluster[job.job_id] = (job.record.ref, self.target.runs_dir.log_dir(job.job_id))
                kinds.add(kind)
        if len(cluster) < len(running):
            self.tell(f"waiting for {len(running) - len(cluster)} detached job(s)")
            return None
        if not cluster:
            return outcome_of(status)
        alive = unwatched_alive(cluster, ask_cluster=True)
        if any(answer is None for answer in alive.values()):
            self.tell(f"{' and '.join(sorted(kind.cluster_query for kind in kinds))} did not answer; asking again")
            return None
        if active := [job_id for job_id, answer in alive.items() if answer]:
            self.tell(f"waiting for {len(active)} {' and '.join(sorted(str(kind.cluster) for kind in kinds))} job(s)")
            return None
        for job_id in cluster:
            self.gone_since.setdefault(job_id, now)
        if any(now - since < LOST_GRACE for since in self.gone_since.values()):
            return None  # give their exit records time to show
        return outcome_of(status, list(cluster))


def wait_for(
    target: Target,
    timeout: float | None = None,
    on_wait: Callable[[str], None] = lambda what: None,
    poll: float = WAIT_POLL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LaunchOutcome | None:
    """Wait until nothing of the target runs; its outcome, or None when `timeout` expired first.

    `on_wait` hears, once each, what is being waited for.

    Raises:
        UsageError: no launch runs and nothing was ever launched there
            (after `START_GRACE`, for a launch started just before).
        InputError, MetadataError: as `status.view.load_status`.
    """
    waiter = _Waiter(target, on_wait)
    started = clock()
    deadline = None if timeout is None else started + timeout
    while True:
        try:
            outcome = waiter.look(clock())
        except UsageError:
            # Nothing launched yet: `launch x & batchrun wait x` may ask
            # before the launch took its lock; give it a moment.
            if clock() - started >= START_GRACE:
                raise
            outcome = None
        if outcome is not None:
            return outcome
        if deadline is not None and clock() >= deadline:
            return None
        sleep(poll if deadline is None else max(0.0, min(poll, deadline - clock())))


@dataclass(frozen=True)
class OnFinishResult:
    """How the --on-finish command went."""

    status: int | None  # its exit status (-N: killed by signal N); None when it could not start
    log_path: Path
    error: str | None = None  # why it could not start, or that it timed out


def run_on_finish(
    command: str,
    counts: Mapping[str, int],
    runs_dir: RunsDir,
    exit_code: int,
    runfile: Path | None = None,
    timeout: float = ON_FINISH_TIMEOUT,
) -> OnFinishResult:
    """Run `command` once through the shell, the launch's counts in its environment; never raises.

    Environment: BATCHRUN_<STATE> for every state counted (BATCHRUN_SUCCEEDED,
    BATCHRUN_FAILED, ...), BATCHRUN_TOTAL, BATCHRUN_EXIT_CODE,
    BATCHRUN_RUNS_DIR, BATCHRUN_RUNFILE. Its output goes to
    `<runs dir>/on-finish.log` (appended). After `timeout` seconds its
    process group is killed: a hung notifier must not hold up the launch.
    """
    env = dict(os.environ)
    for state, count in counts.items():
        env[f"BATCHRUN_{state.upper()}"] = str(count)
    env["BATCHRUN_TOTAL"] = str(sum(count for state, count in counts.items() if state != "removed"))
    env["BATCHRUN_EXIT_CODE"] = str(exit_code)
    env["BATCHRUN_RUNS_DIR"] = str(runs_dir.path)
    env["BATCHRUN_RUNFILE"] = str(runfile) if runfile is not None else ""
    log_path = runs_dir.path / ON_FINISH_LOG
    try:
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {command}\n".encode())
            log.flush()
            # A session of its own, so that a timeout kills its children too;
            # stdin closed: a notifier has nothing to read from the terminal.
            proc = subprocess.Popen(command, shell=True, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            try:
                return OnFinishResult(proc.wait(timeout), log_path)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                return OnFinishResult(proc.wait(), log_path, f"killed after {timeout:g} s")
    except OSError as err:
        return OnFinishResult(None, log_path, f"cannot run it: {err.strerror}")
