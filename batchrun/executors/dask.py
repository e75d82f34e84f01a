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

How a job runs. The Dask task (`_run_job`, keyed `batchrun-<job id>-<random>`
per attempt, `pure=False`, fire-and-forget) hands the job to its worker's
fork server, a small single-threaded Python process (one per worker, started
with the worker's first job, in a session of its own), which forks a
supervisor for it. The supervisor runs local.py's shell wrapper (same command
semantics, same `exit` record) in a session of its own, with out.log/err.log
as stdout/stderr and `run.lock` held, and reports the wrapper's status back
through a pipe. Fork server and supervisor both arm PR_SET_PDEATHSIG: when
the worker dies the fork server exits, and then each supervisor SIGKILLs its
job's process group and any other process whose environment names the job.
PDEATHSIG on the wrapper alone would leave the user's command (the wrapper's
child) running.

At most one run of a job at a time, and never a superseded attempt: `start`
writes the attempt's key to `<log dir>/dask-key`; a supervisor runs the
command only if that file still names its key once it holds `run.lock`, and
reports the `exit` record instead if the attempt already ran. Hence:
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

import asyncio
import concurrent.futures
import fcntl
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchrun.errors import ExecutorError
from batchrun.executors import Executor, ExecutorOptions
from batchrun.executors.local import (
    _WRAPPER,
    EXIT_NAME,
    job_lock_held,
    job_processes,
    read_exit_record,
)

__all__ = ["INSTALL_HINT", "KEY_NAME", "LOCK_NAME", "DaskExecutor"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'batchrun[dask]'"
# The file in a job's log directory naming the attempt (Dask key) allowed to run it.
KEY_NAME = "dask-key"
# What `signal` writes into KEY_NAME so that a task not yet running never starts.
_STOPPED = "stopped"
# The file in a job's log directory whose flock is held while a supervisor
# runs the job (and by every process of the job, which inherit it). Not
# out.log, as for local jobs: the launch renames out.log between attempts,
# and this lock must stay put to keep two attempts from ever overlapping.
LOCK_NAME = "run.lock"
# Seconds to wait for the scheduler: Dask's default (30 s) is long for a typo.
_CONNECT_TIMEOUT = 10.0
# How long `signal` keeps looking for a job whose supervisor holds the lock
# but whose command is not visible yet (the instant between lock and exec).
_SIGNAL_SETTLE = 1.0
# How long a task waits for a freshly written `dask-key` to become visible on
# its worker (shared-filesystem caches) before deciding the runs directory is
# not shared with it.
_KEY_VISIBLE_TIMEOUT = 2.0
# How often a launch looks whether an adopted job has released its lock.
_ADOPT_POLL = 0.2
# What a cancelled Dask future raises (distributed's own class derives from one).
_CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)

