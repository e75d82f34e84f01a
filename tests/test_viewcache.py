"""Unit tests of the journal ids since a fingerprint's mark and the reading of metadata.json's rendered lines by position."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.store.fingerprint import journal_mark
from batchrun.store.viewcache import journal_ids_since, read_old_view

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
