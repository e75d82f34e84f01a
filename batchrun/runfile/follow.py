"""Follow a runfile while a launch runs: jobs added, lines removed (a gridspec: `follow_gridspec`).

`launch --follow` keeps watching its input after the pending jobs. A
follower answers two questions, cheaply enough to ask several times a
second of a 100,000-line file:
- which jobs entered the file since it was last asked (`take`): appended
  lines, and changed lines (a changed line is a new command, so a new job;
  the old one counts as removed);
- whether a job is still in the file (`wanted`), asked just before a queued
  job starts, so that a line removed while queued never runs.

Polling, not inotify (not in the standard library, and blind on NFS): each
poll is one `stat`. When the file only grew, only the new bytes are read,
after checking that the last 4 KiB before them are unchanged; any other
change (shrink, same size, new inode from an editor's write-and-rename, a
failed check) re-reads the whole file, but hashes only commands it has not
seen. Because a write within the same clock tick as a read can leave size
and times unchanged, the whole file is checked against a CRC of what was
read once, `VERIFY_AFTER` seconds after each change.

Lines follow `runfile.parse_runfile_text` exactly (BOM, `\\n`/`\\r\\n`/`\\r`,
stripping, `#`, directives, a repeated command is one job at its first line). A last
line without its newline is not taken at once, since a writer may be
half-way through it; it is taken once the file has not changed for
`PARTIAL_SETTLE` seconds (an editor that saves without a final newline).
Should such a line then grow, the job of its first version counts as
removed and the longer line as added.

A file that cannot be read as a runfile now (deleted, NUL bytes, not UTF-8,
a gridspec mid-edit) is reported once as `FollowChange.error`; the last good
view is kept and followed on. A deleted runfile removes no job.

This module runs nothing and never prints.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from batchrun.errors import BatchrunError, RunfileError
from batchrun.resources import Request, directive_request
from batchrun.runfile.file import Job, Runfile

__all__ = ["PARTIAL_SETTLE", "POLL_INTERVAL", "VERIFY_AFTER", "FollowChange", "Follower", "RunfileFollower", "follow_jobs"]

# How often a waiting follower looks at the file: well inside "about a second".
POLL_INTERVAL = 0.2
# How long a last line without a newline must stay unchanged before it is a job.
PARTIAL_SETTLE = 1.0
# Seconds after a change at which the whole file is checked against what was read.
VERIFY_AFTER = 2.0
# Bytes before the old end re-read on growth, to tell an append from a rewrite.
_OVERLAP = 4096


@dataclass
class FollowChange:
    """What changed in the followed file since the last `take`."""

    added: list[Job] = field(default_factory=list)  # in file order
    removed: list[str] = field(default_factory=list)  # job ids whose line left the file
    # Commands repeated on another line: (command, first line, repeated line).
    duplicates: list[tuple[str, int, int]] = field(default_factory=list)
    # The file could not be read as a runfile; the last good view is kept.
    error: BatchrunError | None = None

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.duplicates or self.error)


def _complete_end(data: bytes) -> int:
    """Bytes up to the end of the last complete line.

    A final `\\r` may be the first half of `\\r\\n`: it ends nothing yet.
    """
    end = max(data.rfind(b"\n"), data.rfind(b"\r"))
    if end >= 0 and end == len(data) - 1 and data[end] == 0x0D:
        end = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end))
    return end + 1


def _decode(data: bytes, path: Path, first_lineno: int) -> str:
    """Runfile bytes as text, with `load_runfile`'s errors."""
    if b"\0" in data:
        lineno = first_lineno + data.count(b"\n", 0, data.index(b"\0"))
        raise RunfileError("binary file (NUL byte), not a runfile of commands", path, lineno)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        lineno = first_lineno + data.count(b"\n", 0, err.start)
        raise RunfileError("not UTF-8 text, not a runfile of commands", path, lineno) from err


def _split(text: str, at_start: bool) -> list[str]:
    """The raw lines of complete runfile text, by `parse_runfile_text`'s rules."""
    if at_start and text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the text ends with its terminator
    return lines



class Follower(Protocol):
    """What `follow_jobs` needs of a follower: a runfile's, or a gridspec's (`follow_gridspec`)."""

    def take(self) -> FollowChange | None:
        """What changed since the last call, or None."""


