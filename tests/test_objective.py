"""The metric section and the metrics-file reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import pytest

from batchrun.sweeps.objective import Goal, Metric, metric_values, parse_metric, read_metrics, run_values


class Failed(Exception):
    pass


def fail(message: str, line: int | None = None) -> NoReturn:
    raise Failed(message)


def test_a_runs_values_are_its_extremes_and_summary_skipping_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"loss": 3, "_step": 0}\n[1]\n{"_summary": {"loss": 0.5}}\n{"loss": 2.5}\n{"loss": 2.7}\n'
                    '{"_summary": {"acc": 1}}\n{"loss": NaN}\n{"loss": true}\n{"los')
    metrics = read_metrics(path)
    assert metrics is not None and metrics.summary == {"loss": 0.5, "acc": 1}
    assert run_values(metrics, "loss") == [2.5, 3.0, 0.5]
    assert run_values(metrics, "acc") == [1.0] and run_values(metrics, "other") == []
    assert read_metrics(tmp_path / "missing.jsonl") is None and run_values(None, "loss") == []
    rows = [{"loss": 3}, {"acc": 1}, {"loss": float("nan")}, {"loss": True}, {"loss": 2.5}]
    assert metric_values(rows, "loss") == [3.0, 2.5]


def test_best_and_worst_follow_the_goal() -> None:
    assert Metric("l", Goal.MINIMIZE).best([2, 1, 3]) == 1 and Metric("l", Goal.MINIMIZE).worst([2, 1, 3]) == 3
    assert Metric("a", Goal.MAXIMIZE).best([2, 1, 3]) == 3 and Metric("a", Goal.MAXIMIZE).worst([2, 1, 3]) == 1


@pytest.mark.parametrize(("raw", "message"), [
    (None, "method 'bayes' needs 'metric: {name: ..., goal: minimize}' (or maximize): the logged value to optimize"),
    ("loss", "'metric' must be a mapping such as {name: val_loss, goal: minimize}, not the text 'loss'"),
    ({"name": "loss"}, "method 'bayes' needs 'metric.goal': minimize or maximize, not nothing"),
    ({"name": "loss", "goal": "min"}, "method 'bayes' needs 'metric.goal': minimize or maximize, not the text 'min'"),
    ({"goal": "minimize"}, "'metric' needs 'name', the logged value to optimize (not starting with _), not nothing"),
    ({"name": "_step", "goal": "minimize"}, "'metric' needs 'name', the logged value to optimize (not starting with _), not the text '_step'"),
    ({"name": "l", "goal": "minimize", "gaol": 1}, "'metric': unknown key 'gaol'; it takes name, goal, target, impute, impute_while_running"),
])
def test_bad_metric_sections(raw: Any, message: str) -> None:
    with pytest.raises(Failed) as err:
        parse_metric(raw, None, "method 'bayes'", fail)
    assert str(err.value) == message


def test_good_metric_section() -> None:
    assert parse_metric({"name": "acc", "goal": "maximize"}, 3, "x", fail) == Metric("acc", Goal.MAXIMIZE)
