"""Unit tests of batchrun.launch.feed: the job source of a following launch."""

from __future__ import annotations

import threading
from pathlib import Path

from batchrun.launch.feed import FixedJobs, JobFeed
from batchrun.runfile.file import Job, load_runfile
from batchrun.runfile.follow import FollowChange, RunfileFollower


def commands(jobs: list[Job] | None) -> list[str] | None:
    return None if jobs is None else [job.command for job in jobs]


def test_pending_first_then_appended_lines_and_removed_ones_never_start(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    path.write_text("echo done\necho a\necho b\n")
    runfile = load_runfile(path)
    done = {runfile.jobs[0].job_id}
    stop = threading.Event()
    changes: list[FollowChange] = []
    feed = JobFeed(runfile.jobs[1:], RunfileFollower(path, runfile), stop, changes.append)
    assert commands(feed.next_jobs(1, done.__contains__)) == ["echo a"]
    assert commands(feed.next_jobs(10, done.__contains__)) == ["echo b"]
    assert feed.next_jobs(10, done.__contains__) == []
    with open(path, "a") as f:
        f.write("echo c\necho done\necho d\n")
    assert commands(feed.next_jobs(10, done.__contains__)) == ["echo c", "echo d"]
    assert [dup[2] for dup in changes[-1].duplicates] == [5]
    c, d = (job.job_id for job in load_runfile(path).jobs[3:5])
    # `echo d` waits in a window while its line is removed: it does not start.
    path.write_text("echo done\necho a\necho b\necho c\n")
    assert feed.should_start(c)
    assert not feed.should_start(d)
    assert feed.next_jobs(10, done.__contains__) == []
    assert changes[-1].removed == [d]
    # Put back: queued again, once.
    path.write_text("echo done\necho a\necho b\necho c\necho d\n")
    assert commands(feed.next_jobs(10, done.__contains__)) == ["echo d"]
    path.write_text("echo done\necho a\necho b\necho c\n")
    path.write_text("echo done\necho a\necho b\necho c\necho d\necho e\n")
    assert commands(feed.next_jobs(10, done.__contains__)) == ["echo e"]
    assert feed.queued() == 4  # a, b, d, e: handed out, none started yet


def test_a_line_appended_and_removed_before_a_slot_frees_never_runs(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    path.write_text("echo a\n")
    runfile = load_runfile(path)
    feed = JobFeed([], RunfileFollower(path, runfile), threading.Event())
    assert feed.next_jobs(10, lambda job_id: False) == []
    with open(path, "a") as f:
        f.write("echo brief\n")
    path.write_text("echo a\n")
    assert feed.next_jobs(10, lambda job_id: False) == []


def test_stop_ends_the_feed_and_keeps_queued_jobs_from_starting(tmp_path: Path) -> None:
    path = tmp_path / "q.runfile"
    path.write_text("echo a\necho b\n")
    runfile = load_runfile(path)
    stop = threading.Event()
    feed = JobFeed(runfile.jobs, RunfileFollower(path, runfile), stop)
    jobs = feed.next_jobs(10, lambda job_id: False)
    assert commands(jobs) == ["echo a", "echo b"]
    assert jobs is not None and feed.should_start(jobs[0].job_id)
    stop.set()
    assert not feed.should_start(jobs[1].job_id)
    assert feed.next_jobs(10, lambda job_id: False) is None


def test_fixed_jobs_hand_out_each_job_once_skipping_done_ones_then_say_no_more() -> None:
    jobs = [Job(f"echo {i}", f"{i:016x}", i + 1) for i in range(5)]
    fixed = FixedJobs(jobs)
    done = {jobs[1].job_id}
    assert commands(fixed.next_jobs(2, done.__contains__)) == ["echo 0", "echo 2"]
    assert commands(fixed.next_jobs(5, done.__contains__)) == ["echo 3", "echo 4"]
    # A fixed list never says "nothing yet": once empty, it is over.
    assert fixed.next_jobs(5, done.__contains__) is None
