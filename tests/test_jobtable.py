"""The compact job table: the same jobs, ids, line numbers and duplicates as one Job per line."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from batchrun.resources import parse_request
from batchrun.runfile.file import Runfile, append_commands, load_runfile, parse_runfile_text
from batchrun.runfile.idindex import short_prefix
from batchrun.runfile.jobtable import Job, JobTable, extend_table
from batchrun.runfile.parse import parse_commands


def reference_parse(text: str) -> tuple[list[tuple[str, str, int]], list[tuple[str, int, int]], str]:
    """The parser before the table (batchrun 0.x, one Job per line): the behaviour to keep."""
    jobs: list[tuple[str, str, int]] = []
    first_line: dict[str, int] = {}
    duplicates: list[tuple[str, int, int]] = []
    if text.startswith("\ufeff"):
        text = text[1:]
    for lineno, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        command = raw.strip()
        if not command or command[0] == "#":
            continue
        seen = first_line.get(command)
        if seen is not None:
            duplicates.append((command, seen, lineno))
            continue
        first_line[command] = lineno
        jobs.append((command, hashlib.sha256(command.encode()).hexdigest()[:16], lineno))
    return jobs, duplicates, hashlib.sha256(text.encode()).hexdigest()[:32]


TRICKY = [
    "",
    "\n",
    "true 1\ntrue 2\ntrue 1\n",
    "one\ntwo\none\ntwo\none",  # repeats, no trailing newline
    "\ufeffecho bom\r\necho crlf\recho cr\n",
    "  # comment\n\t#tab comment\n   \n echo  padded  \n",
    "echo a\x1cb\n\x1c echo sep \x1f\n",  # separators str.strip removes, bytes.strip keeps
    "\xa0 echo héllo \u3000\n echo héllo\n",  # non-ASCII spaces at the ends, then the same command
    "echo x\x85\n\u2028echo y\u2028\n",
    "echo a\x0cb\x0bc\n",  # form feed and vertical tab inside a line are not line ends
    "é\n#é\n é \né",
    "\r\r\n\n\r",
    "#\n# \n  #x",
    "echo '#not a comment'\n#\techo a comment\n",
    "x" * 3_000_000 + "\necho short\n" + "x" * 3_000_000,  # lines longer than a parsing block
    "日本語 --a=1\n日本語 --a=1\r\n😀\n",
]


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_same_jobs_duplicates_and_digest_as_one_job_per_line(text: str) -> None:
    jobs, duplicates, digest = reference_parse(text)
    runfile = parse_runfile_text(text, Path("x.runfile"))
    assert [(job.command, job.job_id, job.lineno) for job in runfile.jobs] == jobs
    assert runfile.duplicates == duplicates
    assert runfile.digest == digest
    assert len(runfile.jobs) == len(jobs)
    for i, (command, job_id, lineno) in enumerate(jobs):
        assert runfile.jobs[i] == Job(command, job_id, lineno)
        assert runfile.jobs.index_of(job_id) == i
        assert runfile.jobs.index_of_command(command) == i
        assert Job(command, job_id, lineno) in runfile.jobs
        assert Job(command, job_id, lineno + 1) not in runfile.jobs


def test_random_runfiles_with_many_repeats() -> None:
    rng = random.Random(16)
    pieces = ["true 1", " true 1", "true 2\t", "# c", "", "   ", "echo é", "\u3000echo é", "x\x1c"]
    for _ in range(200):
        text = rng.choice(["\n", "\r\n", "\r"]).join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        jobs, duplicates, digest = reference_parse(text)
        runfile = parse_runfile_text(text, Path("r.runfile"))
        assert [(job.command, job.job_id, job.lineno) for job in runfile.jobs] == jobs
        assert (runfile.duplicates, runfile.digest) == (duplicates, digest)


def test_load_runfile_reads_bytes_as_text(tmp_path: Path) -> None:
    path = tmp_path / "jobs.runfile"
    text = "\ufeffecho é\r\n\necho é\nsleep 1"
    path.write_bytes(text.encode())
    jobs, duplicates, digest = reference_parse(text)
    runfile = load_runfile(path)
    assert [(job.command, job.job_id, job.lineno) for job in runfile.jobs] == jobs
    assert (runfile.duplicates, runfile.digest) == (duplicates, digest)


def test_sequence_reads_indexing_slices_and_ids() -> None:
    table = parse_runfile_text("a\nb\n\nc\n", Path("x")).jobs
    assert [job.command for job in table] == ["a", "b", "c"]
    assert table[-1].lineno == 4
    assert [job.command for job in table[1:]] == ["b", "c"]
    assert list(table.job_ids()) == [job.job_id for job in table]
    assert table.index_of("0" * 16) == -1
    assert table.index_of("not an id") == -1
    assert table.index_of(table[0].job_id.upper()) == -1
    with pytest.raises(IndexError):
        table[3]
    assert table == [Job("a", table[0].job_id, 1), table[1], table[2]]
    assert table != table[:2]


def test_changes_a_followed_runfile_makes() -> None:
    table = JobTable([Job("a", "a" * 16, 1)])
    table.index_of("a" * 16)  # the index exists before the appends
    table.append(Job("b", "b" * 16, 2))
    table.extend([Job("c", "odd id", 3), Job("d", "d" * 16, 4)])
    assert [(job.command, job.job_id, job.lineno) for job in table] == [("a", "a" * 16, 1), ("b", "b" * 16, 2), ("c", "odd id", 3), ("d", "d" * 16, 4)]
    assert (table.index_of("b" * 16), table.index_of("odd id"), table.index_of("d" * 16)) == (1, 2, 3)
    table[:] = [job for job in table if job.command != "b"]
    assert [job.command for job in table] == ["a", "c", "d"]
    assert (table.index_of("b" * 16), table.index_of("d" * 16)) == (-1, 2)
    with pytest.raises(TypeError):
        table[1:] = []


def test_many_appends_keep_look_ups_right() -> None:
    table = parse_runfile_text("\n".join(f"true {i}" for i in range(100)), Path("x")).jobs
    for i in range(100, 3000):
        command = f"true {i}"
        table.append(Job(command, hashlib.sha256(command.encode()).hexdigest()[:16], i + 1))
        if i % 97 == 0:
            assert table.index_of_command(f"true {i // 2}") == i // 2
    assert all(table.index_of(job.job_id) == i for i, job in enumerate(table))


def test_runfile_takes_a_list_and_append_commands_skips_known(tmp_path: Path) -> None:
    path = tmp_path / "points.runfile"
    path.write_text("echo 1\n")
    runfile = load_runfile(path)
    added = append_commands(runfile, ["echo 1", "echo 2", "echo 2", "echo 3"])
    assert [(job.command, job.lineno) for job in added] == [("echo 2", 2), ("echo 3", 3)]
    assert [job.command for job in runfile.jobs] == ["echo 1", "echo 2", "echo 3"]
    assert path.read_text() == "echo 1\necho 2\necho 3\n"
    assert isinstance(Runfile(path, []).jobs, JobTable)


def test_ids_missing_names_keys_of_no_job_in_their_order() -> None:
    table = parse_runfile_text("a\nb\nc\n", Path("x")).jobs
    ids = list(table.job_ids())
    assert table.ids_missing(dict.fromkeys(ids[:2])) == []
    assert table.ids_missing(dict.fromkeys(["f" * 16, ids[1], "gone"])) == ["f" * 16, "gone"]
    assert table.ids_missing({}) == []


def test_plain_blocks_parse_as_line_by_line() -> None:
    """Blocks of plain ASCII lines (the C-level path) give what the line-by-line path gives, comments and blanks too."""
    rng = random.Random(28)
    pieces = ["true 1", "true 2", "echo a b", "# c", "", "#", "x#y", "echo 'q'"]
    for _ in range(200):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40))) + rng.choice(["", "\n", "\n\n"])
        jobs, duplicates, digest = reference_parse(text)
        runfile = parse_runfile_text(text, Path("p.runfile"))
        assert [(job.command, job.job_id, job.lineno) for job in runfile.jobs] == jobs
        assert (runfile.duplicates, runfile.digest) == (duplicates, digest)


def test_many_blocks_plain_and_not() -> None:
    """A runfile of several parsing blocks, some plain and some not, with repeats across blocks."""
    lines = [f"true --a={i} --b={i % 7}" for i in range(120_000)]
    lines[5] = "# header"
    lines[70_000] = "  padded line  "
    lines[90_000] = lines[10]  # a repeat in another block
    lines[100_000] = ""
    text = "\n".join(lines) + "\n"
    jobs, duplicates, digest = reference_parse(text)
    runfile = parse_runfile_text(text, Path("b.runfile"))
    assert [(job.command, job.job_id, job.lineno) for job in runfile.jobs] == jobs
    assert (runfile.duplicates, runfile.digest) == (duplicates, digest)
    assert short_prefix(runfile.jobs.keys) == _reference_short_prefix([job_id for _c, job_id, _l in jobs])


def _reference_short_prefix(ids: list[str]) -> int:
    length = 8
    while length < 16 and len({job_id[:length] for job_id in ids}) < len(ids):
        length += 1
    return length


def test_short_prefix_tells_ids_apart() -> None:
    rng = random.Random(3)
    for n in (0, 1, 2, 5, 300):
        table = JobTable()
        for _i in range(n):
            table.append_key(f"{rng.getrandbits(64):016x}")
        ids = list(table.job_ids())
        assert short_prefix(table.keys) == _reference_short_prefix(ids)
    table = JobTable()
    for job_id in ["abcdef0123456789", "abcdef0123456788", "abcdef01234567ff", "1111111111111111"]:
        table.append_key(job_id)
    assert short_prefix(table.keys) == 16
    table.append_key("abcdef0123456789")  # the same id twice
    assert short_prefix(table.keys) == 16
    table = JobTable()
    for job_id in ["aaaaaaaaa0000000", "aaaaaaaab0000000", "odd id"]:
        table.append_key(job_id)
    assert short_prefix(table.keys) == _reference_short_prefix(list(table.job_ids()))


def test_directives_survive_dropped_repeats_and_a_table_extended_from_new_bytes() -> None:
    text = b"echo a\n# batchrun: cpus=2\necho b\necho a\necho c\n"
    table, repeats = parse_commands(text)
    assert [(job.command, job.request) for job in table] == [("echo a", None), ("echo b", parse_request("cpus=2")), ("echo c", parse_request("cpus=2"))]
    assert repeats == [("echo a", 1, 4)]
    # The new lines parsed alone, then appended: the directive in effect goes on, a new one takes over.
    more = b"echo d\n# batchrun: cpus=3\necho e\n"
    new, _ = parse_commands(text + more, first_line=6, start=len(text))
    extend_table(table, new, len(text))
    assert table == parse_commands(text + more)[0]
    assert [job.request for job in table][3:] == [parse_request("cpus=2"), parse_request("cpus=3")]
    table.truncate(2)
    assert [(job.command, job.request) for job in table] == [("echo a", None), ("echo b", parse_request("cpus=2"))]
