"""The per-slot helper process: runs each job as `/bin/sh -c LINE` and writes its exit record.

Run as a script (`python -I -S _slot_helper.py`, standard library only, so
it starts in milliseconds and carries no batchrun heap). batchrun starts one
per slot in a session of its own (`helpers.SlotHelper`) and sends it jobs on
its stdin; it answers on its stdout. Each message is one `write`:

- request: `<length>\\n` then `length` bytes: job id, log directory,
  attempt, the number N of environment changes, N changes (`KEY=VALUE` sets,
  a bare `KEY` removes; the helper keeps the environment between jobs, so
  only what differs from the last job travels), and the command last (it
  alone may hold any byte), all separated by NUL;
- answers: `S <pid>\\n` once the job runs, `E <returncode> <m>\\n` once it
  ended and its record is written (returncode as `subprocess` gives it, -N
  for a signal; `m` 1 if the job's metrics file, `$BATCHRUN_METRICS`,
  exists then, else 0: batchrun then skips reading it), or
  `X <errno> <message>\\n` if it could not start.

Why a helper: the job's own shell is the process the helper forks, so the
job is exactly `/bin/sh -c LINE` (no wrapper shell, no `eval`, `$$` is the
line's shell, which leads its session and process group), and the exit
record is still written by a process that outlives batchrun.

Crash safety, in the order things happen after the job's shell exits:
1. the helper reaps it and writes `<log dir>/exit` (`<status> <attempt>\\n`,
   one write), but only for a job that exited and that no launch stopped
   (`.stopping`, written before a launch signals the job's group): a job
   ended by a signal or stopped gets no record, as under the old wrapper,
   which died with its job's process group at the first signal (so a job
   that traps SIGTERM and exits 0 is not taken for finished, and a launch
   reruns a stopped job rather than count it failed);
2. only then it closes its own descriptor of out.log, whose flock (taken by
   batchrun's side of the protocol's contract, here) is the job's liveness
   lock: so a reader that sees the lock free and then reads the record
   (`settle`) never finds a finished job without its record;
3. then it answers batchrun. If batchrun died (EOF, EPIPE) it exits after
   step 2; it reads its stdin only between jobs, so it always finishes
   waiting for a running job first.
It ignores nothing a job could inherit: signals it was started ignoring get
a no-op handler instead (reset by exec), and the two dispositions Python
ignores (SIGPIPE, SIGXFSZ) are restored for the job by `subprocess`
(`restore_signals`): every job starts with every signal at its default. Its session has no terminal,
so Ctrl-C and hang-ups never reach it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys

# One argument longer than this (its bytes plus the NUL) is refused by Linux (E2BIG).
MAX_ARG_STRLEN = 131_072
COMMAND_FILE = "command.sh"
# Written by the launch (`LocalExecutor.signal`) before it signals a job's
# group: the job was stopped, whatever status its shell exits with.
STOP_NAME = b".stopping"
# Set (to 1) in a job's environment by tests only: once the job ended and
# before its record is written, the helper SIGKILLs batchrun (its parent) and
# waits until it is dead, to place "the job ends in the instant batchrun is
# killed" exactly.
KILL_HOOK = "BATCHRUN_TEST_HELPER_KILL_BEFORE_RECORD"

_DEVNULL = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _reply(text: bytes) -> bool:
    """Send one answer; False when batchrun is gone."""
    try:
        os.write(1, text)
    except OSError:
        return False
    return True


def _argv(command: bytes, log_dir: bytes) -> list[bytes]:
    """`/bin/sh -c LINE`; a line too long for one argument is sourced from a file in its log directory."""
    if len(command) < MAX_ARG_STRLEN:
        return [b"/bin/sh", b"-c", command]
    path = log_dir + b"/" + COMMAND_FILE.encode()
    fd = os.open(path, _FLAGS, 0o644)
    try:
        view = memoryview(command)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return [b"/bin/sh", b"-c", b". '" + path.replace(b"'", b"'\\''") + b"'"]


def _open_logs(log_dir: bytes) -> tuple[int, int]:
    """The job's out.log (flocked: the liveness lock) and err.log, in a log directory cleared of its record."""
    try:
        os.mkdir(log_dir)
    except FileExistsError:
        # Only a directory that was there can hold an earlier record or stop note.
        for name in (b"/exit", b"/" + STOP_NAME):
            try:
                os.unlink(log_dir + name)
            except FileNotFoundError:
                pass
    out_fd = os.open(log_dir + b"/out.log", _FLAGS, 0o644)
    try:
        try:
            fcntl.flock(out_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A stray background process of an earlier attempt holds it;
            # this attempt runs regardless (adoption already declined it).
            pass
        err_fd = os.open(log_dir + b"/err.log", _FLAGS, 0o644)
    except BaseException:
        os.close(out_fd)
        raise
    return out_fd, err_fd


def _kill_hook(env: dict[bytes, bytes]) -> None:
    if env.get(KILL_HOOK.encode()) != b"1":
        return
    pid = os.getppid()
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while os.path.exists(f"/proc/{pid}/stat"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    return
        except OSError:
            return
        os.sched_yield()


def run_one(job_id: bytes, log_dir: bytes, attempt: bytes, command: bytes, env: dict[bytes, bytes]) -> bool:
    """Run one job to its end; False when batchrun is gone (the job is still waited for and recorded)."""
    try:
        out_fd, err_fd = _open_logs(log_dir)
    except OSError as error:
        return _reply(b"X %d %s\n" % (error.errno or errno.EIO, (error.strerror or "").encode()))
    try:
        try:
            proc = subprocess.Popen(
                _argv(command, log_dir), stdin=_DEVNULL, stdout=out_fd, stderr=err_fd, env=env, start_new_session=True
            )
        except OSError as error:
            os.close(out_fd)
            return _reply(b"X %d %s\n" % (error.errno or errno.EIO, (error.strerror or "").encode()))
        except ValueError:  # a NUL byte in the line or the environment: no exec could take it
            os.close(out_fd)
            return _reply(b"X %d embedded null byte\n" % errno.EINVAL)
    finally:
        os.close(err_fd)
    # out_fd stays open here until the record is written (see the module docstring).
    alive = _reply(b"S %d\n" % proc.pid)
    returncode = proc.wait()
    try:
        _kill_hook(env)
        if returncode >= 0 and not os.path.lexists(log_dir + b"/" + STOP_NAME):
            fd = os.open(log_dir + b"/exit", _FLAGS, 0o644)
            try:
                os.write(fd, b"%d %s\n" % (returncode, attempt))
            finally:
                os.close(fd)
    except OSError:
        pass  # disk full: no record, the job reruns (as a wrapper that could not write it)
    finally:
        os.close(out_fd)
    metrics = env.get(b"BATCHRUN_METRICS")
    wrote = b"1" if metrics is None or os.path.lexists(metrics) else b"0"
    return _reply(b"E %d %s\n" % (returncode, wrote)) and alive


def _read_request(stdin: object) -> tuple[bytes, bytes, bytes, bytes, list[bytes]] | None:
    header = stdin.readline()  # type: ignore[attr-defined]
    if not header.endswith(b"\n"):
        return None
    size = int(header)
    payload = stdin.read(size)  # type: ignore[attr-defined]
    if len(payload) != size:
        return None
    job_id, log_dir, attempt, count, rest = payload.split(b"\0", 4)
    parts = rest.split(b"\0", int(count))
    return job_id, log_dir, attempt, parts[-1], parts[:-1]


def _ignore_without_passing_on() -> None:
    """Make every signal batchrun was started ignoring (and SIGINT) a no-op handler.

    A SIGINT sent to the helper itself (never from a terminal: it has none)
    must not kill the record's writer. A handler, unlike SIG_IGN, is reset by
    exec, so every job starts with every signal at its default, however
    batchrun was started (`nohup`, `&` in a script, which ignore SIGHUP or
    SIGINT and SIGQUIT): a job behaves the same wherever it is launched from.
    SIGPIPE and SIGXFSZ stay ignored here, as Python sets them, and are reset
    for the job by `subprocess` (`restore_signals`).
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


def main() -> int:
    _ignore_without_passing_on()
    stdin = sys.stdin.buffer
    env: dict[bytes, bytes] = {}
    while True:
        request = _read_request(stdin)
        if request is None:
            return 0  # batchrun closed the pipe (or died): no job is running
        job_id, log_dir, attempt, command, changes = request
        for change in changes:
            key, sep, value = change.partition(b"=")
            if sep:
                env[key] = value
            else:
                env.pop(key, None)
        if not run_one(job_id, log_dir, attempt, command, env):
            return 0


if __name__ == "__main__":
    sys.exit(main())
