"""What every part of a launch reads and sets: its stop flags, its first fatal error, why it halted (`LaunchControl`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from batchrun.errors import BatchrunError

__all__ = ["LaunchControl"]


class LaunchControl:
    """What every part of a launch reads and sets: stop flags, the first fatal error, why it halted."""

    def __init__(self) -> None:
        # Guards the journal, the running jobs and these fields across threads.
        self.lock = threading.RLock()
        self.stopping = threading.Event()  # start nothing new
        self.stop_now = threading.Event()  # stop waiting, skip the grace
        self.fatal: BatchrunError | None = None
        self.halted: str | None = None  # "fail-fast" or "halt-now"
        self.interrupted = False
        self.drained = False  # `batchrun stop`: no new job, running ones finish
        # Called whenever the launch stops starting jobs: the executor withdraws jobs
        # that wait to start (`Executor.cancel_queued`), so none starts after this.
        self.on_stopping: Callable[[], None] = _nothing

    def drain(self) -> None:
        """`batchrun stop`: start nothing new; running jobs end as they would (not an interruption)."""
        with self.lock:
            self.drained = True
        self.stop_starting()

    def fail(self, error: BatchrunError) -> None:
        """A storage or environment fault: start nothing more, let jobs end."""
        with self.lock:
            if self.fatal is None:
                self.fatal = error
        self.stop_starting()

    def halt(self, reason: str) -> None:
        with self.lock:
            self.halted = self.halted or reason
        self.stop_starting()

    def stop_starting(self) -> None:
        """Start no new job (and withdraw those waiting to start)."""
        self.stopping.set()
        self.on_stopping()


def _nothing() -> None:
    pass
