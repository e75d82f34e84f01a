"""The fingerprint of the last launch: the one record, beside the journal and the view, of how a launch left a runs directory.

A launch that finishes (cleanly, interrupted or not) writes it last; it says:
- which metadata.json it left (name, size, mtime) and how far into the journal
  that view reflects (the journal's size then, and a digest of its last 4 KiB
  before that size): while both still hold, metadata.json need not be parsed
  (`status`) and a relaunch keeps its unchanged lines (`metasync`, `viewcache`);
- the runfile text it finished with (`Runfile.digest`);
- how the launch ended: interrupted (Ctrl-C, SIGTERM, `stop --now`), or halted
  by a failure (`--fail-fast`, `--halt-now`), which its records cannot tell,
  so that `wait` exits as it did;
- when it may (no job in flight, the runfile unchanged, not too many failures
  to list), a summary valid for the exact journal bytes (SHA-256): the counts
  and failed jobs its own summary printed, so that a relaunch with nothing to
  do answers from it without replaying the journal or parsing the runfile
  (`launch.quickresume`).

It is only an optimisation and a note: a fingerprint that is missing,
truncated, unsigned, of another version or of bad types reads as None, and
anything it no longer matches is read from the journal, metadata.json and the
runfile as ever. Nothing here raises for a bad fingerprint. One writer
(`write_fingerprint`, by a finishing launch, under the runs directory's lock)
and one reader (`read_fingerprint`).

Format of `.fingerprint` (UTF-8, two lines, written atomically):

    batchrun-fingerprint 1 <SHA-256 hex of the second line, newline excluded>
    <one JSON object: the fields of `Fingerprint`, `summary` null or the fields of `Summary`>

Before it, three files held these parts (`.metadata.stamp`,
`.metadata.journal-mark`, `.resume.index`); a launch that writes a fingerprint
removes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from batchrun.atomic import write_atomic
from batchrun.store.jobsnapshot import drop as drop_snapshot
from batchrun.store.jobsnapshot import new_token, write_sections
from batchrun.store.summary import MAX_LISTED, Summary, is_count, journal_digest, journal_prefix, summary_from_json, summary_of

__all__ = [
    "FINGERPRINT_NAME",
    "MAX_LISTED",
    "Fingerprint",
    "SnapshotRef",
    "Summary",
    "drop_summary",
    "last_launch",
    "journal_digest",
    "journal_mark",
    "journal_prefix",
    "metadata_id",
    "metadata_unchanged",
    "read_fingerprint",
    "summary_of",
    "write_fingerprint",
]

FINGERPRINT_NAME = ".fingerprint"
# The files the fingerprint replaces; a launch that writes one removes them.
_LEGACY_NAMES = (".metadata.stamp", ".metadata.journal-mark", ".resume.index")
_MAGIC = "batchrun-fingerprint"
_VERSION = "1"
_VERSION_SOME_FAILED = "2"
# A fingerprint is a few kilobytes; anything far larger is not one and is not read whole.
_MAX_BYTES = 16 * 1024 * 1024
# How much of the journal before the mark's offset its digest covers: enough
# that a rewritten journal of the same size or longer does not match by chance.
_TAIL_BYTES = 4096


@dataclass(frozen=True, kw_only=True)
class SnapshotRef:
    """The snapshot written with the fingerprint (`jobsnapshot`, `resume`): what it is of."""

    token: str  # also in the snapshot's header: a snapshot of another launch does not match
    runfile_size: int  # bytes of the runfile text its table was parsed from (byte order mark left out)
    journal_sha256: str  # of the journal's first `journal_size` bytes, which its records are of
    journal_lines: int


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """How the last launch that finished left the runs directory."""

    metadata_name: str
    metadata_id: str  # "<size>:<mtime_ns>" of metadata.json, or "none"
    runfile_digest: str
    journal_size: int  # the journal's size metadata.json reflects
    journal_tail: str  # the digest of the journal's up to 4 KiB before `journal_size`
    interrupted: bool
    halted: bool = False
    summary: Summary | None = None
    snapshot: SnapshotRef | None = None

    @classmethod
    def take(
        cls,
        runs_dir: Path,
        journal_path: Path,
        metadata_name: str,
        runfile_digest: str,
        *,
        interrupted: bool = False,
        halted: bool = False,
        summary: Summary | None = None,
        snapshot: SnapshotRef | None = None,
    ) -> Fingerprint | None:
        """The fingerprint of the runs directory as it is now; None when the journal cannot be read."""
        mark = journal_mark(journal_path)
        if mark is None:
            return None
        return cls(
            metadata_name=metadata_name,
            metadata_id=metadata_id(runs_dir / metadata_name),
            runfile_digest=runfile_digest,
            journal_size=mark[0],
            journal_tail=mark[1],
            interrupted=interrupted,
            halted=halted,
            summary=summary,
            snapshot=snapshot,
        )

    def render(self) -> str:
        fields = asdict(self)
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        # A summary that lists only the first failures is version 2: an earlier release (which reads
        # version 1 only) would take the listed ones for all; it takes its full path instead.
        version = _VERSION if self.summary is None or self.summary.lists_every_failure else _VERSION_SOME_FAILED
        return f"{_MAGIC} {version} {_sha256(body.encode())}\n{body}\n"

    def vouches_for_metadata(self, runs_dir: Path, metadata_name: str) -> bool:
        """Whether metadata.json is still the file this launch left (its name, size and mtime)."""
        return self.metadata_name == metadata_name and self.metadata_id == metadata_id(runs_dir / metadata_name)

    def matches(self, runs_dir: Path, journal_path: Path, metadata_name: str, runfile_digest: str) -> bool:
        """Whether metadata.json, the journal (its size, and its last bytes) and the runfile are still those this launch left."""
        return (
            self.runfile_digest == runfile_digest
            and journal_mark(journal_path) == (self.journal_size, self.journal_tail)
            and self.vouches_for_metadata(runs_dir, metadata_name)
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata_id(path: Path) -> str:
    """Size and mtime of metadata.json: an edited or damaged file no longer matches."""
    try:
        meta = path.stat()
    except OSError:
        return "none"
    return f"{meta.st_size}:{meta.st_mtime_ns}"


def journal_mark(journal_path: Path, size: int | None = None) -> tuple[int, str] | None:
    """(size, digest of the up to 4 KiB before it) of the journal: its first `size` bytes, in brief.

    `size` defaults to the file's size now; None when unreadable or shorter.
    """
    try:
        fd = os.open(journal_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if size is None:
            size = os.fstat(fd).st_size
        start = max(0, size - _TAIL_BYTES)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, size - start)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != size - start:
        return None
    return size, hashlib.blake2b(data, digest_size=16).hexdigest()


def write_fingerprint(runs_dir: Path, fingerprint: Fingerprint, snapshot: tuple[dict[str, Any], dict[str, Any]] | None = None, *, keep_snapshot: bool = False) -> None:
    """Replace the fingerprint, and the snapshot it names (`resume.snapshot_of`'s sections and side data).

    The snapshot is written first, under a new token the fingerprint then
    names; without one (or one that cannot be written) the fingerprint names
    none and the old file goes. `keep_snapshot`: the fingerprint names the
    snapshot on disk as it is (only its summary changed). A failure only costs
    the next launch the work it saves.
    """
    if not keep_snapshot:
        ref = fingerprint.snapshot
        if ref is not None and snapshot is not None and write_sections(runs_dir, token := new_token(), *snapshot):
            fingerprint = dataclasses.replace(fingerprint, snapshot=dataclasses.replace(ref, token=token))
        else:
            fingerprint = dataclasses.replace(fingerprint, snapshot=None)
            drop_snapshot(runs_dir)
    path = runs_dir / FINGERPRINT_NAME
    try:
        write_atomic(path, fingerprint.render())
    except (OSError, UnicodeError):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    for name in _LEGACY_NAMES:
        try:
            (runs_dir / name).unlink(missing_ok=True)
        except OSError:
            pass


def drop_summary(runs_dir: Path) -> None:
    """A full launch is about to change the records: the summary vouches for them no more (the rest stays true until it ends)."""
    fingerprint = read_fingerprint(runs_dir)
    if fingerprint is not None and fingerprint.summary is not None:
        write_fingerprint(runs_dir, dataclasses.replace(fingerprint, summary=None), keep_snapshot=True)


def read_fingerprint(runs_dir: Path) -> Fingerprint | None:
    """The fingerprint the last launch left; None when absent or damaged in any way."""
    try:
        with open(runs_dir / FINGERPRINT_NAME, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError:
        return None
    # Written in one piece: a missing final newline means a torn write.
    if len(data) > _MAX_BYTES or not data.endswith(b"\n"):
        return None
    head, sep, rest = data.partition(b"\n")
    if not sep or rest.count(b"\n") != 1:
        return None
    body = rest[:-1]
    digest = _sha256(body)
    version = next((v for v in (_VERSION, _VERSION_SOME_FAILED) if head == f"{_MAGIC} {v} {digest}".encode()), None)
    if version is None:
        return None
    try:
        fingerprint = _from_json(json.loads(body.decode("utf-8")))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if fingerprint is None or (fingerprint.summary is not None and fingerprint.summary.lists_every_failure != (version == _VERSION)):
        return None
    return fingerprint


def last_launch(runs_dir: Path, journal_path: Path) -> Fingerprint | None:
    """The last launch's fingerprint while nothing touched the journal since: how it ended is then how the records stand."""
    fingerprint = read_fingerprint(runs_dir)
    if fingerprint is None or journal_mark(journal_path) != (fingerprint.journal_size, fingerprint.journal_tail):
        return None
    return fingerprint


def metadata_unchanged(runs_dir: Path, metadata_name: str) -> bool:
    """Whether metadata.json is still the file the last launch finished with (`status` then need not parse it)."""
    fingerprint = read_fingerprint(runs_dir)
    return fingerprint is not None and fingerprint.vouches_for_metadata(runs_dir, metadata_name)


def _snapshot_from_json(obj: Any) -> SnapshotRef | None:
    if not (isinstance(obj, dict) and isinstance(obj["token"], str) and isinstance(obj["journal_sha256"], str)):
        return None
    if not (is_count(obj["runfile_size"]) and is_count(obj["journal_lines"])):
        return None
    return SnapshotRef(token=obj["token"], runfile_size=obj["runfile_size"], journal_sha256=obj["journal_sha256"], journal_lines=obj["journal_lines"])


def _from_json(obj: Any) -> Fingerprint | None:
    texts = [obj[key] for key in ("metadata_name", "metadata_id", "runfile_digest", "journal_tail")]
    if not all(isinstance(value, str) for value in texts) or not is_count(obj["journal_size"]):
        return None
    if not isinstance(obj["interrupted"], bool) or not isinstance(obj["halted"], bool):
        return None
    summary = None
    if obj["summary"] is not None:
        summary = summary_from_json(obj["summary"])
        if summary is None:
            return None
    metadata_name, metadata_id_, runfile_digest, journal_tail = texts
    return Fingerprint(
        metadata_name=metadata_name,
        metadata_id=metadata_id_,
        runfile_digest=runfile_digest,
        journal_size=obj["journal_size"],
        journal_tail=journal_tail,
        interrupted=obj["interrupted"],
        halted=obj["halted"],
        summary=summary,
        # Written since the snapshot: absent from the fingerprints of earlier releases.
        snapshot=_snapshot_from_json(obj["snapshot"]) if obj.get("snapshot") is not None else None,
    )


