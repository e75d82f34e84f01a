"""Run jobs as local processes, each in its own session, and find them again.

A launch runs each job through a long-lived helper process per slot
(`helpers`, `_slot_helper`): the helper runs the line as exactly
`/bin/sh -c LINE` (that shell leads the job's session and process group),
waits for it and writes its exit status to `<log dir>/exit`. The helper,
not batchrun, writes that record, so a job that ends in the instant batchrun
dies still leaves its result behind.

Jobs started without a launch to answer to (`--detach`) and the other
executors' supervisors (SLURM, Dask) use the older way, `spawn_job`: a tiny
`/bin/sh` wrapper that runs the command as `/bin/sh -c COMMAND` would (in a
subshell, with no positional parameters) and then writes the record itself.

Before the job starts, `<log dir>/out.log` is opened, exclusively
`flock`ed and handed to the job as stdout. The kernel keeps that lock as
long as any process of the job (or its helper, until the record is written)
holds the descriptor, so a later launch can tell "still running" (lock held)
from "ended or never started" (lock free) with no pid bookkeeping and no
pid-reuse hazard, and can wait for an adopted job by waiting for the lock.
(The lock rides on out.log rather than a file of its own: one file fewer to
create per job.)
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchrun.executors.base import Executor
from batchrun.executors.jobfiles import EXIT_NAME, LOCK_NAME, OUT_NAME, STOP_NAME, job_lock_held, read_exit_record
from batchrun.executors.local.helpers import HelperPool

__all__ = [
    "EXIT_NAME",
    "LOCK_NAME",
    "OUT_NAME",
    "LocalExecutor",
    "LocalProcess",
    "job_lock_held",
    "kill_group",
    "read_exit_record",
    "find_job_processes",
    "group_alive",
    "job_processes",
    "spawn_job",
    "wait_for_job_lock",
]


_DEVNULL_FD: int | None = None


def _devnull() -> int:
    """One read-only /dev/null descriptor, shared as every job's stdin."""
    global _DEVNULL_FD
    if _DEVNULL_FD is None:
        _DEVNULL_FD = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _DEVNULL_FD

# The wrapper: `(eval ...)` runs the line in a subshell so that `exit` or
# `set -e` in the command cannot skip the record; `shift` leaves the command
# with no positional parameters and `$0` is `/bin/sh`, as under `/bin/sh -c`.
# The record is one short write; readers accept it only when it is a whole line.
# The record names the attempt it ends (`BATCHRUN_ATTEMPT`, read before the
# line runs so the line cannot change it): a record an earlier attempt left
# is never taken for a later one's.
_WRAPPER = (
    "__batchrun_cmd=$1; shift\n"
    "__batchrun_attempt=$BATCHRUN_ATTEMPT\n"
    '(eval "unset __batchrun_cmd; $__batchrun_cmd")\n'
    "__batchrun_status=$?\n"
    'echo "$__batchrun_status $__batchrun_attempt" >"$BATCHRUN_LOG_DIR/exit"\n'
    'exit "$__batchrun_status"\n'
)

# The same without the subshell, for lines that cannot reach the wrapper's
# own state. A subshell costs a fork only when the line is all builtins
# (`true 1`): for an external command the subshell execs it directly, as the
# wrapper itself would fork and exec it. So this saves a fork on trivial lines
# and changes nothing a command can observe.
_WRAPPER_DIRECT = _WRAPPER.replace('(eval "unset __batchrun_cmd; $__batchrun_cmd")', 'eval "unset __batchrun_cmd; $__batchrun_cmd"')

# Words with which a line could end or steer the shell that runs it (and so
# skip or redirect the exit record): such lines get the subshell.
_NEEDS_SUBSHELL = re.compile(
    r"(?<![\w$/.-])(exit|exec|return|set|trap|shift|unset|readonly|eval|source|break|continue|"
    r"alias|ulimit|umask|wait|BATCHRUN_LOG_DIR|__batchrun\w*)(?![\w/-])|(?:^|[\s;&|(`])\.(?:\s|$)"
    # A function definition (`echo() { ...; }`) could shadow the wrapper's own echo.
    r"|\(\s*\)"
)


