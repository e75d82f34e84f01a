"""The exit log: one append-only file per launch holding the exit record of every job its supervisors ran.

Standard library only, importing nothing from batchrun (see `exitrecord`).

Place: `<runs dir>/.exits/<launch>`, beside `<runs dir>/logs/<job id>/`,
the jobs' log directories: the folder is found from any job's log
directory (`_split`), so every writer and every reader agree on it without
being told. `<launch>` is the name of the launch whose supervisors write
it (`launch_name`), given to each process that runs supervisors: the local
slot helpers and the `--detach` helper (`--launch NAME`), each SLURM array
task's supervisor (`--launch NAME`), the launch itself (for a job whose
helper died). A process told no name writes the previous release's
per-job `exit` file instead (`exitrecord.record_end`): the Dask fork
server's supervisors do, since a Dask run takes a record it finds as one
made since the launch's last claim of the directory, which removes it.
Every reader reads both (`exitrecord.read_exit_record`).

Format: one line per record,

    <job> <attempt> <status> <state> <end> <max_rss_kb> <user_cpu_s> <sys_cpu_s>\\n

`<job>`: the log directory's name (the job id); `<attempt>`: the attempt
(`0`: a job run without BATCHRUN_ATTEMPT); `<status>`: the shell's (128 + N
for signal N); `<state>`: `-` for a job that ran to its end on its own, else
the state of the stop that ended it (its stop note's); `<end>`: when it
ended, seconds since the epoch with three decimals; then what the attempt
used, from `wait4` (`-` each when unknown). Each record is one `write` of
one line shorter than PIPE_BUF to a file opened with O_APPEND, by the job's
own supervisor before it lets go of the job's lock: lines of concurrent
writers never mix, and a kill -9 of the launch or of a helper loses none.
A line that is not whole (a torn tail: no newline after a crash or a full
disk) or does not parse is no record.

Readers (`lookup`) keep what they read of each file and read only its new
bytes next time (the files only grow), keeping each job's record of its
highest attempt: the one any reader asks about. A later attempt's record
supersedes an earlier one, and a reader asks by attempt. The files go
(`drop_all`) when the next launch has settled what they hold into its
journal and no job runs: no record in them is needed any more, and a
million-job runs directory would otherwise keep tens of megabytes of them
per launch, which each settlement would read.
"""

from __future__ import annotations

import os
import time

# Not typing.TYPE_CHECKING: importing typing costs start-up time; mypy takes this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from resource import struct_rusage

__all__ = ["FOLDER", "Record", "append", "drop_all", "launch_name", "launch_set", "lookup", "set_launch"]

# The folder of the launches' files, in the runs directory.
FOLDER = ".exits"
# A record is one line of fewer bytes than this (POSIX's smallest PIPE_BUF): one write, never split.
_MAX_LINE = 512
_STATES = frozenset((b"interrupted", b"killed", b"stopped", b"timeout"))

# This process's launch name (None: write per-job files), and its open files by folder.
_launch: bytes | None = None
_files: dict[bytes, int] = {}


def launch_name() -> str:
    """A name for a new launch's file: its pid and start time, unique in a runs directory."""
    return f"{os.getpid()}-{time.time_ns() // 1_000_000}"


def set_launch(name: str | bytes | None) -> None:
    """Name the launch whose file this process's supervisors write (None: the per-job files)."""
    global _launch  # noqa: PLW0603 - one per process
    _launch = os.fsencode(name) if name else None


def launch_set() -> bool:
    """Whether this process writes a launch's file (which then holds what each attempt used, too)."""
    return _launch is not None


def _split(log_dir: bytes) -> tuple[bytes, bytes]:
    """(the runs directory's `.exits` folder, the job's name) from a job's log directory `<runs dir>/logs/<job>`."""
    logs, _, job = log_dir.rstrip(b"/").rpartition(b"/")
    runs = logs.rpartition(b"/")[0]
    return (runs or b".") + b"/" + FOLDER.encode(), job


