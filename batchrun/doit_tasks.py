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

import gc
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from doit.action import BaseAction
from doit.cmd_base import TaskLoader2
from doit.cmd_run import Run
from doit.control import TaskControl
from doit.doit_cmd import DoitMain
from doit.exceptions import TaskError, TaskFailed
from doit.reporter import ConsoleReporter
from doit.runner import Runner
from doit.task import Stream, Task

from batchrun.errors import BatchrunError

if TYPE_CHECKING:
    from batchrun.journal import JobRecord
    from batchrun.launch import Launch, LaunchOptions, LaunchResult
    from batchrun.runfile import Job, Runfile

__all__ = ["JobAction", "MemoryDB", "job_task", "run_job_tasks", "runfile_tasks", "sweep_task", "sweep_tasks"]

# Pending jobs turned into doit Tasks at a time. A Task with its node costs
# about 5 KB; 2,000 keeps a window near 10 MB while the cost of building the
# next window stays far below one job's run time.
WINDOW = 2000

_BACKEND_NAME = "batchrun-memory"


class _Runner(Protocol):
    """What runs jobs for doit tasks: a Launch, or a plain-doit _Session."""

    @property
    def fatal(self) -> BatchrunError | None: ...

    def run_job(self, job: Job) -> JobRecord | None: ...

    def is_done(self, job_id: str) -> bool: ...


class JobAction(BaseAction):
    """A doit action that runs one job (under batchrun launch or plain doit)."""

    def __init__(self, runner: _Runner, job: Job) -> None:
        self.runner = runner
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
            record = self.runner.run_job(self.job)
        except BatchrunError as error:
            return TaskError(f"batchrun: {error}")
        if self.runner.fatal is not None:
            return TaskError(f"batchrun: {self.runner.fatal}")
        if record is not None:
            self.values = {"state": record.state, "status": record.status}
        return None

    def __str__(self) -> str:
        return f"Job: {self.job.command}"


class _JobUptodate:
    """doit's up-to-date check of a job task: is the job already finished?"""

    __slots__ = ("job_id", "runner")

    def __init__(self, runner: _Runner, job_id: str) -> None:
        self.runner = runner
        self.job_id = job_id

    def __call__(self) -> bool:
        return self.runner.is_done(self.job_id)


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

    desc = "nothing kept (batchrun keeps job state in its journal)"

    def __init__(self, name: str, codec: Any = None, *, module_name: str | None = None) -> None:
        self.name = name
        self._db: dict[str, dict[str, Any]] = {}

    def dump(self) -> None:
        pass

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        # Nothing reads a finished job task's values back within the run
        # (job tasks have no getargs and their uptodate reads the journal);
        # keeping them would cost ~0.5 KB per job on a 100,000-job launch.
        pass

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
            # Join in short waits: Python runs signal handlers in the main
            # thread only, and a signal the kernel hands to a worker thread
            # (blocked in waitpid) would not wake a plain join.
            while worker.is_alive():
                worker.join(0.1)
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
        # The last window's Tasks sit in reference cycles (task <-> action):
        # free them before building the next, or memory grows with the run.
        gc.collect()
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

    def _execute(self, num_process: int = 1) -> int:
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


# -- the dodo.py API: batchrun tasks inside a user's own doit project --------


class _Session:
    """One runs directory driven by plain `doit`: a Launch prepared on first use.

    Task creation (which also happens for `doit list`) only reads the
    journal; the runs directory is locked and recovered when the first job
    task actually runs, and metadata.json is finished when the group task
    runs or, failing that, when the process exits.
    """

    def __init__(self, runfile: Runfile, options: LaunchOptions) -> None:
        from batchrun.journal import Journal
        from batchrun.metadata import RunsDir

        self.runfile = runfile
        self.options = options
        self.launch: Launch | None = None
        self.result: LaunchResult | None = None
        self._lock = threading.Lock()
        runs_dir = RunsDir.for_runfile(runfile.path, options.accounting_dir, options.metadata_name)
        self._snapshot = Journal(runs_dir.path)
        self._snapshot.load()
        self._redo_failed = options.mode == "retry_failed"
        self._pid = os.getpid()

    def is_done(self, job_id: str) -> bool:
        if self.launch is not None:
            return self.launch.is_done(job_id)
        if self.options.mode == "overwrite":
            return False
        rec = self._snapshot.records.get(job_id)
        if rec is None:
            return False
        return rec.state == "succeeded" if self._redo_failed else rec.finished

    def get(self) -> Launch:
        if os.getpid() != self._pid:
            # doit's process mode forks workers; one launch cannot span them.
            raise BatchrunError(
                "batchrun tasks need doit's thread mode: put DOIT_CONFIG = {'par_type': 'thread'} "
                "in dodo.py (or run doit -P thread)"
            )
        with self._lock:
            if self.result is not None:
                raise BatchrunError(f"{self.runfile.path}: its jobs already finished in this doit run")
            if self.launch is None:
                from batchrun.launch import Launch

                launch = Launch(self.runfile, self.options)
                launch.prepare()
                launch.executor.open()
                launch.start_background()
                self.launch = launch
                _SESSIONS.append(self)
            return self.launch

    def run_job(self, job: Job) -> JobRecord | None:
        return self.get().run_job(job)

    @property
    def fatal(self) -> BatchrunError | None:
        return self.launch.fatal if self.launch is not None else None

    def finish(self) -> LaunchResult | None:
        """Write metadata.json and release the runs directory (idempotent)."""
        with self._lock:
            if self.launch is None or self.result is not None:
                return self.result
            launch = self.launch
            if launch.running_jobs():
                launch.request_stop()
            launch.stop_background()
            self.result = launch.finish()
            return self.result


