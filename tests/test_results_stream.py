"""Unit tests of `results.stream` and of `tables.write_table_windows` (the results table a window at a time)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from batchrun.results.stream import read_streamed
from batchrun.results.table import read_results
from batchrun.results.tables import write_table, write_table_windows
from batchrun.runfile.file import job_id_of, load_runfile
from batchrun.store.journal import Journal
from batchrun.store.target import resolve_target


def _rows(n: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for k in range(n):
        # A column numbers only in its first rows, text in a later one: right-aligned only if every cell is a number.
        lr: object = 0.1 * k if k < n - 1 else "fast"
        rows.append({"line": k + 1, "job_id": f"{k:016x}", "state": "succeeded", "lr": lr, "loss": None if k % 3 else 1 / (k + 1), "runtime": k * 1.5})
    return rows


@pytest.mark.parametrize("cuts", [[], [0], [1, 1, 5], [3, 7, 7, 9]])
def test_a_table_written_in_windows_is_the_table_written_at_once(cuts: list[int]) -> None:
    rows = _rows(10)
    whole = io.StringIO()
    write_table(whole, rows, ["lr"], ["loss"], False)
    bounds = [0, *cuts, len(rows)]
    windows = [rows[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    parts = io.StringIO()
    write_table_windows(parts, lambda: iter(windows), ["lr"], ["loss"])
    assert parts.getvalue() == whole.getvalue()


def test_no_rows_and_no_windows_give_the_header_alone() -> None:
    whole, parts = io.StringIO(), io.StringIO()
    write_table(whole, [], ["lr"], ["loss"], False)
    write_table_windows(parts, lambda: iter([]), ["lr"], ["loss"])
    assert parts.getvalue() == whole.getvalue() == "line  id  state  lr  loss  runtime\n"


def test_streamed_results_name_and_make_the_rows_read_results_makes(workdir: Path) -> None:
    lines = [f"python3 t.py --lr=0.{n} --seed={n}" + (" --state=x" if n == 3 else "") for n in range(1, 8)]
    path = workdir / "exp.runfile"
    path.write_text("".join(f"{line}\n" for line in lines))
    runfile = load_runfile(path)
    runs = workdir / "runs" / "exp"
    runs.mkdir(parents=True)
    journal = Journal(runs)
    journal.open()
    for n, job in enumerate(runfile.jobs):
        journal.record_start(job.job_id, 1, 100.0 + n, 0, "host")
        journal.record_end(job.job_id, 1, n % 2, 100.0 + n, 103.0 + n)
        log_dir = runs / "logs" / job_id_of(job.command)
        log_dir.mkdir(parents=True)
        (log_dir / "metrics.jsonl").write_text(json.dumps({"loss": n / 10, "seed": n}) + "\n")
    journal.close()
    target = resolve_target(Path("exp.runfile"), None, "metadata.json")
    held = read_results(target)
    streamed = read_streamed(target)
    assert streamed.parameter_names == held.parameter_names == ["lr", "seed"]
    assert streamed.metric_names == held.metric_names == ["loss"]
    assert streamed.skipped.lines() == held.skipped.lines() and len(held.skipped.lines()) == 2
    assert [row for window in streamed.windows() for row in window] == held.rows()
    assert [row["line"] for window in streamed.windows("last", ["failed"]) for row in window] == [2, 4, 6]
