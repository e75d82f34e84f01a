"""Differential test: a job run by `batchrun launch` behaves exactly as `/bin/sh -c LINE`, whatever the executor.

Every line of tests/data/shell_corpus.txt (and the generated lines of
shell_corpus_long.txt, each over Linux's 128 KiB limit for one argument or
close to it) runs once through the real CLI and once through `/bin/sh -c`,
and the two must agree on stdout, stderr and the exit code. This is the guard
for every change to how jobs are spawned: speed-ups must not change what a
job can observe. The corpus runs through each way a job is started, since
all run it under the one supervisor: the local slot helpers, `--detach`,
SLURM (where a controller answers) and a local Dask cluster (where the extra
is installed).

batchrun runs a job on purpose with stdin from /dev/null, in its own session,
in the launch's directory, with BATCHRUN_* variables added to the
environment; the `sh -c` side is given the same conditions rather than
skipping the lines that would notice. Lines too long to be one argument
cannot be given to `sh -c` at all; batchrun runs them as `/bin/sh -c '. FILE'`
with FILE its job's `command.sh`, and the reference is the same command on
the same file (error messages name it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import batchrun_cmd, slurm_skip_reason

DATA = Path(__file__).resolve().parent / "data"
# One argument longer than this (bytes, plus its NUL) is refused by Linux with E2BIG.
MAX_ARG_STRLEN = 131_072
# The corpus's slowest line sleeps 0.2 s; generous for a loaded machine.
TIMEOUT = 300


def _corpus_lines() -> list[str]:
    lines = []
    for raw in (DATA / "shell_corpus.txt").read_text(encoding="utf-8").splitlines():
        # The runfile strips the whitespace around a line; the job is the stripped text.
        if raw.strip() and not raw.lstrip().startswith("#"):
            lines.append(raw.strip())
    for raw in (DATA / "shell_corpus_long.txt").read_text(encoding="utf-8").splitlines():
        if raw.strip() and not raw.startswith("#"):
            prefix, unit, count, suffix = raw.split("\t")
            lines.append(prefix + unit * int(count) + suffix)
    return lines


LINES = _corpus_lines()

def _params() -> list[object]:
    # No known differences: each line runs as exactly `/bin/sh -c LINE` (the slot helper's child).
    return [pytest.param(line, id=_label(line)) for line in LINES]


def _job_id(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()[:16]


def _label(line: str) -> str:
    return line if len(line) < 70 else f"{line[:40]}...({len(line.encode())} bytes)"


@dataclass(frozen=True)
class Outcome:
    """What a job showed the world: its exit code and both output streams (and how many times it ran; whether a signal ended it)."""

    code: int
    stdout: bytes
    stderr: bytes
    attempts: int = 1
    signalled: bool = False


@dataclass(frozen=True)
class Launched:
    """The corpus run once through `batchrun launch`."""

    how: str
    work: Path
    env: dict[str, str]
    outcomes: dict[str, Outcome]  # job id -> outcome


# The ways a job is started: the launch options for each.
HOW = {"local": [], "detach": ["--detach"], "slurm": ["--executor", "slurm"], "dask": ["--executor", "dask"]}


@pytest.fixture(scope="module", params=list(HOW))
def launched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Launched:
    how = request.param
    if how == "slurm" and (reason := slurm_skip_reason()) is not None:
        pytest.skip(reason)
    if how == "dask":
        pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'batchrun[dask]')")
    work = tmp_path_factory.mktemp(f"shell_compat_{how}")
    runfile = work / "corpus.runfile"
    runfile.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    # A TMPDIR of the test's own, so `$$`-named files cannot meet another run's.
    env = {**os.environ, "TMPDIR": str(work)}

    def launch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(batchrun_cmd(*args), cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)

    result = launch("launch", runfile.name, "-j", "4", "-q", *HOW[how])
    if how == "detach":
        assert result.returncode == 0, result.stderr
        assert launch("wait", runfile.name).returncode == 130
        result = launch("launch", runfile.name, "-q")  # collects what the detached jobs recorded
    assert result.returncode == 1, result.stderr  # some lines fail on purpose
    metadata = json.loads((work / "runs" / "corpus" / "metadata.json").read_text())
    outcomes = {}
    for job_id, entry in metadata.items():
        log_dir = Path(entry["log_dir"])
        err = log_dir / "err.log"
        outcomes[job_id] = Outcome(entry["status"], (log_dir / "out.log").read_bytes(),
                                   err.read_bytes() if err.exists() else b"", entry["attempts"])
    return Launched(how, work, env, outcomes)


def _default_signals() -> None:
    """In the reference shell's child before exec: no signal ignored."""
    for signum in signal.valid_signals():
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass


