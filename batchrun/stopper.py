"""Stopping jobs: SIGTERM, a grace period, SIGKILL, and waiting until nothing is left.

Ctrl-C (and SIGTERM, SIGHUP, --halt-now) stop every running job through a
`GroupStopper` thread; --timeout stops one job with `stop_job`. Both return
only once no process of the job's process group is left, not when its
wrapper exits: a child that outlives the wrapper (it ignores SIGTERM, or the
SIGKILL is still being delivered) would otherwise still run after batchrun
has said the job stopped.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from batchrun.executors import Executor

__all__ = ["STARTING", "GroupStopper", "stop_job", "wait_gone"]

# How long SIGKILLs are repeated before giving up on a process (one stuck in
# uninterruptible sleep, on a dead NFS mount, never goes).
KILL_WAIT = 10.0
# How often the stopper looks again.
_POLL = 0.05
# The reference of a job between its start record and its process.
STARTING = "starting"

# (job id, executor reference or None, whether a thread of the launch waits for it and will drop it)
Target = tuple[str, "str | None", bool]


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


def stop_job(executor: Executor, job_id: str, ref: str, grace: float, give_up: Callable[[], bool] = lambda: False) -> int:
    """Stop one job (--timeout): SIGTERM, SIGKILL after `grace`; its wrapper's status.

    Returns once its wrapper is reaped and no process of its group is left
    (or SIGKILL could not end them within `KILL_WAIT`).
    """
    executor.signal(job_id, ref, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while executor.alive(job_id, ref) and time.monotonic() < deadline and not give_up():
        time.sleep(_POLL)
    executor.signal(job_id, ref, signal.SIGKILL)
    returncode = executor.wait(ref)
    assert returncode is not None
    wait_gone(executor, job_id, ref, time.monotonic() + KILL_WAIT, signal.SIGKILL)
    return returncode


class GroupStopper:
    """Stops every job of a launch on a thread of its own; a second request skips the grace."""

    def __init__(self, executor: Executor, grace: float, targets: Callable[[], list[Target]], stop_now: threading.Event) -> None:
        self.executor = executor
        self.grace = grace
        self.targets = targets
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
        as their process exists; groups whose wrapper already died but whose
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
                if executor.signal(job_id, ref, sig):
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
