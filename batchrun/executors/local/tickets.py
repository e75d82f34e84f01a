"""batchrun's side of a helper's answers: a ticket per request sent, and the pipes its answers come on (`helpers.SlotHelper`).

A helper answers a request's start (`S`, `X`, `W`) on its stdout and its
end (`E`) on a pipe of their own, so that the thread waiting for a running
job's end and the one whose job waits behind it each read their own
answers. Whichever thread waits on a pipe reads it for every ticket
waiting there, and wakes the one an answer is for (plain locks: see
`SlotHelper`).
"""

from __future__ import annotations

import errno
import threading

__all__ = ["Answers", "HelperGone", "Ticket"]


class Ticket:
    """One request sent to a helper, and what the helper answered so far."""

    __slots__ = ("answer", "attempt", "cancelled", "ended", "job_id", "log_dir", "pid", "queued", "start", "waiting", "woken")

    def __init__(self, job_id: str, log_dir: str, attempt: int, queued: bool) -> None:
        # Released to tell its waiting thread to look again: an answer came, or the pipe has no reader now.
        self.woken = threading.Lock()
        self.woken.acquire()
        self.waiting = False  # its thread is (about to be) blocked on `woken`
        self.job_id = job_id
        self.log_dir = log_dir
        self.attempt = attempt
        self.queued = queued  # sent while another job of the helper was in flight
        self.cancelled = False
        self.answer: tuple[bytes, bytes] | None = None  # S, X or W, and the rest of the line
        self.ended: bytes | None = None  # the rest of the E line
        self.pid = 0
        self.start: str | None = None  # the start time its start line gives, if the helper wrote it

    def wake(self) -> None:
        if not self.waiting:
            return  # it looks before it blocks (`SlotHelper._await`): nobody to wake
        try:
            self.woken.release()
        except RuntimeError:
            pass  # woken already


class Answers:
    """One pipe of a helper's answers, read by whichever thread waits on it (`SlotHelper._await`)."""

    __slots__ = ("buf", "fd", "reader")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.reader = threading.Lock()  # held by the one thread reading the pipe


class HelperGone(OSError):
    """The helper process died (its pipe closed); `sent`: after it may have read a request."""

    def __init__(self, sent: bool = True) -> None:
        super().__init__(errno.EPIPE, "the job's helper process died")
        self.sent = sent