# The fork server: one per worker process, run as `python -I -S -c` (stdlib
# only, immune to the job's PYTHON* variables) and started on the worker's
# first job. Forking a supervisor from it costs ~1 ms; starting a Python per
# job cost 15-50 ms. It imports only C modules where it can (`_signal`, not
# `signal`, whose enums cost ~10 ms). argv: worker pid, socket fd, wrapper,
# key wait. Each request is one byte on the socket carrying two descriptors:
# a pipe to read the request from (NUL-separated key, job id, log dir, cwd,
# command, then the job's environment) and a pipe for the one-line report:
# "ran N", "recorded N" (the attempt already ran), "skipped" (superseded or
# stopped), "nokey" (the log directory is not visible here) or "error TEXT".
# The file names in it are KEY_NAME, LOCK_NAME and local.EXIT_NAME.
_FORK_SERVER = r"""
import _signal as signal, fcntl, os, socket, sys, time
worker = int(sys.argv[1])
zygote = os.getpid()
server = socket.socket(fileno=int(sys.argv[2]))
wrapper = sys.argv[3]
key_wait = float(sys.argv[4])
watched = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM)

try:
    import _ctypes
    prctl = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "prctl")
except (OSError, AttributeError, ImportError):
    prctl = None

def watch(parent, on_death):
    # Call on_death when `parent` dies. Other senders of these signals, and
    # the exit of the thread that forked us while its process lives (which
    # signals too, with getppid() unchanged), are ignored.
    def handler(signum, frame):
        if os.getppid() != parent:
            on_death()
            os._exit(128 + signum)
    for s in watched:
        signal.signal(s, handler)
    # PR_SET_PDEATHSIG; without prctl (not Linux), poll getppid() every second.
    if prctl is None or _ctypes.call_function(prctl, (1, signal.SIGTERM, 0, 0, 0)) != 0:
        signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)
    if os.getppid() != parent:
        on_death()
        os._exit(1)

def supervise(request_fd, report_fd):
    def say(text):
        os.write(report_fd, text.encode() + b"\n")
    data = []
    while True:
        chunk = os.read(request_fd, 65536)
        if not chunk:
            break
        data.append(chunk)
    os.close(request_fd)
    fields = b"".join(data).split(b"\0")
    key, job_id, log_dir, cwd, command = (os.fsdecode(f) for f in fields[:5])
    env = dict(item.partition(b"=")[::2] for item in fields[5:] if item)
    child = 0

    def kill_job():
        if not child:
            return
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
        # Processes that left the job's group still name it in their
        # environment. While we run the job (hold its lock) none of them
        # can belong to another run.
        wanted = {("BATCHRUN_JOB_ID=" + job_id).encode(), ("BATCHRUN_LOG_DIR=" + log_dir).encode()}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open("/proc/" + entry + "/environ", "rb") as f:
                        if wanted.issubset(f.read().split(b"\0")):
                            os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass

    # Not os.getppid(): the fork server may already be gone.
    watch(zygote, kill_job)
    try:
        os.chdir(cwd)
    except OSError as err:
        say("error cannot enter " + cwd + ": " + (err.strerror or str(err)))
        return

    def current_key():
        try:
            with open(log_dir + "/dask-key", "rb") as f:
                return f.read().decode().strip()
        except FileNotFoundError:
            return None

    deadline = time.monotonic() + key_wait
    while current_key() is None:
        if time.monotonic() > deadline:
            say("nokey")
            return
        time.sleep(0.1)
    if current_key() != key:
        say("skipped")
        return
    lock = os.open(log_dir + "/run.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            # An earlier run of this attempt (its worker died) is still dying.
            if current_key() != key:
                say("skipped")
                return
            time.sleep(0.1)
    if current_key() != key:
        say("skipped")
        return
    try:
        with open(log_dir + "/exit", "rb") as f:
            record = f.read(64)
        if record.endswith(b"\n"):
            say("recorded %d" % int(record))
            return
    except (OSError, ValueError):
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    out = os.open(log_dir + "/out.log", flags, 0o644)
    err = os.open(log_dir + "/err.log", flags, 0o644)
    try:
        # As for local jobs: a flock on out.log, the stdout that every
        # process of the job inherits, tells `batchrun status` it is alive.
        fcntl.flock(out, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    # No handler may run between fork and `child = pid`.
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.set_inheritable(lock, True)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
            os.execve("/bin/sh", ["/bin/sh", "-c", wrapper, "/bin/sh", command], env)
        finally:
            os._exit(127)
    child = pid
    signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
    for fd in (out, err, null):
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    say("ran %d" % os.waitstatus_to_exitcode(status))

watch(worker, lambda: None)
# Supervisors are reaped by the kernel; each sets SIGCHLD back to wait for its job.
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
while True:
    try:
        message, fds, _, _ = socket.recv_fds(server, 1, 2)
    except OSError:
        message = b""
    if not message:
        os._exit(0)  # the worker is gone
    for fd in fds:
        os.set_inheritable(fd, False)
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        continue
    if os.fork() == 0:
        try:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            supervise(*fds)
        except BaseException as err:
            try:
                os.write(fds[1], ("error %s: %s\n" % (type(err).__name__, err)).encode())
            except OSError:
                pass
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)
"""