def append(log_dir: bytes, attempt: bytes, status: int, state: bytes | None, rusage: struct_rusage | None, launch: bytes | None = None) -> bool | None:
    """Append a job's record to the file of `launch` (by default this process's); whether it was written.

    None when no launch is named, or the record cannot be one short line
    (a log directory whose name has a blank, or is very long; an attempt
    that is no number): the caller writes the job's own file instead.
    """
    launch = launch or _launch
    if launch is None or not attempt.isdigit():
        return None
    folder, job = _split(log_dir)
    usage = b"%d %.3f %.3f" % (rusage.ru_maxrss, rusage.ru_utime, rusage.ru_stime) if rusage is not None else b"- - -"
    line = b"%s %s %d %s %.3f %s\n" % (job, attempt, status, state or b"-", time.time(), usage)
    if len(line) >= _MAX_LINE or len(job.split()) != 1 or job != job.strip():
        return None
    try:
        fd = _files.get(folder + b"/" + launch)
        if fd is None:
            try:
                os.mkdir(folder)
            except FileExistsError:
                pass
            fd = _files[folder + b"/" + launch] = os.open(folder + b"/" + launch, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        written = os.write(fd, line)
        if written != len(line):  # a full disk: end the torn line, so that the next record stands alone
            os.write(fd, b"\n")
        return written == len(line)
    except OSError:
        return False


class Record:
    """A job's record: its attempt, status, the stop's state (None: it ended on its own), end time, usage (or None)."""

    __slots__ = ("attempt", "end", "state", "status", "usage")

    def __init__(self, fields: list[bytes]) -> None:
        self.attempt = int(fields[1])
        self.status = int(fields[2])
        self.state = None if fields[3] == b"-" else fields[3].decode()
        self.end = float(fields[4])
        self.usage = None if fields[5] == b"-" else (int(fields[5]), float(fields[6]), float(fields[7]))


class _Folder:
    """What a reader read of one `.exits` folder: each file's read offset, each job's newest record line."""

    def __init__(self) -> None:
        self.offsets: dict[bytes, tuple[int, int]] = {}  # file name -> (inode, bytes read)
        self.lines: dict[bytes, tuple[int, bytes]] = {}  # job -> (attempt, its record's line)

    def refresh(self, folder: bytes) -> None:
        """Read every file's new whole lines."""
        try:
            names = os.listdir(folder)
        except OSError:
            return
        if not self.offsets.keys() <= set(names):
            self.__init__()  # type: ignore[misc]  # a file was removed (a runs directory made anew): read all again
        for name in names:
            try:
                with open(folder + b"/" + name, "rb") as f:
                    stat = os.fstat(f.fileno())
                    known, offset = self.offsets.get(name, (stat.st_ino, 0))
                    if known != stat.st_ino or stat.st_size < offset:
                        self.__init__()  # type: ignore[misc]  # not the file read before
                        return self.refresh(folder)
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            whole = data.rfind(b"\n") + 1  # a torn tail is left for a later look (or for good)
            self.offsets[name] = (stat.st_ino, offset + whole)
            self._take(data[:whole])

    def _take(self, data: bytes) -> None:
        lines = self.lines
        for line in data.splitlines():
            fields = line.split(b" ")
            try:
                record = Record(fields)
            except (ValueError, IndexError):
                continue  # not a record: a torn line, or another writer's damage
            if len(fields) != 8 or (record.state is not None and fields[3] not in _STATES):
                continue
            kept = lines.get(fields[0])
            if kept is None or kept[0] <= record.attempt:
                lines[fields[0]] = (record.attempt, line)

    def find(self, job: bytes, attempt: int | None) -> Record | None:
        kept = self.lines.get(job)
        if kept is None or (attempt is not None and kept[0] and kept[0] != attempt):
            return None
        return Record(kept[1].split(b" "))  # checked when it was read


_folders: dict[bytes, _Folder] = {}


def lookup(log_dir: str | bytes | os.PathLike[str], attempt: int | None = None) -> Record | None:
    """The job's record in its runs directory's launch files: of `attempt` (or one naming none), or its newest with None; None when there is none.

    A record once read is final, so only a job not found yet makes the files be read again.
    """
    folder, job = _split(os.fsencode(log_dir))
    known = _folders.get(folder)
    if known is None:
        known = _folders[folder] = _Folder()
    elif attempt is not None and (found := known.find(job, attempt)) is not None:
        return found
    known.refresh(folder)
    return known.find(job, attempt)


def drop_all(runs_dir: str | bytes | os.PathLike[str]) -> None:
    """Remove the runs directory's launch files, once the journal holds every record they have and no job runs.

    The caller holds the runs directory's lock and has synced its journal;
    no job of the runs directory is running, so nothing appends to them.
    This process's open files and what it read of them go too.
    """
    folder = os.fsencode(runs_dir).rstrip(b"/") + b"/" + FOLDER.encode()
    for path in [path for path in _files if path.startswith(folder + b"/")]:
        os.close(_files.pop(path))
    _folders.pop(folder, None)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        try:
            os.unlink(folder + b"/" + name)
        except OSError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass
