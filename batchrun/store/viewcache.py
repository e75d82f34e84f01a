"""Reusing metadata.json's unchanged lines when a relaunch rebuilds it.

Rendering an entry (`build_entry` plus `json.dumps`) and decoding the old
file cost most of a relaunch after a small change: 100,000 entries are
decoded and encoded again to update 100. When metadata.json is still the file
the last launch finished with (its fingerprint says so, see
`batchrun.store.fingerprint`), each of its lines is the rendering of its job's
record as the journal stood at the fingerprint's journal size; a job no
journal line names since then still has that record, so its old line can be
kept as bytes, never decoded.

The fingerprint's journal mark (that size, and a digest of the bytes just
before it) says whether the journal's first bytes are still those it saw: a
journal rewritten since (a compaction, a rebuild by a repair) no longer
matches, and the view is rebuilt whole. Nothing here raises.
"""

from __future__ import annotations

import codecs
import json
import mmap
import os
from array import array
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from batchrun.runfile.file import Job
from batchrun.runfile.idindex import IdIndex, digest_of, has_repeats
from batchrun.store.fingerprint import journal_mark

__all__ = ["KeptLines", "journal_ids_since", "let_go", "lines_in_order", "log_dir_json", "names_log_dir", "read_old_view"]

# The mapped file's pages read so far count in the process's resident memory (all 450 MB of a
# million entries, by the end of a scan) until let go: every this many bytes read, they are
# (`let_go`). They stay in the page cache: a later read maps them back in, without disk I/O.
_LET_GO_EVERY = 8 << 20


def let_go(data: mmap.mmap | bytes) -> None:
    """Drop the mapping's resident pages (the file's bytes stay the same and readable)."""
    if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        try:
            data.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass  # only memory: the pages stay mapped


