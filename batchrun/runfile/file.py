"""Runfile text -> jobs.

A runfile is a text file with one shell command per line. Blank lines and
lines whose first non-blank character is `#` are skipped, but for directives
(`# batchrun: gpus=2 cpus=8`, see `batchrun.resources`), which set what the
jobs after them ask for without changing what they are. A job's identity is
its exact command text with the whitespace at both ends stripped; its
`job_id` is the first 16 hex digits of the SHA-256 of that text, the id the
original batchrun used, so old runs directories stay readable.

This module is pure: it reads files and returns values; it never runs
anything and never prints.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from batchrun._memory import compact_heap
from batchrun.errors import RunfileError
from batchrun.resources import NO_REQUEST, Request
from batchrun.runfile.jobtable import Job, JobTable
from batchrun.runfile.packed import PACK_FROM, PackedBytes, Packer
from batchrun.runfile.parse import DirectiveError, parse_blocks, parse_commands

__all__ = ["Job", "JobTable", "Runfile", "append_commands", "job_id_of", "load_runfile", "parse_parameters", "read_text", "runfile_digest"]


@dataclass(slots=True, init=False)
class Runfile:
    """The jobs of a runfile, in file order, each command once.

    `jobs` is a `JobTable`, a compact `Sequence[Job]` (see `batchrun.runfile.jobtable`);
    jobs given as a list are stored in one.
    """

    path: Path
    jobs: JobTable
    # Commands that appeared more than once: (command, first line, repeated line).
    duplicates: list[tuple[str, int, int]]
    # SHA-256 of the text: the jobs and their line numbers follow from it.
    digest: str

    def __init__(self, path: Path, jobs: Iterable[Job] = (), duplicates: list[tuple[str, int, int]] | None = None, digest: str = "") -> None:
        self.path = path
        self.jobs = jobs if isinstance(jobs, JobTable) else JobTable(jobs)
        self.duplicates = [] if duplicates is None else duplicates
        self.digest = digest

    @property
    def name(self) -> str:
        """The runfile's name without extension: its runs directory's name."""
        return self.path.stem


def job_id_of(command: str) -> str:
    """Return the job id of a command: 16 hex digits of its SHA-256."""
    return hashlib.sha256(command.encode()).hexdigest()[:16]


def parse_runfile_text(text: str, path: Path) -> Runfile:
    """Parse runfile text into jobs; a repeated command is one job."""
    return parse_runfile_bytes(text.encode(), path)


def parse_runfile_bytes(data: bytes, path: Path) -> Runfile:
    """Parse runfile bytes (valid UTF-8) into jobs; a repeated command is one job."""
    data, digest = _text_of(data)
    try:
        jobs, duplicates = parse_commands(data)
    except DirectiveError as err:
        raise RunfileError(str(err), path, err.lineno) from None
    return Runfile(path=path, jobs=jobs, duplicates=duplicates, digest=digest)


def _text_of(data: bytes) -> tuple[bytes, str]:
    """Runfile bytes as parsed (no byte order mark, lines ended by \\n), and the runfile's digest (`Runfile.digest`)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]  # a UTF-8 byte order mark is not part of the first command
    return _lf(data), hashlib.sha256(data).hexdigest()[:32]


def _lf(data: bytes) -> bytes:
    """Lines end at \\n, \\r\\n or \\r only, as the original batchrun read them (Python's universal
    newlines); str.splitlines would also split at form feeds, vertical tabs and Unicode separators inside a command."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data


def load_runfile(path: Path) -> Runfile:
    """Read a runfile from disk.

    A long one is read and parsed a block at a time, its bytes packed as they
    come (`_load_streamed`): its whole text is never held, only its packed form.

    Raises:
        RunfileError: the file is missing, a directory, unreadable, binary or
            not UTF-8; the message names the path (and the line, for bad text).
    """
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size >= PACK_FROM:
                compact_heap()
                runfile = _load_streamed(f, path)
                if runfile is not None:
                    return runfile
                f.seek(0)  # something is wrong with it: the whole read names what, as ever
            data = f.read()
    except FileNotFoundError as err:
        raise RunfileError("no such runfile", path) from err
    except IsADirectoryError as err:
        raise RunfileError("is a directory, not a runfile", path) from err
    except PermissionError as err:
        raise RunfileError("permission denied reading the runfile", path) from err
    except OSError as err:
        raise RunfileError(f"cannot read the runfile: {err.strerror}", path) from err
    if b"\0" in data:
        lineno = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise RunfileError("binary file (NUL byte), not a runfile of commands", path, lineno)
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            lineno = data.count(b"\n", 0, err.start) + 1
            raise RunfileError("not UTF-8 text, not a runfile of commands", path, lineno) from err
    return parse_runfile_bytes(data, path)


# Bytes read at a time by `_load_streamed`.
_READ = 1 << 20


class _NotPlain(Exception):
    """`_stream_blocks` met a NUL byte or bytes that are not UTF-8."""


def _load_streamed(f: BinaryIO, path: Path) -> Runfile | None:
    """`parse_runfile_bytes` of the file's bytes read a block at a time; None at any fault (the caller reads it whole)."""
    digest, packer = hashlib.sha256(), Packer()
    try:
        jobs, duplicates = parse_blocks(_stream_blocks(f, digest, packer), os.fstat(f.fileno()).st_size, packer.finish)
    except (_NotPlain, DirectiveError):
        return None
    return Runfile(path=path, jobs=jobs, duplicates=duplicates, digest=digest.hexdigest()[:32])


