"""Every read command, against every kind of target, about a job in every state: each answers, and they agree.

The cases are generated from three lists: `COMMANDS` (the read commands and
how to check each one's answer), `matrix_setup.KINDS` (a plain runfile, an
original-format gridspec, a W&B grid, random and bayes spec, a runs directory,
one written by the original batchrun 0.0.14, a dodo.py's, `batchrun run`'s)
and `matrix_setup.ROLE_STATE` (pending, running under a live launch, left
running by a killed launch, succeeded, failed, timeout, interrupted, killed,
stopped, requeued, ignored, removed). A new command, kind of target or state joins the
matrix by being added to its list.

Each case asks one command about one job; every answer must name the job's
state as the others do (the table, `--json`, `--csv`, `results`, `plan`'s
groups, `failed`'s list, `logs`), count as `status --json` counts, and exit
as `status`'s counts say (`wait`: the launch's exit code rule). Commands are
run in-process through `cli.main`, the real entry point (a subprocess per
case would cost minutes); the runs directories are made once per session by
real launches (`matrix_setup`) and shared by every case of this module.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from matrix_setup import KINDS, ROLE_STATE, VARIANTS, Kind, Prepared, end, prepare

from batchrun import cli
from batchrun.launch.result import exit_code_of
from batchrun.store.records import STATES

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Answer:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Case:
    """One job of one kind of target, in one state, and what the commands are to say about it."""

    kind: Kind
    state: str  # a key of ROLE_STATE
    prepared: Prepared

    @property
    def category(self) -> str:
        """The state every command is to name (a job left running by a killed launch is running).

        A runs directory read without its runfile cannot know which lines left
        the runfile since: a removed job is counted by its own state there (it succeeded).
        """
        if self.state == "removed" and not self.kind.reads_runfile:
            return "succeeded"
        return "running" if self.state == "orphan" else self.state

    @property
    def variant(self) -> str:
        """Where the job is in its state; for a runs directory read by path, a pending job is one a launch has seen.

        A line added to the runfile after the last launch is no job of the runs
        directory yet: only the runfile tells of it. The live launch has written
        its pending job into metadata.json.
        """
        if self.state == "pending" and not self.kind.reads_runfile:
            return "live"
        return ROLE_STATE[self.state][1]

    @property
    def job_id(self) -> str:
        return self.prepared.job(self.state)[0]

    @property
    def command(self) -> str:
        return self.prepared.job(self.state)[1]

    def ask(self, *args: str) -> Answer:
        return ask(self.prepared.dirs[self.variant], args)

    def counts(self) -> dict[str, int]:
        """How `status --json` counts the jobs: what every other count must say."""
        answer = self.ask("status", self.kind.given, "--json")
        assert answer.code == 0, answer
        return dict(json.loads(answer.out)["counts"])


_ANSWERS: dict[tuple[Path, tuple[str, ...]], Answer] = {}


def ask(cwd: Path, args: tuple[str, ...]) -> Answer:
    """`batchrun ARGS` in `cwd`, through `cli.main`; each answer read once per session."""
    key = (cwd, args)
    if key not in _ANSWERS:
        out, err = io.BytesIO(), io.BytesIO()
        stdout, stderr = io.TextIOWrapper(out, write_through=True), io.TextIOWrapper(err, write_through=True)
        here = os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    code = cli.main(list(args))
                except SystemExit as exit_:  # argparse's own exit
                    code = int(exit_.code or 0)
        finally:
            os.chdir(here)
        _ANSWERS[key] = Answer(code, out.getvalue().decode(), err.getvalue().decode())
    return _ANSWERS[key]


def _one_line_refusal(answer: Answer, says: str) -> None:
    assert answer.code == 2, answer
    assert answer.err.count("\n") == 1 and answer.err.startswith("batchrun: error: ") and says in answer.err, answer.err
    assert answer.out == "", answer.out


_COUNT = re.compile(r"(\d+) (succeeded|failed|timeout|interrupted|requeued|killed|stopped|running|pending|ignored|removed)")


def _counts_in(line: str) -> dict[str, int]:
    """The counts a `status` or `wait` line says; a state it leaves out is 0."""
    said = {state: int(n) for n, state in _COUNT.findall(line)}
    return {state: said.get(state, 0) for state in STATES}


# -- the read commands ---------------------------------------------------------------


def check_status(case: Case) -> None:
    answer = case.ask("status", case.kind.given)
    assert answer.code == 0 and answer.err == "", answer
    lines = answer.out.splitlines()
    assert _counts_in(lines[0].split(": ", 1)[1]) == case.counts(), lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("LINE "))
    rows = [line.split() for line in lines[header + 1 :]]
    row = next(row for row in rows if case.job_id.startswith(row[1]))
    assert row[2] == case.category, row
    assert Counter(row[2] for row in rows) == +Counter(case.counts())


def check_status_json(case: Case) -> None:
    answer = case.ask("status", case.kind.given, "--json")
    assert answer.code == 0 and answer.err == "", answer
    doc = json.loads(answer.out)
    job = doc["jobs"][case.job_id]
    assert job["category"] == case.category and job["removed"] == (case.category == "removed"), job
    assert Counter(entry["category"] for entry in doc["jobs"].values()) == +Counter(doc["counts"])
    assert doc["launch"]["running"] == (case.variant == "live")


def check_status_csv(case: Case) -> None:
    answer = case.ask("status", case.kind.given, "--csv")
    assert answer.code == 0 and answer.err == "", answer
    rows = list(__import__("csv").DictReader(io.StringIO(answer.out)))
    assert next(row for row in rows if row["job_id"] == case.job_id)["state"] == case.category
    assert Counter(row["state"] for row in rows) == +Counter(case.counts())


def check_status_resources(case: Case) -> None:
    """`status --resources` summarises the jobs that ran to an end, as `status` counts them."""
    answer = case.ask("status", case.kind.given, "--resources", "--json")
    assert answer.code == 0 and answer.err == "", answer
    counts = case.counts()
    assert json.loads(answer.out)["jobs"] == counts["succeeded"] + counts["failed"] + counts["timeout"], answer.out


def check_status_other_code(case: Case) -> None:
    """`status --other-code` lists the jobs run under a known code version other than the tree's now (outside git: any known one)."""
    answer = case.ask("status", case.kind.given, "--other-code", "--json")
    assert answer.code == 0 and answer.err == "", answer
    every = json.loads(case.ask("status", case.kind.given, "--json").out)["jobs"]
    assert set(json.loads(answer.out)["jobs"]) == {job_id for job_id, entry in every.items() if entry.get("code") is not None}