class DaskExecutor(Executor):
    """Jobs as subprocesses of Dask workers, one fire-and-forget task per attempt."""

    name = "dask"

    def __init__(self, options: ExecutorOptions) -> None:
        super().__init__(options)
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

    # -- connection ---------------------------------------------------------

    def open(self) -> None:
        self._connect()

    def _connect(self) -> Any:
        with self._connect_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        distributed = _distributed()
        address = self.options.scheduler
        if address is None:
            return self._start_local_cluster(distributed)
        _probe_scheduler(address)
        try:
            return distributed.Client(address, timeout=_CONNECT_TIMEOUT, set_as_default=False, name="batchrun")
        except (OSError, ValueError, TypeError) as err:
            raise ExecutorError(f"cannot connect to the Dask scheduler at {address}: {_one_line(err)}; check --scheduler") from err

    def _start_local_cluster(self, distributed: Any) -> Any:
        n_workers = max(1, min(self.options.n_jobs, os.cpu_count() or 1))
        try:
            self._cluster = distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                # Its HTTP server (health, metrics) starts anyway: any free loopback port.
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.CRITICAL,
                # dask_setup below: each worker leaves batchrun's session,
                # so a Ctrl-C on the terminal reaches batchrun (which stops
                # the jobs with a grace period), not the workers.
                preload=[__name__],
            )
            return distributed.Client(self._cluster, set_as_default=False, name="batchrun")
        except Exception as err:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None
            raise ExecutorError(f"cannot start a local Dask cluster: {_one_line(err)}") from err

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

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> str:
        client = self._connect()
        key = f"batchrun-{job_id}-{uuid.uuid4().hex[:12]}"
        self._log_dirs[job_id] = log_dir
        _claim_log_dir(log_dir, key)
        future = client.submit(_run_job, key, job_id, command, log_dir, env, self.options.cwd, key=key, pure=False)
        # The task outlives a killed launch: a command already running is
        # adopted by the next launch (see the module docstring).
        _distributed().fire_and_forget(future)
        self._futures[key] = future
        return key

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        distributed = _distributed()
        future = self._futures[ref]
        log_dir = self._log_dirs.get(_job_id_of(ref), "")
        try:
            outcome, status, where = future.result(timeout=timeout)
        except (distributed.TimeoutError, TimeoutError):
            if not future.done():
                return None
            return self.wait(ref, 0)
        except distributed.KilledWorker:
            # Dask gave up after several workers died running it: the job was
            # killed with them (unless a run ended first and left its record).
            outcome, status, where = "killed", -signal.SIGKILL, ""
        except _CANCELLED as err:
            if ref not in self._signals:
                # Not cancelled by us: the scheduler connection is gone. The
                # command may still run; the next launch adopts or reruns it.
                self._futures.pop(ref, None)
                reason = getattr(err, "reason", None) or type(err).__name__
                raise ExecutorError(f"lost the Dask scheduler ({reason}); relaunch to collect or rerun the unfinished jobs") from err
            outcome, status, where = "skipped", 0, ""
        except Exception as err:
            self._futures.pop(ref, None)
            raise ExecutorError(f"Dask task {ref} failed: {_one_line(err)}") from err
        self._futures.pop(ref, None)
        if outcome == "nokey":
            raise ExecutorError(
                f"Dask worker {where} cannot see {log_dir}/{KEY_NAME}: the runs directory must be on a filesystem shared with the workers"
            )
        if outcome in ("skipped", "killed"):
            # A run may have ended just before the stop or the worker's death.
            record = read_exit_record(Path(log_dir)) if log_dir else None
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
            if _mark_stopped(log_dir, ref):
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
            if _mark_stopped(self._log_dir(_job_id_of(key)), key):
                self._signals.setdefault(key, signal.SIGTERM)
                try:
                    self._connect().cancel(future, force=True)
                except Exception:  # noqa: BLE001 - the mark alone keeps it from starting
                    log.debug("cancelling %s failed", key, exc_info=True)

    def alive(self, job_id: str, ref: str | None) -> bool:
        future = self._futures.get(ref) if ref is not None else None
        if future is not None and not future.done():
            return True
        if _job_alive(self._log_dir(job_id)):
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
            found = client.run(_find_job_processes, job_id, log_dir, on_error="ignore")
            hosts: dict[str, str] = {}
            count = 0
            for address, (host, pids) in sorted(found.items()):
                if pids and host not in hosts:
                    hosts[host] = address
                    count += pids
            if sig and hosts:
                client.run(_signal_job_processes, job_id, log_dir, int(sig), workers=list(hosts.values()), on_error="ignore")
        except Exception:  # noqa: BLE001 - stopping goes on with what it can reach
            log.debug("signalling job %s on the workers failed", job_id, exc_info=True)
            return 0
        return count

    # -- adopting -----------------------------------------------------------

    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        # No scheduler needed: the locks say it.
        self._log_dirs[job_id] = log_dir
        return _job_alive(log_dir)

    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool]) -> None:
        self._log_dirs[job_id] = log_dir
        while _job_alive(log_dir):
            if should_stop():
                return
            time.sleep(_ADOPT_POLL)

    def _log_dir(self, job_id: str) -> str:
        return self._log_dirs.get(job_id) or f"{self.options.runs_dir}/logs/{job_id}"


