"""The executor registry: names are a closed set (a str enum), each maps to its executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrun.errors import UsageError
from batchrun.executors import EXECUTORS, ExecutorName, ExecutorOptions, make_executor


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
