"""metadata.json: the JSON view of the journal that people, scripts and the original tool read (the runs directory and its lock: `rundir`).

The journal (`store/journal.py`) is the durable truth about jobs; metadata.json is
a view of it for people and scripts, in the original batchrun's layout: one
JSON object keyed by job id. It is always valid JSON (written to a temporary
file and renamed over the old one) and is rewritten at most about once a
second during a launch. An entry is rendered when its job changes, and a
rewrite copies the other lines from the file as it was (`viewfile`), so it
costs what changed, not a re-encoding of every job.

Entries are written one per line (`"<job_id>": {...}`): still indented JSON
that any JSON reader loads, greppable by job id, and fast to produce (the C
JSON encoder is only used without `indent`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from batchrun.errors import MetadataError
from batchrun.runfile.file import Job, parse_parameters
from batchrun.runfile.idindex import IdIndex
from batchrun.store.records import JobRecord, State
from batchrun.store.viewfile import ViewFile, ViewSnapshot

__all__ = ["MetadataView", "build_entry", "iter_metadata", "iter_metadata_spans", "legacy_record", "load_metadata", "entry_of_line", "read_entry_at", "render_entry", "salvage_metadata"]

# What a reader of a damaged metadata.json is told: a launch repairs it.
_REBUILD_FIX = "batchrun launch rebuilds it from the job journal"
# The start of one job's entry anywhere in a damaged file, in either layout.
_ENTRY_START = re.compile(r'"([0-9a-f]{16})"\s*:\s*\{')


def load_metadata(path: Path) -> dict[str, dict[str, Any]]:
    """Read metadata.json (ours or the original batchrun's); {} when absent.

    Raises:
        MetadataError: the file is unreadable, not JSON, or not an object of
            job entries; the message says how to rebuild it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise MetadataError(f"{path}: cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise MetadataError(f"{path}: corrupt metadata (not UTF-8 at byte {err.start}); {_REBUILD_FIX}") from err
    fix = _REBUILD_FIX
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise MetadataError(f"{path}:{err.lineno}: corrupt metadata ({err.msg}); {fix}") from err
    except (RecursionError, ValueError) as err:
        # Nesting too deep for the parser, or a number too long to convert.
        raise MetadataError(f"{path}: corrupt metadata ({type(err).__name__}); {fix}") from err
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise MetadataError(f"{path}: not a JSON object of job entries; {fix}")
    return data


def iter_metadata(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The entries of metadata.json one at a time; nothing when absent.

    batchrun writes one entry per line, so its files are read line by line
    and never held whole in memory; other layouts (the original batchrun's
    indented JSON) are parsed at once.

    Raises:
        MetadataError: as `load_metadata`.
    """
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    except OSError as err:
        raise MetadataError(f"{path}: cannot read: {err.strerror}") from err
    fix = _REBUILD_FIX
    lineno = 1
    yielded = False
    with f:
        try:
            if f.readline() == "{\n":
                for lineno, line in enumerate(f, start=2):  # noqa: B007 - named in the error below
                    if line in ("}\n", "}"):
                        if not f.read().strip():
                            return
                        break
                    found = _entry_of_text(line)
                    if found is None:
                        break
                    yielded = True
                    yield found
        except UnicodeDecodeError:
            pass
    if yielded:
        raise MetadataError(f"{path}:{lineno}: corrupt metadata; {fix}")
    # Not batchrun's line layout: parse it whole (and report a real error).
    yield from load_metadata(path).items()


def iter_metadata_spans(f: BinaryIO, path: Path) -> Iterator[tuple[str, dict[str, Any], int, int]]:
    """`iter_metadata` of the open file `f`, each entry with where its line starts and its length (`read_entry_at` reads it again).

    A file not in batchrun's line layout, or damaged, gives every entry of
    `load_metadata(path)` instead, each with the start -1 (the errors are
    `load_metadata`'s, as a whole read would raise them).
    """
    first = f.readline()
    start = len(first)
    found: list[tuple[str, dict[str, Any], int, int]] = []
    if first == b"{\n":
        for line in f:
            if line in (b"}\n", b"}"):
                if not f.read().strip():
                    yield from found
                    return
                break
            entry = entry_of_line(line)
            if entry is None:
                break
            found.append((entry[0], entry[1], start, len(line)))
            start += len(line)
            if len(found) >= 1024:
                yield from found
                found.clear()
    # Some entries may have been given already: the same ones come again, whole, and win.
    for job_id, value in load_metadata(path).items():
        yield job_id, value, -1, 0


def read_entry_at(fd: int, start: int, length: int) -> dict[str, Any]:
    """The entry of the line `iter_metadata_spans` found at `start` (the file as it was then: `fd` kept open)."""
    entry = entry_of_line(os.pread(fd, length, start))
    if entry is None:
        raise MetadataError(f"entry at byte {start} of metadata.json changed while read")
    return entry[1]


def entry_of_line(line: bytes) -> tuple[str, dict[str, Any]] | None:
    """A line of batchrun's layout, `  "<job id>": {...},`, as `iter_metadata` reads it; None when it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _entry_of_text(text)


def _entry_of_text(text: str) -> tuple[str, dict[str, Any]] | None:
    """`entry_of_line` of a decoded line: the one rule for what a line of batchrun's layout is."""
    key, sep, value = text.rstrip("\n").rstrip(",").partition(": ")
    if not (sep and key.startswith('  "') and key.endswith('"') and value.startswith("{")):
        return None
    try:
        entry = json.loads(value)
    except (RecursionError, ValueError):
        return None
    return (key[3:-1], entry) if isinstance(entry, dict) else None


def salvage_metadata(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of a damaged metadata.json that are still whole.

    Works on both layouts (one entry per line, or the original batchrun's
    indented JSON): each `"<job id>": {` starts a candidate, kept when it
    parses as a JSON object of valid UTF-8. A truncated file keeps all but
    its torn end; garbage keeps nothing.

    Raises:
        OSError: the file cannot be read at all.
    """
    with open(path, "rb") as f:
        data = f.read()
    # Undecodable bytes become lone surrogates: they never match a key, and
    # an entry holding one is dropped below, so no guess is written back.
    text = data.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    entries: dict[str, dict[str, Any]] = {}
    pos = 0
    while (match := _ENTRY_START.search(text, pos)) is not None:
        try:
            entry, end = decoder.raw_decode(text, match.end() - 1)
            json.dumps(entry, ensure_ascii=False).encode("utf-8")
        except (RecursionError, ValueError):  # UnicodeEncodeError is a ValueError
            pos = match.end()
            continue
        if isinstance(entry, dict):
            entries[match.group(1)] = entry
        pos = end
    return entries


def legacy_record(job_id: str, entry: dict[str, Any]) -> JobRecord | None:
    """A finished record from an entry the original batchrun wrote, if finished.

    The original kept `status` (exit code, null while running), `start` and
    `runtime`; a non-null int status means the job ran to its end.
    """
    status = entry.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        return None
    rec = JobRecord(job_id)
    rec.status = status
    rec.state = State.SUCCEEDED if status == 0 else State.FAILED
    start = entry.get("start")
    runtime = entry.get("runtime")
    rec.start = float(start) if isinstance(start, (int, float)) else 0.0
    rec.end = rec.start + (float(runtime) if isinstance(runtime, (int, float)) else 0.0)
    attempts = entry.get("attempts")
    rec.attempts = attempts if isinstance(attempts, int) else 1
    return rec


def build_entry(job: Job, rec: JobRecord | None, log_dir: str, old: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata.json entry of a job of the runfile."""
    params = old.get("parameters") if old is not None and old.get("command") == job.command else None
    if not isinstance(params, dict):
        params = parse_parameters(job.command)
    if rec is None:
        rec = JobRecord(job.job_id)
    running = rec.state == State.RUNNING
    entry = {
        "command": job.command,
        "status": rec.status,
        "start": rec.start,
        "runtime": rec.runtime,
        "parameters": params,
        "state": rec.state,
        "end": rec.end,
        "line": job.lineno,
        "attempts": rec.attempts,
        "exit_codes": rec.exit_codes,
        "host": rec.host,
        "pid": int(rec.ref) if running and rec.ref is not None and rec.ref.isdigit() else None,
        "job_ref": rec.ref if running else None,
        "slot": rec.slot if running else None,
        "max_rss_kb": rec.max_rss_kb,
        "user_cpu_s": rec.user_cpu_s,
        "sys_cpu_s": rec.sys_cpu_s,
        # Only where known: most machines have no GPU.
        **({"max_gpu_mem_mb": rec.max_gpu_mem_mb} if rec.max_gpu_mem_mb is not None else {}),
        "code": rec.code,
        "log_dir": log_dir,
    }
    if running and rec.holds:
        entry["holds"] = rec.holds.replace(";", " ")  # what it holds beside its slot; only while it runs
    return entry


class MetadataView:
    """metadata.json as a `viewfile.ViewFile`: the file last written, and the entries rendered since.

    Only changed entries are held, rendered (one JSON line each); a rewrite
    copies the unchanged lines from the file as it was.
    """

    def __init__(self, path: Path, render: Callable[[list[str]], list[bytes]] | None = None) -> None:
        """`render`: the lines of marked entries (`mark`), by job id, when written (`ViewFile`)."""
        self.path = path
        self.file = ViewFile(path, render)
        self.dirty = False

    def __len__(self) -> int:
        return len(self.file)

    def set(self, job_id: str, entry: dict[str, Any], new: bool = False) -> None:
        """Add or replace one job's entry; renders only that entry.

        `new`: the caller knows the job has no entry yet, so no look-up is made.
        """
        self.set_rendered(job_id, render_entry(job_id, entry), new)

    def set_rendered(self, job_id: str, line: str | bytes, new: bool = False) -> None:
        """Add an entry already rendered: an unchanged line of the old file, kept as is."""
        data = line.encode() if isinstance(line, str) else line
        if new:
            self.file.append_new(job_id, data)
        else:
            self.file.put(job_id, data)
        self.dirty = True

    def mark(self, job_id: str) -> None:
        """Note that one job's entry changed: rendered as the next write reaches it."""
        self.file.mark(job_id)
        self.dirty = True

    def remove(self, job_id: str) -> None:
        """Drop one job's entry (a pending job whose line left a followed runfile)."""
        if self.file.remove(job_id):
            self.dirty = True

    def snapshot(self) -> ViewSnapshot:
        """The entries now (immutable: safe to write after the lock)."""
        return self.file.snapshot()

    def write(self, parts: ViewSnapshot | None = None) -> None:
        """Write metadata.json atomically, from `parts` or the current entries."""
        try:
            self.file.write(parts)
        except OSError as err:
            raise MetadataError(f"{self.path}: cannot write metadata: {err.strerror or err}") from err
        if parts is None:
            self.dirty = False

    def rebuild(self, entries: Iterable[tuple[str, bytes]], jobs: IdIndex | None = None) -> None:
        """Write metadata.json anew from (job id, rendered line) pairs, in order, never all in memory (`jobs`: see `ViewFile.rebuild`)."""
        try:
            self.file.rebuild(entries, jobs)
        except OSError as err:
            raise MetadataError(f"{self.path}: cannot write metadata: {err.strerror or err}") from err
        self.dirty = False


# `json.dumps(..., ensure_ascii=False)` makes an encoder at every call, a
# third of the cost of encoding an entry: one serves every call (it keeps no
# state between them).
_JSON = json.JSONEncoder(ensure_ascii=False)


def render_entry(job_id: str, entry: dict[str, Any]) -> bytes:
    """One entry's line in metadata.json: `  "<job id>": {...}`."""
    return f"  {json.dumps(job_id)}: {_JSON.encode(entry)}".encode()


def _pending_template() -> tuple[bytes, ...]:
    """`render_entry(build_entry(job, None, log_dir))` cut at its four per-job values, from those functions themselves.

    A job with no record and no old entry (every job of a fresh launch) has
    the same entry but for its command, parameters, line and log directory:
    joining the pieces around those spares building and encoding the whole
    dict, most of a fresh build's time (`render_pending`).
    """
    command, params, line, log_dir = "\x00command\x00", "\x00parameters\x00", 987_654_321, "\x00log_dir\x00"
    entry = build_entry(Job(command, "0" * 16, line), None, log_dir)
    entry["parameters"] = params
    text = render_entry("\x00id\x00", entry)
    pieces = []
    for mark in ["\x00id\x00", command, params, line, log_dir]:
        head, found, text = text.partition(json.dumps(mark).encode())
        assert found, f"metadata.json's entry no longer holds its {mark!r} as given"
        pieces.append(head)
    return (*pieces, text)


_PENDING = _pending_template()
_encode_string = json.encoder.encode_basestring  # json.dumps of a str, ensure_ascii=False
_encode_ascii = json.encoder.encode_basestring_ascii  # json.dumps of a str


def _params_json(params: dict[str, str | bool]) -> str:
    """`_JSON.encode(params)` for `parse_parameters`' dicts (str keys; str or True values), without the encoder's set-up per call."""
    enc = _encode_string
    return "{" + ", ".join(f"{enc(key)}: {enc(value) if isinstance(value, str) else 'true'}" for key, value in params.items()) + "}"


def render_pending(job: Job, log_dir: str) -> bytes:
    """The line `render_entry(job.job_id, build_entry(job, None, log_dir))` gives, byte for byte, at a fraction of its cost."""
    params = parse_parameters(job.command)
    head, after_id, after_command, after_params, after_line, after_log_dir = _PENDING
    return b"".join((
        head, _encode_ascii(job.job_id).encode(),
        after_id, _encode_string(job.command).encode(),
        after_command, _params_json(params).encode() if params else b"{}",
        after_params, b"%d" % job.lineno,
        after_line, _encode_string(log_dir).encode(),
        after_log_dir,
    ))
