"""The only module that imports doit: jobs -> doit tasks, and a doit run of them.

Each runfile line is a doit task named by its job id. Its action runs the job
through the launch (`launch.Launch.run_job`); its `uptodate` callable is doit's
check of whether the job is finished, answered from the runs directory's
journal, which records each job durably the moment it ends (doit's stock
backends only write at the end of a run, so they cannot be that record).

Three doit extension points keep one-task-per-line fast and small:
- a task loader (`JobTaskLoader`) that hands doit the pending jobs in windows,
  so a 100,000-line launch never holds 100,000 Task objects at once, and
  finished jobs never become Task objects at all;
- a runner (`PoolRunner`) whose worker threads pick their next task
  themselves, instead of doit's thread runner's round trip through the main
  thread and two queues for every task, and which moves to the next window
  while other workers still run jobs from the last one (no barrier: a slow
  job never holds back the others);
- a dependency backend (`MemoryDB`) with nothing to write at the end, since
  the journal already holds every result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from doit.action import BaseAction
from doit.cmd_base import TaskLoader2
from doit.cmd_run import Run
from doit.control import TaskControl
from doit.doit_cmd import DoitMain
from doit.exceptions import TaskError
from doit.reporter import ConsoleReporter
from doit.runner import Runner
from doit.task import Stream, Task

from batchrun.errors import BatchrunError

if TYPE_CHECKING:
    from batchrun.launch import Launch
    from batchrun.runfile import Job

__all__ = ["JobAction", "MemoryDB", "job_task", "run_job_tasks"]

# Pending jobs turned into doit Tasks at a time. A Task with its node costs
# about 5 KB; 2,000 keeps a window near 10 MB while the cost of building the
# next window stays far below one job's run time.
WINDOW = 2000

_BACKEND_NAME = "batchrun-memory"


class JobAction(BaseAction):
    """A doit action that runs one job through the launch."""

    def __init__(self, launch: Launch, job: Job) -> None:
        self.launch = launch
        self.job = job
        self.task: Task | None = None
        self.out: str | None = None
        self.err: str | None = None
        self.result: Any = None
        self.values: dict[str, Any] = {}

    def execute(self, out: Any = None, err: Any = None) -> TaskError | None:
        # A job's non-zero exit is data (recorded in the journal), not a doit
        # failure: doit's part is only to run unfinished jobs once.
        try:
            record = self.launch.run_job(self.job)
        except BatchrunError as error:
            return TaskError(str(error))
        if record is not None:
            self.values = {"state": record.state, "status": record.status}
        return None

    def __str__(self) -> str:
        return f"Job: {self.job.command}"


class _JobUptodate:
    """doit's up-to-date check of a job task: is the job already finished?"""

    __slots__ = ("job_id", "launch")

    def __init__(self, launch: Launch, job_id: str) -> None:
        self.launch = launch
        self.job_id = job_id

    def __call__(self) -> bool:
        return self.launch.is_done(self.job_id)


def _title(task: Task) -> str:
    action = task._actions[0] if task._actions else None
    if isinstance(action, JobAction):
        return f"{task.name}: {action.job.command}"
    return str(task.name)


def job_task(launch: Launch, job: Job) -> Task:
    """The doit Task of one job, named by its job id."""
    return Task(
        job.job_id,
        [JobAction(launch, job)],
        uptodate=[_JobUptodate(launch, job.job_id)],
        # Job output goes straight to its log files; doit's capture would
        # swap sys.stdout between threads.
        io={"capture": False},
        title=_title,
        doc=job.command,
    )


class MemoryDB:
    """A doit dependency backend that keeps values in memory only.

    The journal is the durable record of jobs; doit's per-task values need
    not outlive the run, so `dump` has nothing to do.
    """

    desc = "in-memory (batchrun keeps job state in its journal)"

    def __init__(self, name: str, codec: Any = None, *, module_name: str | None = None) -> None:
        self.name = name
        self._db: dict[str, dict[str, Any]] = {}

    def dump(self) -> None:
        pass

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        self._db.setdefault(task_id, {})[dependency] = value

    def get(self, task_id: str, dependency: str) -> Any:
        return self._db.get(task_id, {}).get(dependency)

    def in_(self, task_id: str) -> bool:
        return task_id in self._db

    def remove(self, task_id: str) -> None:
        self._db.pop(task_id, None)

    def remove_all(self) -> None:
        self._db.clear()


class _SilentReporter(ConsoleReporter):
    """batchrun reports through the launch's events; doit prints nothing."""

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)

    def write(self, text: str) -> None:
        pass

    def execute_task(self, task: Task) -> None:
        pass

    def add_failure(self, task: Task, fail: Any) -> None:
        self.failures.append({"task": task, "exception": fail})

    def complete_run(self) -> None:
        pass


