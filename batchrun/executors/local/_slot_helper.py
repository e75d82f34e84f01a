"""The per-slot helper process: runs each job under the supervisor, one after another; or, with `--detach`, starts jobs that outlive it.

Run as a script (`python -I -S _slot_helper.py [--detach] [--launch NAME]`, standard library
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
  exists then, else 0: batchrun then skips reading it), followed by what
  the job used, `<max_rss_kb> <user_cpu_s> <sys_cpu_s>`, as its record
  holds it (batchrun then need not read the record for it), or
  `X <errno> <message>\\n` if it could not start.

Everything about running the job (its logs and lock, `/bin/sh -c LINE`, the
wait, the exit record, the stop note, the order that keeps it crash-safe,
being the subreaper of its jobs' strays) is the supervisor's (`executors/supervisor.py`, imported from there). The
helper adds only the protocol: it answers batchrun after the record is
written and the lock released; if batchrun died (EOF, EPIPE) it exits once
its job is recorded; it reads its stdin only between jobs, so it always
finishes waiting for a running job first. Its session has no terminal, so
Ctrl-C and hang-ups never reach it.

With `--detach` (a launch's `--detach`), the helper answers `S <pid>` (or
`X ...`) to each request as soon as the job runs, and supervises all of them
at once: at EOF it lets go of batchrun's pipes and stays, outliving batchrun,
until each job has ended and been recorded. One process for the launch's
jobs, holding one descriptor (out.log, the job's lock) per running job: a
supervisor process per job would cost about 1.5 MB each.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import sys

# -I leaves this script's folder (and the supervisor's) off sys.path; a name
# mypy takes as true, as typing.TYPE_CHECKING (importing typing costs time).
TYPE_CHECKING = False
if TYPE_CHECKING or __package__:
    from batchrun.executors import exitrecord, supervisor
else:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import exitrecord
    import supervisor
if TYPE_CHECKING:
    from typing import Any

# As the supervisor's: tests and batchrun's side name them here.
MAX_ARG_STRLEN = supervisor.MAX_ARG_STRLEN
COMMAND_FILE = supervisor.COMMAND_FILE
# Set (to 1) in a job's environment by tests only: once the job ended and
# before its record is written, the helper SIGKILLs batchrun (its parent) and
# waits until it is dead, to place "the job ends in the instant batchrun is
# killed" exactly.
KILL_HOOK = "BATCHRUN_TEST_HELPER_KILL_BEFORE_RECORD"
# The same once the record is written (appended to the launch's exit log),
# before the helper answers: "batchrun is killed right after the append".
KILL_AFTER_HOOK = "BATCHRUN_TEST_HELPER_KILL_AFTER_RECORD"
# Set (to 1) in a job's environment by tests only: once the job runs and
# before it answers `S`, the helper SIGKILLs itself, to place "the helper
# dies between starting its job and saying so" exactly.
DIE_HOOK = "BATCHRUN_TEST_HELPER_DIE_BEFORE_ANSWER"


def _reply(text: bytes) -> bool:
    """Send one answer; False when batchrun is gone."""
    try:
        os.write(1, text)
    except OSError:
        return False
    return True


def _kill_hook(env: dict[bytes, bytes], hook: str = KILL_HOOK) -> None:
    if env.get(hook.encode()) != b"1":
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
        return supervisor.start(command, log_dir, None if _own_env else env, attempt)
    except OSError as error:
        return b"X %d %s\n" % (error.errno or errno.EIO, (error.strerror or "").encode())
    except ValueError:  # a NUL byte in the line or the environment: no exec could take it
        return b"X %d embedded null byte\n" % errno.EINVAL


def run_one(log_dir: bytes, attempt: bytes, command: bytes, env: dict[bytes, bytes]) -> bool:
    """Run one job to its end; False when batchrun is gone (the job is still waited for and recorded)."""
    job = _start(log_dir, attempt, command, env)
    if isinstance(job, bytes):
        return _reply(job)
    if env.get(DIE_HOOK.encode()) == b"1":
        os.kill(os.getpid(), signal.SIGKILL)
    alive = _reply(b"S %d\n" % job.pid)
    ended = supervisor.finish(job, before_record=lambda: _kill_hook(env))
    _kill_hook(env, KILL_AFTER_HOOK)
    metrics = env.get(b"BATCHRUN_METRICS")
    wrote = b"1" if metrics is None or os.path.lexists(metrics) else b"0"
    usage = ended.rusage
    return _reply(b"E %d %s %d %.3f %.3f\n" % (ended.returncode, wrote, usage.ru_maxrss, usage.ru_utime, usage.ru_stime)) and alive


def serve_detached(stdin: object) -> int:
    """`--detach`: start each requested job and answer; after EOF, stay until every job has ended and been recorded."""
    if os.fork() > 0:
        os._exit(0)  # batchrun reaps this at once; the child serves, no child of batchrun's
    supervisor.become_subreaper()  # not inherited through fork: the strays of its jobs are its own to reap
    # One descriptor per running job: as many as this process may have.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    jobs: dict[int, supervisor.Job] = {}
    env: dict[bytes, bytes] = {}
    listening = True
    while listening:
        _reap(jobs, os.WNOHANG)
        request = _read_request(stdin)
        if request is None:
            break
        _job_id, log_dir, attempt, command, changes = request
        _apply(env, changes)
        job = _start(log_dir, attempt, command, env)
        if isinstance(job, bytes):
            listening = _reply(job)
        else:
            jobs[job.pid] = job
            listening = _reply(b"S %d\n" % job.pid)
    # Let go of batchrun's pipes (it waits for nothing more here), then of each job once recorded.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    while jobs:
        _reap(jobs, 0)
    return 0


def _reap(jobs: dict[int, supervisor.Job], options: int) -> None:
    """Record every job that has ended (with `os.WNOHANG`: none may have; with 0: wait for one)."""
    while jobs:
        pid, wait_status, rusage = os.wait4(-1, options)
        if pid == 0:
            return
        job = jobs.pop(pid, None)
        if job is not None:
            supervisor.ended(job, wait_status, rusage)
        if options == 0:
            return


# Whether this process's own environment is the jobs' (`_apply` keeps it so): Popen
# then passes it on as it is, rather than building it anew from `env` for each job
# (about 40 us a job for a few dozen variables).
_own_env = True
# The `KEY=VALUE` buffers this process's environment points at, one per key.
# `os.environb` sets a variable with glibc's setenv, which never frees the
# string it made: a job's own values (its id, its log directory) would cost
# about 200 bytes a job for the helper's whole life, 100 MB over 500,000
# jobs. putenv takes a buffer this process owns instead, freed here once
# the environment no longer points at it.
_held: dict[bytes, object] = {}
# libc and ctypes' string buffer, loaded by the first `_putenv` (ctypes is not
# needed before a job's environment is set).
_c: tuple[Any, Any] | None = None


def _putenv(key: bytes, change: bytes, sep: bytes) -> bool:
    """Set (`KEY=VALUE`) or remove (a bare `KEY`) one variable of this process's environment; False if this cannot be done here."""
    global _c  # noqa: PLW0603 - one per process
    if not key:
        return False  # no name (`=VALUE`): `env` itself goes to Popen, which says why
    if _c is None:
        try:
            import ctypes  # noqa: PLC0415 - see `_c`

            _c = (ctypes.CDLL(None), ctypes.create_string_buffer)
        except (ImportError, OSError):
            return False
    libc, string_buffer = _c
    if sep:
        buffer = string_buffer(change)
        if libc.putenv(buffer) != 0:
            return False
        _held[key] = buffer  # the one it replaced is no longer pointed at: dropping it frees it
    else:
        libc.unsetenv(key)
        _held.pop(key, None)
    return True