# -- on the launch's host -----------------------------------------------------


def _probe_scheduler(address: str) -> None:
    """Check that a Dask scheduler answers at `address`, with one-line errors.

    Connecting a `Client` to a bad address leaves a half-built client whose
    finaliser hangs for 20 s at exit, and Dask retries a refused address
    until its timeout; a plain socket and one Dask handshake fail cleanly.
    """
    connect = importlib.import_module("distributed.comm").connect
    security = importlib.import_module("distributed.security").Security()

    scheme, _, location = address.rpartition("://")
    if scheme in ("", "tcp"):
        host, _, port = location.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ExecutorError(f"bad Dask scheduler address {address!r}; expected tcp://HOST:PORT")
        try:
            socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT).close()
        except OSError as err:
            reason = err.strerror or str(err) or type(err).__name__
            raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {reason}; check --scheduler") from err

    async def handshake() -> None:
        comm = await connect(address, timeout=_CONNECT_TIMEOUT, **security.get_connection_args("client"))
        await comm.close()

    try:
        asyncio.run(handshake())
    except Exception as err:  # noqa: BLE001 - Dask raises OSError, ValueError, TypeError... for bad addresses
        raise ExecutorError(f"cannot connect to the Dask scheduler at {address}: {_one_line(err)}; check --scheduler") from err


