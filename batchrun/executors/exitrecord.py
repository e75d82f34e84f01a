"""A job's exit record and its stop note: who writes them, and how they are read.

Standard library only, importing nothing from batchrun: the supervisor
(`supervisor.py`) imports it in processes that must start in milliseconds,
as a script beside it (`python -I -S`) as well as in the package.

- the exit record: a line of its launch's exit log (`exitlog`, one file per
  launch in the runs directory) when the writing process was told its
  launch; else, as the previous release wrote it, the job's own file:
- `exit`: `<status> <attempt>\\n`, the job ran to its end on its own; or
  `<status> <attempt> <state>\\n`, it ended while a stop recorded as
  `state` was under way (the stop note, below). One write, taken only when
  whole. The previous release reads a three-field record as no record,
  which is what it wrote for such a job, so it still runs that job again.
- `.stopping`, the stop note: `<state> <attempt>\\n`, written by a launch
  (`note_stop`) before the first signal of a stop (`killed`, `stopped`,
  `interrupted`, `timeout`), so that the stop is on disk before anything
  can come of it: the supervisor then records the state it names, and a
  launch that finds the job ended with no record honours it (settlement
  after a kill -9 of the launch that stopped it). A note for another
  attempt is an earlier attempt's, and is ignored. An empty note (written
  by the previous release) is a stop of unknown kind: `interrupted`.
"""

from __future__ import annotations

import os

# Not typing.TYPE_CHECKING: importing typing costs start-up time; mypy takes this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from resource import struct_rusage
if TYPE_CHECKING or __package__:
    import batchrun.executors.exitlog as exitlog
else:
    import exitlog  # a script's folder, put on sys.path by the script (see `supervisor`)

__all__ = [
    "EXIT_NAME",
    "launch_set",
    "set_launch",
    "STOP_NAME",
    "STOP_STATES",
    "clear_job_files",
    "note_stop",
    "read_exit_record",
    "read_stop_note",
    "record_end",
    "stop_state",
]

EXIT_NAME = "exit"
# Written by a launch before it signals a job's group to stop it.
STOP_NAME = ".stopping"
# The states a stop records (the journal's, as text): what a note and a record may name.
STOP_STATES = ("interrupted", "killed", "stopped", "timeout")
_STOP_BYTES = frozenset(state.encode() for state in STOP_STATES)
# What a note that names no state (the previous release's, empty) stands for.
_UNKNOWN_STOP = b"interrupted"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
# Which launch's exit log this process writes: `exitlog`'s, named here for the supervisor's users.
set_launch = exitlog.set_launch
launch_set = exitlog.launch_set


def _path(log_dir: str | bytes | os.PathLike[str], name: str) -> bytes:
    return os.fsencode(log_dir) + b"/" + name.encode()


def _read(path: bytes, size: int = 64) -> tuple[bytes, float] | None:
    try:
        with open(path, "rb") as f:
            return f.read(size), os.fstat(f.fileno()).st_mtime
    except OSError:
        return None


def _attempt_bytes(attempt: str | bytes | int | None) -> bytes:
    """An attempt as the files write it: `0` for none (a job run without BATCHRUN_ATTEMPT)."""
    if attempt is None or attempt in (b"", ""):
        return b"0"
    return attempt if isinstance(attempt, bytes) else str(attempt).encode()


# -- the stop note ------------------------------------------------------------


