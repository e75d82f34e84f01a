"""The launch's slot helpers (`helpers.SlotHelper`), one per slot: which helper starts a job, and which waits for it."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from batchrun.executors.local.helpers import HelperGone, SlotHelper, StartLine, Ticket

__all__ = ["HelperPool"]


class HelperPool:
    """The launch's helpers, one per slot: a job goes to its slot's helper (queued behind its job, if one runs), or without a slot to any idle one."""

    def __init__(self, cwd: str | None = None, launch: str | None = None, journal: str | None = None) -> None:
        self.cwd = cwd
        self.launch = launch  # the exit log its helpers append to (`exitlog`)
        self.journal = journal  # the journal its helpers append start lines to, when the launch has them do so
        self._slots: dict[int, SlotHelper] = {}
        self._lock = threading.Lock()
        # pid of a running job -> its helper and ticket
        self._busy: dict[int, tuple[SlotHelper, Ticket]] = {}
        # A pool dropped without `close` (a test's executor, a launch that
        # failed early) still lets its helpers go.
        weakref.finalize(self, _close_all, self._slots)

    def warm(self, count: int) -> None:
        """Have the first `count` slots' helpers ready: their interpreters start while the launch loads doit (about 20 ms each, off the first jobs' way)."""
        for slot in range(count):
            self._helper(slot)

    def _helper(self, slot: int | None) -> SlotHelper | None:
        """The slot's helper (a new one for a slot without a live one); without a slot, an idle one.

        None while the slot's helper is dead and its job still runs (reparented here and waited
        for, `SlotHelper.wait`): a job sent to a new helper would start at once, one beyond -j.
        """
        with self._lock:
            if slot is None:
                idle = [s for s, helper in sorted(self._slots.items()) if not helper.busy and not helper.gone]
                slot = idle[0] if idle else max(self._slots, default=-1) + 1
            helper = self._slots.get(slot)
            if helper is not None and helper.gone and helper.busy:
                return None
            if helper is None or helper.gone:
                if helper is not None:
                    helper.close()  # nothing of it is waited for any more: its pipes go
                helper = self._slots[slot] = SlotHelper(self.cwd, launch=self.launch, journal=self.journal)
            return helper

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> int:
        """Start a job in an idle helper (or a new one); its pid."""
        started = self.start_in(None, job_id, command, log_dir, env)
        assert started is not None  # nothing withdraws a job that waits behind none
        return started[0]

    def start_in(
        self, slot: int | None, job_id: str, command: str, log_dir: str, env: dict[str, str], line: StartLine | None = None, give_up: Callable[[], bool] | None = None
    ) -> tuple[int, str | None] | None:
        """Start a job in its slot's helper (None: an idle one), behind the job there if one runs, and with `line` the helper appends its
        start line; its pid and that line's start time; None when withdrawn unstarted (see `SlotHelper.started`)."""
        while True:
            helper = self._helper(slot)
            if helper is None:
                return None  # it waits for the slot anew, as a job given back
            ticket = None
            try:
                ticket = helper.send(job_id, command, log_dir, env, line)
                pid = helper.started(ticket, give_up)
            except HelperGone as gone:
                if gone.sent:
                    raise
                if ticket is not None and ticket.queued:
                    return None  # the job before it may still run (reparented here): it waits for the slot anew
                continue  # it died before the job started: another helper starts it
            if pid is None:
                return None
            self._busy[pid] = (helper, ticket)
            return pid, ticket.start

    def cancel_queued(self) -> None:
        """Withdraw every job queued behind a running one (the launch stops starting jobs)."""
        with self._lock:
            slots = list(self._slots.values())
        for helper in slots:
            try:
                helper.cancel_queued()
            except HelperGone:
                pass  # its queued job is withdrawn as it is (`start_in`)

    def wait(self, pid: int, timeout: float | None = None) -> tuple[int, bool, tuple[int, float, float] | None] | None:
        """The job's returncode, whether it surely left no metrics file, and what it used if its helper said; None on timeout."""
        helper, ticket = self._busy[pid]
        ended = helper.wait(ticket, timeout)
        if ended is not None:
            del self._busy[pid]
        return ended

    def close(self) -> None:
        """End every helper; busy ones exit once their jobs are recorded (a stop that gave up on a job)."""
        _close_all(self._slots)


def _close_all(slots: dict[int, SlotHelper]) -> None:
    for helper in slots.values():
        helper.close()
    slots.clear()
