"""batchrun's side of the per-slot helpers that start local jobs (`_slot_helper`).

A launch keeps one long-lived helper process per job running at once. A job
start is one `write` of a request and one `read` of the answer; its end one
`read`. The helper, not batchrun, runs the job under the supervisor
(`/bin/sh -c LINE`, its exit record), so batchrun's 60 MB process never forks
per job, and a kill -9 of batchrun leaves every running job with the process
that records it. See `_slot_helper` for the protocol and `supervisor` for the
order that keeps it crash-safe. `--detach` uses one helper in its detach mode
for all its jobs (`Dispatcher`).

A helper that dies (SIGKILL) leaves its job running in the job's own
session. The launch is a child subreaper (`supervisor.become_subreaper`),
so the job is reparented to it: the job's thread reaps it, learning its real
status, and writes its exit record as the helper would have (the same
`record_end`, which honours a stop note). Where that cannot be (no subreaper
outside Linux, or the helper died between reaping the job and recording it)
the thread waits for out.log's lock, as for a job adopted from a killed
launch, and takes the exit record if there is one; without one the job
ended unseen (`Unrecorded.LOST`): never a failure, it runs again. When the
helper and batchrun die together, nobody can learn the status: the next
launch finds no record and runs the job once more (an accepted limit).
"""

from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
import time
import weakref
from pathlib import Path

from batchrun.executors.jobfiles import job_lock_held, wait_unwatched
from batchrun.executors.processes import job_processes, reap_strays
from batchrun.executors.supervisor import record_end

__all__ = ["HELPER_PATH", "Dispatcher", "HelperGone", "HelperPool", "SlotHelper"]

HELPER_PATH = str(Path(__file__).with_name("_slot_helper.py"))
# How often the job of a dead helper is looked at.
_ORPHAN_POLL = 0.05
# How long a helper whose pipe closed may take to be gone (it was killed: milliseconds).
_HELPER_EXIT = 5.0


class HelperGone(OSError):
    """The helper process died (its pipe closed); `sent`: after it may have read a request."""

    def __init__(self, sent: bool = True) -> None:
        super().__init__(errno.EPIPE, "the job's helper process died")
        self.sent = sent


