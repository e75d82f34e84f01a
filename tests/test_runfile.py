"""Unit tests of runfile parsing: ids, skipping, duplicates, bad files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from batchrun.errors import RunfileError
from batchrun.runfile.file import (
    job_id_of,
    load_runfile,
    parse_parameters,
    parse_runfile_text,
)


def test_job_id_is_sha256_prefix_of_the_stripped_command() -> None:
    assert job_id_of("echo hi") == hashlib.sha256(b"echo hi").hexdigest()[:16]
    rf = parse_runfile_text("  echo hi  \n", Path("x.runfile"))
    assert rf.jobs[0].job_id == job_id_of("echo hi")
    assert rf.jobs[0].command == "echo hi"


def test_blank_and_comment_lines_are_skipped_with_line_numbers_kept() -> None:
    text = "# header\n\n   \necho a\n  # indented comment\necho b\n"
    rf = parse_runfile_text(text, Path("x.runfile"))
    assert [(j.command, j.lineno) for j in rf.jobs] == [("echo a", 4), ("echo b", 6)]


def test_duplicate_lines_are_one_job_and_reported() -> None:
    rf = parse_runfile_text("echo a\necho b\n echo a\n", Path("x.runfile"))
    assert [j.command for j in rf.jobs] == ["echo a", "echo b"]
    assert rf.duplicates == [("echo a", 1, 3)]


def test_crlf_and_unicode_commands() -> None:
    rf = parse_runfile_text("echo ünï ✓\r\necho 'a b'\r\n", Path("x.runfile"))
    assert [j.command for j in rf.jobs] == ["echo ünï ✓", "echo 'a b'"]


def test_missing_directory_binary_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(RunfileError, match="no such runfile"):
        load_runfile(tmp_path / "nope.runfile")
    with pytest.raises(RunfileError, match="is a directory"):
        load_runfile(tmp_path)
    binary = tmp_path / "bin.runfile"
    binary.write_bytes(b"echo a\n\x00\x01\x02")
    with pytest.raises(RunfileError, match=r"bin.runfile:2: binary file"):
        load_runfile(binary)
    latin = tmp_path / "latin.runfile"
    latin.write_bytes(b"echo a\necho \xe9\n")
    with pytest.raises(RunfileError, match=r"latin.runfile:2: not UTF-8"):
        load_runfile(latin)


def test_parse_parameters_like_the_original() -> None:
    assert parse_parameters("python3 s.py --alpha=1 --beta=b --flag") == {"alpha": "1", "beta": "b", "flag": True}
    assert parse_parameters("python3 s.py --name='a b' --x=1") == {"name": "a b", "x": "1"}
    assert parse_parameters("echo 'unbalanced --a=1") == {}
    assert parse_parameters("echo no params") == {}