def read_text(path: Path) -> tuple[bytes | PackedBytes, str] | None:
    """A runfile's text as `load_runfile` parses it (no byte order mark, lines ended by \\n) and its digest;
    None when it cannot be read or is not text (`load_runfile` says why). A long one is packed as it is read."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size >= PACK_FROM:
                compact_heap()
                digest, packer = hashlib.sha256(), Packer()
                for _ in _stream_blocks(f, digest, packer):
                    pass
                return packer.finish(), digest.hexdigest()[:32]
            data = f.read()
    except (OSError, _NotPlain):
        return None
    if b"\0" in data or not (data.isascii() or _utf8(data)):
        return None
    return _text_of(data)


def _stream_blocks(f: BinaryIO, digest: Any, packer: Packer) -> Iterator[tuple[int, bytes]]:
    """The file's text as `parse_blocks` takes it, read a chunk at a time: `digest` hashes the bytes
    (after a byte order mark), `packer` packs the text (lines ended by \\n).

    Raises:
        _NotPlain: a NUL byte, or bytes that are not UTF-8.
    """
    carry = rest = b""
    head = f.read(len(codecs.BOM_UTF8))
    if head == codecs.BOM_UTF8:
        head = b""  # a UTF-8 byte order mark is not part of the first command
    while True:
        chunk = head + f.read(_READ)
        head = b""
        digest.update(chunk)
        raw = carry + chunk
        # A \r last is held back: with the next chunk's first byte it may be one \r\n.
        carry = b"\r" if chunk and raw.endswith(b"\r") else b""
        text = rest + _lf(raw[: len(raw) - len(carry)])
        cut = text.rfind(b"\n") if chunk else len(text)
        if cut < 0:
            rest = text
            continue
        block, rest = text[:cut], text[cut + 1 :]
        if b"\0" in block or not (block.isascii() or _utf8(block)):
            raise _NotPlain
        offset = packer.size
        packer.feed(block + b"\n" if chunk else block)
        yield offset, block
        if not chunk:
            return


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def append_commands(runfile: Runfile, commands: list[str], requests: Sequence[Request] | None = None) -> list[Job]:
    """Append new commands to a runfile on disk, durably, and return their jobs.

    `requests` (one per command) are what they ask for: a directive line
    goes before each command whose request differs from the one in effect.

    The lines are on disk (written and fsynced, the file created and its
    directory synced if it was absent) before this returns, so a job started
    afterwards is always one the runfile records: a launch killed at any
    instant loses nothing it started. `runfile` gains the jobs and the new
    digest. Commands already in the runfile are not appended again.
    """
    path = runfile.path
    table = runfile.jobs
    asks = dict(zip(commands, requests, strict=True)) if requests is not None else {}
    fresh = list(dict.fromkeys(c for c in commands if table.index_of_command(c) < 0))
    if not fresh:
        return []
    lines = []
    current = table.requests.at(len(table)) or NO_REQUEST
    for command in fresh:
        request = asks.get(command, current) or NO_REQUEST
        if request != current:
            lines.append(request.directive())
            current = request
        lines.append(command)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        size = os.fstat(fd).st_size
        # A last line without its newline must not run into the first new one.
        lead = b"\n" if size and os.pread(fd, 1, size - 1) not in (b"\n", b"\r") else b""
        data = lead + "".join(f"{line}\n" for line in lines).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        text = b"".join(iter(lambda: os.read(fd, 1 << 20), b"")).decode("utf-8", errors="replace")
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    parsed = parse_runfile_text(text, path)
    new_table = parsed.jobs
    jobs = [new_table[i] for c in fresh if (i := new_table.index_of_command(c)) >= 0]
    table.extend(jobs)
    runfile.digest = parsed.digest
    return jobs


def parse_parameters(command: str) -> dict[str, str | bool]:
    """Return the `--key=value` pairs of a command, as the original batchrun did.

    A bare `--flag` maps to True. Commands that shlex cannot split (an
    unbalanced quote) have no parameters rather than an error: the shell, not
    batchrun, is the judge of a command.
    """
    params: dict[str, str | bool] = {}
    if "--" not in command:
        return params
    if any(c in command for c in "'\"\\"):
        lexer = shlex.shlex(command, posix=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:
            return params
    else:
        # Without quotes or backslashes shlex splits on whitespace: skip its
        # per-character Python loop, which dominates a 100,000-line launch.
        tokens = command.split()
    for token in tokens:
        if token.startswith("--") and len(token) > 2:
            key, sep, value = token[2:].partition("=")
            params[key] = value if sep else True
    return params


def runfile_digest(path: Path) -> str | None:
    """`Runfile.digest` of the runfile as it is on disk now, without parsing it; None when unreadable.

    The digest is of the decoded text (a byte order mark left out); valid
    UTF-8 encodes back to the same bytes, so the bytes are hashed as they
    come, in blocks, and only checked to decode.
    """
    digest = hashlib.sha256()
    check = codecs.getincrementaldecoder("utf-8")()
    first = True
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                check.decode(block)
                if first and block.startswith(codecs.BOM_UTF8):
                    block = block[len(codecs.BOM_UTF8) :]  # as `parse_runfile_text` does before its digest
                first = False
                digest.update(block)
        check.decode(b"", final=True)
    except (OSError, UnicodeDecodeError):
        return None
    return digest.hexdigest()[:32]