# Linux refuses a single argument longer than 128 KiB (E2BIG). Longer lines
# are read by the wrapper from a file in the job's log directory instead.
_ARG_MAX = 100_000
COMMAND_FILE = "command.sh"
_FROM_FILE = '__batchrun_cmd=$(cat "$BATCHRUN_LOG_DIR/command.sh"); shift\n'


def wrapper_for(command: str) -> str:
    """The wrapper script for a command: direct when nothing in it can skip the record."""
    return _WRAPPER if _NEEDS_SUBSHELL.search(command) else _WRAPPER_DIRECT


def _argv(command: str, log_dir: str) -> list[str]:
    """The wrapper's argv; a line too long for one argument goes through a file."""
    script = wrapper_for(command)
    if len(command) <= _ARG_MAX // 4 or len(command.encode()) <= _ARG_MAX:
        return ["/bin/sh", "-c", script, "/bin/sh", command]
    with open(f"{log_dir}/{COMMAND_FILE}", "w", encoding="utf-8") as f:
        f.write(command)
    return ["/bin/sh", "-c", script.replace("__batchrun_cmd=$1; shift\n", _FROM_FILE, 1), "/bin/sh", "-"]

@dataclass
class LocalProcess:
    """A job's wrapper process, started by this launch."""

    popen: subprocess.Popen[bytes]
    pid: int


