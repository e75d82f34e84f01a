""".metadata.stamp: which journal, runfile and metadata.json a launch left behind.

A launch writes the stamp as it finishes. The next launch compares it with
what it finds: when nothing changed (same journal size, same metadata.json
size and mtime, same runfile text), metadata.json is still exactly the view
of the journal and need not be read or rebuilt, which keeps a no-op relaunch
cheap. `batchrun status` compares only the metadata.json part, to know it
can skip parsing that file.

The stamp is only an optimisation: a stamp that is missing, unreadable,
truncated, of another version or full of garbage bytes simply does not
match, and the view is rebuilt. Nothing here raises.

Format (one ASCII line): `1 <journal size> <metadata name> <size>:<mtime_ns> <runfile digest>`;
the metadata name may hold spaces (it sits between fixed fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["STAMP_NAME", "Stamp", "metadata_id", "metadata_unchanged", "read_small_record", "read_stamp", "write_stamp"]

STAMP_NAME = ".metadata.stamp"
# The only stamp format there is; any other first field means "no stamp".
_VERSION = "1"
# A stamp is one short line: anything longer is not one, and is not read whole.
_MAX_BYTES = 4096


@dataclass(frozen=True)
class Stamp:
    """What metadata.json reflected when a launch last wrote it."""

    journal_size: int
    metadata_name: str
    metadata_id: str  # "<size>:<mtime_ns>" of metadata.json, or "none"
    runfile_digest: str

    @classmethod
    def now(cls, runs_dir: Path, journal_path: Path, metadata_name: str, runfile_digest: str) -> Stamp:
        """The stamp describing the runs directory as it is now."""
        try:
            journal_size = journal_path.stat().st_size
        except OSError:
            journal_size = 0
        return cls(journal_size, metadata_name, metadata_id(runs_dir / metadata_name), runfile_digest)

    def render(self) -> str:
        return f"{_VERSION} {self.journal_size} {self.metadata_name} {self.metadata_id} {self.runfile_digest}\n"


def metadata_id(path: Path) -> str:
    """Size and mtime of metadata.json: an edited or damaged file no longer matches."""
    try:
        meta = path.stat()
    except OSError:
        return "none"
    return f"{meta.st_size}:{meta.st_mtime_ns}"


def read_small_record(path: Path, max_bytes: int) -> bytes | None:
    """A small record file's bytes, read whole; None when absent, unreadable, over `max_bytes` or not ending in a newline.

    Such files (the stamp, the resume index) are written in one piece: a
    missing final newline means a truncated write, and a bigger file is not
    one of them (and is never read whole).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError:
        return None
    if len(data) > max_bytes or not data.endswith(b"\n"):
        return None
    return data


def read_stamp(runs_dir: Path) -> Stamp | None:
    """The stamp the last launch wrote; None when absent or unreadable in any way."""
    data = read_small_record(runs_dir / STAMP_NAME, _MAX_BYTES)
    if data is None:
        return None
    try:
        text = data[:-1].decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split(" ")
    # isdigit() alone accepts digits int() refuses, such as "²".
    if len(parts) < 5 or parts[0] != _VERSION or not (parts[1].isascii() and parts[1].isdigit()) or "\n" in text:
        return None
    return Stamp(int(parts[1]), " ".join(parts[2:-2]), parts[-2], parts[-1])


def metadata_unchanged(runs_dir: Path, metadata_name: str) -> bool:
    """Whether metadata.json is still the file the last launch finished with."""
    stamp = read_stamp(runs_dir)
    return stamp is not None and stamp.metadata_name == metadata_name and stamp.metadata_id == metadata_id(runs_dir / metadata_name)


def write_stamp(runs_dir: Path, stamp: Stamp) -> None:
    """Record the stamp; a failure only costs the next launch a rebuild of the view."""
    try:
        (runs_dir / STAMP_NAME).write_text(stamp.render(), encoding="utf-8")
    except (OSError, UnicodeError):
        pass
