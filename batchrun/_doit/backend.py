"""doit's dependency database over batchrun's journals: the `batchrun` backend.

doit asks its backend for each task's saved values (`get`), saves them when a
task succeeds (`set`, from `Dependency.save_success`), and forgets or ignores
tasks (`doit forget`, `doit ignore`). doit's stock backends keep all of that in
memory and write it when the run ends, so a kill -9 loses every task finished
in that run. This backend keeps it durable at every `save_success`:

- a job task's values are its record in `runs/<name>/jobs.journal`: the `E`
  line the job's end appended is the saved value (no second write per job);
  `doit forget` appends an `R` line, `doit ignore` an `X` line;
- every other task's values go to a journal of their own (`_doit.values`),
  `<dep_file>.journal` (the dep_file itself when it ends in `.journal`), one
  line per change, written when `save_success` ends (its last `set` is
  `deps:`) or at the latest at the next call or `dump`.

Which task names are jobs is registered by whoever creates the tasks
(`register_jobs`): `<basename>:<job id>` for a dodo.py's `runfile_tasks`, the
bare `<job id>` under `batchrun launch`. A job task's up-to-date check is
`JobDone`, which decides from the values doit hands it, as
`doit.tools.run_once` does.

Found by doit through the `doit.BACKEND` entry point `batchrun`
(`_doit.commands` has the `dumpdb` that reads it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from doit.dependency import JSONCodec
from doit.exceptions import InvalidCommand

from batchrun._doit.values import TaskValues
from batchrun.errors import BatchrunError, MetadataError
from batchrun.launch.options import Mode
from batchrun.launch.plan import done_for_mode, state_done
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State, category_of
from batchrun.store.rundir import LaunchLock, RunsDir, acquire_lock

__all__ = ["JobDone", "JobSource", "JournalDB", "RunsDirJobs", "job_state", "job_values", "register_jobs", "unregister_jobs"]

_VALUES = "_values_:"
_IGNORE = "ignore:"


def job_values(rec: JobRecord) -> dict[str, Any]:
    """The values doit holds for a job task: what its journal record says."""
    return {"state": str(rec.state), "status": rec.status, "attempts": rec.attempts, "start": rec.start, "end": rec.end, "host": rec.host}


def _record_from_values(job_id: str, values: dict[str, Any]) -> JobRecord | None:
    if "state" not in values:
        return None
    rec = JobRecord(job_id)
    rec.state = values["state"]
    rec.status = values.get("status")
    rec.attempts = values.get("attempts") or 0
    return rec


class JobSource(Protocol):
    """The jobs of one runs directory, as the backend sees them."""

    mode: str

    def has_job(self, job_id: str) -> bool: ...

    def record(self, job_id: str) -> JobRecord | None: ...

    def job_ids(self) -> Iterable[str]: ...

    def forget(self, job_ids: Collection[str]) -> None: ...

    def ignore(self, job_ids: Collection[str]) -> None: ...

    def close(self) -> None: ...


class RunsDirJobs:
    """A runs directory's jobs: read from its journal, written under its lock.

    Reads use the live journal of a launch running in this process when there
    is one (`use_journal`), else a copy loaded at creation. The first write
    (`doit forget`/`ignore`) takes the runs directory's lock, as a launch
    does, so it never races a running launch, and keeps it until `close`.
    """

    def __init__(self, runs_dir: RunsDir, job_ids: Collection[str] | None, mode: str, journal: Journal | None = None) -> None:
        self.runs_dir = runs_dir
        self.mode = mode
        self._ids = job_ids
        self._live = journal
        self._snapshot: Journal | None = None
        self._writer: tuple[Journal, LaunchLock] | None = None
        # Set while a doit run executes these jobs (`batchrun launch`, or a
        # job task's action under plain doit). doit's only `remove` then is
        # its `remove_success` after a failed task, and a failed doit task
        # must never unrecord a job: the journal already says what happened.
        self.in_run = journal is not None
        if journal is None:
            self._snapshot = Journal(runs_dir.path)
            self._snapshot.load()

    def use_journal(self, journal: Journal | None) -> None:
        """Read and write through a launch's open journal (None: no longer)."""
        self._live = journal
        if journal is None:
            self._snapshot = Journal(self.runs_dir.path)
            self._snapshot.load()

    @property
    def records(self) -> Mapping[str, JobRecord]:
        journal = self._live or (self._writer[0] if self._writer else self._snapshot)
        return journal.records if journal is not None else {}

    def has_job(self, job_id: str) -> bool:
        # None: every task name under this prefix is a job (a launch's doit
        # run has no other tasks), without a 100,000-entry copy of the ids.
        return self._ids is None or job_id in self._ids

    def record(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    def done(self, job_id: str) -> bool:
        """The up-to-date decision for a job, as `JobDone` makes it from its values."""
        return done_for_mode(self.records.get(job_id), self.mode)

    def job_ids(self) -> Iterable[str]:
        return self._ids if self._ids is not None else list(self.records)

    def forget(self, job_ids: Collection[str]) -> None:
        if self.in_run:
            return
        if self._live is None and self.runs_dir.path.is_dir():
            # Under the lock whatever the jobs' records: while a launch runs, a
            # job with no record yet may be about to start, so forgetting it
            # refuses as for any other (LockedError), instead of saying it forgot.
            self._writable()
        records = self.records
        todo = []
        for job_id in job_ids:
            rec = records.get(job_id)
            if rec is None:
                continue
            if rec.state == State.RUNNING:
                raise MetadataError(
                    f"{self.runs_dir.path}: job {job_id} is recorded as running (a launch was killed, or --detach); "
                    "launch again to settle it, then forget it"
                )
            # Unfinished jobs run again anyway: only what a resume would skip is forgotten.
            if state_done(rec.state, Mode.RESUME) or rec.ignored:
                todo.append(job_id)
        if todo:
            self._writable().record_reset(todo)

    def ignore(self, job_ids: Collection[str]) -> None:
        records = self.records
        todo = [job_id for job_id in job_ids if not (job_id in records and records[job_id].ignored)]
        if todo:
            self._writable().record_ignore(todo)

    def _writable(self) -> Journal:
        if self._live is not None:
            return self._live
        if self._writer is None:
            self.runs_dir.create()
            lock = acquire_lock(self.runs_dir)
            try:
                # Read again under the lock: a launch may have ended since.
                journal = Journal(self.runs_dir.path)
                journal.load()
                journal.open()
            except BaseException:
                lock.release()
                raise
            self._writer = (journal, lock)
        return self._writer[0]

    def close(self) -> None:
        """Close the journal written to and release the lock (idempotent)."""
        if self._writer is not None:
            journal, lock = self._writer
            self._writer = None
            try:
                journal.close()
            finally:
                lock.release()
            self._snapshot = journal


# Task-name prefix ("<basename>:" or "" under batchrun launch) -> its jobs.
_SOURCES: dict[str, JobSource] = {}


def register_jobs(prefix: str, source: JobSource) -> None:
    """Make `<prefix><job id>` task names the jobs of `source` for every backend."""
    _SOURCES[prefix] = source


def unregister_jobs(prefix: str) -> None:
    _SOURCES.pop(prefix, None)


def _find_job(task_id: str) -> tuple[JobSource, str] | None:
    if not _SOURCES:
        return None
    cut = task_id.rfind(":") + 1
    source = _SOURCES.get(task_id[:cut])
    if source is None:
        return None
    job_id = task_id[cut:]
    return (source, job_id) if source.has_job(job_id) else None


def job_state(task_id: str) -> tuple[str, JobRecord | None, str] | None:
    """A job task's state as `batchrun status` counts it (`records.category_of`), its record and its mode; None for other tasks.

    `doit list --status` and `doit info` say it, so that they agree with batchrun's commands.
    """
    found = _find_job(task_id)
    if found is None:
        return None
    source, job_id = found
    rec = source.record(job_id)
    return category_of(rec), rec, source.mode


class JobDone:
    """doit's up-to-date check of a job task, in the way of `doit.tools.run_once`.

    It adds a value saver (the job's record once it ran, which is what the
    backend holds for the task) and answers from the `values` doit read from
    its database: True when the job is done for the mode.
    """

    __slots__ = ("job_id", "last", "ran", "source")
    # doit asks every up-to-date check for its signature, job after job: worked out once here.
    __signature__ = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ("task", "values")])

    def __init__(self, source: JobSource, job_id: str) -> None:
        self.source = source
        self.job_id = job_id
        self.last: JobRecord | None = None
        # The record its task's action got from the run (`JobAction`): saved without a look-up.
        self.ran: JobRecord | None = None

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        task.value_savers.append(self._saved_values)
        self.last = _record_from_values(self.job_id, values)
        return done_for_mode(self.last, self.source.mode)

    def _saved_values(self) -> dict[str, Any]:
        rec = self.ran if self.ran is not None else self.source.record(self.job_id)
        return job_values(rec) if rec is not None else {}

    def __repr__(self) -> str:
        # doit info prints this as the reason a job task would run.
        rec = self.last
        said = "no record" if rec is None else f"{rec.state}" + (f", exit {rec.status}" if rec.status is not None else "")
        return f"batchrun journal: {said} (not done for mode {self.source.mode})"


