"""batchrun's side of the per-slot helpers that start local jobs (`_slot_helper`).

A launch keeps one long-lived helper process per job running at once. A job
start is one `write` of a request and one `read` of the answer; its end one
`read`. The helper, not batchrun, runs the job under the supervisor
(`/bin/sh -c LINE`, its exit record), so batchrun's 60 MB process never forks
per job, and a kill -9 of batchrun leaves every running job with the process
that records it. See `_slot_helper` for the protocol and `supervisor` for the
order that keeps it crash-safe. `--detach` uses one helper in its detach mode
for all its jobs (`Dispatcher`).

A slot's next job may be sent while the slot's job still runs: the helper
holds it and starts it the moment that job ends, with no round trip through
batchrun between the two (on two cores, that round trip left each core a
fifth idle). The helper then writes the job's start line to the journal
itself, so a job that waits is nothing in any record; it gives the job back
(`W`) once it waited `QUEUE_HOLD`, so that no job waits behind a long one,
or once the launch cancels it (a stop). `pool.HelperPool` keeps a helper
per slot; the launch's scheduler decides which job may wait where.

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

import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from batchrun.executors.local.deadhelper import started_unanswered, wait_orphan
from batchrun.executors.local.tickets import Answers, HelperGone, Ticket

__all__ = ["HELPER_PATH", "QUEUE_HOLD", "Dispatcher", "HelperGone", "SlotHelper", "StartLine", "Ticket", "queues_starts"]

HELPER_PATH = str(Path(__file__).with_name("_slot_helper.py"))
# How often a job queued in a helper looks whether the launch withdraws it (a stop).
_GIVE_UP_POLL = 0.05
# How long a helper holds a job queued behind the one it runs before it gives it
# back (`W`), so that no job waits long behind a long one: a slot's jobs then
# run back to back only when they are short.
QUEUE_HOLD = 0.02
# A start line for the journal: the text before and after its start time (`Journal.start_line`).
StartLine = tuple[str, str]


def queues_starts() -> bool:
    """Whether helpers here can hold a job queued behind the one they run: they watch the running job through a pidfd (Linux 5.3)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


