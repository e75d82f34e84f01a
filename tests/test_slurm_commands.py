"""`SlurmCommands` against stand-in SLURM commands: real processes, scripted answers, no cluster.

Each stand-in (squeue, scancel, sbatch) is a shell script on the PATH given
to `SlurmCommands`; it logs its arguments and prints what the test asks,
including bytes that are not UTF-8.
"""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from batchrun.errors import ExecutorError
from batchrun.executors.slurm.commands import SlurmCommands


class FakeSlurm:
    """Stand-in SLURM client commands in a directory of their own."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.calls = root / "calls"
        self.env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}")

    def command(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> {self.calls}\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def answer(self, name: str, stdout: bytes, code: int = 0, stderr: str = "") -> None:
        (self.bin / f"{name}.out").write_bytes(stdout)
        self.command(name, f'cat {self.bin}/{name}.out; [ -z "{stderr}" ] || echo "{stderr}" >&2; exit {code}')

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path)


def commands(fake: FakeSlurm, watched: list[str] | None = None) -> SlurmCommands:
    return SlurmCommands(str(fake.bin.parent), fake.env, ["--clusters=c1"], lambda: list(watched or []))


def test_squeue_output_that_is_not_utf8_is_parsed_not_fatal(fake: FakeSlurm) -> None:
    fake.answer("squeue", b"12_0 RUNNING /r/slurm/batchrun-task.sh /r/slurm/\xff\xfe.manifest\n12_1 PENDING \xc3\n\x80\x81 garbage\n")
    tasks = commands(fake).squeue_user(all_states=True)
    assert tasks == {
        "12_0": ("RUNNING", "/r/slurm/batchrun-task.sh /r/slurm/\ufffd\ufffd.manifest"),
        "12_1": ("PENDING", "\ufffd"),
    }
    assert fake.called() == [f"squeue -h -r -t all -u {os.getuid()} -o %i %T %o --clusters=c1"]


def test_a_failing_squeue_is_no_answer(fake: FakeSlurm) -> None:
    fake.answer("squeue", b"", code=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    assert commands(fake).squeue_user(all_states=False) is None
    assert commands(fake).states_for(["12_0"], max_age=0) is None


def test_states_for_asks_once_per_array_and_age(fake: FakeSlurm) -> None:
    fake.answer("squeue", b"12_0 RUNNING x\n12_1 COMPLETED y\n13_0 PENDING z\n")
    slurm = commands(fake, watched=["13_0"])
    assert slurm.states_for(["12_0", "12_1", "99", "x_1"], max_age=60) == {"12_0": ("RUNNING", "x"), "12_1": ("COMPLETED", "y")}
    assert slurm.states_for(["12_1"], max_age=60) == {"12_1": ("COMPLETED", "y")}
    # One call covered the array asked about and the watched one.
    assert fake.called() == ["squeue -h -r -t all -o %i %T %o -j 12,13 --clusters=c1"]
    assert slurm.ended("12_1") and not slurm.ended("12_0") and not slurm.ended("77_0")


def test_purged_arrays_are_an_empty_answer(fake: FakeSlurm) -> None:
    fake.answer("squeue", b"", code=1, stderr="slurm_load_jobs error: Invalid job id specified")
    assert commands(fake).states_for(["12_0"], max_age=0) == {}


def test_deliver_signals_running_tasks_and_cancels_queued_ones(fake: FakeSlurm) -> None:
    fake.answer("squeue", b"12_0 RUNNING x\n12_1 PENDING y\n12_2 RUNNING z\n")
    fake.answer("scancel", b"")
    commands(fake).deliver([("12_0", signal.SIGTERM), ("12_1", signal.SIGTERM), ("12_2", signal.SIGKILL), ("12_0", signal.SIGINT)])
    assert fake.called()[1:] == [
        "scancel --signal TERM --full --clusters=c1 12_0",
        "scancel --signal KILL --full --clusters=c1 12_2",
        "scancel --signal INT --full --clusters=c1 12_0",
        "scancel --clusters=c1 12_1 12_2",
    ]


def test_scancel_goes_in_chunks_and_a_failure_is_harmless(fake: FakeSlurm) -> None:
    fake.answer("scancel", b"", code=1, stderr="scancel: error: Kill job error on job id 12_0: Job has already finished")
    commands(fake).scancel([], [f"12_{i}" for i in range(1200)] + ["12_0"])
    assert [len(call.split()) - 2 for call in fake.called()] == [500, 500, 200]


def test_find_array_by_the_manifest_in_the_command(fake: FakeSlurm) -> None:
    fake.answer("squeue", b"12_0 RUNNING /r/batchrun-task.sh /r/a.manifest\n13_0 RUNNING /r/batchrun-task.sh /r/b.manifest\n")
    assert commands(fake).find_array(Path("/r/b.manifest")) == "13"
    assert commands(fake).find_array(Path("/r/c.manifest")) is None


def test_a_missing_command_is_one_line(fake: FakeSlurm, tmp_path: Path) -> None:
    slurm = SlurmCommands(str(tmp_path), dict(os.environ, PATH=str(fake.bin)), [], list)
    with pytest.raises(ExecutorError, match=r"^cannot run sinfo: No such file or directory; --executor slurm needs the SLURM client commands$"):
        slurm.run(["sinfo"])


def test_a_command_that_hangs_is_one_line(fake: FakeSlurm) -> None:
    fake.command("sbatch", "exec sleep 30")
    with pytest.raises(ExecutorError, match=r"^sbatch did not answer within 0 s; is the SLURM controller up\?$"):
        commands(fake).run(["sbatch"], timeout=0.3)
