"""Unit tests of batchrun.runfile.follow: the live view of a runfile or gridspec."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from batchrun.runfile import follow
from batchrun.runfile.file import Job, load_runfile, parse_runfile_text
from batchrun.runfile.follow import FollowChange, RunfileFollower, follow_jobs
from batchrun.runfile.follow_gridspec import GridspecFollower


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines_of(jobs: list[Job]) -> list[tuple[str, int]]:
    return [(job.command, job.lineno) for job in jobs]


def follower_of(path: Path, text: str = "", clock: Clock | None = None) -> RunfileFollower:
    path.write_text(text)
    fol = RunfileFollower(path, load_runfile(path), clock=clock or Clock())
    assert fol.take() is None
    return fol


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def test_appended_lines_are_added_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\n# note\n\necho b\n")
    assert fol.take() is None
    append(path, "echo c\n  echo d  \n")
    change = fol.take()
    assert change is not None
    assert lines_of(change.added) == [("echo c", 5), ("echo d", 6)]
    assert change.removed == [] and change.error is None
    assert fol.take() is None
    assert lines_of(fol.jobs()) == lines_of(load_runfile(path).jobs)


TRICKY = [
    "\ufeffecho bom\r\necho crlf\r\n",
    "a\rb\r\rc\n\n#x\n  #y\n d \n",
    "a\na\nb\r\na\r",
    "x\u2028y\n\x0cz\n",
    "\ufeff\n\ufeffmid\n",
    "",
    "\n\n\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_appends_in_any_pieces_read_as_parse_runfile_text_reads_the_whole(tmp_path: Path, text: str) -> None:
    expected = parse_runfile_text(text + "\n", tmp_path / "q.runfile")
    data = (text + "\n").encode()
    rng = random.Random(len(text))
    for _trial in range(20):
        path = tmp_path / "q.runfile"
        fol = follower_of(path)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, 4)))
        added: list[Job] = []
        duplicates: list[tuple[str, int, int]] = []
        start = 0
        for cut in [*cuts, len(data)]:
            append(path, data[start:cut])
            start = cut
            change = fol.take()
            if change is not None:
                assert change.removed == [] and change.error is None
                added += change.added
                duplicates += change.duplicates
        assert lines_of(added) == lines_of(expected.jobs)
        assert [job.job_id for job in added] == [job.job_id for job in expected.jobs]
        assert duplicates == expected.duplicates
        path.unlink()


@pytest.mark.parametrize("text", TRICKY)
def test_a_whole_rewrite_reads_as_parse_runfile_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "old line\n")
    new = tmp_path / "q.runfile.tmp"
    new.write_bytes((text + "\n").encode())
    os.replace(new, path)
    change = fol.take()
    expected = parse_runfile_text(text + "\n", path)
    assert lines_of(fol.jobs()) == lines_of(expected.jobs)
    assert change is not None
    assert change.removed == [parse_runfile_text("old line", path).jobs[0].job_id]
    assert lines_of(change.added) == lines_of(expected.jobs)


def test_editor_rename_changing_and_removing_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\necho b\necho c\n")
    ids = {job.command: job.job_id for job in fol.jobs()}
    tmp = tmp_path / ".q.runfile.swp"
    tmp.write_text("echo a\necho B\n")
    os.replace(tmp, path)
    change = fol.take()
    assert change is not None
    assert lines_of(change.added) == [("echo B", 2)]
    assert sorted(change.removed) == sorted([ids["echo b"], ids["echo c"]])
    assert not fol.wanted(ids["echo c"]) and fol.wanted(ids["echo a"])


def test_truncation_and_rewrite_in_place(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\necho b\n")
    with open(path, "w") as f:  # same inode, shorter
        f.write("echo a\n")
    change = fol.take()
    assert change is not None and change.added == [] and len(change.removed) == 1
    # In place and longer, with the old end overwritten: not taken for an append.
    with open(path, "w") as f:
        f.write("echo z\necho y\necho x\n")
    change = fol.take()
    assert change is not None
    assert lines_of(change.added) == [("echo z", 1), ("echo y", 2), ("echo x", 3)]
    assert len(change.removed) == 1


def test_a_write_in_the_same_clock_tick_is_caught_by_the_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\n", clock)
    append(path, "echo b\n")
    seen = os.stat(path)
    assert fol.take() is not None
    # Same size, and a filesystem clock too coarse to show the write.
    with open(path, "r+") as f:
        f.seek(5)
        f.write("c")
    real_stat = os.stat

    def coarse_stat(p: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        return seen if Path(p) == path else real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", coarse_stat)
    assert fol.take() is None  # nothing to see yet
    clock.now += follow.VERIFY_AFTER
    change = fol.take()
    assert change is not None
    assert lines_of(change.added) == [("echo c", 1)]
    assert len(change.removed) == 1


def test_growth_reads_only_the_new_bytes_and_a_little_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "".join(f"python train.py --seed={i}\n" for i in range(100_000)))
    reads: list[int] = []
    real_open = open

    class Counting:
        def __init__(self, *args: Any) -> None:
            self.f = real_open(*args)

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def seek(self, pos: int) -> int:
            return self.f.seek(pos)

        def read(self, size: int = -1) -> bytes:
            data: bytes = self.f.read(size)
            reads.append(len(data))
            return data

    monkeypatch.setattr(follow, "open", Counting, raising=False)
    append(path, "python train.py --seed=new\n")
    change = fol.take()
    assert change is not None and lines_of(change.added) == [("python train.py --seed=new", 100_001)]
    assert sum(reads) < 8192


def test_an_unfinished_last_line_waits_for_its_newline_or_for_the_file_to_settle(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\n", clock)
    append(path, "python train.py --lr=0.")
    assert fol.take() is None
    append(path, "3\n")
    change = fol.take()
    assert change is not None and lines_of(change.added) == [("python train.py --lr=0.3", 2)]
    # An editor's save without a final newline: taken once unchanged long enough.
    append(path, "echo last")
    assert fol.take() is None
    clock.now += follow.PARTIAL_SETTLE / 2
    assert fol.take() is None
    clock.now += follow.PARTIAL_SETTLE
    change = fol.take()
    assert change is not None and lines_of(change.added) == [("echo last", 3)]
    last_id = change.added[0].job_id
    # The newline arrives: the same job, nothing to report.
    append(path, "\n")
    assert fol.take() is None
    assert fol.wanted(last_id)
    # A settled partial line that then grows: its first version is gone.
    append(path, "echo x")
    assert fol.take() is None
    clock.now += 2 * follow.PARTIAL_SETTLE
    first = fol.take()
    assert first is not None and lines_of(first.added) == [("echo x", 4)]
    append(path, "yz\n")
    change = fol.take()
    assert change is not None
    assert lines_of(change.added) == [("echo xyz", 4)]
    assert change.removed == [first.added[0].job_id]


def test_a_known_unfinished_last_line_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\necho b")
    assert fol.take() is None
    assert [job.command for job in fol.jobs()] == ["echo a", "echo b"]
    append(path, "c\n")
    change = fol.take()
    assert change is not None and lines_of(change.added) == [("echo bc", 2)] and len(change.removed) == 1


def test_added_then_removed_before_take_never_shows_and_duplicates_are_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\n")
    append(path, "echo gone\n")
    gone = parse_runfile_text("echo gone", path).jobs[0].job_id
    assert fol.wanted(gone)  # seen, not yet taken
    path.write_text("echo a\n")
    assert fol.take() is None
    append(path, "echo a\n")
    change = fol.take()
    assert change is not None and change.added == [] and change.duplicates == [("echo a", 1, 2)]
    append(path, "echo b\n")
    change = fol.take()
    assert change is not None and change.duplicates == [] and lines_of(change.added) == [("echo b", 3)]


def test_removed_then_added_again_is_added_again(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\necho b\n")
    b = fol.jobs()[1].job_id
    path.write_text("echo a\n")
    assert not fol.wanted(b)  # the launch drops it from its queue here
    path.write_text("echo a\necho b\n")
    change = fol.take()
    assert change is not None and change.removed == [] and lines_of(change.added) == [("echo b", 2)]


def test_bad_bytes_and_a_deleted_runfile_are_reported_once_and_the_view_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\n", clock)
    append(path, b"echo \0bad\n")
    change = fol.take()
    assert change is not None and change.added == [] and change.removed == []
    assert str(change.error) == f"{path}:2: binary file (NUL byte), not a runfile of commands"
    with monkeypatch.context() as patch:
        patch.setattr(follow, "open", lambda *args: pytest.fail("read a broken file that did not change"), raising=False)
        clock.now += 3 * follow.VERIFY_AFTER
        assert fol.take() is None
        assert fol.take() is None
    path.write_text("echo a\necho \xe9\n")
    change = fol.take()
    assert change is not None and change.error is None and lines_of(change.added) == [("echo \xe9", 2)]
    path.unlink()
    change = fol.take()
    assert change is not None and change.removed == []
    assert str(change.error) == f"{path}: no such runfile (deleted while following?)"
    assert fol.take() is None
    assert len(fol.jobs()) == 2
    path.write_bytes(b"echo a\n\xff\n")
    change = fol.take()
    assert change is not None and str(change.error) == f"{path}:2: not UTF-8 text, not a runfile of commands"


def test_gridspec_follower_resweeps_on_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchrun.sweeps import gridspec as sweep

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "g.yml"
    spec.write_text("program: python3 run.py\nparameters:\n  a:\n    values: [1, 2]\n")
    runfile = tmp_path / "g.runfile"
    sweep.write_runfile(sweep.load_gridspec(spec), runfile)
    fol = GridspecFollower(spec, runfile, load_runfile(runfile))
    assert fol.take() is None
    spec.write_text("program: python3 run.py\nparameters:\n  a:\n    values: [1, 3, 4]\n")
    change = fol.take()
    assert change is not None
    assert [job.command for job in change.added] == ["python3 run.py --a=3", "python3 run.py --a=4"]
    assert len(change.removed) == 1 and not fol.wanted(change.removed[0])
    spec.write_text("program: python3 run.py\nparameters: [oops\n")
    change = fol.take()
    assert change is not None and change.error is not None and str(change.error).startswith(str(spec))
    assert len(fol.jobs()) == 3


def test_follow_jobs_yields_appended_jobs_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    fol = follower_of(path, "echo a\n")
    stop = threading.Event()
    changes: list[FollowChange] = []
    got: list[Job] = []

    def consume() -> None:
        got.extend(follow_jobs(fol, stop, interval=0.01, on_change=changes.append))

    thread = threading.Thread(target=consume)
    thread.start()
    append(path, "echo b\n")
    for _ in range(500):
        if got:
            break
        stop.wait(0.01)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert lines_of(got) == [("echo b", 2)] and len(changes) == 1
