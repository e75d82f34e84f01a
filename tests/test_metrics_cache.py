"""Tests for batchrun.metrics.cache: a hit gives what reading the file gives, and nothing stale or damaged is ever taken."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from batchrun.metrics import file as metrics_file
from batchrun.metrics.cache import CACHE_NAME, MetricsCache, record_job_metrics
from batchrun.metrics.file import RunMetrics, Skipped, read_metrics_file

JOB = "0123456789abcdef"
LINES = (
    '{"loss": 0.5, "acc": 1, "_step": 0}\n'
    '{"loss": 0.25, "acc": 3, "nested": {"x": 2.5}}\n'
    "not json\n"
    '{"loss": "high"}\n'
    '{"_summary": {"best": 0.125}}\n'
)


def _runs(tmp_path: Path, text: str = LINES) -> tuple[str, str]:
    log_dir = tmp_path / "logs" / JOB
    log_dir.mkdir(parents=True)
    path = log_dir / "metrics.jsonl"
    path.write_text(text)
    return str(tmp_path), str(path)


def _same(a: RunMetrics | None, b: RunMetrics | None) -> None:
    assert a is not None and b is not None
    assert list(a.names()) == list(b.names()) and a.summary == b.summary
    for name in a.names():
        for agg in ("last", "min", "max", "mean"):
            got, want = a.value(name, agg), b.value(name, agg)
            assert got == want and type(got) is type(want), (name, agg)


def _read_twice(runs: str, path: str) -> tuple[RunMetrics | None, list[str], MetricsCache]:
    cache = MetricsCache(runs)
    skipped = Skipped()
    got = cache.read(JOB, path, skipped, finished=True)
    return got, skipped.lines(), cache


def test_a_recorded_job_is_a_hit_equal_to_reading_the_file(tmp_path: Path) -> None:
    runs, path = _runs(tmp_path)
    record_job_metrics(runs, JOB, path)
    want_skipped = Skipped()
    want = read_metrics_file(path, want_skipped)
    got, lines, cache = _read_twice(runs, path)
    assert cache.hits == 1 and cache.save() == 0
    _same(got, want)
    assert lines == want_skipped.lines() and len(lines) == 2  # the bad line and the non-number, with where they were


def test_a_file_changed_since_is_read_again_and_the_new_reading_cached(tmp_path: Path) -> None:
    runs, path = _runs(tmp_path)
    record_job_metrics(runs, JOB, path)
    with open(path, "a") as handle:
        handle.write('{"loss": 0.0625}\n')
    got, _, cache = _read_twice(runs, path)
    assert cache.hits == 0 and got is not None and got.value("loss") == 0.0625
    assert cache.save() == 1
    again, _, cache = _read_twice(runs, path)
    assert cache.hits == 1
    _same(again, got)
    # A retry's new file (another inode) of the same size and content is no hit either.
    os.rename(path, path + ".old")
    Path(path).write_bytes(Path(path + ".old").read_bytes())
    _, _, cache = _read_twice(runs, path)
    assert cache.hits == 0


def test_a_running_jobs_file_is_read_but_not_cached(tmp_path: Path) -> None:
    runs, path = _runs(tmp_path)
    cache = MetricsCache(runs)
    got = cache.read(JOB, path, Skipped(), finished=False)
    assert got is not None and got.value("loss") == 0.25
    assert cache.save() == 0 and not (tmp_path / CACHE_NAME).exists()


def test_no_metrics_file_is_nothing_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "logs" / JOB).mkdir(parents=True)
    path = str(tmp_path / "logs" / JOB / "metrics.jsonl")
    record_job_metrics(str(tmp_path), JOB, path)
    cache = MetricsCache(str(tmp_path))
    assert cache.read(JOB, path, Skipped(), finished=True) is None
    assert cache.save() == 0 and not (tmp_path / CACHE_NAME).exists()


@pytest.mark.parametrize("damage", ["torn", "garbage", "wrong shape", "old format"])
def test_a_damaged_cache_never_gives_a_wrong_answer(tmp_path: Path, damage: str) -> None:
    runs, path = _runs(tmp_path)
    record_job_metrics(runs, JOB, path)
    cache_path = tmp_path / CACHE_NAME
    line = cache_path.read_text()
    stat = os.stat(path)
    bad = {
        "torn": line[: len(line) // 2],  # a crash mid-append
        "garbage": "\x00\x00{{{\n",
        "wrong shape": json.dumps([JOB, stat.st_ino, stat.st_size, stat.st_mtime_ns, ["loss"], [1, 2], {}]) + "\n",
        "old format": json.dumps({"job_id": JOB, "ino": stat.st_ino, "size": stat.st_size}) + "\n",
    }[damage]
    cache_path.write_text(bad)
    got, _, cache = _read_twice(runs, path)
    assert cache.hits == 0
    _same(got, read_metrics_file(path, Skipped()))
    # A good line after a torn one still counts.
    cache_path.write_text(bad + ("\n" if damage == "torn" else "") + line)
    _, _, cache = _read_twice(runs, path)
    assert cache.hits == 1


def test_a_line_appended_while_the_job_is_read_is_not_taken_as_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the job writes a line just after the reader's stat. The entry must cover the stat's bytes only."""
    runs, path = _runs(tmp_path, '{"loss": 1}\n')
    real_fstat = os.fstat

    def fstat_then_append(fd: int) -> os.stat_result:
        stat = real_fstat(fd)
        with open(path, "a") as handle:
            handle.write('{"loss": 2}\n')
        return stat

    monkeypatch.setattr(metrics_file.os, "fstat", fstat_then_append)
    record_job_metrics(runs, JOB, path)
    monkeypatch.undo()
    entry = json.loads((tmp_path / CACHE_NAME).read_text())
    assert entry[2] == len('{"loss": 1}\n') and entry[5][0] == 1  # last loss 1: exactly the bytes stat counted
    got, _, cache = _read_twice(runs, path)
    assert cache.hits == 0 and got is not None and got.value("loss") == 2


def test_a_runs_directory_one_cannot_write_keeps_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, path = _runs(tmp_path)

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    cache = MetricsCache(runs)
    assert cache.read(JOB, path, Skipped(), finished=True) is not None
    monkeypatch.setattr("batchrun.metrics.cache.os.open", refuse)
    assert cache.save() == 0
    record_job_metrics(runs, JOB, path)  # never raises
