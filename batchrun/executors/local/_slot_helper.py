"""The per-slot helper process: runs each job under the supervisor, one after another; or, with `--detach`, starts jobs that outlive it.

Run as a script (`python -I -S _slot_helper.py [--detach]`, standard library
only, so it starts in milliseconds and carries no batchrun heap). batchrun
starts one per slot in a session of its own (`helpers.SlotHelper`) and sends
it jobs on its stdin; it answers on its stdout. Each message is one `write`:

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

Everything about running the job (its logs and lock, `/bin/sh -c LINE`, the
wait, the exit record, the stop note, the order that keeps it crash-safe) is
the supervisor's (`executors/supervisor.py`, imported from there). The
helper adds only the protocol: it answers batchrun after the record is
written and the lock released; if batchrun died (EOF, EPIPE) it exits once
its job is recorded; it reads its stdin only between jobs, so it always
finishes waiting for a running job first. Its session has no terminal, so
Ctrl-C and hang-ups never reach it.

With `--detach` (a launch's `--detach`), the same requests each fork a
supervisor that starts the job, answers `S <pid>` (or `X ...`) and stays with
the job until its record is written; the helper itself exits at EOF, and
the supervisors outlive it and batchrun.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

# -I leaves this script's folder (and the supervisor's) off sys.path; a name
# mypy takes as true, as typing.TYPE_CHECKING (importing typing costs time).
TYPE_CHECKING = False
if TYPE_CHECKING or __package__:
    from batchrun.executors import supervisor
else:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import supervisor

# As the supervisor's: tests and batchrun's side name them here.
MAX_ARG_STRLEN = supervisor.MAX_ARG_STRLEN
COMMAND_FILE = supervisor.COMMAND_FILE
# Set (to 1) in a job's environment by tests only: once the job ended and
# before its record is written, the helper SIGKILLs batchrun (its parent) and
# waits until it is dead, to place "the job ends in the instant batchrun is
# killed" exactly.
KILL_HOOK = "BATCHRUN_TEST_HELPER_KILL_BEFORE_RECORD"


def _reply(text: bytes) -> bool:
    """Send one answer; False when batchrun is gone."""
    try:
        os.write(1, text)
    except OSError:
        return False
    return True


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


def _start(log_dir: bytes, attempt: bytes, command: bytes, env: dict[bytes, bytes]) -> supervisor.Job | bytes:
    """The started job, or the `X` answer saying why it could not start."""
    try:
        return supervisor.start(command, log_dir, env, attempt)
    except OSError as error:
        return b"X %d %s\n" % (error.errno or errno.EIO, (error.strerror or "").encode())
    except ValueError:  # a NUL byte in the line or the environment: no exec could take it
        return b"X %d embedded null byte\n" % errno.EINVAL


def run_one(log_dir: bytes, attempt: bytes, command: bytes, env: dict[bytes, bytes]) -> bool:
    """Run one job to its end; False when batchrun is gone (the job is still waited for and recorded)."""
    job = _start(log_dir, attempt, command, env)
    if isinstance(job, bytes):
        return _reply(job)
    alive = _reply(b"S %d\n" % job.pid)
    ended = supervisor.finish(job, before_record=lambda: _kill_hook(env))
    metrics = env.get(b"BATCHRUN_METRICS")
    wrote = b"1" if metrics is None or os.path.lexists(metrics) else b"0"
    return _reply(b"E %d %s\n" % (ended.returncode, wrote)) and alive


def detach_one(log_dir: bytes, attempt: bytes, command: bytes, env: dict[bytes, bytes]) -> bool:
    """Fork a supervisor that starts the job and stays with it; answer as it says. False when batchrun is gone."""
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        try:
            os.close(read_end)
            # This helper lets the kernel reap its supervisors; each waits for its own job.
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            job = _start(log_dir, attempt, command, env)
            os.write(write_end, job if isinstance(job, bytes) else b"S %d\n" % job.pid)
            os.close(write_end)
            if not isinstance(job, bytes):
                # Let go of batchrun's pipes: nothing of it waits for this process.
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                supervisor.finish(job)
        finally:
            os._exit(0)
    os.close(write_end)
    with open(read_end, "rb") as f:
        answer = f.read()
    return _reply(answer or b"X %d the job's supervisor died\n" % errno.EIO)


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


def main(argv: list[str]) -> int:
    detach = argv[:1] == ["--detach"]
    supervisor.shield_signals()
    if detach:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    serve = detach_one if detach else run_one
    stdin = sys.stdin.buffer
    env: dict[bytes, bytes] = {}
    while True:
        request = _read_request(stdin)
        if request is None:
            return 0  # batchrun closed the pipe (or died): no job is running here
        _job_id, log_dir, attempt, command, changes = request
        for change in changes:
            key, sep, value = change.partition(b"=")
            if sep:
                env[key] = value
            else:
                env.pop(key, None)
        if not serve(log_dir, attempt, command, env):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
