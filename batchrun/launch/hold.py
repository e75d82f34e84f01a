"""A launch's hold on its runs directory: the lock, and the stop and kill requests it answers while it holds it.

The first step of a launch takes it, before anything is written (a gridspec
swept, a journal line, a repair), so a launch refused because another one
runs changes nothing. From then until the last step it answers
`batchrun stop` and `batchrun kill` (through a `ControlPoller`): before the
launch has jobs to stop it notes the request and hands it on once it does
(`answer_with`), so a stop that arrives while the launch is still preparing
is honoured, not lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from batchrun.launch.control import ControlPoller
from batchrun.store.rundir import LaunchLock, RunsDir, acquire_lock

__all__ = ["RunsDirHold"]


class RunsDirHold:
    """The lock of one runs directory and its control requests, for one launch."""

    def __init__(self, runs_dir: RunsDir) -> None:
        self.runs_dir = runs_dir
        self.lock: LaunchLock | None = None
        # Requests noted before the launch could act on them.
        self.interrupted = False  # `stop --now`, or a signal
        self.drained = False  # `stop`: start nothing new
        self._on_stop: Callable[[bool], None] | None = None
        self._on_kill: Callable[[list[str]], Iterable[str]] | None = None
        self._poller = ControlPoller(runs_dir, self._stop_requested, self._kill_requested)

    @property
    def held(self) -> bool:
        return self.lock is not None

    def take(self) -> None:
        """Lock the runs directory and start answering requests.

        Raises:
            LockedError: another launch holds it.
            MetadataError: it cannot be created or written.
        """
        self.runs_dir.create()
        self.lock = acquire_lock(self.runs_dir)
        try:
            # `batchrun stop` and `kill` reach the launch that holds the lock, from the moment it does.
            self._poller.start()
        except BaseException:
            self.release()
            raise

    def answer_with(self, on_stop: Callable[[bool], None], on_kill: Callable[[list[str]], Iterable[str]]) -> None:
        """From now on the launch acts on requests itself; one noted before is handed on first."""
        if self.interrupted:
            on_stop(True)
        elif self.drained:
            on_stop(False)
        self._on_stop, self._on_kill = on_stop, on_kill

    def request_stop(self) -> None:
        """Ctrl-C or SIGTERM: as `stop --now`."""
        self._stop_requested(True)

    def _stop_requested(self, now: bool) -> None:
        if self._on_stop is not None:
            self._on_stop(now)
        elif now:
            self.interrupted = True
        else:
            self.drained = True

    def _kill_requested(self, job_ids: list[str]) -> Iterable[str]:
        return self._on_kill(job_ids) if self._on_kill is not None else ()  # no job runs yet

    def release(self) -> None:
        """Stop answering requests and let the lock go; safe to call twice."""
        self._poller.stop()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