def check_results(case: Case) -> None:
    answer = case.ask("results", case.kind.given, "--json")
    assert answer.code == 0, answer
    rows = json.loads(answer.out)
    row = next(row for row in rows if row["job_id"] == case.job_id)
    assert row["state"] == case.category, row
    assert row["x"] is not None, row  # its parameters, a bayes point's too
    role = ROLE_STATE[case.state][0]
    if role not in case.kind.existing and case.category in ("succeeded", "failed", "ignored", "removed"):
        assert row["loss"] == 0.1, row
    assert Counter(row["state"] for row in rows) == +Counter(case.counts())
    table = case.ask("results", case.kind.given)
    assert table.code == 0 and any(line.split()[1] == case.job_id[:8] and case.category in line.split() for line in table.out.splitlines()[1:]), table.out


def check_report(case: Case) -> None:
    answer = case.ask("report", case.kind.given, "-o", "matrix-report.html")
    assert answer.code == 0, answer
    rows = json.loads(case.ask("results", case.kind.given, "--json").out)
    assert answer.out.startswith(f"batchrun: wrote matrix-report.html ({len(rows)} runs"), answer.out
    assert case.job_id in (case.prepared.dirs[case.variant] / "matrix-report.html").read_text()


# `plan`'s group for a job in each state, as it labels it.
_PLAN_GROUP = {
    "succeeded": "already succeeded, skipped",
    "failed": "failed earlier, skipped",
    "timeout": "failed earlier, skipped",
    "killed": "failed earlier, skipped",
    "stopped": "stopped early, skipped",
    "interrupted": "interrupted or never finished, to run again",
    "requeued": "interrupted or never finished, to run again",
    "ignored": "ignored (doit ignore)",
    "removed": "removed from the runfile",
    "pending": "new, to run",
    "orphan": "still running from an earlier launch",
}
# While a launch runs, `plan` says what it is doing: its running and pending jobs.
_LIVE_GROUP = {"running": "running now", "pending": "pending, it starts them"}


def check_plan(case: Case) -> None:
    answer = case.ask("plan", case.kind.given, "--show", "100")
    if not case.kind.reads_runfile:
        _one_line_refusal(answer, "a plan needs the runfile")
        return
    assert answer.code == 0 and answer.err == "", answer
    lines = answer.out.splitlines()
    if case.variant == "live":
        assert re.match(r"batchrun: \S+: a launch \(pid \d+\) is running it: ", lines[0]), lines[0]
        assert _counts_in(lines[0].split(" is running it: ", 1)[1]) == case.counts()
        wanted = _LIVE_GROUP.get(case.category)
    else:
        wanted = _PLAN_GROUP[case.state]
    groups: dict[str, list[str]] = {}
    label = ""
    for line in lines[1:]:
        if line.startswith("  ") and not line.startswith("    "):
            label = line.strip()
            groups[label] = []
        elif line.startswith("    "):
            groups[label].append(line)
    listed = [label for label, jobs in groups.items() if any(case.job_id[:8] in job for job in jobs)]
    # A job that ended while no launch watched (the requeued one: it exited 75 after its launch's
    # kill) is listed in its state's group and, once more, among those a launch collects.
    collect = [label for label in listed if label.startswith("ended while no launch was watching")]
    assert bool(collect) == (case.state == "requeued" and case.variant == "settled"), (listed, answer.out)
    listed = [label for label in listed if label not in collect]
    if wanted is None:  # a live launch's plan lists only what it runs and will run
        assert listed == [], answer.out
    else:
        assert len(listed) == 1 and listed[0].startswith(wanted), (listed, answer.out)


