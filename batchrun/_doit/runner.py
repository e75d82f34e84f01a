"""Runs a launch's jobs as doit tasks: the task loader, runner and command.

Each job is a doit task named by its job id. Its action runs the job through
the launch (`JobRunner.run_job`); its up-to-date check is doit's own, over
the `batchrun` backend (`_doit.backend`), which holds each job's journal record as
the task's saved values. This module never imports `launch`: the launch
hands itself in as a `JobRunner`.

Two doit extension points keep one-task-per-line fast and small:
- a task loader (`JobTaskLoader`) that hands doit the pending jobs in windows,
  so a 100,000-line launch never holds 100,000 Task objects at once, and
  finished jobs (the same decision as the up-to-date check) never become
  Task objects at all;
- a runner (`PoolRunner`) whose worker threads pick their next task
  themselves, instead of doit's thread runner's round trip through the main
  thread and two queues for every task, and which moves to the next window
  while other workers still run jobs from the last one (no barrier).

doit names used that doit does not document as an extension point (each is
checked by tests/test_doit_internals.py, which names any that went missing):
- `TaskDispatcher.generator` and `.tasks`, and the generator's "hold on"
  sentinel (every ready task is waiting on a running one): `PoolRunner`
  drives the dispatcher from several threads, which no public API allows;
- `Runner.select_task`, `Runner.execute_task`, `Runner.process_task_result`
  (public names, internal API): one worker's select/run/save step, the same
  calls doit's own `Runner.run_tasks` makes;
- `TaskControl(tasks).process(None)` and `.task_dispatcher()`: a dispatcher
  per window of tasks;
- `Run._execute` and `DoitCmdBase.task_list`/`.dep_manager`/`.loader`: the
  launch command, a `run` with its own runner (doit's plugin commands
  implement `_execute` the same way);
- `DoitMain.DOIT_CMDS`: adds that command next to doit's own;
- `DoitMain.get_cmds`, `DoitCmdBase.get_backends`, `Run.get_reporters`: the
  launch's own skip doit's scans of installed packages' plugin entry points;
- `ConsoleReporter.failures`: where a silent reporter keeps failures;
- `Dependency.save_success` setting `deps:` last (`_doit.backend` commits a task's
  values there) and `Dependency.backend` (`doit dumpdb`);
- a `Task`'s fields as its constructor sets them, and `Task._init_doc`: a launch's
  job tasks after the first are copies (`jobtasks.JobTasks`), not constructed.
Replaced by extension points: `Runner._stop_running` (the pool keeps its own
stop flag) and `task._actions` (a job task's title comes from its doc).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from doit.cmd_base import TaskLoader2
from doit.cmd_run import Run
from doit.control import TaskControl
from doit.doit_cmd import DoitMain
from doit.plugin import PluginDict
from doit.reporter import ConsoleReporter
from doit.runner import Runner
from doit.task import Stream, Task

from batchrun._doit.backend import JournalDB, RunsDirJobs, register_jobs, unregister_jobs
from batchrun._doit.jobtasks import JobAction, JobRunner, JobTasks, job_title
from batchrun.launch.feed import QUEUE_POLL, FixedJobs, JobQueue

if TYPE_CHECKING:
    from batchrun.runfile.file import Job
    from batchrun.store.journal import Journal
    from batchrun.store.rundir import RunsDir

__all__ = ["JobAction", "JobRunner", "JobTaskLoader", "PoolRunner", "SilentReporter", "job_title", "run_job_tasks"]

# Pending jobs turned into doit Tasks at a time. A Task with its node costs
# about 5 KB; 2,000 keeps a window near 10 MB while the cost of building the
# next window stays far below one job's run time.
WINDOW = 2000
# The first window is smaller: doit's command keeps the task list it loaded
# first (and its TaskControl) until the run ends, so its Tasks outlive it.
FIRST_WINDOW = 64

# The backend's name in doit's `doit.BACKEND` entry-point group.
BACKEND_NAME = "batchrun"


class _LaunchLike(JobRunner, Protocol):
    """The parts of a prepared launch `run_job_tasks` needs."""

    runs_dir: RunsDir
    journal: Journal
    runner: Any  # its `spare_workers`

    @property
    def options(self) -> Any: ...

    def should_stop_dispatch(self) -> bool: ...

    def is_running(self, job_id: str) -> bool: ...


class SilentReporter(ConsoleReporter):
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
    An empty window (the job source has nothing yet: --follow) makes the
    worker wait `QUEUE_POLL` seconds, lock released, and ask again; None
    ends the run.
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
        self._halt = False

    def _use(self, dispatcher: Any) -> None:
        if self._gen is not None:
            # The generator's frame and its dispatcher hold each other: closed,
            # the last window's nodes and Tasks go by reference counting, now,
            # not in a collection that stops every thread.
            self._gen.close()
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
            if self._halt or self._should_stop():
                return None
            try:
                nxt = self._gen.send(node)
            except StopIteration:
                tasks = self._next_window()
                if tasks is None:
                    return None
                if not tasks:
                    self._cond.wait(QUEUE_POLL)
                    continue
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
                self._halt = True
                self._cond.notify_all()

    def run_tasks(self, task_dispatcher: Any) -> None:
        self._use(task_dispatcher)
        workers = [threading.Thread(target=self._work, name=f"batchrun-slot-{i}", daemon=True) for i in range(self.num_process)]
        for worker in workers:
            worker.start()
        for worker in workers:
            # Join in short waits: Python runs signal handlers in the main
            # thread only, and a signal the kernel hands to a worker thread
            # (blocked in waitpid) would not wake a plain join.
            while worker.is_alive():
                worker.join(0.1)
        if self._errors:
            raise self._errors[0]


class JobTaskLoader(TaskLoader2):
    """Hands doit the launch's pending jobs, a window at a time.

    `jobs` is a list, or a `JobQueue` that may say "nothing yet" (an empty
    window) before it says "no more" (None). `skip` says which jobs need no
    task: by default those done for the mode (the decision `JobDone` makes).
    """

    def __init__(
        self,
        runner: JobRunner,
        source: RunsDirJobs,
        jobs: Sequence[Job] | JobQueue,
        should_stop: Callable[[], bool],
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.source = source
        self.should_stop = should_stop
        self.queue: JobQueue = FixedJobs(jobs) if isinstance(jobs, Sequence) else jobs
        self.skip = skip or source.done
        self._make = JobTasks(runner, source)
        # Worker threads beyond -j: threads of jobs that wait in a slot's helper behind the job there, one a slot
        # (`Scheduler.take`), so that a slot's next job starts the moment its last one ends.
        self.spare = 0

    def load_doit_config(self) -> dict[str, Any]:
        return {"verbosity": 0}

    def load_tasks(self, cmd: Any, pos_args: Any) -> list[Task]:
        return self.next_window(FIRST_WINDOW) or []

    def next_window(self, size: int | None = None) -> list[Task] | None:
        """The next window's tasks (up to `size`); [] when the job source has nothing yet, None when it has no more."""
        # No collection here: a window's Tasks hold no reference cycle once run
        # (`JobAction.execute`, `PoolRunner._use`), so they go by reference
        # counting; a collection of the whole heap per window stopped every
        # thread for tens of milliseconds.
        jobs = self.queue.next_jobs(WINDOW if size is None else size, self.skip)
        if jobs is None:
            return None
        return [self._make(job) for job in jobs]


