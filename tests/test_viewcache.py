"""Unit tests of the journal ids since a fingerprint's mark and the reading of metadata.json's rendered lines by position."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.runfile.file import Job, job_id_of
from batchrun.store.fingerprint import journal_mark
from batchrun.store.metadata import build_entry, render_entry
from batchrun.store.viewcache import journal_ids_since, lines_in_order, read_old_view

_A, _B = "0123456789abcdef", "fedcba9876543210"


def _journal(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.journal"
    path.write_text(text)
    return path


def test_the_ids_named_after_the_mark_are_the_changed_jobs(tmp_path: Path) -> None:
    journal = _journal(tmp_path, f"E {_A} 1 0 1.000000 2.000000\n")
    mark = journal_mark(journal)
    assert mark is not None and mark[0] == journal.stat().st_size
    assert journal_ids_since(journal, mark) == set()
    with open(journal, "a") as f:
        f.write(f"R {_B}\nS {_A} 2 3.000000 0 h\n")
    assert journal_ids_since(journal, mark) == {_A, _B}


@pytest.mark.parametrize("change", ["shorter", "rewritten", "missing"])
def test_a_journal_rewritten_since_the_mark_matches_nothing(tmp_path: Path, change: str) -> None:
    journal = _journal(tmp_path, f"E {_A} 1 0 1.000000 2.000000\nE {_B} 1 0 1.000000 2.000000\n")
    mark = journal_mark(journal)
    assert mark is not None
    if change == "shorter":
        journal.write_text(f"E {_A} 1 0 1.000000 2.000000\n")
    elif change == "rewritten":
        # Same size, other bytes (as a compaction or a repair could leave), and more after.
        journal.write_text(f"E {_B} 1 0 1.000000 2.000000\nE {_A} 1 0 1.000000 2.000000\nR {_A}\n")
    else:
        journal.unlink()
    assert journal_ids_since(journal, mark) is None


def test_rendered_lines_are_read_as_written(tmp_path: Path) -> None:
    a = f'  "{_A}": {{"command": "echo a", "state": "pending"}}'
    b = f'  "{_B}": {{"command": "echo \\u00e9, b", "state": "pending"}}'
    path = tmp_path / "metadata.json"
    path.write_text("{\n" + a + ",\n" + b + "\n}\n", encoding="utf-8")
    view = read_old_view(path)
    assert view is not None
    assert [(view.keys.text(pos), view.line(pos)) for pos in range(len(view))] == [(_A, a.encode()), (_B, b.encode())]
    view.close()


@pytest.mark.parametrize("text", [
    "{}\n",                                            # empty: nothing to keep, parse as usual
    '{\n  "0123456789abcdef": {"a": 1}\n',            # no closing brace
    '{\n  "0123456789abcdef": {"a": 1}\n}\nextra\n',  # bytes after it
    '{\n  "0123456789ABCDEF": {"a": 1}\n}\n',         # not a job id
    '{\n  "0123456789abcdef": {"a": 1},\n  "0123456789abcdef": {"a": 2}\n}\n',  # twice
    '{\n  "0123456789abcdef": [1]\n}\n',              # not an object
    '{\n    "0123456789abcdef": {\n      "a": 1\n    }\n}\n',  # the original batchrun's indented layout
])
def test_other_shapes_give_none(tmp_path: Path, text: str) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(text, encoding="utf-8")
    assert read_old_view(path) is None


def test_undecodable_bytes_give_none(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_bytes(b'{\n  "0123456789abcdef": {"a": "\xff"}\n}\n')
    assert read_old_view(path) is None
    assert read_old_view(tmp_path / "absent.json") is None


def _metadata(tmp_path: Path, jobs: list[Job], logs: str, first: bytes | None = None) -> Path:
    """metadata.json as batchrun writes it: each job's rendered entry, one a line (after `first`, if given)."""
    lines = [render_entry(job.job_id, build_entry(job, None, f"{logs}/{job.job_id}")) for job in jobs]
    path = tmp_path / "metadata.json"
    path.write_bytes(b"{\n" + b",\n".join([first] * (first is not None) + lines) + b"\n}\n")
    return path


def _job(text: str, lineno: int) -> Job:
    return Job(text, job_id_of(text), lineno)


@pytest.mark.parametrize("case", ["lines removed", "a line inserted", "a line moved", "stale", "other logs", "another shape"])
def test_lines_taken_in_order_are_the_renderings_at_their_new_lines(tmp_path: Path, case: str) -> None:
    """Whatever the edit, each job's line is its rendering at its new line number; only lines that are
    the job's next old one, not stale and of these logs, are taken from the file (the others rendered)."""
    logs = "/runs/exp/logs"
    old = [_job(f"true {i}", i + 1) for i in range(40)]
    texts = [job.command for job in old]
    gone: set[str] = set()
    stale: set[str] = set()
    if case == "lines removed":
        gone = {job_id_of(text) for text in texts[10:13]}
        texts = texts[:10] + texts[13:]
    elif case == "a line inserted":
        texts = [*texts[:5], "true new", *texts[5:]]
    elif case == "a line moved":
        texts = [*texts[:5], texts[30], *texts[5:30], *texts[31:]]
    elif case == "stale":
        stale = {job_id_of(texts[20])}
    # Another shape: a line that is no entry batchrun renders, first; nothing after it is taken.
    path = _metadata(tmp_path, old, "/elsewhere/logs" if case == "other logs" else logs, b'  "0123456789abcdef": [1]' if case == "another shape" else None)
    new = [_job(text, lineno) for lineno, text in enumerate(texts, 3)]  # every job's line number changed
    rendered: list[str] = []

    def render(job: Job) -> bytes:
        rendered.append(job.command)
        return render_entry(job.job_id, build_entry(job, None, f"{logs}/{job.job_id}"))

    lines = list(lines_in_order(path, new, gone, stale, logs, render))
    assert lines == [(job.job_id, render_entry(job.job_id, build_entry(job, None, f"{logs}/{job.job_id}"))) for job in new]
    expected = {
        "lines removed": [],
        "a line inserted": ["true new"],
        "a line moved": ["true 30", *texts[31:]],  # out of the old order: it, and those after its old place (their next old line is its)
        "stale": [texts[20]],
        "other logs": texts,
        "another shape": texts,
    }[case]
    assert rendered == expected