def check_logs(case: Case) -> None:
    status = json.loads(case.ask("status", case.kind.given, "--json").out)
    line = status["jobs"][case.job_id].get("line")
    # A removed job has no line: it is named by its id, as its table row shows it.
    ref = str(line) if line is not None and case.category != "removed" else case.job_id[:8]
    answer = case.ask("logs", case.kind.given, ref)
    if case.category == "pending":
        _one_line_refusal(answer, "has no out.log yet")
        return
    assert answer.code == 0 and answer.err == "", answer
    role = ROLE_STATE[case.state][0]
    said = f"x={case.command.split('--x=')[1].split()[0]}" if role in case.kind.existing else f"job {case.job_id} behaves"
    assert said in answer.out, answer.out


def check_failed(case: Case) -> None:
    answer = case.ask("failed", case.kind.given)
    assert answer.code == 0 and answer.err == "", answer
    listed = answer.out.splitlines()
    counts = case.counts()
    assert len(listed) == counts["failed"] + counts["timeout"] + counts["killed"], listed
    assert (case.command in listed) == (case.category in ("failed", "timeout", "killed")), listed


def check_wait(case: Case) -> None:
    answer = case.ask("wait", case.kind.given, "--timeout", "0")
    counts = case.counts()
    if counts["running"]:
        assert answer.code == 124 and "still running" in answer.err, answer
        return
    assert answer.code == exit_code_of(counts), answer
    assert _counts_in(answer.out.split("finished: ", 1)[1]) == counts, answer.out


def check_ui(case: Case) -> None:
    """The dashboard's overview and sweep page (its API, in-process) name the job's state and count as `status` does."""
    from batchrun.ui.registry import Registry

    status = json.loads(case.ask("status", case.kind.given, "--json").out)
    runs_dir = Path(status["runs_dir"])
    registry = Registry(case.prepared.dirs[case.variant])
    watches = [watch for watch in registry.scan(force=True) if watch.runs_dir.resolve() == runs_dir.resolve()]
    assert len(watches) == 1, [watch.runs_dir for watch in registry.known()]
    watch = watches[0]
    watch.refresh(force=True)
    # The ui reads what it pairs the runs directory with (its runfile or gridspec, else the directory):
    # it names the state and counts as `status` of that does (a runs directory alone cannot tell a removed line).
    seen = json.loads(case.ask("status", str(watch.target.given), "--json").out)
    rows = {row["job_id"]: row for row in watch.rows_as_dicts()}
    shown = rows[case.job_id]["state"]
    assert shown == seen["jobs"][case.job_id]["category"], rows[case.job_id]
    assert shown == case.category or (case.state == "removed" and shown == "removed"), (shown, case.category)
    assert registry.summary(watch)["counts"] == {state: count for state, count in seen["counts"].items() if count}


@dataclass(frozen=True)
class Command:
    """A read command, and how to check what it says about one job."""

    name: str
    check: Callable[[Case], None]


COMMANDS = [
    Command("status", check_status),
    Command("status-json", check_status_json),
    Command("status-csv", check_status_csv),
    Command("status-resources", check_status_resources),
    Command("status-other-code", check_status_other_code),
    Command("results", check_results),
    Command("report", check_report),
    Command("plan", check_plan),
    Command("logs", check_logs),
    Command("failed", check_failed),
    Command("wait", check_wait),
    Command("ui", check_ui),
]


# -- the matrix ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Prepared]]:
    """Every kind's runs directories, made by real launches, four kinds at a time; what they left running ends with this module."""
    root = tmp_path_factory.mktemp("matrix")
    own = [kind for kind in KINDS if kind.shares is None]
    made: dict[str, Prepared] = {}
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for kind, future in [(kind, pool.submit(prepare, kind, root)) for kind in own]:
                made[kind.name] = future.result()
        yield {kind.name: made[kind.shares or kind.name] for kind in KINDS}
    finally:
        for done in made.values():
            end(done)


def _cases() -> Iterator[Any]:
    for command in COMMANDS:
        for kind in KINDS:
            for state in kind.states:
                yield pytest.param(command, kind, state, id=f"{command.name}-{kind.name}-{state}")


@pytest.mark.parametrize(("command", "kind", "state"), list(_cases()))
def test_every_read_command_names_the_state_every_other_does(prepared: dict[str, Prepared], command: Command, kind: Kind, state: str) -> None:
    case = Case(kind, state, prepared[kind.name])
    command.check(case)
    for answer in (a for (cwd, _), a in _ANSWERS.items() if cwd in case.prepared.dirs.values()):
        assert "Traceback" not in answer.err and "internal error" not in answer.err, answer.err


def test_the_matrix_covers_every_state_and_variant() -> None:
    """The lists the matrix is made of: every state a job is counted under has a job, and every variant is read."""
    assert {("running" if state == "orphan" else state) for state in ROLE_STATE} == set(STATES)
    assert {variant for _, variant in ROLE_STATE.values()} == set(VARIANTS)
    assert {kind.name for kind in KINDS} >= {"runfile", "gridspec", "wandb-grid", "wandb-random", "bayes", "runs-dir", "original-0.0.14", "dodo"}