class SlotHelper:
    """One helper process and the job it runs now, if any. Used by one thread at a time."""

    def __init__(self, cwd: str | None = None, mode: tuple[str, ...] = (), launch: str | None = None) -> None:
        self.launch = launch
        self.proc = subprocess.Popen(
            # -I -S: standard library only, no site-packages scan, nothing from PYTHON* variables.
            [sys.executable, "-I", "-S", HELPER_PATH, *mode, *(("--launch", launch) if launch else ())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            # Its own session: Ctrl-C on batchrun's terminal and a kill of batchrun's group pass it by.
            start_new_session=True, cwd=cwd, bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out = self.proc.stdin.fileno()
        self._in = self.proc.stdout.fileno()
        self._buf = b""
        self._env: dict[str, str] = {}
        self.gone = False
        # The running job: pid, log directory, attempt.
        self.job: tuple[int, str, int] | None = None
        # The last job that ended left no metrics file (its helper looked).
        self.no_metrics = False
        # What the last job that ended used, as its helper said: (max_rss_kb, user_cpu_s, sys_cpu_s).
        self.usage: tuple[int, float, float] | None = None

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> int:
        """Start a job; its pid (also its process group and session).

        Raises:
            HelperGone: the helper died before it answered.
            OSError: the helper could not create the log files or fork.
        """
        old = self._env
        changes = [f"{k}={v}" for k, v in env.items() - old.items()]
        changes += [k for k in old.keys() - env.keys()]
        attempt = env.get("BATCHRUN_ATTEMPT", "")
        payload = "\0".join([job_id, log_dir, attempt, str(len(changes)), *changes, command]).encode("utf-8", "surrogateescape")
        self._write(b"%d\n%s" % (len(payload), payload))
        self._env = env
        try:
            kind, rest = self._answer()
        except HelperGone:
            # It died after it read the request: did the job start? (Its answer may not have been written yet.)
            found = self._started_unanswered(job_id, log_dir)
            if found is None:
                raise HelperGone(sent=False) from None  # it did not: another helper starts it
            kind, rest = b"S", b"%d" % found
        if kind == b"X":
            code, _, message = rest.partition(b" ")
            raise OSError(int(code), message.decode(errors="replace"))
        pid = int(rest)
        self.job = (pid, log_dir, int(attempt) if attempt.isdigit() else 0)
        return pid

    def _started_unanswered(self, job_id: str, log_dir: str) -> int | None:
        """After the helper died mid-start: the pid of the job's shell if the job runs, None if it never started.

        Its out.log lock is held from before the fork until the last process
        of the job ends, so a free lock (once the helper is gone) means no
        process of this start exists; a held one, that the job's shell (the
        leader of its own group, its environment naming the job) is there,
        or about to exec.

        Raises:
            HelperGone: the lock is held but the shell cannot be found.
        """
        try:
            self.proc.wait(_HELPER_EXIT)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + _HELPER_EXIT
        while job_lock_held(log_dir):
            for pid, group in job_processes(job_id, log_dir):
                if pid == group:
                    return pid
            if time.monotonic() >= deadline:
                raise HelperGone()
            time.sleep(_ORPHAN_POLL)
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the running job ended and its record is written; its returncode (-N: signal N), None on timeout."""
        assert self.job is not None
        if not self.gone and b"\n" not in self._buf and timeout is not None:
            ready, _, _ = select.select([self._in], [], [], timeout)
            if not ready:
                return None
        try:
            _kind, rest = self._answer()
            code, wrote, *used = rest.split(b" ")
            returncode: int | None = int(code)
            self.no_metrics = wrote == b"0"
            self.usage = (int(used[0]), float(used[1]), float(used[2])) if len(used) == 3 else None
        except HelperGone:
            self.no_metrics = False
            self.usage = None
            returncode = self._wait_orphan(timeout)
        if returncode is not None:
            self.job = None
        return returncode

    def _wait_orphan(self, timeout: float | None) -> int | None:
        """The helper died while its job ran: reap the job, reparented to this subreaper, and record it; None on timeout.

        A job that is no child of ours (see the module docstring) is waited
        for by its lock, and its record read.
        """
        assert self.job is not None
        pid, log_dir, attempt = self.job
        deadline = None if timeout is None else time.monotonic() + timeout
        # Its pipes close before the kernel reparents its children: once it is
        # reaped, the job is ours (or nobody's we can reach).
        try:
            self.proc.wait(_HELPER_EXIT)
        except subprocess.TimeoutExpired:
            pass
        while True:
            try:
                reaped, wait_status, _ = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                return wait_unwatched(log_dir, attempt or None, left, _ORPHAN_POLL)
            if reaped == pid:
                returncode = os.waitstatus_to_exitcode(wait_status)
                record_end(os.fsencode(log_dir), returncode, str(attempt or ""), launch=self.launch)
                reap_strays(pid)
                return returncode
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(_ORPHAN_POLL)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._out, view) :]
        except OSError:
            self._lost()
            raise HelperGone(sent=False) from None

    def _answer(self) -> tuple[bytes, bytes]:
        while b"\n" not in self._buf:
            data = b"" if self.gone else os.read(self._in, 4096)
            if not data:
                self._lost()
                raise HelperGone()
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        kind, _, rest = line.partition(b" ")
        return kind, rest

    def _lost(self) -> None:
        if not self.gone:
            self.gone = True
            self.close()

    def close(self) -> None:
        """End the helper: it exits once its job (if any) ended and is recorded."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        if self.job is None:
            self.proc.wait()


class Dispatcher(SlotHelper):
    """A helper in its detach mode (`--detach`): it supervises every job it starts, outliving batchrun; nothing waits for it here."""

    def __init__(self, cwd: str | None = None, launch: str | None = None) -> None:
        super().__init__(cwd, ("--detach",), launch)
        # It forks at once and the process started here exits: the one that
        # serves (and outlives batchrun) is no child of batchrun's to reap.
        self.proc.wait()

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> int:
        pid = super().start(job_id, command, log_dir, env)
        self.job = None  # the helper, not this side, waits for it
        return pid


class HelperPool:
    """The launch's helpers: an idle one serves each start, a new one is made when none is idle."""

    def __init__(self, cwd: str | None = None, launch: str | None = None) -> None:
        self.cwd = cwd
        self.launch = launch  # the exit log its helpers append to (`exitlog`)
        self._idle: list[SlotHelper] = []
        # pid of a running job -> its helper
        self._busy: dict[int, SlotHelper] = {}
        # A pool dropped without `close` (a test's executor, a launch that
        # failed early) still lets its helpers go.
        weakref.finalize(self, _close_all, self._idle, self._busy)

    def warm(self, count: int) -> None:
        """Have `count` helpers idle: their interpreters start while the launch loads doit (about 20 ms each, off the first jobs' way)."""
        while len(self._idle) < count:
            self._idle.append(SlotHelper(self.cwd, launch=self.launch))

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> int:
        """Start a job in an idle helper (or a new one); its pid."""
        while True:
            try:
                helper = self._idle.pop()
            except IndexError:
                helper = SlotHelper(self.cwd, launch=self.launch)
            try:
                pid = helper.start(job_id, command, log_dir, env)
            except HelperGone as gone:
                if not gone.sent:
                    continue  # it died idle, before the request: another helper takes it
                raise
            except OSError:
                self._idle.append(helper)
                raise
            self._busy[pid] = helper
            return pid

    def wait(self, pid: int, timeout: float | None = None) -> tuple[int, bool, tuple[int, float, float] | None] | None:
        """The job's returncode, whether it surely left no metrics file, and what it used if its helper said; None on timeout."""
        helper = self._busy[pid]
        returncode = helper.wait(timeout)
        if returncode is None:
            return None
        del self._busy[pid]
        if not helper.gone:
            self._idle.append(helper)
        return returncode, helper.no_metrics, helper.usage

    def close(self) -> None:
        """End every helper; busy ones exit once their jobs are recorded (a stop that gave up on a job)."""
        _close_all(self._idle, self._busy)


def _close_all(idle: list[SlotHelper], busy: dict[int, SlotHelper]) -> None:
    for helper in [*idle, *busy.values()]:
        helper.close()
    idle.clear()
