"""Unit tests of launch options: the one place they are checked, and their enums."""

from __future__ import annotations

import json

import pytest

from batchrun.errors import UsageError
from batchrun.launch.events import EventKind
from batchrun.launch.options import MODES, ORDERS, LaunchOptions, Mode, Order, check_options, parse_mode
from batchrun.store.records import State


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "fast"}, "unknown mode 'fast'"),
        ({"order": "random"}, "unknown order 'random'"),
        ({"n_jobs": 0}, "-j must be at least 1"),
        ({"retries": -1}, "--retries must be 0 or more"),
        ({"cpus": 0}, "--cpus must be at least 1, not 0"),
        ({"mem": 0}, "--mem must be more than 0"),
        ({"cpus": 4, "executor": "slurm"}, "--cpus and --mem size this machine for local jobs; with --executor slurm"),
        ({"detach": True, "executor": "dask"}, "--detach with --executor dask needs --scheduler"),
    ],
)
def test_check_options_refuses(changes: dict[str, object], message: str) -> None:
    options = LaunchOptions(**changes)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_options(options)


def test_good_options_pass() -> None:
    check_options(LaunchOptions())
    check_options(LaunchOptions(n_jobs=4, gpus=["0", "1"], jobs_per_gpu=2, mode="overwrite", order="shuffle"))
    # More jobs at once than GPU slots: the scheduler keeps each GPU to K plain jobs, the others wait.
    check_options(LaunchOptions(n_jobs=8, gpus=["0"]))
    check_options(LaunchOptions(detach=True, executor="dask", scheduler="tcp://h:8786"))


def test_enums_are_their_json_values() -> None:
    assert MODES == ("resume", "retry_failed", "overwrite") and ORDERS == ("file", "shuffle")
    assert parse_mode("retry_failed") is Mode.RETRY_FAILED
    values = {"state": State.TIMEOUT, "mode": Mode.OVERWRITE, "order": Order.SHUFFLE, "kind": EventKind.ADOPT}
    assert json.dumps(values) == '{"state": "timeout", "mode": "overwrite", "order": "shuffle", "kind": "adopt"}'
    assert [f"{v}" for v in values.values()] == [str(v) for v in values.values()] == ["timeout", "overwrite", "shuffle", "adopt"]
    assert State.FINISHED == {"succeeded", "failed", "timeout"}
    assert State.ALL == ("pending", "running", "succeeded", "failed", "interrupted", "requeued", "timeout", "killed", "stopped")
    assert State.ENDED == State.FINISHED | {"killed", "stopped"}
    assert State("running") is State.RUNNING and "running" == State.RUNNING