class RunfileFollower:
    """The live view of one runfile; thread-safe.

    `known` is what the launch loaded from the file (a `Runfile`, or its
    jobs): the first look reports only what differs from it.
    """

    def __init__(self, path: Path, known: Runfile | Iterable[Job] = (), settle: float = PARTIAL_SETTLE, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        # Repeats already reported (command, line): the launch warned about the runfile's own.
        self._dups_seen: set[tuple[str, int]] = set()
        if isinstance(known, Runfile):
            self._dups_seen.update((command, again) for command, _first, again in known.duplicates)
            known = known.jobs
        self.settle = settle
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {job.job_id: job for job in known}  # the file now, in file order
        self._pending = FollowChange()
        self._sig: tuple[int, ...] | None = None
        self._size = 0  # bytes of complete lines read
        self._crc = 0  # CRC-32 of those bytes
        self._tail = b""  # their last _OVERLAP bytes
        self._lines = 0  # lines in them
        self._partial = b""  # an unfinished last line after them
        self._request: Request | None = None  # what the jobs after them ask for (their last directive's)
        self._partial_since = 0.0
        self._provisional: Job | None = None  # the unfinished last line, taken as a job
        self._verify_at: float | None = None
        self._broken: str | None = None  # the error last reported, until the file reads again

    # -- public ---------------------------------------------------------------

    def take(self) -> FollowChange | None:
        """Look at the file; what changed since the last `take`, or None."""
        with self._lock:
            self._refresh()
            change, self._pending = self._pending, FollowChange()
        return change if change else None

    def wanted(self, job_id: str) -> bool:
        """Whether the job's line is in the file now (looks at the file first)."""
        with self._lock:
            self._refresh()
            return job_id in self._jobs

    def job(self, job_id: str) -> Job | None:
        """The job as the file shows it now (its line number may have moved)."""
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job of the file as last seen, in file order."""
        with self._lock:
            return list(self._jobs.values())

    # -- looking ----------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as err:
            reason = "no such runfile (deleted while following?)" if isinstance(err, FileNotFoundError) else f"cannot read the runfile: {err.strerror}"
            self._report(RunfileError(reason, self.path))
            return
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        now = self._clock()
        if sig == self._sig:
            if self._verify_at is not None and now >= self._verify_at and not self._verify():
                return
            if self._partial and self._provisional is None and now - self._partial_since >= self.settle:
                self._take_partial()
            return
        old, self._sig = self._sig, sig
        self._verify_at = now + VERIFY_AFTER
        try:
            same_file = old is not None and old[:2] == sig[:2] and self._broken is None
            if same_file and st.st_size > self._size + len(self._partial):
                with open(self.path, "rb") as f:
                    start = self._size - len(self._tail)
                    f.seek(start)
                    data = f.read()
                if data.startswith(self._tail):
                    self._grow(data[len(self._tail) :], now)
                    return
            self._reread(now)
        except OSError as err:
            self._sig = None
            self._report(RunfileError(f"cannot read the runfile: {err.strerror}", self.path))
        except RunfileError as err:
            self._verify_at = None  # nothing to verify until it changes again
            self._report(err)

    def _verify(self) -> bool:
        """The once-after-a-change whole-file check (see the module docstring); True if it held."""
        self._verify_at = None
        try:
            with open(self.path, "rb") as f:
                data = f.read(self._size + len(self._partial) + 1)
        except OSError:
            self._sig = None  # looked at again on the next poll
            return False
        if zlib.crc32(data[: self._size]) != self._crc or data[self._size :] != self._partial:
            self._sig = None
            self._refresh()
            return False
        return True

    def _report(self, error: RunfileError) -> None:
        text = str(error)
        if text != self._broken:
            self._broken = text
            self._pending.error = error

    # -- reading --------------------------------------------------------------

    def _reread(self, now: float) -> None:
        """Read the whole file again and diff it against the view."""
        with open(self.path, "rb") as f:
            data = f.read()
        end = _complete_end(data)
        text = _decode(data[:end], self.path, 1)
        old = self._jobs
        by_command = {job.command: job for job in old.values()}
        jobs: dict[str, Job] = {}
        duplicates: list[tuple[str, int, int]] = []
        lines = _split(text, at_start=True)
        self._request = self._parse_into(jobs, lines, 1, {}, by_command, duplicates, None)
        self._broken = None
        self._size, self._crc, self._tail, self._lines = end, zlib.crc32(data[:end]), data[max(0, end - _OVERLAP) : end], len(lines)
        self._partial, self._partial_since, self._provisional = data[end:], now, None
        provisional = self._partial_job(jobs, by_command, at_start=end == 0)
        if provisional is not None and provisional.job_id in old:
            # A last line the launch already knows (it read the whole file) stays.
            jobs[provisional.job_id] = provisional
            self._provisional = provisional
        self._jobs = jobs
        self._note(
            [job for job_id, job in jobs.items() if job_id not in old],
            [job_id for job_id in old if job_id not in jobs],
            duplicates,
        )

    def _grow(self, new: bytes, now: float) -> None:
        """The file only grew: parse the new complete lines (and the unfinished one again)."""
        end = _complete_end(new)
        text = _decode(new[:end], self.path, self._lines + 1)
        removed = []
        provisional = self._provisional
        if provisional is not None:
            del self._jobs[provisional.job_id]
            self._provisional = None
        added: dict[str, Job] = {}
        duplicates: list[tuple[str, int, int]] = []
        lines = _split(text, at_start=self._size == 0)
        self._request = self._parse_into(added, lines, self._lines + 1, self._jobs, {}, duplicates, self._request)
        self._jobs.update(added)
        if provisional is not None and provisional.job_id not in added:
            removed.append(provisional.job_id)
        self._size += end
        self._crc = zlib.crc32(new[:end], self._crc)
        self._tail = (self._tail + new[:end])[-_OVERLAP:]
        self._lines += len(lines)
        partial = new[end:]
        if partial != self._partial:
            self._partial, self._partial_since = partial, now
        self._broken = None
        self._note([job for job_id, job in added.items() if provisional is None or job_id != provisional.job_id], removed, duplicates)

    def _parse_into(
        self, into: dict[str, Job], lines: list[str], first_lineno: int, current: dict[str, Job], by_command: dict[str, Job],
        duplicates: list[tuple[str, int, int]], request: Request | None,
    ) -> Request | None:
        """Add the jobs of `lines` to `into`, asking for `request` until a directive changes it; the request after them.

        A command in `into` or `current` is a duplicate.
        """
        sha256 = hashlib.sha256
        for lineno, raw in enumerate(lines, start=first_lineno):
            command = raw.strip()
            if not command:
                continue
            if command[0] == "#":
                try:
                    asked = directive_request(command) if "batchrun:" in command else None
                except ValueError as err:
                    raise RunfileError(str(err), self.path, lineno) from None
                request = request if asked is None else (asked or None)  # a reset asks nothing
                continue
            known = by_command.get(command)
            job_id = known.job_id if known is not None else sha256(command.encode()).hexdigest()[:16]
            first = into.get(job_id) or current.get(job_id)
            if first is not None:
                duplicates.append((command, first.lineno, lineno))
                continue
            same = known is not None and known.lineno == lineno and known.request == request
            into[job_id] = known if same and known is not None else Job(command, job_id, lineno, request)
        return request

    def _partial_job(self, jobs: dict[str, Job], by_command: dict[str, Job], at_start: bool) -> Job | None:
        """The job the unfinished last line would be, if it is one and new to `jobs`."""
        if not self._partial:
            return None
        try:
            text = _decode(self._partial, self.path, self._lines + 1)
        except RunfileError:
            return None  # maybe a character cut in half; judged once complete
        lines = _split(text, at_start)
        command = lines[0].strip() if lines else ""
        if not command or command[0] == "#":
            return None
        known = by_command.get(command)
        job_id = known.job_id if known is not None else hashlib.sha256(command.encode()).hexdigest()[:16]
        if job_id in jobs:
            return None
        return Job(command, job_id, self._lines + 1, self._request)

    def _take_partial(self) -> None:
        """The unfinished last line stayed unchanged: it is a job now."""
        job = self._partial_job(self._jobs, {}, at_start=self._size == 0)
        if job is None:
            self._partial_since = float("inf")  # a comment, a duplicate: nothing to take
            return
        self._provisional = job
        self._jobs[job.job_id] = job
        self._note([job], [], [])

    def _note(self, added: list[Job], removed: list[str], duplicates: list[tuple[str, int, int]]) -> None:
        """Fold a change into what the next `take` returns.

        A job added and removed again before anyone took it never shows. A
        job removed and added again is reported added again (its earlier
        removal may have dropped it from the queue): the caller ignores
        jobs it already holds.
        """
        pending = self._pending
        unseen = {job.job_id for job in pending.added}
        gone = set(removed)
        if gone & unseen:
            pending.added = [job for job in pending.added if job.job_id not in gone]
        pending.removed.extend(job_id for job_id in removed if job_id not in unseen)
        back = {job.job_id for job in added}
        if back & set(pending.removed):
            pending.removed = [job_id for job_id in pending.removed if job_id not in back]
        pending.added.extend(added)
        for dup in duplicates:
            key = (dup[0], dup[2])
            if key not in self._dups_seen:
                self._dups_seen.add(key)
                pending.duplicates.append(dup)


def follow_jobs(
    follower: Follower,
    stop: threading.Event,
    interval: float = POLL_INTERVAL,
    on_change: Callable[[FollowChange], None] | None = None,
) -> Iterator[Job]:
    """The jobs that enter the file, as they come, until `stop` is set.

    Blocks between polls; `on_change` sees every change first (removed
    lines, duplicates and errors, for the display).
    """
    while not stop.is_set():
        change = follower.take()
        if change is None:
            stop.wait(interval)
            continue
        if on_change is not None:
            on_change(change)
        yield from change.added
