"""Reading a metrics.jsonl: steps, summaries, aggregates, thinning, and everything a file can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.metrics import file as metrics_file
from batchrun.metrics.file import HISTORY_POINTS, Skipped, read_metrics_file


def _read(tmp_path: Path, text: str | bytes, keep: bool = True) -> tuple[metrics_file.RunMetrics, Skipped]:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    skipped = Skipped()
    metrics = read_metrics_file(str(path), skipped, keep)
    assert metrics is not None
    return metrics, skipped


def test_steps_aggregates_and_summary(tmp_path: Path) -> None:
    metrics, skipped = _read(tmp_path, '{"loss": 3, "_step": 5}\n{"loss": 1}\n{"loss": 2, "acc": 0.5}\n{"_summary": {"loss": 0.5, "extra": 7}}\n')
    loss = metrics.series["loss"]
    assert (loss.steps, loss.values) == ([5, 6, 7], [3, 1, 2])
    assert metrics.series["acc"].steps == [7]
    assert metrics.value("loss") == 0.5  # the summary overrides the history's last
    assert (metrics.value("loss", "min"), metrics.value("loss", "max"), metrics.value("loss", "mean")) == (1, 3, 2)
    assert metrics.value("extra", "min") == 7  # summary only: every aggregate is the summary value
    assert list(metrics.names()) == ["loss", "acc", "extra"]
    assert skipped.counts == {}


def test_nested_objects_are_flattened_and_private_keys_ignored(tmp_path: Path) -> None:
    metrics, _ = _read(tmp_path, '{"train": {"loss": 1, "_x": 2}, "_time": 3}\n')
    assert list(metrics.names()) == ["train.loss"]


def test_bad_lines_and_values_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    metrics, skipped = _read(tmp_path, '{"a": 1}\nnot json\n[1, 2]\n\n{"a": "high", "b": true, "c": null}\n{"a": NaN, "b": Infinity}\n{"a": 2}\n')
    assert metrics.series["a"].values == [1, 2]
    assert "b" not in metrics.series and "c" not in metrics.series
    assert skipped.counts == {"skipped {n} metrics lines that are not JSON objects": 2, "skipped {n} metric values that are not numbers": 3, "skipped {n} NaN or infinite metric values": 2}
    assert skipped.first["skipped {n} metrics lines that are not JSON objects"] == f"{path}:2"
    assert skipped.lines()[0] == f"skipped 2 metrics lines that are not JSON objects (first: {path}:2)"


def test_an_unterminated_last_line_is_read_or_left_quietly(tmp_path: Path) -> None:
    metrics, skipped = _read(tmp_path, '{"a": 1}\n{"a": 2}')
    assert metrics.series["a"].values == [1, 2]
    metrics, skipped = _read(tmp_path, '{"a": 1}\n{"a": 2, "b"')  # cut by a kill mid-write
    assert metrics.series["a"].values == [1] and skipped.counts == {}


def test_missing_file_is_none_and_empty_file_is_empty(tmp_path: Path) -> None:
    assert read_metrics_file(str(tmp_path / "none.jsonl"), Skipped()) is None
    metrics, _ = _read(tmp_path, "")
    assert list(metrics.names()) == []


def test_histories_are_thinned_but_aggregates_see_every_value(tmp_path: Path) -> None:
    n = 10 * HISTORY_POINTS + 3
    metrics, _ = _read(tmp_path, "".join(f'{{"x": {i}}}\n' for i in range(n)))
    x = metrics.series["x"]
    assert HISTORY_POINTS <= len(x.values) < 2 * HISTORY_POINTS
    assert x.values[0] == 0 and x.steps == x.values  # evenly spaced, steps kept with their values
    assert len({b - a for a, b in zip(x.steps, x.steps[1:], strict=False)}) == 1
    assert (x.count, x.min, x.max, x.last) == (n, 0, n - 1, n - 1)
    assert not _read(tmp_path, '{"x": 1}\n', keep=False)[0].series["x"].values


def test_a_huge_file_is_read_from_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of MB: only the last MAX_BYTES are read, and that is said."""
    path = tmp_path / "metrics.jsonl"
    block = "".join(f'{{"loss": {i % 1000 / 1000}, "_step": {i}}}\n' for i in range(50_000)).encode()
    with open(path, "wb") as f:
        for _ in range(300 * 2**20 // len(block)):
            f.write(block)
        f.write(b'{"loss": 0.0001, "_step": 99}\n')
    assert path.stat().st_size > 250 * 2**20
    skipped = Skipped()
    metrics = read_metrics_file(str(path), skipped)
    assert metrics is not None
    assert metrics.value("loss") == 0.0001
    assert metrics.series["loss"].count < 1_000_000  # not the whole file
    [(reason, count)] = skipped.counts.items()
    assert reason == "read only the last 16 MiB of {n} metrics files over 16 MiB" and count == 1
    assert "MiB)" in skipped.first[reason]