def _user_error(err: BatchrunError) -> InvalidCommand:
    # doit prints these as one `ERROR:` line, without a traceback.
    return InvalidCommand(f"batchrun: {err}")


class JournalDB:
    """The `batchrun` doit backend: doit's interface over journals (see module doc)."""

    desc = "job tasks in runs/<name>/jobs.journal, other tasks in <dep_file>.journal"

    def __init__(self, name: str, codec: Any = None, *, module_name: str | None = None) -> None:
        self.name = name
        self.codec = codec if codec is not None else JSONCodec()
        self.values_path = Path(name if name.endswith(".journal") else name + ".journal")
        self._values = TaskValues(self.values_path, self.codec)

    def get(self, task_id: str, dependency: str) -> Any:
        found = _find_job(task_id)
        if found is None:
            return self._values.get(task_id, dependency)
        rec = found[0].record(found[1])
        if rec is None:
            return None
        if dependency == _VALUES:
            return job_values(rec) if rec.state != State.PENDING else None
        if dependency == _IGNORE:
            return "1" if rec.ignored else None
        return None

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        found = _find_job(task_id)
        if found is None:
            self._values.set(task_id, dependency, value)
        elif dependency == _IGNORE:
            self._job_call(lambda: found[0].ignore([found[1]]))
        # A job's values, checker and (empty) deps: its journal's end line
        # already holds them; the job's action wrote it as the job ended.

    def in_(self, task_id: str) -> bool:
        found = _find_job(task_id)
        if found is None:
            return self._values.in_(task_id)
        rec = found[0].record(found[1])
        return rec is not None and (rec.state != State.PENDING or rec.ignored)

    def remove(self, task_id: str) -> None:
        found = _find_job(task_id)
        if found is None:
            self._values.remove(task_id)
        else:
            self._job_call(lambda: found[0].forget([found[1]]))

    def remove_all(self) -> None:
        self._values.remove_all()
        for source in list(_SOURCES.values()):
            self._job_call(functools.partial(source.forget, list(source.job_ids())))

    def dump(self) -> None:
        self._values.dump()
        for source in list(_SOURCES.values()):
            self._job_call(source.close)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every task with saved values and those values (for `doit dumpdb`)."""
        yield from self._values.items()
        for prefix, source in list(_SOURCES.items()):
            for job_id in source.job_ids():
                rec = source.record(job_id)
                if rec is None or (rec.state == State.PENDING and not rec.ignored):
                    continue
                values: dict[str, Any] = {_VALUES: job_values(rec)} if rec.state != State.PENDING else {}
                if rec.ignored:
                    values[_IGNORE] = "1"
                yield f"{prefix}{job_id}", values

    @staticmethod
    def _job_call(call: Callable[[], None]) -> None:
        try:
            call()
        except BatchrunError as err:
            raise _user_error(err) from err
