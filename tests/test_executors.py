"""The executor registry: names are a closed set (a str enum), each maps to its executor and its settings; references map to the executor that made them."""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path

import pytest

import batchrun
from batchrun.errors import UsageError
from batchrun.executors import EXECUTORS, ExecutorName, ExecutorOptions, executor_class, executor_of_ref, make_executor, unwatched_alive
from batchrun.executors.base import NoSettings
from batchrun.executors.dask.settings import DaskSettings
from batchrun.executors.slurm import cluster as slurm_cluster
from batchrun.executors.slurm.settings import SlurmSettings
from batchrun.liveness import LockTable


def test_executor_names_are_a_str_enum_that_reads_and_dumps_as_the_plain_name() -> None:
    assert [name.value for name in ExecutorName] == ["local", "slurm", "dask"]
    assert ExecutorName("slurm") is ExecutorName.SLURM
    assert ExecutorName.LOCAL == "local"
    assert str(ExecutorName.DASK) == f"{ExecutorName.DASK}" == "dask"
    assert json.dumps({"executor": ExecutorName.SLURM}) == '{"executor": "slurm"}'
    assert set(EXECUTORS) == set(ExecutorName)


@pytest.mark.parametrize("name", list(ExecutorName))
def test_make_executor_gives_the_executor_of_that_name(name: ExecutorName, tmp_path: Path) -> None:
    if name is ExecutorName.DASK:
        pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'batchrun[dask]')")
    for spelling in (name, name.value):
        assert make_executor(spelling, ExecutorOptions(runs_dir=str(tmp_path))).name == name


def test_an_unknown_executor_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^unknown executor 'ssh'; choose one of local, slurm, dask$"):
        make_executor("ssh", ExecutorOptions())


def test_the_common_options_are_what_every_executor_needs_and_each_keeps_its_own_settings(tmp_path: Path) -> None:
    assert list(ExecutorOptions.__dataclass_fields__) == ["n_jobs", "cwd", "runs_dir", "journal"]
    values = {"sbatch_args": ["--partition=x"], "scheduler": "tcp://10.0.0.5:8786"}
    slurm = make_executor("slurm", ExecutorOptions(runs_dir=str(tmp_path)), **values)
    assert slurm.settings == SlurmSettings(sbatch_args=["--partition=x"])
    assert make_executor("local", ExecutorOptions(runs_dir=str(tmp_path)), **values).settings == NoSettings()
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'batchrun[dask]')")
    assert make_executor("dask", ExecutorOptions(runs_dir=str(tmp_path)), **values).settings == DaskSettings(scheduler="tcp://10.0.0.5:8786")


def test_each_reference_names_the_executor_that_made_it() -> None:
    assert executor_of_ref("12345") is executor_class("local")
    assert executor_of_ref("4242_7") is executor_class("slurm")
    assert executor_of_ref("batchrun-0123456789abcdef-0123456789ab") is executor_class("dask")
    for other in (None, "starting", "12_x", "batchrun-ab-cd", ""):
        assert executor_of_ref(other) is None, other


def test_unwatched_jobs_are_answered_by_the_executor_that_made_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local (and unknown) by the job's lock; SLURM by one squeue call, only when asked; Dask by its locks, then its key file."""
    dirs = {name: tmp_path / name for name in ("held", "free", "slurm", "dask_queued", "dask_gone")}
    for path in dirs.values():
        path.mkdir()
    fd = os.open(dirs["held"] / "out.log", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    key = "batchrun-0123456789abcdef-0123456789ab"
    (dirs["dask_queued"] / "dask-key").write_text(key + "\n")
    (dirs["dask_gone"] / "dask-key").write_text("stopped\n")
    asked: list[list[str]] = []
    monkeypatch.setattr(slurm_cluster, "slurm_active", lambda refs: asked.append(list(refs)) or {"4242_7"})
    jobs = {"held": ("123", dirs["held"]), "free": (None, dirs["free"]), "slurm": ("4242_7", dirs["slurm"]),
            "dask_queued": (key, dirs["dask_queued"]), "dask_gone": (key, dirs["dask_gone"])}
    try:
        assert unwatched_alive(jobs, LockTable()) == {"held": True, "free": False, "slurm": None, "dask_queued": None, "dask_gone": False}
        assert asked == []
        assert unwatched_alive(jobs, None, ask_cluster=True)["slurm"] is True
        assert asked == [["4242_7"]]
    finally:
        os.close(fd)


def test_no_code_outside_the_executors_imports_one_executor() -> None:
    """Generic code asks the registry and reads job files through `jobfiles`; only executors know their own kind."""
    package = Path(batchrun.__file__).parent
    one_executor = re.compile(r"^\s*(from|import) batchrun\.executors(\.(local|slurm|dask)\b| import .*\b(local|slurm|dask)\b)", re.MULTILINE)
    registry = package / "executors" / "__init__.py"
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.parent.name not in ("local", "slurm", "dask") and path != registry and one_executor.search(path.read_text())]
    assert offenders == []
