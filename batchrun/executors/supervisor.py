"""The one job supervisor: how every executor runs a job and records its end.

Every job of every executor runs under a supervisor process that:
1. opens the job's `out.log` and `err.log` and takes the flock on out.log,
   the job's liveness lock (every process of the job inherits out.log as its
   stdout, so the kernel keeps the lock while any of them lives);
2. starts exactly `/bin/sh -c LINE` in a session of its own, with stdin from
   /dev/null, no other descriptor, an empty signal mask and every signal at
   its default (a line too long for one argument, see `MAX_ARG_STRLEN`, is
   sourced from `command.sh` in its log directory instead);
3. waits for it with `wait4`, keeping its resource usage;
4. writes the exit record, `<status> <attempt>\\n` in one write;
   a job a launch was stopping on purpose (the stop note, written before the
   launch's first signal) is recorded with the stop's state instead
   (`<status> <attempt> killed`), so a trapped SIGTERM's `exit 0` is never
   taken for success and the stop outlives the launch; a job whose shell a
   signal killed otherwise gets no record (`exitrecord` has the formats);
5. only then lets go of out.log, so a reader that finds the lock free and
   then reads the record (`launch.settle`) never meets a finished job without
   its record.
The supervisor is not in the job's session, so a signal a launch sends the
job's process group never reaches it, and it outlives batchrun: a job that
ends in the instant batchrun is killed still leaves its record.

Standard library only, importing nothing from batchrun, because it runs in
processes that must start in milliseconds and must not see the job's
PYTHON* variables (`python -I -S`). It is used two ways:
- as a library, by the per-slot helpers and the `--detach` dispatcher
  (`local/_slot_helper.py`) and by the Dask fork server's per-job
  supervisors (`dask/_forkserver.py`), scripts that import it from this
  folder (they run with -I, which leaves their own folder off sys.path, so
  they add this one);
- as a script, by each SLURM array task:
  `python -I -S supervisor.py [--cwd DIR] [--forward SIG] LOG_DIR`, the line
  on stdin (a line of any length passes there), attempt and environment its
  own. It is the task's batch shell, which SLURM's `--signal=B:SIG` reaches:
  `--forward SIG` (the checkpoint signal) passes SIG on to the job's group,
  no stop (no stop note): the job saves its state and exits 75, or not.
The files' formats are `exitrecord`'s (stdlib only too); their readers
outside the executors go through `jobfiles`.

A supervisor's only children are its jobs. The per-slot helpers are child
subreapers (`become_subreaper`), so a job's strays (a `cmd &` whose shell
exited) are reparented to the helper, not to the launch, and reaped by it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping

# Not typing.TYPE_CHECKING: importing typing costs start-up time; mypy takes this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from resource import struct_rusage
if TYPE_CHECKING or __package__:
    import batchrun.executors.exitrecord as exitrecord
else:
    # As a script (-I leaves its folder off sys.path), or imported by one that put this folder there.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import exitrecord

__all__ = ["COMMAND_FILE", "ERR_NAME", "EXIT_NAME", "LOCK_NAME", "MAX_ARG_STRLEN", "OUT_NAME", "STOP_NAME", "USAGE_NAME", "Ended", "Job",
    "become_subreaper", "clear_job_files", "command_argv", "ended", "finish", "forward_signal", "main", "note_stop", "prctl", "read_exit_record",
    "record_end", "record_usage", "shield_signals", "start"]

OUT_NAME = "out.log"
ERR_NAME = "err.log"
# The file whose flock says a job's processes are alive. It rides on out.log
# rather than a file of its own: one file fewer to create per job.
LOCK_NAME = OUT_NAME
COMMAND_FILE = "command.sh"
# What the last attempt used (`record_usage`), written just before its exit record.
USAGE_NAME = "usage"
# One argument longer than this (its bytes plus the NUL) is refused by Linux (E2BIG).
MAX_ARG_STRLEN = 131_072
EXIT_NAME = exitrecord.EXIT_NAME
STOP_NAME = exitrecord.STOP_NAME
read_exit_record = exitrecord.read_exit_record
record_end = exitrecord.record_end
note_stop = exitrecord.note_stop
clear_job_files = exitrecord.clear_job_files

_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
_DEVNULL: int | None = None


def prctl(option: int, value: int) -> bool:
    """libc's prctl(option, value); False where there is none (not Linux) or it fails.

    Through `_ctypes`, a C module, not `ctypes`: importing ctypes would cost
    these processes' start-up several milliseconds.
    """
    try:
        import _ctypes  # noqa: PLC0415 - only where prctl is asked for

        function = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "prctl")  # type: ignore[arg-type]
        return bool(_ctypes.call_function(function, (option, value, 0, 0, 0)) == 0)
    except (OSError, AttributeError, ImportError):
        return False


def become_subreaper(on: bool = True) -> bool:
    """Make this process its descendants' reaper: a job whose own parent died is reparented here, not to init (Linux).

    A launch is one, so a job whose slot helper died is its child: it can
    reap it and learn its real status. The helpers are too, so that the
    strays of their jobs do not land on the launch. `on=False` makes a
    process stop being one (a test process that ran launches in-process).
    """
    return prctl(_PR_SET_CHILD_SUBREAPER, int(on))


def record_usage(log_dir: bytes, attempt: str | bytes, rusage: struct_rusage) -> None:
    """Write what the job's attempt used, from its shell's `wait4`: `<attempt> <max_rss_kb> <user_cpu_s> <sys_cpu_s>`.

    For a writer told no launch (the launch's exit log holds it otherwise).
    The shell's usage covers every process of the job it waited for, and
    its peak resident memory is the largest of theirs (Linux: kilobytes).
    """
    line = b"%s %d %.3f %.3f\n" % (attempt if isinstance(attempt, bytes) else attempt.encode(), rusage.ru_maxrss, rusage.ru_utime, rusage.ru_stime)
    try:
        fd = os.open(log_dir + b"/" + USAGE_NAME.encode(), _FLAGS | os.O_TRUNC, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass


# -- starting and ending a job ----------------------------------------------


def command_argv(command: bytes, log_dir: bytes) -> list[bytes]:
    """`/bin/sh -c LINE`; a line too long for one argument is sourced from `command.sh` in its log directory.

    Raises:
        OSError: the command file cannot be written.
    """
    if len(command) < MAX_ARG_STRLEN:
        return [b"/bin/sh", b"-c", command]
    path = log_dir + b"/" + COMMAND_FILE.encode()
    fd = os.open(path, _FLAGS | os.O_TRUNC, 0o644)
    try:
        view = memoryview(command)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return [b"/bin/sh", b"-c", b". '" + path.replace(b"'", b"'\\''") + b"'"]


def _open_logs(log_dir: bytes, fresh: bool, append: bool) -> tuple[int, int]:
    """The job's out.log (flocked) and err.log.

    `fresh`: create the log directory and clear an earlier attempt's record
    and stop note first (the launch's own helpers do this right before the
    start; executors that start jobs later do it when they queue them).
    """
    if fresh:
        try:
            os.mkdir(log_dir)
        except FileExistsError:
            # Only a directory that was there can hold an earlier record or stop note.
            clear_job_files(log_dir)
    flags = _FLAGS | (os.O_APPEND if append else os.O_TRUNC)
    out_fd = os.open(log_dir + b"/" + OUT_NAME.encode(), flags, 0o644)
    try:
        try:
            fcntl.flock(out_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A stray background process of an earlier run still holds it;
            # this one runs regardless (adoption already declined it).
            pass
        err_fd = os.open(log_dir + b"/" + ERR_NAME.encode(), flags, 0o644)
    except BaseException:
        os.close(out_fd)
        raise
    return out_fd, err_fd


def _devnull() -> int:
    """One read-only /dev/null descriptor, shared as every job's stdin."""
    global _DEVNULL  # noqa: PLW0603 - one per process
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _DEVNULL


def _unblock_all() -> None:
    """In the job's process before exec: an empty signal mask, whatever the supervisor blocks."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


class Job:
    """A job this supervisor started: its shell's process, and out.log's descriptor (the lock) until `finish`."""

    __slots__ = ("attempt", "log_dir", "out_fd", "pid", "proc")

    def __init__(self, proc: subprocess.Popen[bytes], log_dir: bytes, attempt: bytes, out_fd: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.log_dir = log_dir
        self.attempt = attempt
        self.out_fd = out_fd


class Ended:
    """How a job's shell ended: its returncode (-N: signal N), its resource usage from wait4, and whether it was recorded."""

    __slots__ = ("recorded", "returncode", "rusage")

    def __init__(self, returncode: int, rusage: struct_rusage, recorded: bool) -> None:
        self.returncode = returncode
        self.rusage = rusage
        self.recorded = recorded


def start(
    command: bytes, log_dir: bytes, env: Mapping[bytes, bytes] | None, attempt: bytes, fresh: bool = True, append: bool = False, locked: Callable[[], None] | None = None
) -> Job:
    """Open the logs, take the lock and start `/bin/sh -c LINE` in a session of its own (`env` None: this process's environment); `finish` must follow.

    `locked` is called once out.log's lock is held, before the fork.

    Raises:
        OSError: the log files cannot be created, or the shell cannot start.
        ValueError: a NUL byte in the line or the environment (no exec could take it).
    """
    out_fd, err_fd = _open_logs(log_dir, fresh, append)
    try:
        if locked is not None:
            locked()
        # Signals this process blocks (a Dask supervisor around its start) must
        # not stay blocked in the job; a preexec function costs a plain fork, so only then.
        blocked = bool(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
        proc = subprocess.Popen(
            command_argv(command, log_dir),
            # No terminal input: many jobs share one terminal.
            stdin=_devnull(),
            stdout=out_fd,
            stderr=err_fd,
            env=env,
            # Its own session: signals to batchrun's terminal do not reach the
            # job, a kill -9 of batchrun leaves it running (to be adopted),
            # and killpg stops its whole tree but not this supervisor.
            start_new_session=True,
            preexec_fn=_unblock_all if blocked else None,
        )
    except BaseException:
        os.close(out_fd)
        raise
    finally:
        os.close(err_fd)
    return Job(proc, log_dir, attempt, out_fd)


def finish(job: Job, before_record: Callable[[], None] | None = None) -> Ended:
    """Wait for the job's shell, write its record (`record_end`), then let go of out.log's lock.

    Any other child reaped meanwhile is a stray of a job, adopted as a subreaper: it is only reaped.
    """
    try:
        while True:
            pid, wait_status, rusage = os.wait4(-1, 0)
            if pid == job.pid:
                break
    except BaseException:
        os.close(job.out_fd)
        raise
    return ended(job, wait_status, rusage, before_record)


def ended(job: Job, wait_status: int, rusage: struct_rusage, before_record: Callable[[], None] | None = None) -> Ended:
    """The job's shell was reaped (`wait4`, by `finish` or by a supervisor of many jobs): write its record, then let go of out.log's lock."""
    try:
        returncode = os.waitstatus_to_exitcode(wait_status)
        job.proc.returncode = returncode  # reaped here: Popen must not wait for it again
        if before_record is not None:
            before_record()
        if not exitrecord.launch_set():  # else the record holds it
            record_usage(job.log_dir, job.attempt, rusage)  # before the record: whoever reads the record finds it
        recorded = record_end(job.log_dir, returncode, job.attempt, rusage)
    finally:
        os.close(job.out_fd)
    return Ended(returncode, rusage, recorded)


def shield_signals() -> None:
    """Keep stray signals from killing this process without passing that on to its jobs.

    Every signal this process was started ignoring (under `nohup`, `&` in a
    script), and SIGINT, get a handler that does nothing instead: a handler,
    unlike SIG_IGN, is reset by exec, so every job starts with every signal at
    its default however batchrun was started. SIGPIPE and SIGXFSZ stay
    ignored here, as Python sets them, and are reset for the job by
    `subprocess` (`restore_signals`).
    """
    keep = {signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ}
    for signum in signal.valid_signals():
        if signum in keep:
            continue
        try:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN or (signum == signal.SIGINT and current is signal.default_int_handler):
                signal.signal(signum, _no_op)
        except (OSError, ValueError):
            continue  # a signal no handler may be set for


def _no_op(signum: int, frame: object) -> None:
    """A handler that does nothing: the signal is ignored here but not by the jobs."""


def forward_signal(job: Job, signum: int) -> None:
    """Pass `signum` on to the job's group from now on, until its shell is reaped (its group id may then be reused); unblock it (blocked before `start`: none is lost)."""

    def handler(signum: int, frame: object) -> None:
        if job.proc.returncode is None:
            try:
                os.killpg(job.pid, signum)
            except OSError:
                pass  # its group is gone: the job is ending anyway

    signal.signal(signum, handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})


# -- as a script: one job, for a SLURM array task ----------------------------


def main(argv: list[str]) -> int:
    """`supervisor.py [--cwd DIR] [--forward SIG] [--launch NAME] LOG_DIR`, the line on stdin; exits as `/bin/sh -c LINE` would (128 + N for signal N).

    The log directory exists and holds no earlier record (the launch prepared
    it when it queued the job); out.log and err.log are truncated, as a
    shell's `>` would. `--forward SIG` (`USR1`): see `forward_signal`;
    `--launch NAME`: the launch's exit log (`exitlog`) takes the record.
    """
    options: dict[str, str | None] = {"--cwd": None, "--forward": None, "--launch": None}
    while argv[:1] and argv[0] in options:
        options[argv[0]], argv = argv[1], argv[2:]
    exitrecord.set_launch(options["--launch"])
    cwd, forward = options["--cwd"], options["--forward"]
    signum = signal.Signals["SIG" + forward] if forward is not None else None
    if signum is not None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})  # until the job runs to take it
    (log_dir,) = argv
    command = sys.stdin.buffer.read()
    shield_signals()
    env = os.environb
    attempt = env.get(b"BATCHRUN_ATTEMPT", b"")
    log_dir_b = os.fsencode(log_dir)
    if cwd is not None:
        try:
            os.chdir(cwd)
        except OSError as err:
            # The job cannot run where it was launched: it failed, as a shell's `cd` would say.
            out_fd, err_fd = _open_logs(log_dir_b, fresh=False, append=False)
            try:
                os.write(err_fd, f"batchrun: cannot enter {cwd}: {err.strerror}\n".encode(errors="surrogateescape"))
                os.close(err_fd)
                record_end(log_dir_b, 1, attempt)
            finally:
                os.close(out_fd)
            return 1
    job = start(command, log_dir_b, dict(env), attempt, fresh=False, append=False)
    if signum is not None:
        forward_signal(job, signum)
    ended = finish(job)
    return ended.returncode if ended.returncode >= 0 else 128 - ended.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