def _claim_log_dir(log_dir: str, key: str) -> None:
    """Prepare a job's log directory for attempt `key` and make it the one allowed to run.

    Raises:
        OSError: the log directory or its files cannot be created.
    """
    try:
        os.mkdir(log_dir)
    except FileExistsError:
        pass
    fd = os.open(f"{log_dir}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free = True
        except BlockingIOError:
            # A run of an earlier attempt started after the recovery looked:
            # keep its record; the new task waits for it and reports it.
            free = False
        if free:
            try:
                os.unlink(f"{log_dir}/{EXIT_NAME}")
            except FileNotFoundError:
                pass
            for name in ("out.log", "err.log"):
                os.close(os.open(f"{log_dir}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
        _write_key(log_dir, key)
    finally:
        os.close(fd)


def _mark_stopped(log_dir: str, key: str) -> bool:
    """Keep attempt `key` from ever starting its command; False while its lock is held."""
    try:
        fd = os.open(f"{log_dir}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if _read_key(log_dir) == key:
            _write_key(log_dir, _STOPPED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _job_alive(log_dir: str) -> bool:
    """True while a supervisor or any process of the job is alive.

    Also true for a job an earlier launch ran with the local executor, whose
    processes hold the flock on out.log (dask jobs hold it too), so switching
    executors between launches never runs a job twice.
    """
    return job_lock_held(log_dir, LOCK_NAME) or job_lock_held(log_dir)


def _read_key(log_dir: str) -> str | None:
    try:
        with open(f"{log_dir}/{KEY_NAME}", "rb") as f:
            return f.read().decode().strip()
    except OSError:
        return None


def _write_key(log_dir: str, key: str) -> None:
    # Atomic: a supervisor reads either the old key or the new one.
    tmp = f"{log_dir}/.{KEY_NAME}.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w") as f:
        f.write(key + "\n")
    os.replace(tmp, f"{log_dir}/{KEY_NAME}")


def _distributed() -> Any:
    """dask.distributed, imported on first use: it is an optional extra."""
    try:
        module = importlib.import_module("distributed")
    except ImportError as err:
        raise ExecutorError(f"--executor dask cannot import dask.distributed ({err}); install it with: {INSTALL_HINT}") from err
    # distributed gives its loggers (and tornado's) a stderr handler and
    # levels of their own at import, and logs a lost scheduler as tracebacks
    # there; batchrun reports each failure as one line (ExecutorError) instead.
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    return module


def _job_id_of(key: str) -> str:
    return key.split("-")[1] if key.count("-") >= 2 else key


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


# -- on the workers -----------------------------------------------------------


# The worker process's fork server (Popen, socket), started on first use.
_fork_server: tuple[subprocess.Popen[bytes], socket.socket] | None = None
_fork_server_lock = threading.Lock()


def _send_to_fork_server(fds: list[int]) -> None:
    """Hand a request's two descriptors to this worker's fork server, starting it if needed."""
    global _fork_server
    with _fork_server_lock:
        for attempt in range(2):
            if _fork_server is None or _fork_server[0].poll() is not None:
                if _fork_server is not None:
                    _fork_server[1].close()
                ours, theirs = socket.socketpair()
                try:
                    popen = subprocess.Popen(
                        [sys.executable, "-I", "-S", "-c", _FORK_SERVER, str(os.getpid()), str(theirs.fileno()), _WRAPPER, str(_KEY_VISIBLE_TIMEOUT)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        pass_fds=(theirs.fileno(),),
                        # Out of the worker's process group: a signal for the
                        # worker's group (a nanny stopping it) reaches jobs only
                        # through their supervisors' parent-death watch.
                        start_new_session=True,
                    )
                finally:
                    theirs.close()
                _fork_server = (popen, ours)
            try:
                socket.send_fds(_fork_server[1], [b"j"], fds)
                return
            except OSError:
                _fork_server[0].kill()
                _fork_server[0].wait()
                if attempt:
                    raise


def _run_job(key: str, job_id: str, command: str, log_dir: str, env: dict[str, str], cwd: str) -> tuple[str, int, str]:
    """The Dask task: run one attempt of a job under a supervisor; (outcome, status, worker host)."""
    host = socket.gethostname()
    fields = [key, job_id, log_dir, cwd, command, *(f"{name}={value}" for name, value in env.items())]
    request = b"\0".join(os.fsencode(field) for field in fields)
    request_r, request_w = os.pipe()
    report_r, report_w = os.pipe()
    try:
        try:
            _send_to_fork_server([request_r, report_w])
        finally:
            os.close(request_r)
            os.close(report_w)
        with open(request_w, "wb", closefd=False) as f:
            f.write(request)
    except OSError as err:
        os.close(report_r)
        raise RuntimeError(f"on {host}: cannot start the job supervisor: {err.strerror or err}") from None
    finally:
        os.close(request_w)
    with open(report_r, "rb") as f:
        words = f.read().decode(errors="replace").split(maxsplit=1)
    if words[:1] in (["ran"], ["recorded"]):
        return words[0], int(words[1]), host
    if words[:1] in (["skipped"], ["nokey"]):
        return words[0], 0, host
    detail = words[1] if words[:1] == ["error"] else "it ended without a report"
    raise RuntimeError(f"on {host}: the job supervisor failed: {detail.strip()}")


def _host_identity() -> str:
    """Which process table this worker sees: its host's boot and its pid namespace."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{boot}:{namespace}"


def _find_job_processes(job_id: str, log_dir: str) -> tuple[str, int]:
    """On a worker: (host identity, number of the job's processes on this host)."""
    return _host_identity(), len(job_processes(job_id, log_dir))


def _signal_job_processes(job_id: str, log_dir: str, sig: int) -> int:
    """On a worker: send `sig` to every process group holding one of the job's processes.

    Matched by environment, not by parentage: a process whose parent died
    (the wrapper killed while a child ignores SIGTERM) is no longer a
    descendant of the worker but still belongs to the job. Processes that
    changed their environment at exec are out of reach, as for local jobs.
    """
    found = job_processes(job_id, log_dir)
    for pgid in {pgid for _, pgid in found}:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return len(found)


def dask_setup(worker: object) -> None:
    """Dask preload hook for the local cluster's workers: leave batchrun's session."""
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
