"""Each job's metadata.json entry, found in one pass and read again a window at a time (`status --json` of a million lines).

`load_status(need_entries=True)` holds every entry as a dict: 3 GB at a
million jobs. `EntryIndex` keeps the file open, so the entries read again
are those of the file as it was found, even if a running launch renames a
new one over it meanwhile. A launch writes the entries in the runfile's
order, and then nothing more is held: the second pass reads the file along
(jobs no line of the runfile has any more may sit between). Otherwise it
holds where each job's line is (12 bytes a job). A file not in batchrun's
line layout (the original batchrun's indented JSON) is held whole, as
`load_metadata` reads it.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchrun.errors import MetadataError
from batchrun.store.metadata import entry_of_line, iter_metadata_spans, read_entry_at

__all__ = ["EntryIndex"]


class EntryIndex:
    """Where each of a runfile's jobs has its metadata.json line (by job index), filled by `scan` and `note`, then `finish`."""

    def __init__(self, path: Path, jobs: int, id_of: Callable[[int], str], row_of: Callable[[str], int]) -> None:
        self.path = path
        self.jobs = jobs
        self.id_of, self.row_of = id_of, row_of
        self.held: dict[str, dict[str, Any]] | None = None  # the whole file, when it is not in the line layout
        self.fd: int | None = None
        self.in_order = True  # the jobs' lines are in the runfile's order, each job's once
        self.has = bytearray(jobs)  # 1 for each job with a line
        self.starts: array[int] | None = None  # when not in order: each job's line (-1: none), and its length
        self.lens: array[int] | None = None
        self._lines: Iterator[bytes] | None = None
        self._next = 0  # the job after the last one whose line was found (by the scan, then by the reader)

    def scan(self) -> Iterator[tuple[str, dict[str, Any], int]]:
        """Every entry of the file, as `store.metadata.iter_metadata` gives them, with its job's index (-1: no job of the runfile)."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        except OSError as err:
            raise MetadataError(f"{self.path}: cannot read: {err.strerror}") from err
        self.fd = os.dup(f.fileno())
        with f:
            for job_id, entry, start, _ in iter_metadata_spans(f, self.path):
                if start < 0 and self.held is None:
                    self.held = {}
                yield job_id, entry, self._row(job_id, entry)

    def _row(self, job_id: str, entry: dict[str, Any]) -> int:
        if self.held is not None:
            row = self.row_of(job_id)
            if row >= 0:
                self.held[job_id] = entry
            return row
        # The common case, the next job's line: no look-up (and no sorted index of the ids built for one).
        row = self._next if self._next < self.jobs and self.id_of(self._next) == job_id else self.row_of(job_id)
        if row >= 0:
            if row < self._next:
                self.in_order = False  # out of order, or a job's second line: `finish` notes where each line is
            self.has[row] = 1
            self._next = row + 1
        return row

    def finish(self) -> None:
        """After `scan`: when the lines were not in the runfile's order, note where each job's line is."""
        self._next = 0
        if self.held is not None or self.in_order or self.fd is None:
            return
        self.starts, self.lens = array("q", [-1]) * self.jobs, array("I", [0]) * self.jobs
        with os.fdopen(os.dup(self.fd), "rb") as f:
            f.seek(0)
            for job_id, _, start, length in iter_metadata_spans(f, self.path):
                row = self.row_of(job_id)
                if row >= 0 and start >= 0:
                    self.starts[row], self.lens[row] = start, length  # a later line of the same job wins, as in a JSON object

    def get(self, row: int, job_id: str) -> dict[str, Any] | None:
        """The entry of the job at `row` (None: metadata.json has none)."""
        if self.held is not None:
            return self.held.get(job_id)
        if self.starts is not None and self.lens is not None:
            start = self.starts[row]
            return None if start < 0 else read_entry_at(self._fd(), start, self.lens[row])
        return self._along(row, job_id) if self.has[row] else None

    def _along(self, row: int, job_id: str) -> dict[str, Any]:
        """The entry of a job whose line is in order, reading the file along (from its start again for an earlier job)."""
        if row < self._next or self._lines is None:
            self._lines = _lines(self._fd())
        for line in self._lines:
            found = entry_of_line(line)
            if found is not None and found[0] == job_id:
                self._next = row + 1
                return found[1]
        raise MetadataError(f"{self.path}: changed while read")

    def _fd(self) -> int:
        assert self.fd is not None
        return self.fd

    def close(self) -> None:
        self._lines = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _lines(fd: int, block: int = 1 << 20) -> Iterator[bytes]:
    """The lines of the open file from its start, read with `pread` (no file object to close)."""
    pos, rest = 0, b""
    while True:
        data = os.pread(fd, block, pos)
        if not data:
            if rest:
                yield rest
            return
        pos += len(data)
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line + b"\n"
