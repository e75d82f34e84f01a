"""The fork server of a Dask worker: forks one supervisor per job attempt.

Run as a script, `python -I -S _forkserver.py WORKER_PID SOCKET_FD
KEY_WAIT KEY_NAME LOCK_NAME`, one per worker process, started on the
worker's first job by `dask.worker`. Hence stdlib only (`-I -S`: immune to
the job's PYTHON* variables, no site-packages): it must not import batchrun,
only the job supervisor (`executors/supervisor.py`, stdlib only too), which
runs the job and writes its record as for every executor. Forking a
supervisor from it costs ~1 ms; starting a Python per job cost 15-50 ms.

Each request is one byte on the socket carrying two descriptors: a pipe to
read the request from (NUL-separated key, job id, log dir, cwd, command,
then the job's environment) and a pipe for the one-line report: "ran N",
"recorded N" (the attempt already ran), "skipped" (superseded, stopped, or
a key file that names no attempt), "nokey" (the log directory is not
visible here) or "error TEXT". See `batchrun.executors.dask.executor` for why a
supervisor runs a command only while the key file names its attempt.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time

# Not typing.TYPE_CHECKING: importing typing (or dataclasses) costs more than this whole script.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
else:
    import _signal as signal
if TYPE_CHECKING or __package__:
    from batchrun.executors import supervisor
else:
    # -I leaves this script's folder (and the supervisor's) off sys.path.
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import supervisor

__all__ = ["Settings", "main", "read_key", "supervise"]

# The signals a parent's death arrives as (PDEATHSIG, or the polling alarm).
_WATCHED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM)
# How often a supervisor looks again at the key file and the lock.
_POLL = 0.1
# PR_SET_PDEATHSIG, from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


class Settings:
    """What the worker's side tells the fork server on its command line."""

    __slots__ = ("key_name", "key_wait", "lock_name")

    def __init__(self, key_wait: float, key_name: str, lock_name: str) -> None:
        self.key_wait = key_wait
        self.key_name = key_name
        self.lock_name = lock_name


def watch(parent: int, on_death: Callable[[], None]) -> None:
    """Call `on_death`, then exit, when process `parent` dies.

    Other senders of these signals, and the exit of the thread that forked
    us while its process lives (which signals too, with getppid()
    unchanged), are ignored.
    """

    def handler(signum: int, frame: object) -> None:
        if os.getppid() != parent:
            on_death()
            os._exit(128 + signum)

    for sig in _WATCHED:
        signal.signal(sig, handler)
    # Without prctl (not Linux), poll getppid() every second.
    if not supervisor.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM):
        signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)
    if os.getppid() != parent:
        on_death()
        os._exit(1)


def read_key(path: str) -> str | None:
    """The attempt a key file names; None when there is no file.

    Bytes that are not UTF-8 name no attempt (they never equal a key), so a
    damaged file makes every attempt skip instead of failing the task.
    """
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return None


def _kill_job(child: int, job_id: str, log_dir: str) -> None:
    """SIGKILL the job's process group and every process whose environment names the job."""
    if not child:
        return
    try:
        os.killpg(child, signal.SIGKILL)
    except OSError:
        pass
    # Processes that left the job's group still name it in their
    # environment. While we run the job (hold its lock) none of them can
    # belong to another run.
    wanted = {("BATCHRUN_JOB_ID=" + job_id).encode(), ("BATCHRUN_LOG_DIR=" + log_dir).encode()}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open("/proc/" + entry + "/environ", "rb") as f:
                    if wanted.issubset(f.read().split(b"\0")):
                        os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def _read_request(request_fd: int) -> tuple[list[str], dict[bytes, bytes]]:
    data = []
    while True:
        chunk = os.read(request_fd, 65536)
        if not chunk:
            break
        data.append(chunk)
    os.close(request_fd)
    fields = b"".join(data).split(b"\0")
    env = {}
    for item in fields[5:]:
        if item:
            name, _, value = item.partition(b"=")
            env[name] = value
    return [os.fsdecode(f) for f in fields[:5]], env


