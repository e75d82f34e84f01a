"""Unit tests of batchrun.results.table' pure views and of --scrape rules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from batchrun.errors import UsageError
from batchrun.metrics.file import RunMetrics, Skipped
from batchrun.metrics.scrape import parse_scrape, scrape_log
from batchrun.results.table import best_row, group_over, sort_rows
from batchrun.results.tables import typed_value as _typed


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("-3", -3), ("0.001", 0.001), ("1e-05", 1e-05), ("2.", 2.0), ("True", True), ("false", False), (True, True), ("adam", "adam"), ("1,2", "1,2"), ("nan", "nan"), ("", "")],
)
def test_parameter_values_are_typed_as_written(text: str | bool, value: object) -> None:
    got = _typed(text)
    assert got == value and type(got) is type(value)


ROWS = [
    {"line": 1, "lr": 0.1, "seed": 1, "loss": 0.5},
    {"line": 2, "lr": 0.1, "seed": 2, "loss": 0.7},
    {"line": 3, "lr": 0.5, "seed": 1, "loss": None},
    {"line": 4, "lr": 0.5, "seed": 2, "loss": 0.2},
    {"line": 5, "lr": 0.5, "seed": 3, "loss": 0.4},
]


def test_sort_puts_missing_values_last_both_ways() -> None:
    assert [row["line"] for row in sort_rows(ROWS, "loss")] == [4, 5, 1, 2, 3]
    assert [row["line"] for row in sort_rows(ROWS, "-loss")] == [2, 1, 5, 4, 3]
    mixed = [{"v": 2}, {"v": "a"}, {"v": None}]
    assert [row["v"] for row in sort_rows(mixed, "v")] == [2, "a", None]


def test_best_row() -> None:
    assert best_row(ROWS, "loss")["line"] == 4  # type: ignore[index]
    assert best_row(ROWS, "loss", "max")["line"] == 2  # type: ignore[index]
    assert best_row(ROWS, "acc") is None
    ties = [{"line": 1, "m": 1.0}, {"line": 2, "m": 1.0}, {"line": 3, "m": math.nan}]
    assert best_row(ties, "m")["line"] == 1  # type: ignore[index]


def test_group_over_seed() -> None:
    grouped = group_over(ROWS, ["seed"], ["lr", "seed"], ["loss"])
    assert grouped[0] == {"lr": 0.1, "runs": 2, "loss": pytest.approx(0.6), "loss_std": pytest.approx(math.sqrt(0.02)), "loss_n": 2}
    assert grouped[1]["runs"] == 3 and grouped[1]["loss_n"] == 2  # the run without a loss counts as a run, not a value
    assert grouped[1]["loss"] == pytest.approx(0.3)
    single = group_over(ROWS[:1], ["seed"], ["lr", "seed"], ["loss", "acc"])
    assert single == [{"lr": 0.1, "runs": 1, "loss": 0.5, "loss_std": 0.0, "loss_n": 1, "acc": None, "acc_std": None, "acc_n": 0}]


def _mixed_rows(count: int) -> list[dict[str, object]]:
    """Rows whose columns hold what a results row can: floats, ints, bools, big ints, texts (one read with surrogateescape), lists, None, nan."""
    from batchrun.store.records import State

    texts = ["b", "a", "ä", "\udcff", "", "a b", "Z", "é", State.FAILED, "failed"]  # a state is a str enum, equal to its text
    return [
        {
            "line": n,
            "lr": [0.1, 0.25, 1, True, None][n % 5],
            "opt": [[1, 2], "adam", "sgd"][n % 3],
            "seed": n % 4,
            "loss": [0.5 / (n + 1), n, True, None, math.nan, 2**60 + n, float(n % 3)][n % 7],
            "name": texts[n * 5 % len(texts)] if n % 9 else None,
            "mixed": n if n % 2 else str(n),
        }
        for n in range(300)
    ]


def test_streamed_groups_are_group_over_to_the_bit() -> None:
    from batchrun.results.groups import Groups

    rows = _mixed_rows(300)
    for over in (["seed"], ["seed", "opt"], ["lr", "opt", "seed"]):
        groups = Groups(over, ["lr", "opt", "seed"], ["loss", "line"])
        for first in range(0, len(rows), 64):
            groups.add(rows[first : first + 64])
        made = [row for window in groups.windows(size=5) for row in window]
        held = group_over(rows, over, ["lr", "opt", "seed"], ["loss", "line"])
        assert repr(made) == repr(held) and [[type(v) for v in row.values()] for row in made] == [[type(v) for v in row.values()] for row in held]


@pytest.mark.parametrize("key", ["name", "-name", "loss", "-line", "seed", "mixed", "opt"])
def test_sorted_positions_are_sort_rows_order(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchrun.results import order

    monkeypatch.setattr(order, "_CHUNK", 7)  # many chunks, merged
    monkeypatch.setattr(order, "_BLOCK", 5)  # records cut across the reads of a chunk's file
    rows = [row for row in _mixed_rows(300) if key.lstrip("-") != "loss" or type(row["loss"]) is not int or row["loss"] < 2**53]
    positioned = [[(k, row) for k, row in enumerate(rows)][first : first + 50] for first in range(0, len(rows), 50)]
    found = order.sorted_positions(positioned, key)
    if key in ("mixed", "opt"):  # numbers and texts, or lists: for `sort_rows` on the held rows
        assert found is None
        return
    assert found is not None
    assert [rows[k]["line"] for k in found()] == [row["line"] for row in sort_rows(rows, key)]
    assert list(found()) == list(found())  # again at each call


def test_scrape_rules() -> None:
    rule = parse_scrape("loss=loss: ([0-9.]+)")
    assert rule.name == "loss" and rule.pattern.pattern == "loss: ([0-9.]+)"
    assert parse_scrape("acc=acc=(?P<value>[0-9.]+) at (\\d+)").name == "acc"  # '=' in the regex; a named value group
    for bad, message in [("loss", "expected NAME=REGEX"), ("=x", "expected NAME=REGEX"), ("a=(", "bad regular expression"), ("a=(\\d)(\\d)", "2 groups")]:
        with pytest.raises(UsageError, match=message):
            parse_scrape(bad)


def test_scrape_log(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"loss: 0.9\nstep\nloss: 0.5e-1\nloss: abc.\nloss: nan\n\xff\xfe loss: 0.25\n")
    metrics = RunMetrics()
    metrics.summary["loss"] = 7.0  # a logged value of the same name: the scraped one replaces it
    skipped = Skipped()
    scrape_log(str(log), [parse_scrape("loss=loss: ([a-z0-9.e-]+)"), parse_scrape("none=nothing (\\d)")], metrics, skipped, keep_history=True)
    assert metrics.series["loss"].values == [0.9, 0.05, 0.25]
    assert metrics.value("loss") == 0.25 and "none" not in metrics.series
    assert skipped.counts == {"skipped {n} scraped matches that are not numbers": 1, "skipped {n} NaN or infinite metric values": 1}
    scrape_log(str(tmp_path / "missing.log"), [parse_scrape("x=(\\d)")], metrics, skipped)
