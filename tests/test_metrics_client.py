"""`batchrun.log` / `batchrun.summary`: the lines they write, and that they never fail a user's run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import batchrun
from batchrun.metrics import client as _metrics_client


@pytest.fixture(autouse=True)
def _fresh_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_metrics_client, "_state", {"path": None, "fd": None, "pid": None, "warned": False})


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_and_summary_append_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("BATCHRUN_METRICS", str(path))
    batchrun.log({"loss": 0.5, "acc": 1}, step=10)
    batchrun.log({"loss": 0.25})
    batchrun.summary({"best": 0.25})
    assert _lines(path) == [{"loss": 0.5, "acc": 1, "_step": 10}, {"loss": 0.25}, {"_summary": {"best": 0.25}}]


def test_each_call_is_on_disk_when_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("BATCHRUN_METRICS", str(path))
    for step in range(3):
        batchrun.log({"x": step}, step=step)
        # Read by another open file: nothing waits in a buffer of this process.
        assert len(path.read_text().splitlines()) == step + 1


def test_outside_batchrun_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BATCHRUN_METRICS", raising=False)
    monkeypatch.chdir(tmp_path)
    batchrun.log({"loss": 1.0}, step=1)
    batchrun.summary({"loss": 1.0})
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr() == ("", "")


def test_a_full_disk_costs_the_metrics_not_the_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BATCHRUN_METRICS", "/dev/full")
    for step in range(5):
        batchrun.log({"loss": 1.0}, step=step)
    err = capsys.readouterr().err
    assert err == "batchrun.log: cannot write /dev/full: No space left on device; metrics dropped\n"


def test_an_unwritable_directory_costs_the_metrics_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BATCHRUN_METRICS", str(tmp_path / "gone" / "metrics.jsonl"))
    batchrun.log({"loss": 1.0})
    assert "metrics dropped" in capsys.readouterr().err


class _Scalar:
    """Like a numpy or torch scalar: not a float, but has .item()."""

    def item(self) -> float:
        return 0.125


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def test_values_json_cannot_hold_are_converted_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.jsonl"
    monkeypatch.setenv("BATCHRUN_METRICS", str(path))
    batchrun.log({"a": _Scalar(), "b": _Opaque(), "c": math.nan, "d": math.inf, (1, 2): 3, "e": {"f": 1}})
    text = path.read_text()
    assert text == '{"a":0.125,"b":"<opaque>","c":NaN,"d":Infinity,"e":{"f":1}}\n'


def test_wrong_arguments_warn_once_and_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.jsonl"
    monkeypatch.setenv("BATCHRUN_METRICS", str(path))
    batchrun.log(3)  # type: ignore[arg-type]
    batchrun.summary([1])  # type: ignore[arg-type]
    assert not path.exists()
    assert capsys.readouterr().err == "batchrun.log expects a dict of metric values, not int; ignored\n"
    batchrun.log({"x": 1}, step="ten")  # type: ignore[arg-type]
    assert _lines(path) == [{"x": 1}]


def test_import_is_light() -> None:
    """`import batchrun` inside a training script pulls in neither doit, yaml nor rich."""
    code = "import sys, batchrun; batchrun.log({'a': 1}); print(sorted(m for m in ('doit', 'yaml', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