_SESSIONS: list[_Session] = []
_HANDLERS_INSTALLED = False


def _finish_all() -> None:
    for session in list(_SESSIONS):
        session.finish()


def _install_handlers() -> None:
    """Ctrl-C or SIGTERM under plain doit stops the jobs as `batchrun launch` does.

    Installed from task creation, which runs in doit's main thread. With no
    job running the previous handler runs (doit's usual KeyboardInterrupt).
    """
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    import atexit
    import signal

    atexit.register(_finish_all)
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        active = [s.launch for s in _SESSIONS if s.launch is not None and s.result is None]
        if any(launch.running_jobs() for launch in active):
            for launch in active:
                launch.request_stop()
            return
        prev = previous.get(signum)
        if callable(prev):
            prev(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, handler)
    _HANDLERS_INSTALLED = True


def _finish_action(session: _Session) -> TaskFailed | None:
    """The group task: write metadata.json and fail if any job failed."""
    result = session.finish()
    if result is None:
        return None
    if result.error is not None:
        return TaskFailed(f"batchrun: {result.error}")
    if result.interrupted:
        return TaskFailed(f"batchrun: {session.runfile.path}: interrupted; run again to finish")
    if result.failed:
        names = ", ".join(f"{job.job_id} (exit {rec.status})" for job, rec in result.failed[:5])
        more = f" and {len(result.failed) - 5} more" if len(result.failed) > 5 else ""
        return TaskFailed(
            f"batchrun: {len(result.failed)} job(s) of {session.runfile.path} failed: {names}{more}; "
            f"logs in {result.runs_dir / 'logs'}"
        )
    return None


def _options(
    runs_dir: str | Path | None, retry_failed: bool, env: dict[str, str] | None, grace: float
) -> LaunchOptions:
    from batchrun.launch import LaunchOptions

    return LaunchOptions(
        # Enough slots for any doit -n; a job takes the lowest free slot.
        n_jobs=256,
        mode="retry_failed" if retry_failed else "resume",
        accounting_dir=Path(runs_dir) if runs_dir is not None else None,
        env=dict(env or {}),
        grace=grace,
    )


def runfile_tasks(
    runfile: str | Path,
    *,
    basename: str | None = None,
    runs_dir: str | Path | None = None,
    retry_failed: bool = False,
    env: dict[str, str] | None = None,
    grace: float = 10.0,
    task_dep: Sequence[str] = (),
) -> Iterator[dict[str, Any]]:
    """Yield the doit tasks of a runfile, for a `task_*` function of a dodo.py.

    One task per line, named `<basename>:<job id>`, whose up-to-date check
    and records are the same as `batchrun launch` (the same runs directory,
    journal, metadata.json and job ids: start with doit, finish with
    batchrun launch, or the other way round). A last subtask,
    `<basename>:summary`, runs after all of them, writes metadata.json and
    fails if a job failed, so a task with `task_dep: ["<basename>"]` runs
    only once every job has succeeded.

    Args:
        runfile: the runfile; its stem names `runs/<stem>/`.
        basename: the group's name (default: the runfile's stem).
        runs_dir: keep logs and metadata.json here instead of `runs/<stem>/`.
        retry_failed: rerun failed and interrupted jobs too.
        env: extra environment for every job.
        grace: seconds jobs get after SIGTERM on Ctrl-C before SIGKILL.
        task_dep: tasks every job waits for (data preparation, a build).
    """
    from batchrun.runfile import load_runfile

    path = Path(runfile)
    loaded = load_runfile(path)
    session = _Session(loaded, _options(runs_dir, retry_failed, env, grace))
    _install_handlers()
    group = basename or path.stem
    yield {"basename": group, "name": None, "doc": f"all {len(loaded.jobs)} jobs of {path} (batchrun)"}
    for job in loaded.jobs:
        yield {
            "basename": group,
            "name": job.job_id,
            "actions": [JobAction(session, job)],
            "uptodate": [_JobUptodate(session, job.job_id)],
            "doc": job.command,
            "title": _title,
            "io": {"capture": False},
            "task_dep": list(task_dep),
        }
    # doit drops a group task's own actions, so the summary is a subtask that
    # runs after every job: the group (and `task_dep` on it) fails with it.
    yield {
        "basename": group,
        "name": "summary",
        "actions": [(_finish_action, [session])],
        "task_dep": [f"{group}:{job.job_id}" for job in loaded.jobs],
        "doc": f"write metadata.json; fail if a job of {path} failed",
        "verbosity": 2,
    }


