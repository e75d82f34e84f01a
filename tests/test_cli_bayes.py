"""`method: bayes` specs through the CLI, before a launch can run them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., tuple[int, str, str]]
SPACE = "parameters:\n  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}\n  layers: {values: [1, 2, 3]}\n"


def test_sweep_on_a_bayes_spec_says_it_needs_results_and_a_launch(workdir: Path, run_cli: RunCli) -> None:
    (workdir / "spec.yml").write_text("program: train.py\nmethod: bayes\nmetric: {name: val_loss, goal: minimize}\n"
                                      "run_cap: 60\n" + SPACE + "early_terminate: {type: hyperband, min_iter: 3, eta: 3}\n")
    code, out, err = run_cli("sweep", "spec.yml")
    assert (code, out) == (2, "")
    assert err == ("batchrun: error: spec.yml: method 'bayes' picks each run from the results of finished runs, "
                   "so it needs results and a launch: run 'batchrun launch spec.yml', not 'batchrun sweep'\n")
    assert not list(workdir.glob("*.runfile")) and not list(workdir.glob(".*.tmp"))
    assert run_cli("sweep", "spec.yml", "--count") == (0, "60\n", "")


@pytest.mark.parametrize(("head", "message"), [
    ("method: bayes\nrun_cap: 5\n",
     "spec.yml:1: method 'bayes' needs 'metric: {name: ..., goal: minimize}' (or maximize): the logged value to optimize"),
    ("method: bayes\nmetric: {name: val_loss, goal: minimize}\n", "spec.yml:1: method 'bayes' needs 'run_cap', the number of runs to finish"),
    ("method: bayes\nrun_cap: 5\nmetric: {name: val_loss, goal: up}\n",
     "spec.yml:3: method 'bayes' needs 'metric.goal': minimize or maximize, not the text 'up'"),
])
def test_bayes_without_metric_or_run_cap_is_one_line_exit_2(workdir: Path, run_cli: RunCli, head: str, message: str) -> None:
    (workdir / "spec.yml").write_text(head + "program: train.py\n" + SPACE)
    for args in (("sweep", "spec.yml"), ("launch", "spec.yml")):
        code, out, err = run_cli(*args)
        assert (code, err) == (2, f"batchrun: error: {message}\n"), args
