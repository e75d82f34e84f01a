"""Stopping jobs: SIGTERM, a grace period, SIGKILL, and waiting until nothing is left.

Ctrl-C (and SIGTERM, SIGHUP, --halt-now) stop every running job through a
`GroupStopper` thread; --timeout stops one job with `stop_job`. Both return
only once no process of the job's process group is left, not when its
shell exits: a child that outlives the shell (it ignores SIGTERM, or the
SIGKILL is still being delivered) would otherwise still run after batchrun
has said the job stopped.

Every wait here is bounded: after the grace, SIGKILL is sent again at every
look until the group is gone, for at most `KILL_WAIT` (a process stuck in
uninterruptible sleep, on a dead NFS mount, never goes); a job's own wait
(`wait_job`) gives up that long after a stop was pressed (`stop_now`).

Every stop's first signal goes through the launch (`FirstSignal`,
`StopNotes.signal_stop`), once, here, for every executor: it writes the
job's stop note (the state the stop records and the attempt) before the
signal, so the job's supervisor and any later settlement record that
state whatever becomes of the launch; and a first signal that reaches no
process (the job had ended on its own) leaves the job its own end.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable

from batchrun.executors import Executor

__all__ = ["KILL_WAIT", "STARTING", "FirstSignal", "GroupStopper", "JobEnds", "end_group", "finish_stop", "stop_job", "wait_gone", "wait_job"]

# How long SIGKILLs are repeated before giving up on a process (one stuck in
# uninterruptible sleep, on a dead NFS mount, never goes).
KILL_WAIT = 10.0
# How often the stopper looks again.
_POLL = 0.05
# How long a job's own wait blocks at a time, to look whether a stop gave up on it.
_WAIT_SLICE = 1.0
# The reference of a job between its start record and its process.
STARTING = "starting"
# The state a launch's own stop (Ctrl-C, SIGTERM, --halt-now) records: run again next time.
_INTERRUPTED = "interrupted"

# (job id, executor reference or None, whether a thread of the launch waits for it and will drop it)
Target = tuple[str, "str | None", bool]
# (job id, ref, signal, state): note the stop as `state` for the job's current attempt, then send the
# signal; whether it reached a process (`StopNotes.signal_stop`).
FirstSignal = Callable[[str, "str | None", int, str], bool]


def wait_gone(executor: Executor, job_id: str, ref: str | None, deadline: float, resignal: int | None = None) -> bool:
    """Wait until no process of the job is alive, or `deadline` (monotonic); True if gone.

    With `resignal`, that signal is sent again at every look: processes
    that joined the group late get it too.
    """
    while executor.alive(job_id, ref):
        if time.monotonic() >= deadline:
            return False
        if resignal is not None:
            executor.signal(job_id, ref, resignal)
        time.sleep(_POLL)
    return True


def wait_job(executor: Executor, ref: str, stop_now: Callable[[], bool], deadline: float | None = None) -> int | None:
    """Wait for a job's end: its status; None at `deadline` (monotonic).

    Once `stop_now` says the launch is stopping at once, the job gets
    `KILL_WAIT` more (the stopper's SIGKILLs end it), then counts as killed
    (-SIGKILL) and is left to the next launch: a stuck job never holds up the launch.
    """
    given_up: float | None = None
    while True:
        now = time.monotonic()
        timeout = _WAIT_SLICE if deadline is None else max(0.0, min(_WAIT_SLICE, deadline - now))
        returncode = executor.wait(ref, timeout)
        if returncode is not None:
            return returncode
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return None
        if given_up is None and stop_now():
            given_up = now + KILL_WAIT
        if given_up is not None and now >= given_up:
            return -signal.SIGKILL


def wait_job_warned(
    executor: Executor, job_id: str, ref: str, stop_now: Callable[[], bool], deadline: float | None, warning: tuple[int, float] | None
) -> int | None:
    """`wait_job`, and with `warning` (signal, seconds) that signal to the job's group that many seconds before `deadline`.

    The job's checkpoint signal (--checkpoint-signal): not a stop, so no
    stop note; a job that saves its state and exits 75 on it is requeued.
    """
    if warning is None or deadline is None:
        return wait_job(executor, ref, stop_now, deadline)
    signum, seconds = warning
    returncode = wait_job(executor, ref, stop_now, deadline - seconds)
    if returncode is not None:
        return returncode
    executor.signal(job_id, ref, signum)
    return wait_job(executor, ref, stop_now, deadline)


def stop_job(executor: Executor, job_id: str, ref: str, grace: float, give_up: Callable[[], bool] = lambda: False) -> int:
    """Stop one job (--timeout): SIGTERM, SIGKILL after `grace`; its status.

    Returns once the job's shell is reaped and no process of its group is
    left: SIGKILL is sent again at every look (one not delivered yet, a
    process that joined the group late), for at most `KILL_WAIT`, after
    which the job counts as killed.
    """
    executor.signal(job_id, ref, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while executor.alive(job_id, ref) and time.monotonic() < deadline and not give_up():
        time.sleep(_POLL)
    deadline = time.monotonic() + KILL_WAIT
    returncode = None
    while True:
        executor.signal(job_id, ref, signal.SIGKILL)
        if returncode is None:
            returncode = executor.wait(ref, _POLL)
        if (returncode is not None and not executor.alive(job_id, ref)) or time.monotonic() >= deadline:
            return -signal.SIGKILL if returncode is None else returncode
        if returncode is not None:
            time.sleep(_POLL)


def end_group(executor: Executor, job_id: str, ref: str | None, grace: float, give_up: Callable[[], bool] = lambda: False) -> None:
    """Stop one job while its launch goes on (`batchrun kill`): SIGTERM, SIGKILL after `grace`.

    Returns once no process of its group is left (or SIGKILL could not end
    them within `KILL_WAIT`). Unlike `stop_job` it never reaps the job's
    shell: the job's own thread waits for it and records how it ended.
    """
    executor.signal(job_id, ref, signal.SIGTERM)
    finish_stop(executor, job_id, ref, grace, give_up)


def finish_stop(executor: Executor, job_id: str, ref: str | None, grace: float, give_up: Callable[[], bool] = lambda: False) -> None:
    """`end_group` after its SIGTERM: the grace, then SIGKILL until no process of the group is left (at most `KILL_WAIT`)."""
    deadline = time.monotonic() + grace
    while executor.alive(job_id, ref) and time.monotonic() < deadline and not give_up():
        time.sleep(_POLL)
    wait_gone(executor, job_id, ref, time.monotonic() + KILL_WAIT, signal.SIGKILL)


class JobEnds:
    """Jobs of a launch stopped on purpose while it goes on, and the state each is to be recorded as.

    `batchrun kill` records `killed`; an adaptive sweep's early stop
    `stopped`. `start` begins each stop on a thread of its own (`end_group`);
    the job's own thread, once its shell exited, asks `wait`, which returns
    the state to record once the group is gone (None: not stopped on
    purpose), and then `forget`s it under the launch's lock.
    """

    def __init__(
        self, executor: Executor, grace: float, lock: threading.RLock, running: dict[str, str | None], give_up: Callable[[], bool], first_signal: FirstSignal
    ) -> None:
        self.executor = executor
        self.grace = grace
        self.lock = lock  # the launch's lock over `running`
        self.running = running  # job id -> the executor's reference, of jobs a thread waits on
        self.give_up = give_up
        self.first_signal = first_signal
        self._ending: dict[str, tuple[str, threading.Thread]] = {}

    def start(self, job_ids: Iterable[str], state: str) -> list[str]:
        """Begin stopping these jobs; the ids it stops (running now, not already being stopped). Never blocks."""
        threads = []
        with self.lock:
            for job_id in dict.fromkeys(job_ids):
                if job_id in self.running and job_id not in self._ending:
                    thread = threading.Thread(target=self._end_one, args=(job_id, state), name=f"batchrun-stop-{job_id}", daemon=True)
                    self._ending[job_id] = (state, thread)
                    threads.append((job_id, thread))
            # Started before the lock is released: the job's own thread, once its
            # shell exits, finds the stop in `wait` and joins it, which needs it started.
            for _, thread in threads:
                thread.start()
        return [job_id for job_id, _ in threads]

    def resume(self, job_id: str, ref: str | None, state: str) -> None:
        """Carry on a stop an earlier launch began (its note is on disk) for a job this launch adopted. Never blocks."""
        with self.lock:
            if job_id in self._ending:
                return
            thread = threading.Thread(target=end_group, args=(self.executor, job_id, ref, self.grace, self.give_up), name=f"batchrun-stop-{job_id}", daemon=True)
            self._ending[job_id] = (state, thread)
            thread.start()

    def _end_one(self, job_id: str, state: str) -> None:
        while True:
            with self.lock:
                if job_id not in self.running:
                    return  # ended meanwhile
                ref = self.running[job_id]
            if ref != STARTING:
                break
            time.sleep(_POLL)  # its process exists once its reference is recorded
        self.first_signal(job_id, ref, signal.SIGTERM, state)
        finish_stop(self.executor, job_id, ref, self.grace, self.give_up)

    def wait(self, job_id: str) -> str | None:
        """After the job's shell exited: the state to record if it was stopped on purpose, once its group is gone."""
        with self.lock:
            ending = self._ending.get(job_id)
        if ending is None:
            return None
        ending[1].join()
        return ending[0]

    def forget(self, job_id: str) -> None:
        """The job's end is recorded; call under the launch's lock."""
        self._ending.pop(job_id, None)


class GroupStopper:
    """Stops every job of a launch on a thread of its own; a second request skips the grace."""

    def __init__(self, executor: Executor, grace: float, targets: Callable[[], list[Target]], stop_now: threading.Event, first_signal: FirstSignal) -> None:
        self.executor = executor
        self.grace = grace
        self.targets = targets
        self.first_signal = first_signal
        # Set by a second Ctrl-C, and by this stopper when it gives up:
        # threads waiting on adopted jobs stop waiting.
        self.stop_now = stop_now
        self._thread = threading.Thread(target=self._stop_all, name="batchrun-stopper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _stop_all(self) -> None:
        """SIGTERM every job's process group, SIGKILL after the grace.

        Loops until no job is left: jobs still starting are signalled as soon
        as their process exists; groups whose shell already died but whose
        children ignored SIGTERM still get the SIGKILL; a job no thread waits
        for (adopted beyond -j) counts as stopped once its processes are gone.
        """
        executor = self.executor
        executor.cancel_queued()
        deadline = time.monotonic() + self.grace
        sig = signal.SIGTERM
        signalled: dict[str, str | None] = {}
        kill_deadline = None
        while True:
            targets = self.targets()
            for job_id, ref, _watched in targets:
                if ref == STARTING or job_id in signalled:
                    continue
                # The first stop of an attempt decides its state; later ones change nothing.
                if self.first_signal(job_id, ref, sig, _INTERRUPTED):
                    signalled[job_id] = ref
            signalled = {j: r for j, r in signalled.items() if executor.alive(j, r)}
            if not signalled and not any(watched for _, _, watched in targets):
                return
            if sig == signal.SIGTERM and (time.monotonic() >= deadline or self.stop_now.is_set()):
                sig = signal.SIGKILL
                kill_deadline = time.monotonic() + KILL_WAIT
                for job_id, ref in signalled.items():
                    executor.signal(job_id, ref, signal.SIGKILL)
            elif sig == signal.SIGKILL:
                for job_id, ref in signalled.items():
                    executor.signal(job_id, ref, signal.SIGKILL)
                if kill_deadline is not None and time.monotonic() > kill_deadline:
                    # Nothing more can be done; release adopters waiting on locks.
                    self.stop_now.set()
                    return
            time.sleep(_POLL)