def _apply(env: dict[bytes, bytes], changes: list[bytes]) -> None:
    """Apply a request's environment changes (`KEY=VALUE` sets, a bare `KEY` removes) to `env` and to this process's environment."""
    global _own_env  # noqa: PLW0603 - one per process
    for change in changes:
        key, sep, value = change.partition(b"=")
        if sep:
            env[key] = value
        else:
            env.pop(key, None)
        if _own_env and not _putenv(key, change, sep):
            _own_env = False


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
    supervisor.shield_signals()
    # Signals batchrun was started with blocked (under `perf`, by some process
    # managers) stay blocked in this process, and `supervisor.start` would then
    # unblock them in each job with a preexec function, which costs a fork of
    # this process (about 0.2 ms) instead of a vfork: unblock them here once.
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.environb.clear()  # the jobs' environment is what batchrun sends (`_apply`)
    if argv[-2:-1] == ["--launch"]:
        exitrecord.set_launch(argv[-1])  # its jobs' records go to the launch's exit log
        argv = argv[:-2]
    stdin = sys.stdin.buffer
    if argv[:1] == ["--detach"]:
        return serve_detached(stdin)
    # The strays of its jobs are reparented here, and reaped as jobs end, rather than to the launch.
    supervisor.become_subreaper()
    env: dict[bytes, bytes] = {}
    while True:
        request = _read_request(stdin)
        if request is None:
            return 0  # batchrun closed the pipe (or died): no job is running here
        _job_id, log_dir, attempt, command, changes = request
        _apply(env, changes)
        if not run_one(log_dir, attempt, command, env):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