def note_stop(log_dir: str | bytes | os.PathLike[str], state: str = "interrupted", attempt: str | bytes | int | None = None) -> bool:
    """Record, before a stop's first signal, that the job's attempt is being stopped as `state`; False if it cannot be written.

    Written to a temporary name and renamed, so a reader meets the old note
    or the new one, never half of one.
    """
    path = _path(log_dir, STOP_NAME)
    temporary = path + b".%d" % os.getpid()
    try:
        fd = os.open(temporary, _FLAGS | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"%s %s\n" % (state.encode(), _attempt_bytes(attempt)))
        finally:
            os.close(fd)
        os.rename(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
    return True


def read_stop_note(log_dir: str | bytes | os.PathLike[str]) -> tuple[str, int | None, float] | None:
    """The stop note: (state, attempt or None for any, when it was written); None when there is none."""
    found = _read(_path(log_dir, STOP_NAME))
    if found is None:
        return None
    data, when = found
    fields = data.split()
    if len(fields) == 2 and fields[0] in _STOP_BYTES and fields[1].isdigit():
        attempt = int(fields[1])
        return fields[0].decode(), attempt or None, when
    return _UNKNOWN_STOP.decode(), None, when


def stop_state(log_dir: str | bytes | os.PathLike[str], attempt: str | bytes | int | None) -> str | None:
    """The state a stop of this attempt records, if one was noted for it (a note for another attempt is not)."""
    note = read_stop_note(log_dir)
    if note is None:
        return None
    state, noted, _ = note
    wanted = int(_attempt_bytes(attempt)) if _attempt_bytes(attempt).isdigit() else 0
    if noted is not None and wanted and noted != wanted:
        return None
    return state


def clear_job_files(log_dir: str | bytes | os.PathLike[str]) -> None:
    """Remove an earlier attempt's exit record and stop note, before a new attempt is started."""
    for name in (EXIT_NAME, STOP_NAME):
        try:
            os.unlink(_path(log_dir, name))
        except FileNotFoundError:
            pass


# -- the record -----------------------------------------------------------------


def record_end(log_dir: str | bytes, returncode: int, attempt: str | bytes, rusage: struct_rusage | None = None, launch: str | None = None) -> bool:
    """Write the exit record of a job's shell that ended (returncode: -N for signal N); whether it was written.

    In the exit log (`exitlog`, with what it used, `rusage`) of `launch`,
    or of the launch this process was told, else in the job's `exit` file.

    A job its attempt's stop note names is recorded with that note's state
    (and its shell's status, 128 + N for a signal). Any other job whose
    shell a signal killed gets no record: it did not finish, and the launch
    that sees it end (or the next one) decides. One write of one short line:
    readers take it only when it is whole. A full disk leaves no record.
    """
    stop = stop_state(log_dir, attempt)
    if stop is None and returncode < 0:
        return False
    status = returncode if returncode >= 0 else 128 - returncode
    log_dir = os.fsencode(log_dir)
    appended = exitlog.append(log_dir, _attempt_bytes(attempt), status, None if stop is None else stop.encode(), rusage, os.fsencode(launch) if launch else None)
    if appended is not None:
        return appended
    line = b"%d %s\n" % (status, _attempt_bytes(attempt))
    if stop is not None:
        line = line[:-1] + b" " + stop.encode() + b"\n"
    try:
        fd = os.open(_path(log_dir, EXIT_NAME), _FLAGS | os.O_TRUNC, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def read_exit_record(log_dir: str | bytes | os.PathLike[str], attempt: int | None = None, logs: bool = True) -> tuple[int, float, str | None] | None:
    """(status, end time, the stop's state or None) from a whole exit record; None when there is none.

    The launch's exit log is read first (`exitlog.lookup`), then the job's
    `exit` file (the previous release's, or a writer told no launch). With
    `attempt`, only a record of that attempt counts. A record that names
    no attempt (written before records named them, or for a job run without
    BATCHRUN_ATTEMPT) counts for any attempt. A damaged record (not one line
    of one or two numbers and perhaps a stop's state) is no record.
    `logs=False`: the job's file alone (Dask's supervisors, which write it
    and take a record there as one made since the launch's last claim).
    """
    logged = exitlog.lookup(log_dir, attempt) if logs else None
    if logged is not None and attempt is not None:
        return logged.status, logged.end, logged.state
    own = _read_own(log_dir, attempt)
    if logged is None or (own is not None and own[0] > logged.attempt):
        return None if own is None else own[1]
    return logged.status, logged.end, logged.state  # the newest of the two, asked for any attempt


def _read_own(log_dir: str | bytes | os.PathLike[str], attempt: int | None) -> tuple[int, tuple[int, float, str | None]] | None:
    """The job's own `exit` file's record: (its attempt, the record)."""
    found = _read(_path(log_dir, EXIT_NAME))
    if found is None:
        return None
    data, end = found
    if not data.endswith(b"\n"):
        return None
    fields = data.split()
    try:
        status = int(fields[0])
        recorded = int(fields[1]) if len(fields) > 1 else 0
    except (ValueError, IndexError):
        return None
    state = fields[2] if len(fields) > 2 else None
    if len(fields) > 3 or (state is not None and state not in _STOP_BYTES):
        return None
    if attempt is not None and recorded and recorded != attempt:
        return None
    return recorded, (status, end, None if state is None else state.decode())
