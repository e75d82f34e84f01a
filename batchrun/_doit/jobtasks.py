"""A launch's job tasks: the doit action that runs one job, and the Task around it, made without doit's checks per task.

Each job is a doit task named by its job id, with one action (`JobAction`,
which runs the job through the launch) and one up-to-date check
(`backend.JobDone`, doit's decision from the batchrun backend). doit's
`Task` constructor checks the type of each of some twenty arguments and
wraps each one, the same for every job task: about 20 µs a task, a tenth of
what the launch itself spends on a trivial job. `JobTasks` makes the first
task of a launch by the constructor and each later one as a copy of its
fields, with what differs per job (name, action, check, doc) and a new
empty list, set or dict wherever the constructor makes one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from doit.action import BaseAction
from doit.exceptions import TaskError
from doit.task import Task

from batchrun._doit.backend import JobDone, JobSource
from batchrun.errors import BatchrunError

if TYPE_CHECKING:
    from batchrun.runfile.file import Job
    from batchrun.store.records import JobRecord

__all__ = ["JobAction", "JobRunner", "JobTasks", "job_title"]

# The fields of a job task that differ from job to job (`options`: none, see `JobTasks`).
_PER_JOB = frozenset(("name", "_actions", "uptodate", "doc", "options"))


class JobRunner(Protocol):
    """What runs jobs for doit tasks: a prepared `launch.Launch`."""

    @property
    def fatal(self) -> BatchrunError | None: ...

    def run_job(self, job: Job) -> JobRecord | None: ...


class JobAction(BaseAction):
    """A doit action that runs one job (under batchrun launch or plain doit)."""

    def __init__(self, runner: JobRunner, job: Job, done: JobDone | None = None) -> None:
        self.runner = runner
        self.job = job
        self.done = done  # its task's up-to-date check, told the record the job's run left
        self.task: Task | None = None
        self.out: str | None = None
        self.err: str | None = None
        self.result: Any = None
        self.values: dict[str, Any] = {}

    def execute(self, out: Any = None, err: Any = None) -> TaskError | None:
        # A job's non-zero exit is data (recorded in the journal), not a doit
        # failure: doit's part is only to run unfinished jobs once.
        # doit set `task` to the Task that holds this action, a reference cycle:
        # let go of it so the Task goes by reference counting once its window is
        # done, not in a collection that stops every thread (`next_window`).
        self.task = None
        try:
            record = self.runner.run_job(self.job)
        except BatchrunError as error:
            return TaskError(f"batchrun: {error}")
        if self.done is not None:
            self.done.ran = record
        # A job that ended is recorded, whatever else went wrong: a doit
        # failure here would make doit forget it (`remove_success`).
        if self.runner.fatal is not None and (record is None or not record.finished):
            return TaskError(f"batchrun: {self.runner.fatal}")
        return None

    def __str__(self) -> str:
        return f"Job: {self.job.command}"


def job_title(task: Task) -> str:
    """A job task's title in doit's output: its name and command (its doc)."""
    return f"{task.name}: {task.doc}" if task.doc else str(task.name)


class JobTasks:
    """Makes a launch's job tasks: the first by doit's constructor, each later one as a copy of its fields.

    A job task has no parameters, so its options (which doit would parse for
    it, building a parser per task) are set to none at once. Should the
    installed doit's Task hold a list, set or dict that is not empty after
    its constructor (anything this copy would not make anew), or a job id
    the constructor refuses (an `=`), the constructor makes every task.
    """

    def __init__(self, runner: JobRunner, source: JobSource) -> None:
        self.runner = runner
        self.source = source
        self._plain: dict[str, Any] | None = None  # the fields every job task shares (no containers)
        self._fresh: list[tuple[str, type]] = []  # the fields each task gets a new empty one of
        self._copy = True

    def __call__(self, job: Job) -> Task:
        done = JobDone(self.source, job.job_id)
        action = JobAction(self.runner, job, done)
        plain = self._plain
        if plain is None or "=" in job.job_id:
            return self._construct(job, action, done)
        task: Task = Task.__new__(Task)
        fields = task.__dict__
        fields.update(plain)
        for name, kind in self._fresh:
            fields[name] = kind()
        fields.update(name=job.job_id, _actions=[action], uptodate=[(done, [], {})], doc=Task._init_doc(job.command), options={})
        return task

    def _construct(self, job: Job, action: JobAction, done: JobDone) -> Task:
        task = Task(
            job.job_id,
            [action],
            uptodate=[done],
            # Job output goes straight to its log files; doit's capture would
            # swap sys.stdout between threads.
            io={"capture": False},
            title=job_title,
            doc=job.command,
        )
        task.options = {}
        if self._copy and self._plain is None:
            shared = {name: value for name, value in vars(task).items() if name not in _PER_JOB}
            containers = {name: value for name, value in shared.items() if isinstance(value, (list, set, dict))}
            self._copy = not any(containers.values())
            if self._copy:
                self._fresh = [(name, type(value)) for name, value in containers.items()]
                self._plain = {name: value for name, value in shared.items() if name not in containers}
        return task