class PoolRunner(Runner):
    """N worker threads, each selecting, running and recording its own tasks.

    The dispatcher generator of doit's TaskControl is shared under one lock;
    when a window's generator is exhausted, the worker that notices asks the
    loader for the next window while the others keep running their jobs.
    """

    def __init__(
        self,
        dep_manager: Any,
        reporter: Any,
        num_process: int,
        next_window: Callable[[], list[Task] | None],
        should_stop: Callable[[], bool],
    ) -> None:
        super().__init__(dep_manager, reporter, continue_=True, always_execute=False, stream=Stream(0))
        self.num_process = num_process
        self._next_window = next_window
        self._should_stop = should_stop
        self._cond = threading.Condition()
        self._gen: Any = None
        self._tasks: dict[str, Task] = {}
        self._errors: list[BaseException] = []

    def _use(self, dispatcher: Any) -> None:
        self._gen = dispatcher.generator
        self._tasks = dispatcher.tasks

    def _next_node(self, completed: Any) -> Any:
        """Next node to execute, or None when nothing is left. Holds the lock."""
        gen = completed[0] if completed is not None else None
        node = completed[1] if completed is not None else None
        # The completed node only goes back to the generator it came from.
        if gen is not self._gen:
            node = None
        while True:
            if self._stop_running or self._should_stop():
                return None
            try:
                nxt = self._gen.send(node)
            except StopIteration:
                tasks = self._next_window()
                if not tasks:
                    return None
                control = TaskControl(tasks)
                control.process(None)
                self._use(control.task_dispatcher())
                node = None
                continue
            node = None
            if nxt == "hold on":
                self._cond.wait(0.5)
                continue
            if self.select_task(nxt, self._tasks):
                return (self._gen, nxt)

    def _work(self) -> None:
        completed = None
        try:
            while True:
                with self._cond:
                    item = self._next_node(completed)
                if item is None:
                    return
                node = item[1]
                base_fail = self.execute_task(node.task)
                with self._cond:
                    self.process_task_result(node, base_fail)
                    self._cond.notify_all()
                completed = item
        except BaseException as error:  # noqa: BLE001 - re-raised in run_tasks
            with self._cond:
                self._errors.append(error)
                self._stop_running = True
                self._cond.notify_all()

    def run_tasks(self, task_dispatcher: Any) -> None:
        self._use(task_dispatcher)
        workers = [
            threading.Thread(target=self._work, name=f"batchrun-slot-{i}", daemon=True)
            for i in range(self.num_process)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if self._errors:
            raise self._errors[0]


class JobTaskLoader(TaskLoader2):
    """Hands doit the launch's pending jobs, a window at a time."""

    def __init__(self, launch: Launch, jobs: Sequence[Job]) -> None:
        super().__init__()
        self.launch = launch
        self._jobs: Iterator[Job] = iter(jobs)
        self._lock = threading.Lock()

    def load_doit_config(self) -> dict[str, Any]:
        return {"verbosity": 0}

    def load_tasks(self, cmd: Any, pos_args: Any) -> list[Task]:
        return self.next_window() or []

    def next_window(self) -> list[Task] | None:
        with self._lock:
            tasks = []
            for job in self._jobs:
                if not self.launch.is_done(job.job_id):
                    tasks.append(job_task(self.launch, job))
                    if len(tasks) >= WINDOW:
                        break
            return tasks or None


class _LaunchCmd(Run):
    """doit's `run`, with the PoolRunner and windowed loading."""

    name = "batchrun-launch"
    doc_purpose = "run batchrun job tasks"

    def _execute(self, num_process: int = 1) -> int:  # type: ignore[override]
        loader = self.loader
        assert isinstance(loader, JobTaskLoader)
        control = TaskControl(self.task_list)
        control.process(None)
        reporter = _SilentReporter(None, {})
        runner = PoolRunner(
            self.dep_manager,
            reporter,
            num_process=max(1, num_process),
            next_window=loader.next_window,
            should_stop=loader.launch.should_stop_dispatch,
        )
        return int(runner.run_all(control.task_dispatcher()))


class _BatchrunDoit(DoitMain):
    DOIT_CMDS = (*DoitMain.DOIT_CMDS, _LaunchCmd)


def run_job_tasks(launch: Launch, jobs: Sequence[Job], n_jobs: int) -> int:
    """Run the jobs as doit tasks with `n_jobs` workers; doit's return code."""
    loader = JobTaskLoader(launch, jobs)
    main = _BatchrunDoit(
        loader,
        config_filenames=(),
        extra_config={
            "GLOBAL": {"backend": _BACKEND_NAME, "dep_file": str(launch.runs_dir.path / ".doit.db")},
            "BACKEND": {_BACKEND_NAME: "batchrun.doit_tasks:MemoryDB"},
        },
    )
    return int(main.run([_LaunchCmd.name, "-n", str(n_jobs)]))
