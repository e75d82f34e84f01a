"""The stops a launch makes, as it notes them on disk before their first signal.

A stop's first signal goes through `StopNotes.signal_stop` (the stopper's
`FirstSignal`): the job's stop note (`jobfiles.note_stop`: the state the stop
records and the attempt) is written first, so the job's supervisor and any
later settlement record that state whatever becomes of the launch. The first
stop of an attempt decides (a `batchrun kill` under way stays a kill when
Ctrl-C follows), also one an earlier launch noted for a job adopted since.

A first signal that reaches no process means the job had ended on its own
before it: `taken` then answers "not stopped", and the job's own end is
recorded, even if its supervisor, seeing the note, recorded the stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from batchrun.executors import Executor, jobfiles
from batchrun.store.journal import Journal

__all__ = ["StopNotes"]

# (job id, attempt)
_Key = tuple[str, int]


class StopNotes:
    """The stops one launch noted, per job attempt."""

    def __init__(self, executor: Executor, journal: Journal, lock: threading.RLock, logs: str, adopted: Callable[[str], bool]) -> None:
        self.executor = executor
        self.journal = journal
        self.logs = logs
        self.adopted = adopted  # whether a job is one this launch adopted (an earlier launch's note may be there)
        # Under the launch's lock: the state of each attempt's noted stop; the attempts
        # whose first signal reached no process; those whose first signal is being sent.
        self._cond = threading.Condition(lock)
        self._noted: dict[_Key, str] = {}
        self._missed: set[_Key] = set()
        self._signalling: set[_Key] = set()

    def note_stop(self, job_id: str, state: str, signalling: bool = False) -> _Key | None:
        """Note on disk that the job's current attempt is being stopped as `state`; its key if this is its first stop."""
        with self._cond:
            rec = self.journal.records.get(job_id)
            key = (job_id, rec.attempts if rec is not None else 0)
            if key in self._noted:
                return None
            log_dir = f"{self.logs}/{job_id}"
            earlier = jobfiles.stop_state(log_dir, key[1]) if self.adopted(job_id) else None
            self._noted[key] = earlier or state
            if earlier is None:
                jobfiles.note_stop(log_dir, state, key[1])
            if signalling:
                self._signalling.add(key)
            return key

    def signal_stop(self, job_id: str, ref: str | None, sig: int, state: str) -> bool:
        """A stop's signal (`stopper.FirstSignal`): noted first, then sent; whether it reached a process."""
        first = self.note_stop(job_id, state, signalling=True)
        hit = False
        try:
            hit = self.executor.signal(job_id, ref, sig)
        finally:
            if first is not None:
                with self._cond:
                    if not hit:
                        self._missed.add(first)
                    self._signalling.discard(first)
                    self._cond.notify_all()
        return hit

    def taken(self, job_id: str, attempt: int) -> str | None:
        """Once the attempt's shell ended: the state of the stop this launch made of it, None if none reached it; forgets it.

        Waits while its stop's first signal is being sent: whether that
        found the job is known before its end is told.
        """
        key = (job_id, attempt)
        with self._cond:
            self._cond.wait_for(lambda: key not in self._signalling)
            noted = self._noted.pop(key, None)
            if key in self._missed:
                self._missed.discard(key)
                return None
            return noted

    def forget(self, job_id: str, attempt: int) -> None:
        """The attempt's end is recorded by its files (an adopted job)."""
        with self._cond:
            self._noted.pop((job_id, attempt), None)
            self._missed.discard((job_id, attempt))