def _take_lock(settings: Settings, log_dir: str, key: str) -> int | None:
    """Wait for the key file to name `key` and for the run lock; the lock's fd, None if superseded."""
    key_path = log_dir + "/" + settings.key_name
    lock = os.open(log_dir + "/" + settings.lock_name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            # An earlier run of this attempt (its worker died) is still dying.
            if read_key(key_path) != key:
                os.close(lock)
                return None
            time.sleep(_POLL)
    if read_key(key_path) != key:
        os.close(lock)
        return None
    return lock


def _recorded(log_dir: str) -> int | None:
    """The status in a whole exit record of a run that ended on its own, else None.

    The record is the job's whatever attempt wrote it (`<status> <attempt>`):
    the lock this supervisor now holds was held by that run, and a claim
    removes a record only while no run holds the lock, so a record here is
    the job's result from a run that started after the last claim (an
    earlier attempt that a relaunch found not yet running, or this attempt
    run once already by Dask). A record of a run a stop ended (it names the
    stop's state) is no result: this attempt runs.
    """
    record = supervisor.read_exit_record(log_dir, logs=False)
    return None if record is None or record[2] is not None else record[0]


def supervise(settings: Settings, zygote: int, request_fd: int, report_fd: int) -> None:
    """In a forked supervisor: run one attempt (if it is still the one allowed) and report."""

    def say(text: str) -> None:
        os.write(report_fd, text.encode() + b"\n")

    (key, job_id, log_dir, cwd, command), env = _read_request(request_fd)
    child = 0
    # Not os.getppid(): the fork server may already be gone.
    watch(zygote, lambda: _kill_job(child, job_id, log_dir))
    try:
        os.chdir(cwd)
    except OSError as err:
        say("error cannot enter " + cwd + ": " + (err.strerror or str(err)))
        return
    key_path = log_dir + "/" + settings.key_name
    deadline = time.monotonic() + settings.key_wait
    while read_key(key_path) is None:
        if time.monotonic() > deadline:
            say("nokey")
            return
        time.sleep(_POLL)
    lock = _take_lock(settings, log_dir, key) if read_key(key_path) == key else None
    if lock is None:
        say("skipped")
        return
    status = _recorded(log_dir)
    if status is not None:
        say(f"recorded {status}")
        return
    # No handler may run between the start and `child = pid` (the job starts
    # with an empty mask all the same: the supervisor sees to it).
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    try:
        # Appended to: the launch emptied them when it claimed the directory,
        # and a run of this attempt on a worker that died keeps its output.
        job = supervisor.start(os.fsencode(command), os.fsencode(log_dir), env, env.get(b"BATCHRUN_ATTEMPT", b""), fresh=False, append=True)
        child = job.pid
    except (OSError, ValueError) as err:
        say(f"error cannot start the job: {err}")
        return
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
    # A description of out.log of our own (not the job's, which the supervisor
    # closes after the record): flock on it waits until no process of the job
    # holds out.log's lock, whatever name the file has by then.
    strays = os.open(f"/proc/self/fd/{job.out_fd}", os.O_RDONLY | os.O_CLOEXEC)
    ended = supervisor.finish(job)
    say(f"ran {ended.returncode}")
    os.close(report_fd)  # the task reads its report to the end: it ends now
    # run.lock (`lock`) stays held until then, so no other run of the job
    # starts while a process of this one lives.
    fcntl.flock(strays, fcntl.LOCK_EX)


def serve(worker: int, server: socket.socket, settings: Settings) -> None:
    """Fork a supervisor for each request until the worker is gone."""
    zygote = os.getpid()
    # Signals the worker ignores must not stay ignored in the jobs.
    supervisor.shield_signals()
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
                supervise(settings, zygote, fds[0], fds[1])
            except BaseException as err:  # noqa: BLE001 - reported to the task, which raises it
                try:
                    os.write(fds[1], f"error {type(err).__name__}: {err}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


def main(argv: list[str]) -> None:
    """argv: worker pid, socket fd, key wait, key file name, lock file name."""
    worker, fd, key_wait, key_name, lock_name = argv
    serve(int(worker), socket.socket(fileno=int(fd)), Settings(float(key_wait), key_name, lock_name))


if __name__ == "__main__":
    main(sys.argv[1:])
