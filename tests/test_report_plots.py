"""results/plots, targets and importance: the axis rules, history curves, groups, and which spec a runs directory has."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.metrics.file import Series
from batchrun.results.importance import parameter_importance
from batchrun.results.plots import curve, group_document, history_axes, log_scale, parameter_axis
from batchrun.results.targets import find_runs_dirs, sweep_target, target_title


@pytest.mark.parametrize(
    ("values", "distribution", "kind"),
    [
        ([1000, 10000, 100000] * 3, None, "log"),  # samples 1k/10k/100k: a geometric grid
        ([0.0001, 0.001, 0.01, 0.1], None, "log"),
        ([0.00012, 0.0031, 0.047, 0.0009, 0.012], "log_uniform_values", "log"),
        ([0.00012, 0.0031, 0.047, 0.0009, 0.012], "uniform", "linear"),  # the spec says linear: it wins
        ([1, 2, 3, 1, 2, 3], None, "int"),  # seeds: integer ticks
        (list(range(1, 101)), None, "int"),  # an even grid spanning 100x is not log
        ([0.1, 0.25, 0.5], None, "linear"),
        ([0.0001, 0.2, 0.35, 0.5], "uniform", "linear"),
        (["adam", "sgd"], None, "category"),
        ([True, False], None, "category"),
        ([1, "auto"], None, "category"),
        ([1, 1, 1], None, "constant"),  # a constant seed is no axis
        ([0.001, 1, 0, 10], None, "linear"),  # zero: no log
    ],
)
def test_parameter_axis_kinds(values: list[object], distribution: str | None, kind: str) -> None:
    assert parameter_axis("p", values, distribution)["kind"] == kind


def test_categories_and_constants_carry_their_values() -> None:
    assert parameter_axis("opt", ["sgd", "adam", None, "sgd"]) == {"name": "opt", "kind": "category", "categories": ["adam", "sgd"]}
    assert parameter_axis("n", ["10", "2", "x"])["categories"] == ["2", "10", "x"]  # numbers in numeric order
    assert parameter_axis("flag", [True, 1])["kind"] == "category"  # True and 1 are two settings
    assert parameter_axis("seed", [7, None, 7]) == {"name": "seed", "kind": "constant", "value": 7}


def test_log_scale_needs_positive_values_over_two_orders() -> None:
    assert log_scale([0.001, 0.5, 0.1])
    assert not log_scale([0.01, 0.5])
    assert not log_scale([0.0, 0.001, 1.0])
    assert not log_scale([None, "x"])
    assert log_scale([None, 1e-5, 1e-2, float("nan")])


def _series(steps: list[int], values: list[float]) -> Series:
    series = Series()
    series.extend(steps, values, keep=True)
    return series


def test_curve_thins_evenly_and_keeps_the_last_point() -> None:
    steps = list(range(0, 1001))
    got = curve(_series(steps, [float(s) for s in steps]), max_points=100)
    assert len(got["x"]) <= 101 and got["x"][0] == 0 and got["x"][-1] == 1000
    assert history_axes({"a": {"x": [1, 10, 1000], "y": [1.0, 0.5, 0.2]}}) == {"curves": {"a": {"x": [1, 10, 1000], "y": [1.0, 0.5, 0.2]}}, "log": False, "xlog": True}


def test_groups_over_a_seed_have_mean_curves_best_first() -> None:
    rows = [
        {"job_id": "a1", "lr": 0.1, "seed": 1, "loss": 1.0},
        {"job_id": "a2", "lr": 0.1, "seed": 2, "loss": 3.0},
        {"job_id": "b1", "lr": 0.2, "seed": 1, "loss": 0.5},
        {"job_id": "b2", "lr": 0.2, "seed": 2, "loss": None},
    ]
    histories = {"a1": _series([0, 1, 2], [3.0, 2.0, 1.0]), "a2": _series([0, 1, 2], [5.0, 4.0, 3.0]), "b1": _series([0, 1], [1.0, 0.5])}
    doc = group_document(rows, ["seed"], ["lr", "seed"], "loss", "min", lambda ids: {i: histories[i] for i in ids if i in histories})
    assert doc["params"] == ["lr"]
    assert [(g["params"], g["mean"], g["n"], g["runs"]) for g in doc["groups"]] == [({"lr": 0.2}, 0.5, 1, 2), ({"lr": 0.1}, 2.0, 2, 2)]
    assert doc["groups"][1]["curve"] == {"x": [0, 1, 2], "mean": [4.0, 3.0, 2.0], "std": [pytest.approx(1.4142135), pytest.approx(1.4142135), pytest.approx(1.4142135)]}


def test_importance_ranks_what_drives_the_metric() -> None:
    columns = ["line", "job_id", "state", "lr", "opt", "seed", "loss"]
    params = [{"name": "lr", "kind": "log"}, {"name": "opt", "kind": "category", "categories": ["adam", "sgd"]}, {"name": "seed", "kind": "constant", "value": 1}]
    rows = []
    for i in range(60):
        lr = 10 ** (-4 + 3 * i / 59)
        rows.append([i + 1, f"{i:016x}", "succeeded", lr, "adam" if i % 2 else "sgd", 1, abs(lr - 0.01) * 100 + (i % 2) * 0.001])
    got = parameter_importance(columns, rows, params, "loss", "min")
    assert got["runs"] == 60 and [p["name"] for p in got["params"]] == ["lr", "opt"]
    assert got["params"][0]["importance"] > 0.5 and got["params"][1]["correlation"] is None
    few = parameter_importance(columns, rows[:5], params, "loss", "min")
    assert few == {"error": "needs 10 finished runs with a value of loss; 5 so far"}
    running = [[*row[:2], "running", *row[3:]] for row in rows]
    assert "error" in parameter_importance(columns, running, params, "loss", "min")


def test_a_runs_directory_is_paired_with_its_gridspec_or_runfile(tmp_path: Path) -> None:
    for name in ("grid", "plain", "alone"):
        (tmp_path / "runs" / name / "logs").mkdir(parents=True)
        (tmp_path / "runs" / name / "jobs.journal").write_text("")
    (tmp_path / "grid.yml").write_text("program: x\nparameters:\n  a:\n    values: [1]\n")
    (tmp_path / "plain.runfile").write_text("true\n")
    (tmp_path / "deep" / "er" / "runs" / "x" / "logs").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "runs" / "x" / "metadata.json").write_text("{}")  # the original batchrun's: metadata.json and logs/
    (tmp_path / "profile" / "extensions_crx_cache").mkdir(parents=True)
    (tmp_path / "profile" / "extensions_crx_cache" / "metadata.json").write_text("{}")  # a browser's: no logs/
    (tmp_path / ".hidden" / "runs" / "y").mkdir(parents=True)
    (tmp_path / ".hidden" / "runs" / "y" / "jobs.journal").write_text("")
    found = find_runs_dirs(tmp_path)
    assert found == [tmp_path / "deep/er/runs/x", tmp_path / "runs/alone", tmp_path / "runs/grid", tmp_path / "runs/plain"]
    grid = sweep_target(tmp_path / "runs" / "grid")
    assert (grid.gridspec, grid.runfile, grid.runs_dir.path) == (tmp_path / "grid.yml", tmp_path / "grid.runfile", tmp_path / "runs" / "grid")
    assert target_title(grid) == "grid.yml"
    assert target_title(sweep_target(tmp_path / "runs" / "plain")) == "plain.runfile"
    assert target_title(sweep_target(tmp_path / "runs" / "alone")) == "alone"
