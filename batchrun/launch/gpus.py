"""The machine's GPUs (`--gpus auto`) and the ones another user's processes hold (`--skip-busy-gpus`).

`--gpus auto` takes the GPUs this process may use: those `CUDA_VISIBLE_DEVICES`
names when it is set (a launch inside a SLURM allocation or a container is
given its GPUs that way), else every GPU `nvidia-smi` lists, by index. Jobs
then get indices as nvidia-smi numbers them, so they also get
`CUDA_DEVICE_ORDER=PCI_BUS_ID` (CUDA's own default order, fastest first,
may number them differently).

`--skip-busy-gpus` leaves out a GPU on which a compute process that is not
one of this runs directory's jobs holds memory (`nvidia-smi
--query-compute-apps`): on a shared box, another user's training run. A
process is this runs directory's when its environment names it
(`BATCHRUN_RUNS_DIR`); another user's environment cannot be read, so their
processes always count.

nvidia-smi is asked for CSV without units or header; fields it cannot
give read `[N/A]` or `[Not Supported]` and count as 0 MiB. This module
runs nvidia-smi and reads /proc, and never prints.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence

from batchrun.errors import UsageError

__all__ = ["APPS_QUERY", "GPU_QUERY", "NVIDIA_SMI", "busy_gpus", "detect_gpus", "parse_compute_apps", "parse_gpu_list", "resolve_gpus"]

NVIDIA_SMI = "nvidia-smi"
# Seconds nvidia-smi gets to answer: a wedged driver must not hang the launch.
_SMI_TIMEOUT = 30.0
GPU_QUERY = ["--query-gpu=index,uuid,memory.used", "--format=csv,noheader,nounits"]
APPS_QUERY = ["--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits"]

Run = Callable[[Sequence[str]], str]


def _run_smi(args: Sequence[str]) -> str:
    """nvidia-smi's answer; a missing or failing nvidia-smi is one line."""
    path = shutil.which(NVIDIA_SMI)
    if path is None:
        raise UsageError("--gpus auto and --skip-busy-gpus need nvidia-smi, which is not on PATH; give the GPUs with --gpus 0,1,...")
    try:
        answer = subprocess.run([path, *args], capture_output=True, text=True, timeout=_SMI_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"nvidia-smi did not answer ({type(err).__name__}); give the GPUs with --gpus 0,1,...") from None
    if answer.returncode != 0:
        reason = (answer.stderr or answer.stdout).strip().splitlines()
        raise UsageError(f"nvidia-smi failed: {reason[-1] if reason else f'exit {answer.returncode}'}; give the GPUs with --gpus 0,1,...")
    return answer.stdout


def _rows(text: str) -> list[list[str]]:
    return [[field.strip() for field in line.split(",")] for line in text.splitlines() if line.strip() and "," in line]


def _mib(field: str) -> int | None:
    return int(field) if field.isdigit() else None  # `[N/A]`, `[Not Supported]`: the driver would not say (MIG, some containers)


def parse_gpu_list(text: str) -> list[tuple[str, str]]:
    """`nvidia-smi --query-gpu=index,uuid,...` CSV -> [(index, uuid)], in nvidia-smi's order."""
    return [(row[0], row[1]) for row in _rows(text) if len(row) >= 2 and row[0].isdigit()]


def parse_compute_apps(text: str) -> list[tuple[str, int, int | None]]:
    """`nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory` CSV -> [(gpu uuid, pid, MiB or None where the driver would not say)].

    The one reading of the compute-apps query: for busy GPUs here, and for each job's peak GPU memory (`gpumem`).
    """
    return [(row[0], int(row[1]), _mib(row[2])) for row in _rows(text) if len(row) >= 3 and row[1].isdigit()]


def detect_gpus(env: Mapping[str, str], run: Run = _run_smi) -> list[str]:
    """The GPUs `--gpus auto` takes: `CUDA_VISIBLE_DEVICES`'s when set, else nvidia-smi's indices.

    Raises:
        UsageError: no GPU is visible, or nvidia-smi cannot say.
    """
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        # CUDA stops at the first id that names no device; "-1" and "" hide them all.
        if not ids or ids[0].startswith("-"):
            raise UsageError(f"--gpus auto: CUDA_VISIBLE_DEVICES={visible!r} hides every GPU")
        return ids
    gpus = [index for index, _uuid in parse_gpu_list(run(GPU_QUERY))]
    if not gpus:
        raise UsageError("--gpus auto: nvidia-smi lists no GPU")
    return gpus


def busy_gpus(gpus: Sequence[str], runs_dir: str, run: Run = _run_smi, ours: Callable[[int, str], bool] | None = None) -> list[str]:
    """Those of `gpus` (indices or UUIDs) on which a process not of this runs directory holds memory."""
    listed = parse_gpu_list(run(GPU_QUERY))
    uuid_of = {index: uuid for index, uuid in listed}
    held = {uuid for uuid, pid, mib in parse_compute_apps(run(APPS_QUERY)) if mib and not (ours or _ours)(pid, runs_dir)}
    return [gpu for gpu in gpus if (uuid_of.get(gpu, gpu)) in held]


def _ours(pid: int, runs_dir: str) -> bool:
    """Whether a process is a job of this runs directory: its environment says so (unreadable: not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return False
    return f"BATCHRUN_RUNS_DIR={runs_dir}".encode() in environ.split(b"\0")


def resolve_gpus(given: Sequence[str], skip_busy: bool, env: Mapping[str, str], runs_dir: str, run: Run = _run_smi) -> tuple[list[str], str, dict[str, str]]:
    """The launch's GPUs from `--gpus` (a list, or auto) and `--skip-busy-gpus`: (ids, how they were chosen, environment every job gets).

    Raises:
        UsageError: auto finds none, nvidia-smi cannot say, or every GPU is busy.
    """
    gpus = list(given)
    said = f"--gpus {','.join(gpus)}" if gpus else ""
    extra: dict[str, str] = {}
    if gpus == ["auto"]:
        from_smi = env.get("CUDA_VISIBLE_DEVICES") is None
        gpus = detect_gpus(env, run)
        said = f"--gpus auto: {len(gpus)} found" + ("" if from_smi else " in CUDA_VISIBLE_DEVICES")
        if from_smi and "CUDA_DEVICE_ORDER" not in env:
            extra["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # nvidia-smi's numbering, not CUDA's fastest-first
    if skip_busy:
        if not gpus:
            raise UsageError("--skip-busy-gpus needs GPUs to choose from: --gpus 0,1,... or --gpus auto")
        busy = busy_gpus(gpus, runs_dir, run)
        if len(busy) == len(gpus):
            raise UsageError(f"--skip-busy-gpus: every GPU ({','.join(gpus)}) holds another user's processes; none is left to run on")
        if busy:
            gpus = [gpu for gpu in gpus if gpu not in busy]
            said += f", without busy GPU {','.join(busy)}"
    return gpus, said, extra