class _LaunchCmd(Run):
    """doit's `run`, with the PoolRunner and windowed loading."""

    name = "batchrun-launch"
    doc_purpose = "run batchrun job tasks"

    # doit's own look these up among every installed package's entry points (a scan each,
    # about 8 ms): a launch uses only the batchrun backend and reports through `SilentReporter`.
    def get_backends(self) -> dict[str, Any]:
        if "backend" in self.cmdparser:
            self.cmdparser["backend"].choices = {BACKEND_NAME: JournalDB.desc}
        return {BACKEND_NAME: JournalDB}

    def get_reporters(self) -> dict[str, Any]:
        return {}

    def _execute(self, num_process: int = 1) -> int:
        loader = self.loader
        assert isinstance(loader, JobTaskLoader)
        control = TaskControl(self.task_list)
        control.process(None)
        runner = PoolRunner(
            self.dep_manager,
            SilentReporter(None, {}),
            num_process=max(1, num_process) + loader.spare,
            next_window=loader.next_window,
            should_stop=loader.should_stop,
        )
        return int(runner.run_all(control.task_dispatcher()))


class _BatchrunDoit(DoitMain):
    DOIT_CMDS = (*DoitMain.DOIT_CMDS, _LaunchCmd)

    def get_cmds(self) -> PluginDict:
        """doit's commands and the launch's, without doit's scan of every installed package's entry points for plugin
        commands: a launch runs only its own (`doit` run on a user's dodo.py is doit's own `DoitMain`, plugins and all)."""
        commands = PluginDict()
        for command in self.DOIT_CMDS:
            commands[command.get_name()] = command
        return commands


def run_job_tasks(launch: _LaunchLike, jobs: Sequence[Job] | JobQueue, n_jobs: int) -> int:
    """Run the jobs (a list, or a `JobQueue` that may grow) as doit tasks with `n_jobs` workers; doit's return code.

    The backend is the same `batchrun` backend a dodo.py gets: the task names
    here are bare job ids, read from and written to the launch's open journal.
    """
    source = RunsDirJobs(launch.runs_dir, None, str(launch.options.mode), launch.journal)
    done = source.done

    def skip(job_id: str) -> bool:
        # A job source may hand in a job again (a line removed and put back while it runs).
        return done(job_id) or launch.is_running(job_id)

    loader = JobTaskLoader(launch, source, jobs, launch.should_stop_dispatch, skip)
    loader.spare = launch.runner.spare_workers
    main = _BatchrunDoit(
        loader,
        config_filenames=(),
        extra_config={
            "GLOBAL": {"backend": BACKEND_NAME, "dep_file": str(launch.runs_dir.path / ".doit.journal")},
        },
    )
    register_jobs("", source)
    try:
        return int(main.run([_LaunchCmd.name, "-n", str(n_jobs)]))
    finally:
        unregister_jobs("")