def sweep_task(gridspec: str | Path, runfile: str | Path | None = None) -> dict[str, Any]:
    """The doit task that writes a gridspec's runfile, regenerated when the spec changes."""
    from batchrun.sweep import default_runfile_path

    spec = Path(gridspec)
    out = Path(runfile) if runfile is not None else default_runfile_path(spec)

    def write() -> None:
        from batchrun.sweep import load_gridspec, write_runfile

        write_runfile(load_gridspec(spec), out)

    return {
        "actions": [write],
        "file_dep": [str(spec)],
        "targets": [str(out)],
        "clean": True,
        "doc": f"write {out} from the grid in {spec} (batchrun sweep)",
    }


def sweep_tasks(
    gridspec: str | Path,
    *,
    basename: str | None = None,
    runs_dir: str | Path | None = None,
    retry_failed: bool = False,
    env: dict[str, str] | None = None,
    task_dep: Sequence[str] = (),
) -> tuple[Callable[[], dict[str, Any]], Callable[[], Iterator[dict[str, Any]]]]:
    """Two task creators for a dodo.py: the sweep, and its runs created after it.

        task_grid_sweep, task_grid = sweep_tasks("grid.yml")

    defines `grid_sweep` (gridspec -> runfile) and `grid` (one task per
    point, created by doit once `grid_sweep` has run: delayed creation).
    `task_dep` names tasks every point waits for (say, data preparation).
    """
    from doit import create_after

    from batchrun.sweep import default_runfile_path

    spec = Path(gridspec)
    runfile = default_runfile_path(spec)
    group = basename or spec.stem

    def task_sweep() -> dict[str, Any]:
        task = sweep_task(spec, runfile)
        task["task_dep"] = list(task_dep)
        return task

    @create_after(executed=f"{group}_sweep")
    def task_runs() -> Iterator[dict[str, Any]]:
        yield from runfile_tasks(runfile, basename=group, runs_dir=runs_dir, retry_failed=retry_failed, env=env, task_dep=task_dep)

    task_sweep.__doc__ = f"write {runfile} from {spec}"
    task_runs.__doc__ = f"run every point of {spec}"
    return task_sweep, task_runs


def run_sweep_task(gridspec: Path, runfile: Path, dep_file: Path) -> bool:
    """Bring `runfile` up to date with `gridspec` through doit; True if it was rewritten.

    doit's file_dep check (an MD5 of the gridspec, kept in `dep_file`) and
    target check decide: the runfile is regenerated only when the spec
    changed or the runfile is missing.

    Raises:
        GridspecError, RunfileError: as `sweep.load_gridspec` / `write_runfile`.
    """
    from doit.cmd_base import ModuleTaskLoader

    ran: list[bool] = []
    errors: list[BaseException] = []
    task = sweep_task(gridspec, runfile)
    write = task["actions"][0]

    def action() -> bool:
        try:
            write()
        except BaseException as error:  # re-raised below, outside doit
            errors.append(error)
            return False
        ran.append(True)
        return True

    task["actions"] = [action]
    task["verbosity"] = 0
    main = DoitMain(
        ModuleTaskLoader({"task_sweep": lambda: task, "DOIT_CONFIG": {"reporter": _SilentReporter}}),
        config_filenames=(),
        extra_config={"GLOBAL": {"backend": "json", "dep_file": str(dep_file)}},
    )
    main.run(["sweep"])
    if errors:
        raise errors[0]
    return bool(ran)
