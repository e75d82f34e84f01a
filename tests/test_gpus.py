"""`--gpus auto` and `--skip-busy-gpus` (`launch.gpus`) on nvidia-smi's recorded answers (tests/data/nvidia_smi/)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import wait_for

from batchrun.errors import UsageError
from batchrun.launch.gpus import APPS_QUERY, GPU_QUERY, busy_gpus, detect_gpus, parse_compute_apps, parse_gpu_list, resolve_gpus

RECORDED = Path(__file__).resolve().parent / "data" / "nvidia_smi"


def recorded(args: Sequence[str]) -> str:
    """nvidia-smi's recorded answer to one of the two queries batchrun asks."""
    files = {GPU_QUERY[0]: "query-gpu.csv", APPS_QUERY[0]: "query-compute-apps.csv"}
    return (RECORDED / files[args[0]]).read_text()


def test_the_recorded_answers_parse() -> None:
    assert [index for index, _uuid in parse_gpu_list(recorded(GPU_QUERY))] == ["0", "1", "2", "3"]
    apps = parse_compute_apps(recorded(APPS_QUERY))
    assert [(uuid[:12], pid, mib) for uuid, pid, mib in apps] == [
        ("GPU-0e7f5a2b", 4194001, 10236), ("GPU-1a2b3c4d", 4194002, 17996), ("GPU-1a2b3c4d", 4194003, None), ("GPU-9a8b7c6d", 4194004, None),
    ]


def test_auto_takes_cuda_visible_devices_else_every_gpu_nvidia_smi_lists() -> None:
    assert detect_gpus({}, recorded) == ["0", "1", "2", "3"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "5, 7"}, recorded) == ["5", "7"]
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES='-1' hides every GPU"):
        detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, recorded)
    with pytest.raises(UsageError, match="nvidia-smi lists no GPU"):
        detect_gpus({}, lambda _args: "")


def test_a_gpu_where_another_users_process_holds_memory_is_busy() -> None:
    # GPU 2's process shows no memory figure ([Not Supported]): it holds none that can be seen, so GPU 2 stays.
    assert busy_gpus(["0", "1", "2", "3"], "/runs/x", recorded) == ["1", "3"]
    assert busy_gpus(["GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"], "/runs/x", recorded) == ["GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"]
    # The runs directory's own jobs (a relaunch adopting them) do not make their GPU busy.
    assert busy_gpus(["0", "1", "2", "3"], "/runs/x", recorded, ours=lambda pid, _runs: pid == 4194002) == ["1"]


def test_a_process_is_ours_when_its_environment_names_the_runs_directory() -> None:
    from batchrun.launch.gpus import _ours

    job = subprocess.Popen(["sleep", "30"], env=dict(os.environ, BATCHRUN_RUNS_DIR="/runs/mine"))
    try:
        # Until it has exec'd, the child's /proc environ is still this process's.
        wait_for(lambda: Path(f"/proc/{job.pid}/cmdline").read_bytes().startswith(b"sleep\0"), what="sleep to exec")
        assert _ours(job.pid, "/runs/mine") and not _ours(job.pid, "/runs/other")
    finally:
        job.kill()
        job.wait()
    assert not _ours(4194001, "/runs/mine")  # no such process: another user's, as far as anyone can tell


def test_resolve_says_where_the_gpus_came_from() -> None:
    gpus, said, env = resolve_gpus(["auto"], True, {}, "/runs/x", recorded)
    assert (gpus, said, env) == (["0", "2"], "--gpus auto: 4 found, without busy GPU 1,3", {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert resolve_gpus(["auto"], False, {"CUDA_VISIBLE_DEVICES": "5,7"}, "/r", recorded) == (["5", "7"], "--gpus auto: 2 found in CUDA_VISIBLE_DEVICES", {})
    assert resolve_gpus(["1", "2"], True, {}, "/r", recorded) == (["2"], "--gpus 1,2, without busy GPU 1", {})
    with pytest.raises(UsageError, match=r"every GPU \(1,3\) holds another user's processes"):
        resolve_gpus(["1", "3"], True, {}, "/r", recorded)
    with pytest.raises(UsageError, match="--skip-busy-gpus needs GPUs to choose from"):
        resolve_gpus([], True, {}, "/r", recorded)