class SlotHelper:
    """One helper process and the jobs sent to it: one running, and at most one queued behind it.

    Threads share it: the one waiting for a running job's end and the one
    whose job is queued. Answers come in order per kind (`S`, `X`, `W` in
    the order of the requests, on the helper's stdout; `E` in the order of
    the starts, on a pipe of their own, so those two threads each read their
    own: one pipe for both woke one of them per job, a third of the launch's
    context switches). Whichever thread waits on a pipe reads it for all
    answers there (`_await`), and wakes the thread an answer is for. A job's
    `E` may be read before its `S` (from the other pipe): it waits in
    `_early` until the `S` is. Plain locks, not a `threading.Condition`: its
    waits and notifications, written in Python, cost more than the overlap
    of two jobs of a slot wins.
    """

    def __init__(self, cwd: str | None = None, mode: tuple[str, ...] = (), launch: str | None = None, journal: str | None = None) -> None:
        self.launch = launch
        self._ends = not mode  # a detached helper answers no E
        options = [*(("--launch", launch) if launch else ()), *(("--journal", journal, "--hold", str(QUEUE_HOLD)) if journal else ())]
        # End answers come on a pipe of their own: the thread waiting for its job's end and the one whose
        # job waits behind it each read their own answers, and neither is woken to hand the other one its.
        ends = os.pipe() if self._ends else None
        try:
            self.proc = subprocess.Popen(
                # -I -S: standard library only, no site-packages scan, nothing from PYTHON* variables.
                [sys.executable, "-I", "-S", HELPER_PATH, *mode, *options, *(("--ends", str(ends[1])) if ends else ())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                # Its own session: Ctrl-C on batchrun's terminal and a kill of batchrun's group pass it by.
                start_new_session=True, cwd=cwd, bufsize=0, pass_fds=ends[1:] if ends else (),
            )
        except BaseException:
            for fd in ends or ():
                os.close(fd)
            raise
        if ends:
            os.close(ends[1])  # the helper's alone: its death closes the pipe
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out = self.proc.stdin.fileno()
        self._starts_in = Answers(self.proc.stdout.fileno())  # S, X, W
        self._ends_in = Answers(ends[0]) if ends else self._starts_in  # E
        self._env: dict[str, str] = {}
        self.gone = False
        self._lock = threading.Lock()  # the writes, and the queues of tickets
        self._starting: deque[Ticket] = deque()  # sent, not yet answered S, X or W
        self._running: deque[Ticket] = deque()  # answered S, not yet E
        self._early: deque[bytes] = deque()  # E answers read before their job's S answer (the other pipe's)

    @property
    def busy(self) -> bool:
        """Whether a job of it is queued or running."""
        return bool(self._starting or self._running)

    def send(self, job_id: str, command: str, log_dir: str, env: dict[str, str], line: StartLine | None = None) -> Ticket:
        """Send a job's request (`line`: the helper appends the job's start line to the journal); its ticket.

        Raises:
            HelperGone: the helper died before it got the request.
        """
        attempt = env.get("BATCHRUN_ATTEMPT", "")
        before, after = line or ("", "")
        # Under the lock from the diff to the write: two threads may send to one helper at once (a job
        # queued behind one just sent), and a diff from an environment the other's request has changed
        # ran that job with the other job's variables (its BATCHRUN_JOB_ID, its metrics file).
        with self._lock:
            old = self._env
            changes = [f"{k}={v}" for k, v in env.items() - old.items()]
            changes += [k for k in old.keys() - env.keys()]
            payload = "\0".join([job_id, log_dir, attempt, before, after, str(len(changes)), *changes, command]).encode("utf-8", "surrogateescape")
            ticket = Ticket(job_id, log_dir, int(attempt) if attempt.isdigit() else 0, self.busy)
            self._write(b"%d\n%s" % (len(payload), payload))
            self._env = env
            self._starting.append(ticket)
        return ticket

    def started(self, ticket: Ticket, give_up: Callable[[], bool] | None = None) -> int | None:
        """The pid of the ticket's job (also its process group and session) once it runs; None when withdrawn.

        A queued job is withdrawn by its helper when it waited `QUEUE_HOLD`, or
        by a cancel once `give_up` says so; it then never starts.

        Raises:
            HelperGone: the helper died and the job did not start (`sent` False), or cannot be found.
            OSError: the helper could not create the log files or fork.
        """
        try:
            give_up = give_up if ticket.queued else None
            while not self._await(ticket, False, None if give_up is None else _GIVE_UP_POLL):
                assert give_up is not None
                if give_up():
                    self.cancel_queued()
        except HelperGone:
            # It died after it read the request: did the job start? (Its answer may not have been written yet.)
            found = started_unanswered(self.proc, ticket)
            with self._lock:
                self._starting.remove(ticket)  # answered here, or never: the helper is busy with no request of it
                if found is not None:
                    ticket.answer = (b"S", b"%d" % found)
                    self._running.append(ticket)
            if found is None:
                raise HelperGone(sent=False) from None  # it did not
        assert ticket.answer is not None
        kind, rest = ticket.answer
        if kind == b"W":
            return None
        if kind == b"X":
            code, _, message = rest.partition(b" ")
            raise OSError(int(code), message.decode(errors="replace"))
        pid, _, start = rest.partition(b" ")
        ticket.pid = int(pid)
        ticket.start = start.decode() or None
        return ticket.pid

    def cancel_queued(self) -> None:
        """Withdraw the job queued behind the running one, if any: the helper answers `W` (or `S`, had it started it first)."""
        with self._lock:
            for ticket in self._starting:
                if ticket.queued and not ticket.cancelled and not self.gone:
                    ticket.cancelled = True
                    self._write(b"-\n")

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> int:
        """Start a job (`send` and `started`): its pid."""
        pid = self.started(self.send(job_id, command, log_dir, env))
        assert pid is not None  # nothing withdraws a job that was not queued
        return pid

    def wait(self, ticket: Ticket, timeout: float | None = None) -> tuple[int, bool, tuple[int, float, float] | None] | None:
        """Block until the ticket's job ended and its record is written: its returncode (-N: signal N), whether it surely left no metrics file, and what it used if the helper said; None on timeout."""
        try:
            if not self._await(ticket, True, timeout):
                return None
            assert ticket.ended is not None
            code, wrote, *used = ticket.ended.split(b" ")
            return int(code), wrote == b"0", (int(used[0]), float(used[1]), float(used[2])) if len(used) == 3 else None
        except HelperGone:
            returncode = wait_orphan(self.proc, ticket, self.launch, timeout)
            if returncode is None:
                return None
            with self._lock:
                self._running.remove(ticket)  # it ended: the dead helper's slot is free (`HelperPool`)
            return returncode, False, None

    def _await(self, ticket: Ticket, end: bool, timeout: float | None) -> bool:
        """Read answers until the ticket has its start answer (`end`: its end), True, or `timeout` passed, False.

        Raises:
            HelperGone: the helper's pipe closed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pipe = self._ends_in if end else self._starts_in
        while (ticket.ended if end else ticket.answer) is None:
            if self.gone:
                raise HelperGone()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not pipe.reader.acquire(blocking=False):
                ticket.waiting = True
                if (ticket.ended if end else ticket.answer) is None and pipe.reader.locked():
                    ticket.woken.acquire(timeout=-1 if left is None else left)  # the reader wakes it
                ticket.waiting = False
                continue
            try:
                if (ticket.ended if end else ticket.answer) is None:
                    data = None if left is not None and not select.select([pipe.fd], [], [], left)[0] else os.read(pipe.fd, 4096)
                    if data == b"":
                        self._lost()
                    elif data is not None:
                        self._take(pipe, data)
            finally:
                pipe.reader.release()
                # Whoever still waits on this pipe looks again: one of them reads next.
                with self._lock:
                    waiting = (*self._starting, *self._running) if self._ends_in is self._starts_in else self._running if end else self._starting
                    others = [other for other in waiting if other is not ticket]
                for other in others:
                    other.wake()
        return True

    def _take(self, pipe: Answers, data: bytes) -> None:
        """Hand each whole answer line to its ticket (the reader): `S`, `X` and `W` to the requests in order, `E` to the starts in order."""
        pipe.buf += data
        while b"\n" in pipe.buf:
            line, _, pipe.buf = pipe.buf.partition(b"\n")
            kind, _, rest = line.partition(b" ")
            answered = []
            with self._lock:
                if kind == b"E":
                    self._early.append(rest)
                else:
                    ticket = self._starting.popleft()
                    ticket.answer = (kind, rest)
                    answered.append(ticket)
                    if kind == b"S" and self._ends:
                        self._running.append(ticket)
                # A job's end, written after its start, may still be read first, from the other pipe.
                while self._early and self._running:
                    ticket = self._running.popleft()
                    ticket.ended = self._early.popleft()
                    answered.append(ticket)
            for ticket in answered:
                ticket.wake()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._out, view) :]
        except OSError:
            self._lost()
            raise HelperGone(sent=False) from None

    def _lost(self) -> None:
        if not self.gone:
            self.gone = True
            self._let_go()

    def _let_go(self) -> None:
        """Close the helper's stdin (it exits once its job, if any, ended and is recorded), and reap it if it has no job."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        if not self.busy:
            self.proc.wait()

    def close(self) -> None:
        """End the helper, and close its answer pipes (a dead helper's stay open until then: a thread may be about to read one)."""
        self._let_go()
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        if self._ends_in is not self._starts_in and self._ends_in.fd >= 0:
            os.close(self._ends_in.fd)
            self._ends_in.fd = -1


class Dispatcher(SlotHelper):
    """A helper in its detach mode (`--detach`): it supervises every job it starts, outliving batchrun; nothing waits for it here."""

    def __init__(self, cwd: str | None = None, launch: str | None = None) -> None:
        super().__init__(cwd, ("--detach",), launch)
        # It forks at once and the process started here exits: the one that
        # serves (and outlives batchrun) is no child of batchrun's to reap.
        self.proc.wait()
