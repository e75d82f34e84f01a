"""Requests (`batchrun.resources`): the one syntax, its units, and directives in runfiles and job tables."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from batchrun.errors import RunfileError
from batchrun.resources import (
    NO_REQUEST,
    Request,
    directive_body,
    format_duration,
    format_size,
    merge_requests,
    parse_duration,
    parse_request,
    parse_size,
)
from batchrun.runfile.file import Job, JobTable, append_commands, load_runfile, parse_runfile_text
from batchrun.runfile.follow import RunfileFollower


@pytest.mark.parametrize(
    ("text", "request_"),
    [
        ("gpus=2 cpus=8 mem=64G time=2h", Request(Fraction(2), 8, 64 << 30, 7200.0)),
        ("gpus=0.25", Request(gpus=Fraction(1, 4))),
        ("gpus=1/3", Request(gpus=Fraction(1, 3))),
        ("gpus=0", Request(gpus=Fraction(0))),
        ("mem=2048", Request(mem=2048 << 20)),  # a bare number is megabytes, as SLURM reads --mem
        ("mem=1.5G time=90", Request(mem=1536 << 20, time=90.0)),
        ("MEM=100KiB", Request(mem=100 << 10)),
        ("", NO_REQUEST),
    ],
)
def test_a_request_reads_and_writes_back(text: str, request_: Request) -> None:
    assert parse_request(text) == request_
    assert parse_request(request_.text()) == request_


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gpu=2", "unknown request 'gpu' (did you mean 'gpus'?)"),
        ("gpus=1.5", "gpus above 1 must be a whole number"),
        ("gpus=-1", "gpus must be 0 or more"),
        ("cpus=0", "cpus must be a whole number of at least 1"),
        ("cpus=2.5", "cpus must be a whole number"),
        ("mem=0", "mem must be more than 0"),
        ("mem=lots", "mem must be a size like 64G"),
        ("time=soon", "time must be a duration like 90, 30m"),
        ("gpus=1 gpus=2", "gpus given twice"),
        ("gpus", "expected key=value words"),
    ],
)
def test_a_bad_request_is_one_line(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        parse_request(text)


def test_sizes_and_durations_have_one_form_each() -> None:
    assert [format_size(parse_size(t)) for t in ("64G", "1.5G", "100K", "3", "12345B")] == ["64G", "1536M", "100K", "3M", "12345B"]
    assert [format_duration(parse_duration(t)) for t in ("2h", "90", "1h30m", "0.5", "1d")] == ["2h", "1m30s", "1h30m", "0.5s", "1d"]
    assert parse_duration("0", allow_zero=True) == 0.0
    with pytest.raises(ValueError):
        parse_duration("0")


def test_a_directive_is_a_batchrun_line_of_key_value_words() -> None:
    assert directive_body("# batchrun: gpus=2 cpus=8") == "gpus=2 cpus=8"
    assert directive_body("#batchrun:") == ""  # a reset
    assert directive_body("# batchrun: the points of a bayes search of x.yml") is None  # a note, not a directive
    assert directive_body("# batchrun run: 'python x.py'") is None
    assert directive_body("# a comment") is None
    assert Request(cpus=8).directive() == "# batchrun: cpus=8" and NO_REQUEST.directive() == "# batchrun:"
    assert merge_requests(Request(gpus=Fraction(1), cpus=4), Request(gpus=Fraction(2))) == Request(gpus=Fraction(2), cpus=4)


RUNFILE = """echo a
# batchrun: gpus=2 cpus=8
echo b
echo c
# batchrun: the points of something (a note)
echo a
# batchrun:
echo d
# batchrun: mem=1G
# batchrun: gpus=0.5
echo e
"""


def test_a_directive_sets_the_request_of_the_lines_after_it_up_to_the_next() -> None:
    runfile = parse_runfile_text(RUNFILE, Path("x.runfile"))
    two = Request(gpus=Fraction(2), cpus=8)
    half = Request(gpus=Fraction(1, 2))  # the later of two directives in a row wins; they do not add up
    assert [(job.command, job.lineno, job.request) for job in runfile.jobs] == [
        ("echo a", 1, None), ("echo b", 3, two), ("echo c", 4, two), ("echo d", 8, None), ("echo e", 11, half),
    ]
    assert [runfile.jobs[i].request for i in range(5)] == [None, two, two, None, half]  # by index too
    assert runfile.duplicates == [("echo a", 1, 6)]  # a repeated line is one job, with its first line's request
    assert runfile.jobs.requests.distinct() == [two, half]


def test_a_directive_changes_no_job_id() -> None:
    plain = parse_runfile_text("echo b\necho c\n", Path("x.runfile")).jobs
    asked = parse_runfile_text("# batchrun: gpus=2\necho b\n# batchrun: cpus=3\necho c\n", Path("x.runfile")).jobs
    assert list(plain.job_ids()) == list(asked.job_ids())
    assert Job("echo b", asked[0].job_id, 2) == asked[0] and hash(Job("echo b", asked[0].job_id, 2)) == hash(asked[0])  # not part of its equality


def test_a_bad_directive_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "x.runfile"
    path.write_text("echo a\n# batchrun: gpu=2\necho b\n")
    with pytest.raises(RunfileError, match=r"x.runfile:2: bad directive '# batchrun: gpu=2': unknown request 'gpu' \(did you mean 'gpus'\?\)"):
        load_runfile(path)


def test_requests_are_kept_per_run_of_lines_not_per_job() -> None:
    text = "# batchrun: cpus=2\n" + "".join(f"echo {i}\n" for i in range(10_000)) + "# batchrun:\necho last\n"
    table = parse_runfile_text(text, Path("x.runfile")).jobs
    assert table.requests._starts.tolist() == [0, 10_000]  # two entries for 10,001 jobs
    assert table[9_999].request == Request(cpus=2) and table[10_000].request is None


def test_appended_jobs_keep_their_requests_and_a_directive_is_written_only_where_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "x.runfile"
    path.write_text("# batchrun: cpus=2\necho a\n")
    runfile = load_runfile(path)
    jobs = append_commands(runfile, ["echo b", "echo c", "echo d"], [Request(cpus=2), Request(gpus=Fraction(1, 4)), Request(gpus=Fraction(1, 4))])
    assert path.read_text() == "# batchrun: cpus=2\necho a\necho b\n# batchrun: gpus=0.25\necho c\necho d\n"
    assert [job.request for job in jobs] == [Request(cpus=2), Request(gpus=Fraction(1, 4)), Request(gpus=Fraction(1, 4))]
    assert [job.request for job in runfile.jobs] == [Request(cpus=2), Request(cpus=2), Request(gpus=Fraction(1, 4)), Request(gpus=Fraction(1, 4))]
    assert runfile.jobs == load_runfile(path).jobs


def test_a_table_built_from_jobs_keeps_their_requests() -> None:
    jobs = [Job("echo a", "0" * 16, 1, Request(cpus=1)), Job("echo b", "1" * 16, 2), Job("echo c", "2" * 16, 3, Request(cpus=1))]
    table = JobTable(jobs)
    assert [job.request for job in table] == [Request(cpus=1), None, Request(cpus=1)]
    table[:] = jobs[1:]
    assert [job.request for job in table] == [None, Request(cpus=1)]


def test_a_followed_runfile_gives_appended_jobs_their_directive(tmp_path: Path) -> None:
    path = tmp_path / "x.runfile"
    path.write_text("echo a\n")
    follower = RunfileFollower(path, load_runfile(path))
    with path.open("a") as f:
        f.write("# batchrun: cpus=3\necho b\n")
    change = follower.take()
    assert change is not None and [(job.command, job.request) for job in change.added] == [("echo b", Request(cpus=3))]
    with path.open("a") as f:
        f.write("echo c\n# batchrun: gpu=1\n")
    change = follower.take()  # a bad directive: one error, the last good view kept
    assert change is not None and not change.added and "bad directive '# batchrun: gpu=1'" in str(change.error)
    path.write_text(path.read_text().replace("gpu=1", "gpus=1"))
    change = follower.take()
    assert change is not None and [(job.command, job.request) for job in change.added] == [("echo c", Request(cpus=3))]
    # The directive changed above a known job: the job keeps its id, and the follower its new request.
    path.write_text("# batchrun: cpus=1\necho a\n# batchrun: cpus=3\necho b\necho c\n")
    follower.take()
    job = follower.job(load_runfile(path).jobs[0].job_id)
    assert job is not None and job.request == Request(cpus=1)
