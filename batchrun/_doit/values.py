"""doit's saved values of the tasks that are not batchrun jobs, in a journal file.

`_doit.backend.JournalDB` keeps job tasks in their runs directory's journal and
every other task here, in the same spirit: one line appended per change, a
save durable once `Dependency.save_success` returns (doit's stock backends
write only when the whole run ends), a torn last line dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.dependency import DatabaseException
from doit.exceptions import InvalidCommand, InvalidDodoFile

from batchrun.atomic import write_atomic
from batchrun.errors import MetadataError

__all__ = ["VALUES_FILE", "CorruptValuesError", "TaskValues", "repair_doit_db"]

# The dep_file of batchrun's DOIT_CONFIG: the values of tasks that are not jobs.
VALUES_FILE = ".doit.journal"

# The key `Dependency.save_success` sets last for every task: the end of one save.
_LAST_KEY = "deps:"
_IGNORE = "ignore:"


# How every line of the file starts: a torn last line is one of these cut short.
_RECORD_STARTS = (b'V "', b'R "', b"C")


class CorruptValuesError(DatabaseException, InvalidDodoFile):
    """The values file is damaged: a `DatabaseException`, as doit's own backends raise, that doit prints in one line."""


def _user_error(err: MetadataError) -> InvalidCommand:
    # doit prints these as one `ERROR:` line, without a traceback.
    return InvalidCommand(f"batchrun: {err}")


class TaskValues:
    """doit's values of the tasks that are not jobs, in a journal of their own.

    Lines (JSON strings and the codec's text, so any task name and value fits):

        V <task> <key> <value>     doit set a value
        R <task>                   doit forgot the task
        C                          doit forgot every task

    A torn last line (a kill in mid-write) is ignored and cut off.
    """

    def __init__(self, path: Path, codec: Any) -> None:
        self.path = path
        self.codec = codec
        self._db: dict[str, dict[str, Any]] = {}
        self._pending: list[str] = []
        self._pending_task: str | None = None
        self._fd: int | None = None
        self._valid = 0
        self._lines = 0
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as err:
            raise _user_error(MetadataError(f"{self.path}: cannot read doit's task values: {err.strerror}")) from err
        self._valid = data.rfind(b"\n") + 1
        tail = data[self._valid :]
        # Only a record cut short by a kill mid-write is a torn write, dropped;
        # anything else at the end is damage, as doit's backends report it.
        if tail and not (tail.startswith(_RECORD_STARTS) or any(start.startswith(tail) for start in _RECORD_STARTS)):
            lineno = data.count(b"\n") + 1
            raise CorruptValuesError(
                f"batchrun: {self.path}:{lineno}: corrupt line {ascii(tail[:60].decode('latin-1'))} in doit's task values; "
                "remove that line (those tasks run again)"
            )
        decoder = json.JSONDecoder()
        for lineno, raw in enumerate(data[: self._valid].split(b"\n")[:-1], start=1):
            try:
                line = raw.decode("utf-8")
                if line.startswith("V "):
                    task, end = decoder.raw_decode(line, 2)
                    key, end = decoder.raw_decode(line, end + 1)
                    self._db.setdefault(str(task), {})[str(key)] = self.codec.decode(line[end + 1 :])
                elif line.startswith("R "):
                    self._db.pop(str(json.loads(line[2:])), None)
                elif line == "C":
                    self._db.clear()
                elif line:
                    raise ValueError(line[:1])
            except ValueError as err:  # UnicodeDecodeError and JSONDecodeError too
                raise CorruptValuesError(
                    f"batchrun: {self.path}:{lineno}: corrupt line {ascii(raw[:60].decode('latin-1'))} in doit's task values; "
                    "remove that line (those tasks run again)"
                ) from err
            self._lines += 1

    def get(self, task: str, key: str) -> Any:
        return self._db.get(task, {}).get(key)

    def in_(self, task: str) -> bool:
        return task in self._db

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._db.items()

    def set(self, task: str, key: str, value: Any) -> None:
        if self._pending_task != task:
            self._flush()
        self._db.setdefault(task, {})[key] = value
        text = self.codec.encode(value)
        if "\n" in text:
            raise InvalidCommand(f"batchrun: the doit codec wrote a newline for {task} {key}; use a one-line codec")
        self._pending.append(f"V {json.dumps(task)} {json.dumps(key)} {text}\n")
        self._pending_task = task
        if key in (_LAST_KEY, _IGNORE):
            self._flush()

    def remove(self, task: str) -> None:
        self._flush()
        if self._db.pop(task, None) is not None:
            self._write(f"R {json.dumps(task)}\n")

    def remove_all(self) -> None:
        self._flush()
        self._db.clear()
        self._write("C\n")

    def _flush(self) -> None:
        if self._pending:
            lines, self._pending, self._pending_task = self._pending, [], None
            self._write("".join(lines), len(lines))

    def _write(self, text: str, count: int = 1) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                if os.fstat(self._fd).st_size > self._valid:
                    os.ftruncate(self._fd, self._valid)  # the torn line of a killed writer
            # One write on O_APPEND: the whole save is in the kernel when it returns.
            os.write(self._fd, text.encode("utf-8"))
        except OSError as err:
            raise _user_error(MetadataError(f"{self.path}: cannot write doit's task values: {err.strerror}")) from err
        self._lines += count

    def dump(self) -> None:
        """Write what is pending, close, and compact a journal grown much longer than its content."""
        self._flush()
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._lines <= 2 * sum(len(v) for v in self._db.values()) + 100:
            return
        lines = (f"V {json.dumps(task)} {json.dumps(key)} {self.codec.encode(value)}\n" for task, values in self._db.items() for key, value in values.items())
        try:
            write_atomic(self.path, lines, sync=True)
        except OSError:
            pass  # only an optimisation: the long journal stays valid


def repair_doit_db(path: Path) -> str | None:
    """Remove a damaged sweep database (doit's values, this module's format); returns the notice.

    doit would stop with an error naming the bad line; the file only caches
    which inputs the sweep task last saw, so without it the sweep runs once
    more and the file is written anew.
    """
    from doit.dependency import JSONCodec

    try:
        TaskValues(path, JSONCodec())
        return None
    except InvalidCommand:
        return None  # unreadable (not damaged): doit reports it in one line
    except InvalidDodoFile:
        pass
    try:
        os.unlink(path)
    except OSError as err:
        raise MetadataError(f"{path}: damaged, and cannot be removed: {err.strerror}") from None
    return f"{path}: damaged; removed (a cache of the sweep's inputs: the sweep runs again)"