def spawn_job(command: str, log_dir: str, env: dict[str, str] | list[bytes], append_logs: bool = False) -> LocalProcess:
    """Start a job's wrapper in a new session with output to its log files.

    `log_dir` is a string, not a Path: this runs once per job on the hot path.

    Raises:
        OSError: the log directory or files cannot be created, or fork failed.
    """
    try:
        os.mkdir(log_dir)
    except FileExistsError:
        pass
    try:
        os.unlink(f"{log_dir}/{EXIT_NAME}")
    except FileNotFoundError:
        pass
    mode = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append_logs else os.O_TRUNC)
    # out.log doubles as the job's liveness lock: every process of the job
    # inherits it as stdout, and the flock lasts while any of them holds it.
    out_fd = os.open(f"{log_dir}/{OUT_NAME}", mode, 0o644)
    try:
        try:
            fcntl.flock(out_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A stray background process of an earlier attempt still holds
            # it; this attempt runs regardless (adoption already declined it).
            pass
        err_fd = os.open(f"{log_dir}/err.log", mode, 0o644)
        try:
            popen = subprocess.Popen(
                _argv(command, log_dir),
                # No terminal input: many jobs share one terminal. One
                # descriptor for every job saves an open per job.
                stdin=_devnull(),
                stdout=out_fd,
                stderr=err_fd,
                env=env,  # type: ignore[arg-type]
                # Its own session: signals to batchrun's terminal do not
                # reach the job, a kill -9 of batchrun leaves it running
                # (to be adopted), and killpg stops its whole tree.
                start_new_session=True,
            )
        finally:
            os.close(err_fd)
    finally:
        os.close(out_fd)
    return LocalProcess(popen, popen.pid)


def wait_for_job_lock(log_dir: Path, should_stop: Callable[[], bool], poll: float = 0.2) -> None:
    """Block until no process of an adopted job holds its lock.

    `should_stop` (a callable) is checked between polls so a stopping launch
    does not hang on a job it could not kill.
    """
    while job_lock_held(log_dir):
        if should_stop():
            return
        time.sleep(poll)


def kill_group(pid: int, job_id: str, sig: int) -> bool:
    """Send `sig` to the process group led by `pid`; False if it is gone.

    A group is only signalled while its leader still belongs to the job
    (its environment names the job id), or has exited leaving members: a
    recorded pid may have been reused by an unrelated process since.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except FileNotFoundError:
        env = None
    except OSError:
        env = b""
    if env is not None and env and f"BATCHRUN_JOB_ID={job_id}".encode() not in env.split(b"\0"):
        return False
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pid: int) -> bool:
    """True while any live (non-zombie) process is in the process group `pid`."""
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # killpg succeeds for zombies too; look for a member that is not one.
    try:
        pids = _proc_pids()
    except OSError:
        return True
    for other in pids:
        fields = _stat_fields(other)
        if fields is not None and len(fields) > 2 and int(fields[2]) == pid and fields[0] != b"Z":
            return True
    return False


def _proc_pids() -> list[int]:
    """Every pid in /proc (raises OSError where /proc cannot be listed)."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()


def job_processes(job_id: str, log_dir: str | None = None) -> list[tuple[int, int]]:
    """(pid, process group) of the live processes of this host whose environment names the job.

    With `log_dir`, the environment must name that log directory too (a
    Dask worker may see two runs directories with the same job id).
    """
    wanted = {f"BATCHRUN_JOB_ID={job_id}".encode()}
    if log_dir is not None:
        wanted.add(f"BATCHRUN_LOG_DIR={log_dir}".encode())
    try:
        pids = _proc_pids()
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if not wanted.issubset(env.split(b"\0")):
            continue
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            found.append((pid, int(fields[2])))
    return found


def find_job_processes(job_id: str) -> list[int]:
    """Pids of live processes whose environment names this job id.

    Used only when a launch died between starting a job and recording its
    pid, to stop an adopted job whose process group is otherwise unknown.
    """
    return [pid for pid, _ in job_processes(job_id)]


class LocalExecutor(Executor):
    """Jobs as processes of this machine, each in its own session, started by per-slot helpers."""

    name = "local"

    def __init__(self, options: object) -> None:
        super().__init__(options)  # type: ignore[arg-type]
        self._slots = HelperPool(getattr(options, "cwd", None))
        # ref (pid) -> process, for detached jobs this launch started and has not reaped.
        self._procs: dict[str, LocalProcess] = {}
        # pid -> the first signal this launch sent its group: the job counts as
        # ended by it, as the old wrapper shell (its group's leader) would have been.
        self._signalled: dict[int, int] = {}
        self._noted: set[str] = set()
        # refs of ended jobs whose helper saw no metrics file (`left_no_metrics`).
        self._no_metrics: set[str] = set()

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> str:
        self._noted.discard(job_id)  # a retry: its helper clears the last attempt's note
        return str(self._slots.start(job_id, command, log_dir, env))

    def start_many(self, jobs: Sequence[tuple[str, str, str, dict[str, str]]]) -> list[str]:
        """--detach: every job under the record-writing wrapper (a helper each would be a Python per job)."""
        refs = []
        for _job_id, command, log_dir, env in jobs:
            proc = spawn_job(command, log_dir, env)
            self._procs[str(proc.pid)] = proc
            refs.append(str(proc.pid))
        return refs

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        proc = self._procs.get(ref)
        if proc is None:
            ended = self._slots.wait(int(ref), timeout)
            if ended is None:
                return None
            returncode, no_metrics = ended
            if no_metrics:
                self._no_metrics.add(ref)
            sig = self._signalled.pop(int(ref), None)
            return returncode if sig is None else -sig
        try:
            returncode = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        del self._procs[ref]
        return returncode

    def left_no_metrics(self, ref: str) -> bool:
        try:
            self._no_metrics.remove(ref)
        except KeyError:
            return False
        return True

    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        pids = [int(ref)] if ref is not None and ref.isdigit() else find_job_processes(job_id)
        if pids and sig and job_id not in self._noted:
            self._note_stop(job_id)
        hit = False
        for pid in pids:
            if kill_group(pid, job_id, sig):
                hit = True
                if sig:
                    self._signalled.setdefault(pid, sig)
        return hit

    def _note_stop(self, job_id: str) -> None:
        """Tell the job's helper, before the signal, that the job is being stopped (it then writes no record)."""
        self._noted.add(job_id)
        try:
            fd = os.open(f"{self.options.runs_dir}/logs/{job_id}/{STOP_NAME}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return  # no log directory (a test's executor): nothing to tell
        os.close(fd)

    def alive(self, job_id: str, ref: str | None) -> bool:
        if ref is not None and ref.isdigit():
            return group_alive(int(ref))
        return bool(find_job_processes(job_id))

    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        return job_lock_held(Path(log_dir))

    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool]) -> None:
        wait_for_job_lock(Path(log_dir), should_stop)

    def close(self) -> None:
        """Let the helpers go: each exits once its job, if any, ended and is recorded."""
        self._slots.close()
