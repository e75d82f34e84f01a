"""metadata.json's entries one at a time, from a mapping of the file: an entry of a job never run is known by its bytes, not decoded.

A runs directory whose journal is empty (a launch stopped before its jobs
ran) is read from metadata.json twice per command: `repair.surviving_records`
for the records, `status.compact.entries_beside` for the entries of jobs the
runfile no longer has. Decoding a million entries as JSON took 9 s and 6 s,
while an entry batchrun wrote for a job not yet run (pending, no attempt)
tells either of them nothing but its id: such a line, matched whole by
`_NEVER_RUN` (which accepts only valid JSON, so the line decodes, and only
one rendering, so the state and attempts seen are the entry's own), is given
as its id and None. `EntryScan.entry` decodes it when a reader does want it.
A reader that needs no entry of a job that ran either (`status`: the journal
holds their records) asks for those the same way (`ran=True`): a line matched
whole by `_RAN`, the one rendering batchrun gives a job with a record, valid
JSON with a `state` of its own, is given as its id and None as well.

Anything else is `metadata.iter_metadata`'s: every other line is decoded by
its rule (`entry_of_line`), and a file not in batchrun's line layout, or a
line that is not an entry, hands the rest to it (the entries given so far are
passed over), so its errors and its messages stay the same. Pure reads.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Generator, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from batchrun.store.metadata import entry_of_line, iter_metadata
from batchrun.store.viewcache import let_go

__all__ = ["EntryScan"]

# A JSON string of printable ASCII with no escape: whatever it holds, it ends at its next quote.
_TEXT = rb'"[ !#-\[\]-~]*"'
_VALUE = rb"(?:" + _TEXT + rb"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null)"
_PAIR = _TEXT + rb": " + _VALUE
# The line `build_entry` renders for a job with no record yet, from the newline before it (the match's end is the next).
_NEVER_RUN = re.compile(
    rb'\n  "([0-9a-f]{16})": \{"command": ' + _TEXT + rb', "status": null, "start": null, "runtime": null, '
    rb'"parameters": \{(?:' + _PAIR + rb"(?:, " + _PAIR + rb")*)?"
    rb'\}, "state": "pending", "end": null, "line": (?:0|[1-9][0-9]*), "attempts": 0, "exit_codes": \[\], '
    rb'"host": null, "pid": null, "job_ref": null, "slot": null, "max_rss_kb": null, "user_cpu_s": null, '
    rb'"sys_cpu_s": null, "code": null, "log_dir": ' + _TEXT + rb"\},?(?=\n)"
)
_INT = rb"-?(?:0|[1-9][0-9]*)"
_NUMBER = _INT + rb"(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"


def _or_null(value: bytes) -> bytes:
    return rb"(?:" + value + rb"|null)"


# The line `build_entry` renders for a job with a record (any state) whose texts are plain ASCII and numbers
# finite: as `_NEVER_RUN`, only valid JSON and only that rendering, so the `state` it holds is the entry's own.
_RAN = re.compile(
    rb'\n  "([0-9a-f]{16})": \{"command": ' + _TEXT + rb', "status": ' + _or_null(_INT) + rb', "start": ' + _or_null(_NUMBER)
    + rb', "runtime": ' + _or_null(_NUMBER) + rb', "parameters": \{(?:' + _PAIR + rb"(?:, " + _PAIR + rb")*)?"
    + rb'\}, "state": ' + _TEXT + rb', "end": ' + _or_null(_NUMBER) + rb', "line": ' + _INT + rb', "attempts": ' + _INT
    + rb', "exit_codes": \[(?:' + _INT + rb"(?:, " + _INT + rb')*)?\], "host": ' + _or_null(_TEXT) + rb', "pid": ' + _or_null(_INT)
    + rb', "job_ref": ' + _or_null(_TEXT) + rb', "slot": ' + _or_null(_INT) + rb', "max_rss_kb": ' + _or_null(_INT)
    + rb', "user_cpu_s": ' + _or_null(_NUMBER) + rb', "sys_cpu_s": ' + _or_null(_NUMBER) + rb'(?:, "max_gpu_mem_mb": ' + _INT
    + rb')?, "code": ' + _or_null(_TEXT) + rb', "log_dir": ' + _TEXT + rb'(?:, "holds": ' + _TEXT + rb")?\},?(?=\n)"
)
# The mapped file's pages are let go every this many bytes read (`viewcache.let_go`).
_LET_GO_EVERY = 8 << 20


class EntryScan:
    """metadata.json's entries as (job id, entry) pairs, in file order; None as the entry: a job never run (`entry` gives it).

    `ran`: None also for a job that ran, in the one rendering batchrun gives it (`_RAN`).
    """

    def __init__(self, path: Path, ran: bool = False) -> None:
        self.path = path
        self._ran = _RAN.match if ran else None
        self._data: mmap.mmap | None = None
        self._last: re.Match[bytes] | None = None  # the line last given undecoded

    def entry(self) -> dict[str, Any]:
        """The entry last given as None, decoded."""
        assert self._data is not None and self._last is not None, "only while the scan runs, after a None"
        found = entry_of_line(self._data[self._last.start() + 1 : self._last.end()])
        assert found is not None  # `_NEVER_RUN` and `_RAN` match JSON only
        return found[1]

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """Raises:
        MetadataError: as `iter_metadata`.
        """
        try:
            with open(self.path, "rb") as f:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            data = None  # absent, empty or unreadable: `iter_metadata` says which
        if data is None or data[:2] != b"{\n":
            if data is not None:
                data.close()
            yield from iter_metadata(self.path)
            return
        self._data = data
        try:
            given = yield from self._lines(data)
        finally:
            self._data = None
            data.close()
        if given >= 0:  # a line it did not take: the rest is `iter_metadata`'s
            yield from islice(iter_metadata(self.path), given, None)

    def _lines(self, data: mmap.mmap) -> Generator[tuple[str, dict[str, Any] | None], None, int]:
        """The entries up to the closing brace (returns -1), or to a line not taken (returns how many were given)."""
        match, ran, size = _NEVER_RUN.match, self._ran, len(data)
        pos, given, next_let_go = 1, 0, _LET_GO_EVERY  # at the newline before each line
        while True:
            if pos >= next_let_go:
                let_go(data)
                next_let_go = pos + _LET_GO_EVERY
            found = match(data, pos)
            if found is None and ran is not None:
                found = ran(data, pos)
            if found is not None:
                self._last = found
                given += 1
                yield found.group(1).decode("ascii"), None
                pos = found.end()
                continue
            end = data.find(b"\n", pos + 1)
            line = data[pos + 1 : end + 1 if end >= 0 else size]
            if line in (b"}\n", b"}") and not data[end + 1 if end >= 0 else size :].strip():
                return -1
            entry = entry_of_line(line) if end >= 0 else None
            if entry is None:
                return given
            given += 1
            yield entry
            pos = end