def _run_sh(line: str, launched: Launched, scratch: Path) -> Outcome:
    """`/bin/sh -c LINE` under the conditions batchrun gives a job."""
    job_id = _job_id(line)
    log_dir = launched.work / "runs" / "corpus" / "logs" / job_id
    env = {**launched.env, "BATCHRUN_RUNS_DIR": str(log_dir.parent.parent), "BATCHRUN_JOB_ID": job_id,
           "BATCHRUN_SLOT": "0", "BATCHRUN_LOG_DIR": str(log_dir), "BATCHRUN_ATTEMPT": "1",
           "BATCHRUN_METRICS": str(log_dir / "metrics.jsonl"), "BATCHRUN_REQUEUES": "0", "BATCHRUN_CPUS": "1", "BATCHRUN_MEM": "0"}
    if len(line.encode()) < MAX_ARG_STRLEN:
        argv = ["/bin/sh", "-c", line]
    else:
        script = log_dir / "command.sh"
        assert script.read_text(encoding="utf-8") == line
        argv = ["/bin/sh", "-c", f". '{script}'"]
    out_path, err_path = scratch / "out", scratch / "err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # Its own session, as batchrun gives: `kill 0` must not reach pytest.
        # Every signal at its default, as batchrun starts each job, whatever this
        # test runner was started ignoring (`nohup`, `&` in a CI script).
        proc = subprocess.run(argv, cwd=launched.work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                              start_new_session=True, timeout=TIMEOUT, check=False, preexec_fn=_default_signals)
    # batchrun records death by signal N as 128 + N, as the shell reports it.
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return Outcome(code, out_path.read_bytes(), err_path.read_bytes(), signalled=proc.returncode < 0)


def test_the_corpus_is_big_and_its_lines_distinct() -> None:
    assert len(LINES) >= 50
    assert len(set(LINES)) == len(LINES)
    assert sum(len(line.encode()) >= MAX_ARG_STRLEN for line in LINES) >= 5


# What SLURM sets in every batch job's environment (sbatch's output environment
# variables): the one thing a SLURM job sees that `sh -c` here cannot; a line
# that prints the environment is compared without them.
SLURM_OWN = re.compile(rb"^(SLURM\w*|ENVIRONMENT|HOSTNAME)=.*\n", re.MULTILINE)
# A job whose shell dies of a signal leaves no exit record (a stopped job must
# never be taken for finished). A launch that hears the supervisor (local, Dask)
# records 128 + N as sh reports it; SLURM's executor reads only records, so it
# reports the job lost (killed, 137) with a note in err.log; and a --detach
# launch's next launch runs it again (its second attempt, here locally).
SLURM_LOST = rb"batchrun: SLURM job \d+_\d+ ended \w+ without an exit record; SLURM's output: \S+\n"


# The first test of each way also runs the module's fixture, the whole corpus (about 30 s through
# SLURM here), whose launch may take up to TIMEOUT on a busy machine: the default limit would cut it first.
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("line", _params())
def test_a_job_behaves_as_sh_c(line: str, launched: Launched, tmp_path: Path) -> None:
    expected = _run_sh(line, launched, tmp_path)
    got = launched.outcomes[_job_id(line)]
    assert got.attempts == (2 if launched.how == "detach" and expected.signalled else 1), f"runs of {_label(line)!r}"
    if launched.how == "slurm":
        if b"\nSLURM_JOB_ID=" in got.stdout:
            got = Outcome(got.code, SLURM_OWN.sub(b"", got.stdout), got.stderr)
        if expected.signalled:
            assert got.code == 128 + signal.SIGKILL, f"exit code of {_label(line)!r}"
            assert re.fullmatch(re.escape(expected.stderr) + SLURM_LOST, got.stderr), f"stderr of {_label(line)!r}"
            assert got.stdout == expected.stdout, f"stdout of {_label(line)!r}"
            return
    assert got.code == expected.code, f"exit code of {_label(line)!r}"
    assert got.stdout == expected.stdout, f"stdout of {_label(line)!r}"
    assert got.stderr == expected.stderr, f"stderr of {_label(line)!r}"
