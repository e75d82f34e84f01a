"""The per-slot helper process: runs each job under the supervisor, one after another; or, with `--detach`, starts jobs that outlive it.

Run as a script (`python -I -S _slot_helper.py [--detach] [--launch NAME]`, standard library
only, so it starts in milliseconds and carries no batchrun heap). batchrun
starts one per slot in a session of its own (`helpers.SlotHelper`) and sends
it jobs on its stdin; it answers on its stdout. Each message is one `write`:

- request: `<length>\\n` then `length` bytes: job id, log directory,
  attempt, the job's start line for the journal in two parts (the text
  before and after its start time; both empty: batchrun writes it), the
  number N of environment changes, N changes (`KEY=VALUE` sets, a bare
  `KEY` removes; the helper keeps the environment between jobs, so only
  what differs from the last job travels), and the command last (it alone
  may hold any byte), all separated by NUL;
- cancel: `-\\n`, of the request before it, if that job has not started;
- answers: `S <pid> [<start>]\\n` once the job runs (`start`: the time
  its start line gives), `W\\n` for a request cancelled before its job
  started, `E <returncode> <m>\\n` (on the pipe `--ends FD` names, if
  given: batchrun's threads read the two kinds apart) once it
  ended and its record is written (returncode as `subprocess` gives it, -N
  for a signal; `m` 1 if the job's metrics file, `$BATCHRUN_METRICS`,
  exists then, else 0: batchrun then skips reading it), followed by what
  the job used, `<max_rss_kb> <user_cpu_s> <sys_cpu_s>`, as its record
  holds it (batchrun then need not read the record for it), or
  `X <errno> <message>\\n` if it could not start.

A request may come while the job before it still runs: batchrun sends the
next job of a slot ahead, so that it starts the moment the last one ended,
with no round trip through batchrun in between. While its job runs, the
helper watches both the job (a pidfd) and its stdin (`_watch`): it holds
such a request, and gives it back (`W`) once it waited `--hold` seconds or
once batchrun cancels it. Such a job is nothing in any record until it
starts, because the helper, not batchrun, appends its start line (`S`) to
the journal (`--journal`), right before the start, holding the journal
folder's flock shared from before the line until out.log's lock is taken
(`appendlock`). Under that lock it first checks that batchrun (its parent)
is still there: a launch that died with a job queued here must not have it
started behind the back of the next launch, which takes the same lock
exclusively before it reads the journal. So the next launch either finds
the start line and the job's lock held (it adopts the job), or no start
line (it runs the job itself). The check reads the parent pid, which
changes once batchrun's last thread has exited: the kernel closes a dying
process's files (its runs directory's lock too) just before it reparents
its children, so a next launch that took that lock, read the journal and
let go of the guard within those microseconds would be missed (an accepted
limit, as is a helper and batchrun dying together).

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
import fcntl
import os
import resource
import select
import signal
import sys
import time

# -I leaves this script's folder (and the supervisor's) off sys.path; a name
# mypy takes as true, as typing.TYPE_CHECKING (importing typing costs time).
TYPE_CHECKING = False
if TYPE_CHECKING or __package__:
    from batchrun.executors import appendlock, exitrecord, supervisor
    from batchrun.executors.local._requests import Requests
else:
    sys.path += [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__))]
    import appendlock
    import exitrecord
    import supervisor
    from _requests import Requests
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
# Set (to 1) by tests only: with the journal's lock held and batchrun found
# alive, SIGKILL batchrun and wait until it is dead, then go on (append the
# start line, start the job): "batchrun dies between the helper's check and
# its start line".
KILL_IN_LOCK_HOOK = "BATCHRUN_TEST_HELPER_KILL_IN_JOURNAL_LOCK"
# Set (to 1) by tests only: with a request read and no cancel of it found,
# right before the check, SIGKILL batchrun and wait until it is dead, then go
# on: "batchrun dies the instant before its helper starts a job".
KILL_BEFORE_CHECK_HOOK = "BATCHRUN_TEST_HELPER_KILL_BEFORE_CHECK"
# Set (to 1) by tests only: once the start line is appended and before the
# job starts, SIGKILL batchrun, then the helper itself: "batchrun is killed
# between a job's start record and its process".
KILL_AFTER_LINE_HOOK = "BATCHRUN_TEST_HELPER_KILL_AFTER_START_LINE"
# Set by tests only, to a path that does not exist yet: once the start line
# is appended and before the job starts, the helper creates that file and
# SIGKILLs itself (once: the launch's next helper for the job finds the file).
DIE_AFTER_LINE_HOOK = "BATCHRUN_TEST_HELPER_DIE_AFTER_START_LINE"
# The journal (`--journal`), opened for appending, its folder (whose flock
# guards the start lines, `appendlock`) and batchrun's pid.
_journal: int | None = None
_guard: int | None = None
_launch_pid = 0
# How long a request may wait behind the running job before it is given back
# (`--hold`, seconds); 0: requests are read between jobs only.
_hold = 0.0
# Where end answers go (`--ends FD`, a pipe of their own; else stdout with the others).
_ends = 1


def _reply(text: bytes, fd: int = 1) -> bool:
    """Send one answer (an end answer to `_ends`); False when batchrun is gone."""
    try:
        os.write(fd, text)
    except OSError:
        return False
    return True


def _kill_hook(env: dict[bytes, bytes], hook: str = KILL_HOOK) -> None:
    if env.get(hook.encode()) != b"1":
        return
    pid = os.getppid()
    if pid != _launch_pid:
        # batchrun is dead already (another helper's hook killed it): the parent is now init or a subreaper, and
        # the wait below would spin for ever, holding the start lines' guard (the next launch then waits for ever).
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    # Dead once this process is reparented: its last thread has exited (its
    # main thread is a zombie, and its files may still be open, before).
    while os.getppid() == pid:
        os.sched_yield()


def _unguard() -> None:
    assert _guard is not None
    fcntl.flock(_guard, fcntl.LOCK_UN)


def _start(log_dir: bytes, attempt: bytes, command: bytes, env: dict[bytes, bytes], line: tuple[bytes, bytes] | None = None) -> tuple[supervisor.Job, bytes] | bytes | None:
    """The started job and its start time as its start line gives it (`line`: the text around it), or the `X` answer saying why it could not start; None when batchrun is gone (nothing started)."""
    start = b""
    locked = None
    try:
        if line is not None and _journal is not None and _guard is not None:
            _kill_hook(env, KILL_BEFORE_CHECK_HOOK)
            fcntl.flock(_guard, fcntl.LOCK_SH)
            locked = _unguard
            if os.getppid() != _launch_pid:
                return None
            _kill_hook(env, KILL_IN_LOCK_HOOK)
            start = b"%.6f" % time.time()
            appendlock.append_locked(_journal, line[0] + start + line[1])
            if env.get(KILL_AFTER_LINE_HOOK.encode()) == b"1":
                _kill_hook(env, KILL_AFTER_LINE_HOOK)
                os.kill(os.getpid(), signal.SIGKILL)
            once = env.get(DIE_AFTER_LINE_HOOK.encode())
            if once and not os.path.lexists(once):
                os.close(os.open(once, os.O_WRONLY | os.O_CREAT, 0o644))
                os.kill(os.getpid(), signal.SIGKILL)
        return supervisor.start(command, log_dir, None if _own_env else env, attempt, locked=locked), start
    except OSError as error:
        return b"X %d %s\n" % (error.errno or errno.EIO, (error.strerror or "").encode())
    except ValueError:  # a NUL byte in the line or the environment: no exec could take it
        return b"X %d embedded null byte\n" % errno.EINVAL
    finally:
        if locked is not None:
            locked()  # again, if the start failed before out.log's lock (a second unlock does nothing)


def run_one(
    log_dir: bytes, attempt: bytes, command: bytes, env: dict[bytes, bytes], line: tuple[bytes, bytes] | None = None, requests: Requests | None = None
) -> bool:
    """Run one job to its end; False when batchrun is gone (the job is still waited for and recorded)."""
    started = _start(log_dir, attempt, command, env, line)
    if started is None:
        return False
    if isinstance(started, bytes):
        return _reply(started)
    job, start = started
    if env.get(DIE_HOOK.encode()) == b"1":
        os.kill(os.getpid(), signal.SIGKILL)
    alive = _reply(b"S %d %s\n" % (job.pid, start) if start else b"S %d\n" % job.pid)
    # Given-back requests' environment changes, made once this job is recorded (its own environment decides its hooks and metrics path).
    deferred: list[bytes] = []
    if alive and requests is not None and _hold:
        alive = _watch(job, requests, deferred)
    ended = supervisor.finish(job, before_record=lambda: _kill_hook(env))
    _kill_hook(env, KILL_AFTER_HOOK)
    metrics = env.get(b"BATCHRUN_METRICS")
    wrote = b"1" if metrics is None or os.path.lexists(metrics) else b"0"
    _apply(env, deferred)
    usage = ended.rusage
    return _reply(b"E %d %s %d %.3f %.3f\n" % (ended.returncode, wrote, usage.ru_maxrss, usage.ru_utime, usage.ru_stime), _ends) and alive


def _watch(job: supervisor.Job, requests: Requests, deferred: list[bytes]) -> bool:
    """While the job runs, hold the request batchrun queues behind it: it is given back (`W`) once cancelled or once it waited `_hold`; False when batchrun is gone.

    A request still held when the job ends is the next one `main` starts,
    without a round trip through batchrun.
    """
    try:
        pidfd = os.pidfd_open(job.pid)
    except OSError:
        return True  # a kernel without pidfds: requests wait for the job's end (batchrun queues none there)
    try:
        held: float | None = None
        while True:
            # A request may have come with the one before it (read already): look before waiting.
            if held is None and requests.ready():
                held = time.monotonic()
            if held is not None and (requests.cancelled() or time.monotonic() >= held + _hold):
                request = requests.next()
                assert request is not None
                deferred += request[5]  # batchrun counts its changes as made
                requests.withdrawn()  # drops its cancel, if one came
                held = None
                if not _reply(b"W\n"):
                    return False
                continue
            timeout = None if held is None else max(0.0, held + _hold - time.monotonic())
            ready = select.select([pidfd] if requests.eof else [pidfd, requests.fd], [], [], timeout)[0]
            if pidfd in ready:
                return True
            if ready:
                requests.fill()
    finally:
        os.close(pidfd)


def serve_detached(requests: Requests) -> int:
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
        request = requests.next()
        if request is None:
            break
        _job_id, log_dir, attempt, _line, command, changes = request
        _apply(env, changes)
        started = _start(log_dir, attempt, command, env)
        if isinstance(started, bytes):
            listening = _reply(started)
        elif started is not None:
            job = started[0]
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


def main(argv: list[str]) -> int:
    supervisor.shield_signals()
    # Signals batchrun was started with blocked (under `perf`, by some process
    # managers) stay blocked in this process, and `supervisor.start` would then
    # unblock them in each job with a preexec function, which costs a fork of
    # this process (about 0.2 ms) instead of a vfork: unblock them here once.
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.environb.clear()  # the jobs' environment is what batchrun sends (`_apply`)
    global _journal, _guard, _launch_pid, _hold, _ends  # noqa: PLW0603 - one per process
    _launch_pid = os.getppid()
    pairs = argv[1:] if argv[:1] == ["--detach"] else argv
    options = dict(zip(pairs[::2], pairs[1::2], strict=True))  # `--name value` pairs
    _ends = int(options.get("--ends", 1))
    if "--launch" in options:
        exitrecord.set_launch(options["--launch"])  # its jobs' records go to the launch's exit log
    if "--journal" in options:
        _journal = os.open(options["--journal"], os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        _guard = appendlock.guard(options["--journal"])
        _hold = float(options.get("--hold", 0))
    requests = Requests()
    if argv[:1] == ["--detach"]:
        return serve_detached(requests)
    # The strays of its jobs are reparented here, and reaped as jobs end, rather than to the launch.
    supervisor.become_subreaper()
    env: dict[bytes, bytes] = {}
    while True:
        request = requests.next()
        if request is None:
            return 0  # batchrun closed the pipe (or died): no job is running here
        _job_id, log_dir, attempt, line, command, changes = request
        _apply(env, changes)
        if requests.withdrawn():
            if requests.eof or not _reply(b"W\n"):
                return 0  # batchrun is gone: the job must not start (see the module docstring)
            continue
        if not run_one(log_dir, attempt, command, env, line, requests):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
