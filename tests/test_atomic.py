"""The one atomic write: whole files or the old ones, no temporary file left behind."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.atomic import temp_path_of, write_atomic


def test_text_bytes_and_pieces_are_written_in_order(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    write_atomic(target, ["a", "b\n", "c"])
    assert target.read_text() == "ab\nc"
    write_atomic(str(target), iter([b"x", b"y"]), sync=True)
    assert target.read_bytes() == b"xy"
    assert os.listdir(tmp_path) == ["f"]


def test_mode_is_set_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "script", "#!/bin/sh\n", mode=0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "script").stat().st_mode) == 0o755


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")

    def pieces() -> Iterator[str]:
        yield "half of the new"
        raise RuntimeError("the writer died mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, pieces())
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_a_directory_that_cannot_be_written_is_an_oserror_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "gone").mkdir()
    target = tmp_path / "gone" / "f"
    target.write_text("old")
    # A directory that is a file now: no temporary file can be made in it (root included).
    with pytest.raises(OSError):
        write_atomic(tmp_path / "gone" / "f" / "inner", "new")
    assert target.read_text() == "old" and os.listdir(tmp_path / "gone") == ["f"]


def test_a_leftover_temporary_file_is_never_written_through(tmp_path: Path) -> None:
    """A file (or symlink) at the temporary name is someone else's: the write takes another name."""
    target = tmp_path / "f"
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    temp_path_of(target).symlink_to(outside)
    write_atomic(target, "new")
    assert target.read_text() == "new" and outside.read_text() == "untouched"


def test_writers_in_threads_of_one_process_each_leave_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    texts = [f"writer {n} " * 2000 for n in range(8)]
    threads = [threading.Thread(target=write_atomic, args=(target, text)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in texts
    assert os.listdir(tmp_path) == ["f"]
