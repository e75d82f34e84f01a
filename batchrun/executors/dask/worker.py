"""What runs on a Dask worker: the task function and the job-process helpers.

Dask pickles these functions by reference, so every worker imports this
module (batchrun is installed on every worker). `run_job` hands the job to
the worker's fork server (`dask._forkserver`, a separate stdlib-only
process), which forks a supervisor that runs it. The local cluster's
workers also load this module as a preload, for `dask_setup`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from batchrun.executors.dask.keys import KEY_NAME, LOCK_NAME
from batchrun.executors.processes import job_processes

__all__ = ["KEY_VISIBLE_TIMEOUT", "dask_setup", "find_job_processes", "run_job", "signal_job_processes", "stop_fork_server"]

# How long a task waits for a freshly written key file to become visible on
# its worker (shared-filesystem caches) before deciding the runs directory is
# not shared with it.
KEY_VISIBLE_TIMEOUT = 2.0
# The fork server runs as a script, from this worker's installed copy.
_FORK_SERVER_SCRIPT = str(Path(__file__).with_name("_forkserver.py"))

# The worker process's fork server (Popen, socket), started on first use.
_fork_server: tuple[subprocess.Popen[bytes], socket.socket] | None = None
_fork_server_lock = threading.Lock()


def _start_fork_server() -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair()
    args = [str(os.getpid()), str(theirs.fileno()), str(KEY_VISIBLE_TIMEOUT), KEY_NAME, LOCK_NAME]
    try:
        popen = subprocess.Popen(
            # -I -S: stdlib only, immune to the job's PYTHON* variables.
            [sys.executable, "-I", "-S", _FORK_SERVER_SCRIPT, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            # Out of the worker's process group: a signal for the worker's
            # group (a nanny stopping it) reaches jobs only through their
            # supervisors' parent-death watch.
            start_new_session=True,
        )
    finally:
        theirs.close()
    return popen, ours


def _send_to_fork_server(fds: list[int]) -> None:
    """Hand a request's two descriptors to this worker's fork server, starting it if needed."""
    global _fork_server  # noqa: PLW0603 - one fork server per worker process
    with _fork_server_lock:
        for attempt in range(2):
            if _fork_server is None or _fork_server[0].poll() is not None:
                if _fork_server is not None:
                    _fork_server[1].close()
                _fork_server = _start_fork_server()
            try:
                socket.send_fds(_fork_server[1], [b"j"], fds)
                return
            except OSError:
                _fork_server[0].kill()
                _fork_server[0].wait()
                if attempt:
                    raise


def stop_fork_server() -> None:
    """Stop this process's fork server, if it has one (supervisors it forked keep running their jobs)."""
    global _fork_server  # noqa: PLW0603
    with _fork_server_lock:
        if _fork_server is not None:
            popen, sock = _fork_server
            _fork_server = None
            sock.close()  # the fork server exits when its socket closes
            popen.wait()


def run_job(key: str, job_id: str, command: str, log_dir: str, env: dict[str, str], cwd: str) -> tuple[str, int, str]:
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


def find_job_processes(job_id: str, log_dir: str) -> tuple[str, int]:
    """On a worker: (host identity, number of the job's processes on this host)."""
    return _host_identity(), len(job_processes(job_id, log_dir))


def signal_job_processes(job_id: str, log_dir: str, sig: int) -> int:
    """On a worker: send `sig` to every process group holding one of the job's processes.

    Matched by environment, not by parentage: a process whose parent died
    (the job's shell killed while a child ignores SIGTERM) is no longer a
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
