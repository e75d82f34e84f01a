"""Run jobs on a Dask cluster: one Dask task per job attempt, one subprocess per task.

`--executor dask --scheduler tcp://HOST:PORT` connects to a running scheduler;
without `--scheduler` the launch starts a `distributed.LocalCluster` of
min(-j, cpu count) single-threaded worker processes on 127.0.0.1 and stops it
at the end. dask.distributed is an optional extra, imported only here.

Requirements on the cluster: batchrun (same version) is installed on every
worker, as Dask needs for any task function; the runs directory and the
launch's working directory are on a filesystem that the launch and all
workers share, with `flock` locks that hold across hosts (a local disk, NFSv4).
Jobs get the launch's environment, as under `sbatch --export=ALL`.

How a job runs. The Dask task (`dask.worker.run_job`, keyed `batchrun-<job id>-<random>`
per attempt, `pure=False`, fire-and-forget) hands the job to its worker's
fork server (`dask._forkserver`, a small single-threaded Python process: one
per worker, started with the worker's first job, in a session of its own),
which forks a supervisor for it. The supervisor runs the job as every
executor does (`executors/supervisor.py`: `/bin/sh -c LINE` in a session of
its own, out.log flocked, the `exit` record), holding `run.lock` until no
process of the job holds out.log, and reports the job's status back through
a pipe. Fork server and supervisor both arm PR_SET_PDEATHSIG: when the
worker dies the fork server exits, and then each supervisor SIGKILLs its
job's process group and any other process whose environment names the job.

At most one run of a job at a time, and never a superseded attempt: `start`
writes the attempt's key to `<log dir>/dask-key` (`dask.keys`); a supervisor
runs the command only if that file still names its key once it holds
`run.lock`, and reports the `exit` record instead if the attempt already ran.
A damaged key file names no attempt: nothing runs until a launch claims the
job again. Hence:
- A worker killed mid-job: Dask reschedules the task (up to its
  `allowed-failures`); the new supervisor waits until the killed run's
  processes are gone, then runs the job again from the start. The killed run
  never counts. When Dask gives up (`KilledWorker`) the job is recorded as
  killed (status 137), never as succeeded.
- batchrun killed (kill -9): tasks are fire-and-forget, so commands already
  running keep running; the next launch adopts them as it adopts local jobs
  (the lock says running, the shared `exit` record gives the result). A task
  that only starts after the next launch started the job again finds a newer
  key and does nothing. With a local cluster the workers die with batchrun,
  their jobs with them, and those jobs run again.
- Ctrl-C: `signal` has one worker per host (`client.run`) send the signal to
  the process groups of the job's processes, found by their environment
  (BATCHRUN_JOB_ID and BATCHRUN_LOG_DIR); a task not yet running is marked
  stopped in `dask-key`, under the lock, and cancelled.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchrun.errors import ExecutorError
from batchrun.executors.base import Executor, ExecutorName, ExecutorOptions, Unwatched
from batchrun.executors.dask.client import CONNECT_TIMEOUT, INSTALL_HINT, cancelled, one_line, probe_scheduler, start_local_cluster
from batchrun.executors.dask.client import distributed as distributed_module
from batchrun.executors.dask.keys import KEY_NAME, LOCK_NAME, claim_log_dir, job_alive, mark_stopped, read_key
from batchrun.executors.dask.resources import check_offered, worker_resources
from batchrun.executors.dask.settings import DaskSettings
from batchrun.executors.dask.worker import find_job_processes, run_job, signal_job_processes
from batchrun.executors.jobfiles import read_exit_record
from batchrun.liveness import LockTable
from batchrun.resources import Request

__all__ = ["INSTALL_HINT", "KEY_NAME", "LOCK_NAME", "DaskExecutor", "DaskSettings"]

log = logging.getLogger(__name__)

# How long `signal` keeps looking for a job whose supervisor holds the lock
# but whose command is not visible yet (the instant between lock and exec).
_SIGNAL_SETTLE = 1.0
# How often a launch looks whether an adopted job has released its lock.
_ADOPT_POLL = 0.2
# How long `wait` gives a finished task's result to arrive (a result(timeout=0)
# of a done future can time out again and again while it is fetched).
_RESULT_FETCH = 5.0
# A Dask task's key: batchrun-<job id>-<12 hex digits> (`start`).
_KEY = re.compile(r"^batchrun-[0-9a-f]{16}-[0-9a-f]{12}$")
# The module the local cluster's workers preload (its dask_setup hook).
_WORKER_MODULE = "batchrun.executors.dask.worker"


class DaskExecutor(Executor):
    """Jobs as subprocesses of Dask workers, one fire-and-forget task per attempt."""

    name = ExecutorName.DASK
    Settings = DaskSettings
    settings: DaskSettings

    def __init__(self, options: ExecutorOptions, settings: DaskSettings | None = None) -> None:
        super().__init__(options, settings)
        if importlib.util.find_spec("distributed") is None:
            raise ExecutorError(f"--executor dask needs dask.distributed, which is not installed; install it with: {INSTALL_HINT}")
        self._client: Any = None
        self._cluster: Any = None
        self._connect_lock = threading.Lock()
        # key -> its future, for attempts this launch started and has not waited for.
        self._futures: dict[str, Any] = {}
        # key -> the last signal sent to that attempt.
        self._signals: dict[str, int] = {}
        # job id -> log directory, as the launch named it.
        self._log_dirs: dict[str, str] = {}
        # Worker resources some worker was seen to offer (`resources.check_offered`).
        self._offered: set[tuple[tuple[str, float], ...]] = set()

    @classmethod
    def made(cls, ref: str) -> bool:
        return _KEY.match(ref) is not None

    @classmethod
    def unwatched_alive(cls, jobs: Unwatched, locks: LockTable | None, ask_cluster: bool) -> dict[str, bool | None]:
        """Alive while a lock is held; with both free, cannot tell while its key file names it (it may be queued), else gone.

        No scheduler address is recorded to ask; the exit record, read by the caller, tells how a run ended.
        """
        answers: dict[str, bool | None] = {}
        for job_id, (ref, log_dir) in jobs.items():
            held = [locks.held(log_dir / name) if locks is not None else None for name in (LOCK_NAME, "out.log")]
            if any(held) or (None in held and job_alive(str(log_dir))):
                answers[job_id] = True
            else:
                answers[job_id] = None if read_key(str(log_dir)) == ref else False
        return answers

    def adopts(self, ref: str | None) -> bool:
        """Any job: whatever ran it, its supervisor's locks say whether it still runs."""
        return True

    # -- connection ---------------------------------------------------------

    def open(self) -> None:
        self._connect()

    def _connect(self) -> Any:
        with self._connect_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        distributed = distributed_module()
        address = self.settings.scheduler
        if address is None:
            self._cluster, client = start_local_cluster(distributed, self.options.n_jobs, _WORKER_MODULE)
            return client
        probe_scheduler(address)
        try:
            return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False, name="batchrun")
        except (OSError, ValueError, TypeError) as err:
            raise ExecutorError(f"cannot connect to the Dask scheduler at {address}: {one_line(err)}; check --scheduler") from err

    def close(self) -> None:
        with self._connect_lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not hide the launch's result
                log.debug("closing the Dask client failed", exc_info=True)
        if cluster is not None:
            try:
                cluster.close()
            except Exception:  # noqa: BLE001
                log.debug("closing the local Dask cluster failed", exc_info=True)

    # -- running ------------------------------------------------------------

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str], request: Request | None = None) -> str:
        client = self._connect()
        key = f"batchrun-{job_id}-{uuid.uuid4().hex[:12]}"
        resources = worker_resources(request)
        if resources:
            check_offered(client, resources, self._offered, job_id)
        self._log_dirs[job_id] = log_dir
        claim_log_dir(log_dir, key)
        future = client.submit(run_job, key, job_id, command, log_dir, env, self.options.cwd, key=key, pure=False, resources=resources or None)
        # The task outlives a killed launch: a command already running is
        # adopted by the next launch (see the module docstring).
        distributed_module().fire_and_forget(future)
        self._futures[key] = future
        return key

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        distributed = distributed_module()
        future = self._futures[ref]
        log_dir = self._log_dirs.get(_job_id_of(ref), "")
        try:
            outcome, status, where = future.result(timeout=timeout)
        except (distributed.TimeoutError, TimeoutError):
            # Done, its result not fetched yet: one longer wait for it (not one
            # of timeout 0 after another: that recursed until RecursionError).
            if not future.done() or timeout == _RESULT_FETCH:
                return None
            return self.wait(ref, _RESULT_FETCH)
        except distributed.KilledWorker:
            # Dask gave up after several workers died running it: the job was
            # killed with them (unless a run ended first and left its record).
            outcome, status, where = "killed", -signal.SIGKILL, ""
        except cancelled() as err:
            if ref not in self._signals:
                # Not cancelled by us: the scheduler connection is gone. The
                # command may still run; the next launch adopts or reruns it.
                self._futures.pop(ref, None)
                reason = getattr(err, "reason", None) or type(err).__name__
                raise ExecutorError(f"lost the Dask scheduler ({reason}); relaunch to collect or rerun the unfinished jobs") from err
            outcome, status, where = "skipped", 0, ""
        except Exception as err:
            self._futures.pop(ref, None)
            raise ExecutorError(f"Dask task {ref} failed: {one_line(err)}") from err
        self._futures.pop(ref, None)
        if outcome == "nokey":
            raise ExecutorError(
                f"Dask worker {where} cannot see {log_dir}/{KEY_NAME}: the runs directory must be on a filesystem shared with the workers"
            )
        if outcome in ("skipped", "killed"):
            # A run may have ended just before the stop or the worker's death.
            record = read_exit_record(Path(log_dir), logs=False) if log_dir else None  # its supervisor writes the job's file
            if record is not None:
                return record[0]
            if outcome == "skipped":
                return -self._signals.get(ref, signal.SIGTERM)
        return int(status)

    # -- stopping -----------------------------------------------------------

    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        if ref is not None:
            self._signals[ref] = sig
        if self._signal_workers(job_id, sig):
            return True
        future = self._futures.get(ref) if ref is not None else None
        if future is None or future.done():
            return False
        # Not running yet (queued), or its supervisor is between taking the
        # lock and exec'ing the command.
        assert ref is not None
        log_dir = self._log_dir(job_id)
        deadline = time.monotonic() + _SIGNAL_SETTLE
        while True:
            if mark_stopped(log_dir, ref):
                try:
                    self._connect().cancel(future, force=True)
                except Exception:  # noqa: BLE001 - the mark alone keeps it from starting
                    log.debug("cancelling %s failed", ref, exc_info=True)
                return True
            if future.done() or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
            if self._signal_workers(job_id, sig):
                return True

    def cancel_queued(self) -> None:
        """The launch is stopping: keep every attempt that is not running yet from starting.

        Without this, signalling the running jobs one by one frees workers,
        and Dask starts queued attempts on them before their turn to be
        signalled comes (they are then stopped at once, but they did start).
        """
        for key, future in list(self._futures.items()):
            if future.done():
                continue
            # Lock free: not running (a running attempt holds it), so the mark
            # keeps it from ever starting; a running one is signalled as usual.
            if mark_stopped(self._log_dir(_job_id_of(key)), key):
                self._signals.setdefault(key, signal.SIGTERM)
                try:
                    self._connect().cancel(future, force=True)
                except Exception:  # noqa: BLE001 - the mark alone keeps it from starting
                    log.debug("cancelling %s failed", key, exc_info=True)

    def alive(self, job_id: str, ref: str | None) -> bool:
        future = self._futures.get(ref) if ref is not None else None
        if future is not None and not future.done():
            return True
        if job_alive(self._log_dir(job_id)):
            return True
        return self._signal_workers(job_id, 0) > 0

    def _signal_workers(self, job_id: str, sig: int) -> int:
        """Send `sig` (0: none) to the job's processes wherever they are; how many there were.

        Two rounds: every worker looks for the job's processes on its host,
        then one worker per host that has some signals them, so that workers
        sharing a host do not each deliver the signal.
        """
        client = self._client
        if client is None:
            return 0
        log_dir = self._log_dir(job_id)
        try:
            found = client.run(find_job_processes, job_id, log_dir, on_error="ignore")
            hosts: dict[str, str] = {}
            count = 0
            for address, (host, pids) in sorted(found.items()):
                if pids and host not in hosts:
                    hosts[host] = address
                    count += pids
            if sig and hosts:
                client.run(signal_job_processes, job_id, log_dir, int(sig), workers=list(hosts.values()), on_error="ignore")
        except Exception:  # noqa: BLE001 - stopping goes on with what it can reach
            log.debug("signalling job %s on the workers failed", job_id, exc_info=True)
            return 0
        return count

    # -- adopting -----------------------------------------------------------

    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        # No scheduler needed: the locks say it.
        self._log_dirs[job_id] = log_dir
        return job_alive(log_dir)

    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool], attempt: int | None = None) -> None:
        self._log_dirs[job_id] = log_dir
        while job_alive(log_dir):
            if should_stop():
                return
            time.sleep(_ADOPT_POLL)

    def _log_dir(self, job_id: str) -> str:
        return self._log_dirs.get(job_id) or f"{self.options.runs_dir}/logs/{job_id}"


def _job_id_of(key: str) -> str:
    return key.split("-")[1] if key.count("-") >= 2 else key
