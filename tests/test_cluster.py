"""Unit tests of batchrun.executors.slurm.cluster: is a detached SLURM task still queued or running."""

from __future__ import annotations

import subprocess
from typing import Any

from batchrun.executors.slurm.cluster import is_slurm_ref, slurm_active


class FakeSqueue:
    def __init__(self, code: int, out: str = "", err: str = "") -> None:
        self.answer = subprocess.CompletedProcess([], code, out, err)
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return self.answer


def test_slurm_active_asks_once_for_every_array() -> None:
    fake = FakeSqueue(0, "12_0 RUNNING\n12_1 COMPLETED\n9_3 PENDING\n12_2 CANCELLED\n")
    assert slurm_active(["12_0", "12_1", "9_3", "12_2", "4242"], run=fake) == {"12_0", "9_3"}
    assert fake.calls == [["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", "9,12"]]
    assert slurm_active(["12_0"], run=FakeSqueue(1, err="slurm_load_jobs error: Invalid job id specified")) == set()
    assert slurm_active(["12_0"], run=FakeSqueue(1, err="Unable to contact slurm controller")) is None
    assert slurm_active([], run=FakeSqueue(1)) == set()


def test_is_slurm_ref() -> None:
    assert is_slurm_ref("12_3") and not is_slurm_ref("1234") and not is_slurm_ref(None) and not is_slurm_ref("batchrun-ab-cd")