def journal_ids_since(journal_path: Path, mark: tuple[int, str]) -> set[str] | None:
    """Job ids named by the journal's lines after the mark's offset.

    None when the journal's first bytes are no longer those the mark saw
    (shorter, rewritten, unreadable): then nothing of the old view is reused.
    """
    size = mark[0]
    if journal_mark(journal_path, size) != mark:
        return None
    try:
        fd = os.open(journal_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < size:
            return None
        os.lseek(fd, size, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    ids: set[str] = set()
    for line in b"".join(chunks).split(b"\n"):
        parts = line.split(b" ", 2)
        if len(parts) >= 2:
            # Even a torn or odd line names its job as best it can: a job
            # named wrongly is only rendered again, never wrongly kept.
            ids.add(parts[1].decode("ascii", "replace"))
        elif line:
            return None
    return ids


class KeptLines:
    """The lines of a metadata.json batchrun wrote, by position: their job ids and where each line is."""

    def __init__(self, data: mmap.mmap | bytes, keys: IdIndex, starts: array[int], lens: array[int]) -> None:
        self.data = data
        self.keys = keys
        self.starts = starts
        self.lens = lens
        self._read = 0  # bytes read since the mapping's pages were last let go

    def __len__(self) -> int:
        return len(self.keys)

    def line(self, pos: int) -> bytes:
        """The rendered line at a position (`  "<id>": {...}`)."""
        start, length = self.starts[pos], self.lens[pos]
        self._read += length
        if self._read >= _LET_GO_EVERY:
            self._read = 0
            let_go(self.data)
        return bytes(self.data[start : start + length])

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()


def read_old_view(path: Path) -> KeptLines | None:
    """The file batchrun writes, one entry per line, read as rendered lines by position (the file is mapped, not read).

    Any other shape, a job id twice, or an undecodable byte gives None, and
    the caller parses the file as usual.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data: mmap.mmap | bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError):
        return None
    view = _scan(data)
    if view is None and isinstance(data, mmap.mmap):
        data.close()
    else:
        let_go(data)
    return view


def _scan(data: mmap.mmap | bytes) -> KeptLines | None:
    if data[:2] != b"{\n" or not _utf8(data):
        return None
    keys, starts, lens = IdIndex(), array("q"), array("I")
    pos = 2
    size = len(data)
    next_let_go = _LET_GO_EVERY
    while True:
        if pos >= next_let_go:
            let_go(data)
            next_let_go = pos + _LET_GO_EVERY
        end = data.find(b"\n", pos)
        if end < 0:
            return None
        if data[pos:end] == b"}" and end + 1 == size:
            break
        cut = end - 1 if data[end - 1 : end] == b"," else end
        head = data[pos : pos + 23]
        job_id = head[3:19].decode("ascii", "replace")
        if head[:3] != b'  "' or head[19:23] != b'": {' or data[cut - 1 : cut] != b"}" or digest_of(job_id) is None:
            return None
        keys.append(job_id)
        starts.append(pos)
        lens.append(cut - pos)
        pos = end + 1
    if not len(keys) or has_repeats(keys):
        return None
    return KeptLines(data, keys, starts, lens)


def _utf8(data: mmap.mmap | bytes) -> bool:
    """Whether the bytes decode as UTF-8, checked a block at a time."""
    check = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(data), 1 << 20):
            check.decode(data[start : start + (1 << 20)])
            if start and not start % _LET_GO_EVERY:
                let_go(data)
        check.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def lines_in_order(path: Path, jobs: Iterable[Job], gone: Container[str], stale: Container[str], logs: str, render: Callable[[Job], bytes]) -> Iterator[tuple[str, bytes]]:
    """Each job's line for metadata.json anew: its old line where the old file has it next, else `render(job)`.

    For a relaunch after an early edit (`MetadataSync.finish_resumed_view`):
    every entry after it changes only its line number, and rendering half a
    million entries again took most of 20 seconds. The old file (the one the
    snapshot's layout describes) is read once, in order, a line at a time,
    holding no layout of it: the next old line, past those of jobs `gone`
    from the runfile, is taken when it is the job's, and kept (its line
    number set) unless the job is `stale` (the journal named it since) or the
    line is not of this runs directory's logs. Jobs out of the old order (moved,
    added) are rendered; so is every job after a line of another shape.
    """
    logs_json = log_dir_json(logs)
    with open(path, "rb") as f:
        old = _old_lines(f)
        ahead = next(old, None)
        for job in jobs:
            job_id = job.job_id
            while ahead is not None and ahead[0] in gone:
                ahead = next(old, None)
            line = None
            if ahead is not None and ahead[0] == job_id:
                line = ahead[1]
                ahead = next(old, None)
            if line is not None and job_id not in stale and names_log_dir(line, logs_json, job_id):
                kept = _with_line_number(line, job.lineno)
                if kept is not None:
                    yield job_id, kept
                    continue
            yield job_id, render(job)


def log_dir_json(logs: str) -> bytes:
    """How an entry's log_dir under `logs` starts, rendered (JSON, `<logs>/` without the closing quote)."""
    return json.dumps(f"{logs}/", ensure_ascii=False)[:-1].encode()


def names_log_dir(line: bytes, logs_json: bytes, job_id: str) -> bool:
    """Whether a rendered line ends with its job's log directory under these logs (`log_dir_json`): a line
    of a runs directory since moved names another, and is rendered again."""
    return line.endswith(b', "log_dir": ' + logs_json + job_id.encode() + b'"}')


def _old_lines(f: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(job id, line) of each entry of a metadata.json batchrun wrote, in order; it stops at any other shape."""
    if f.readline() != b"{\n":
        return
    for raw in f:
        line = raw[:-2] if raw.endswith(b",\n") else raw[:-1] if raw.endswith(b"\n") else b""
        if line[:3] != b'  "' or line[19:23] != b'": {' or line[-1:] != b"}":
            return
        yield line[3:19].decode("ascii", "replace"), line


def _with_line_number(line: bytes, lineno: int) -> bytes | None:
    """The line with its entry's "line" set (the last such key: inside strings quotes are escaped); None if it has none."""
    start = line.rfind(b', "line": ')
    end = line.find(b', "attempts": ', start)
    if start < 0 or end < 0 or not line[start + 10 : end].isdigit():
        return None
    return b"%s%d%s" % (line[: start + 10], lineno, line[end:])
