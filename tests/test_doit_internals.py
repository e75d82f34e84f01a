"""The doit names batchrun uses that doit does not document (listed in doit_runner's docstring).

Each test fails with a message naming what the installed doit no longer has,
so an upgrade of doit says at once what to port.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from doit.cmd_base import DoitCmdBase
from doit.cmd_forget import Forget
from doit.cmd_run import Run
from doit.control import TaskControl, TaskDispatcher
from doit.dependency import Dependency
from doit.doit_cmd import DoitMain
from doit.reporter import ConsoleReporter
from doit.runner import Runner
from doit.task import Task

import batchrun._doit.runner


def _require(owner: Any, name: str, where: str) -> None:
    assert hasattr(owner, name), f"the installed doit has no {where}.{name}, which batchrun uses (see batchrun/_doit/runner.py)"


@pytest.mark.parametrize("name", ["select_task", "execute_task", "process_task_result", "run_all"])
def test_runner_steps(name: str) -> None:
    _require(Runner, name, "Runner")


def test_task_dispatcher_generator_tasks_and_hold_on() -> None:
    control = TaskControl([Task("a", ["true"])])
    _require(control, "process", "TaskControl")
    _require(control, "task_dispatcher", "TaskControl")
    control.process(None)
    dispatcher = control.task_dispatcher()
    _require(dispatcher, "generator", "TaskDispatcher")
    _require(dispatcher, "tasks", "TaskDispatcher")
    assert '"hold on"' in inspect.getsource(TaskDispatcher), 'the installed doit\'s TaskDispatcher no longer yields the "hold on" sentinel'


def test_commands_and_their_attributes() -> None:
    _require(Run, "_execute", "cmd_run.Run")
    _require(DoitMain, "DOIT_CMDS", "DoitMain")
    _require(Forget, "_execute", "cmd_forget.Forget")
    source = inspect.getsource(DoitCmdBase.execute)
    for name in ("self.task_list", "self.dep_manager", "self.sel_tasks"):
        assert name in source, f"the installed doit's DoitCmdBase.execute no longer sets {name}"
    assert source.index("load_doit_config") < source.index("Dependency("), (
        "the installed doit's DoitCmdBase.execute creates the dep_manager before loading dodo.py (batchrun's dumpdb relies on the order)"
    )
    assert "self.loader" in inspect.getsource(DoitCmdBase.__init__), "the installed doit's DoitCmdBase no longer keeps its task loader in self.loader"


def test_reporter_failures() -> None:
    _require(ConsoleReporter(None, {}), "failures", "ConsoleReporter")


def test_save_success_sets_deps_last_and_dependency_backend() -> None:
    keys: list[str] = []

    class Recorder:
        def __init__(self, name: str, codec: Any = None, *, module_name: str | None = None) -> None:
            self.name = name

        def set(self, task_id: str, dependency: str, value: Any) -> None:
            keys.append(dependency)

        def get(self, task_id: str, dependency: str) -> Any:
            return None

        def in_(self, task_id: str) -> bool:
            return False

        def remove(self, task_id: str) -> None:
            pass

        def remove_all(self) -> None:
            pass

        def dump(self) -> None:
            pass

    dep = Dependency(Recorder, "x")
    _require(dep, "backend", "Dependency")
    task = Task("t", ["true"])
    task.values = {"v": 1}
    dep.save_success(task)
    assert keys and keys[-1] == "deps:", f"the installed doit's Dependency.save_success no longer sets 'deps:' last (set {keys}); batchrun commits a task's values there"


def test_task_value_savers() -> None:
    _require(Task("t", ["true"]), "value_savers", "Task")


def test_the_list_in_doit_runner_names_each_of_these() -> None:
    doc = batchrun._doit.runner.__doc__ or ""
    for name in ('"hold on"', "TaskDispatcher.generator", "Runner.select_task", "Run._execute", "DoitMain.DOIT_CMDS", "ConsoleReporter.failures", "save_success"):
        assert name in doc, f"doit_runner's docstring no longer lists {name}"


def test_a_job_task_made_as_a_copy_has_the_fields_doits_constructor_gives(tmp_path: Path) -> None:
    """`JobTasks` copies the first task's fields for the others: each must equal what doit's Task constructor makes, sharing no container."""
    from doit.task import Task as DoitTask

    from batchrun._doit.backend import JobDone, RunsDirJobs
    from batchrun._doit.jobtasks import JobTasks, job_title
    from batchrun.runfile.file import Job
    from batchrun.store.rundir import RunsDir

    source = RunsDirJobs(RunsDir(tmp_path), None, "resume")
    make = JobTasks(None, source)  # type: ignore[arg-type]
    jobs = [Job(f"echo {i}  # job\n", f"{i:016x}", i + 1) for i in range(3)]
    first, second, third = (make(job) for job in jobs)
    made = DoitTask(jobs[1].job_id, list(second._actions), uptodate=[second.uptodate[0][0]], io={"capture": False}, title=job_title, doc=jobs[1].command)
    made.options = {}
    assert type(second) is DoitTask and vars(second).keys() == vars(made).keys()
    for name, value in vars(made).items():
        assert getattr(second, name) == value or name == "io", f"a copied job task's {name} is not what doit's constructor makes"
    assert vars(second.io) == vars(made.io)
    assert isinstance(second.uptodate[0][0], JobDone) and second.uptodate[0][0].job_id == jobs[1].job_id
    for name, value in vars(second).items():
        if isinstance(value, (list, set, dict)):
            assert value is not getattr(third, name) and value is not getattr(first, name), f"job tasks share their {name}"
    assert second.title() == f"{jobs[1].job_id}: echo 1  # job"
