"""What a slot helper reads from batchrun (`_slot_helper`): requests, and cancels of the request before them.

Standard library only: the helper imports it by path.
"""

from __future__ import annotations

import os
import select

__all__ = ["CANCEL", "Requests"]

# A cancel of the request before it (see `_slot_helper`'s docstring).
CANCEL = b"-"


class Requests:
    """batchrun's messages on this process's stdin: requests, and cancels of the request before them."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def fill(self, block: bool = True) -> bool:
        """Read what batchrun sent (`block` False: only if some is there now); False at EOF or when nothing came."""
        if self.eof or (not block and not select.select([self.fd], [], [], 0)[0]):
            return False
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def next(self) -> tuple[bytes, bytes, bytes, tuple[bytes, bytes] | None, bytes, list[bytes]] | None:
        """The next request: job id, log directory, attempt, start line (the text around its time) or None, command, environment changes; None at EOF."""
        while True:
            while b"\n" not in self.buf:
                if not self.fill():
                    return None
            header, _, self.buf = self.buf.partition(b"\n")
            if header == CANCEL:
                continue  # it came too late: its job had started, and batchrun was told so
            size = int(header)
            while len(self.buf) < size:
                if not self.fill():
                    return None
            payload, self.buf = self.buf[:size], self.buf[size:]
            job_id, log_dir, attempt, before, after, count, rest = payload.split(b"\0", 6)
            parts = rest.split(b"\0", int(count))
            return job_id, log_dir, attempt, (before, after) if before else None, parts[-1], parts[:-1]

    def _whole(self) -> int:
        """The length of the request at the front of what was read, once whole (stale cancels before it dropped); 0 before."""
        while self.buf.startswith(CANCEL + b"\n"):
            self.buf = self.buf[len(CANCEL) + 1 :]
        header, newline, rest = self.buf.partition(b"\n")
        if not newline or len(rest) < int(header):
            return 0
        return len(header) + 1 + int(header)

    def ready(self) -> bool:
        """Whether a whole request was read (and `next` takes it without blocking)."""
        return self._whole() > 0

    def cancelled(self) -> bool:
        """Whether a cancel follows the whole request at the front."""
        end = self._whole()
        return end > 0 and self.buf[end : end + len(CANCEL) + 1] == CANCEL + b"\n"

    def withdrawn(self) -> bool:
        """Whether the request just read is cancelled, or batchrun is gone (EOF): looked at without blocking."""
        if not self.buf:
            self.fill(block=False)
        if self.buf.startswith(CANCEL + b"\n"):
            self.buf = self.buf[len(CANCEL) + 1 :]
            return True
        return self.eof and not self.buf
