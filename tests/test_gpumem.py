"""Peak GPU memory per job, from nvidia-smi's compute-apps query: its parser on a recorded output, and a launch with --gpus.

No GPU is needed: the launch finds a stand-in `nvidia-smi` first on PATH
that answers in the recorded format, naming the job's own process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from conftest import read_metadata, run_batchrun

from batchrun.launch.gpumem import GpuMemory
from batchrun.runfile.file import job_id_of

RECORDED_SMI = Path(__file__).resolve().parent / "data" / "nvidia_smi" / "nvidia-smi"

# Answers as nvidia-smi does, for the pids the jobs wrote into $SMI_DIR (1500 MiB each), and counts its calls.
FAKE_SMI = f"""#!{sys.executable}
import os, sys
d = os.environ["SMI_DIR"]
assert sys.argv[1:] == ["--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits"], sys.argv
for name in sorted(os.listdir(d)):
    if name.isdigit():
        print(f"GPU-0e7f5a2b-1c3d-4e5f-8a9b-0c1d2e3f4a5b, {{name}}, 1500")
        print(f"GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d, {{name}}, [N/A]")
calls = os.path.join(d, "calls")
n = int(open(calls).read()) if os.path.exists(calls) else 0
open(calls + ".tmp", "w").write(str(n + 1))
os.replace(calls + ".tmp", calls)
"""


def test_a_sample_of_the_recorded_box_counts_only_what_the_driver_said(tmp_path: Path) -> None:
    # The recorded 4-GPU box: process 4194002 holds 17996 MiB, 4194003 shows [N/A].
    memory = GpuMemory(lambda: {4194002: "known", 4194003: "unknown"}, program=str(RECORDED_SMI))
    getsid = os.getsid
    os.getsid = lambda pid: pid  # type: ignore[assignment]  # the recorded pids are no processes here: each is its own session
    try:
        memory.sample()
    finally:
        os.getsid = getsid
    assert memory.take("known") == 17996 and memory.take("unknown") is None


def test_a_sample_puts_each_process_down_to_the_job_whose_session_it_is_in(tmp_path: Path) -> None:
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    (tmp_path / "smi").mkdir()
    (tmp_path / "smi" / str(os.getpid())).write_text("")
    os.environ["SMI_DIR"] = str(tmp_path / "smi")
    try:
        memory = GpuMemory(lambda: {os.getsid(0): "mine"}, program=str(smi))
        memory.sample()
        memory.sample()
    finally:
        del os.environ["SMI_DIR"]
    assert memory.take("mine") == 1500 and memory.take("mine") is None
    assert not GpuMemory(dict, program="no-such-nvidia-smi").available


def test_a_launch_with_gpus_records_each_jobs_peak_gpu_memory(workdir: Path) -> None:
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    smi_dir = workdir / "smi"
    smi_dir.mkdir()
    # Names its own pid to the stand-in, and ends once two samples have seen it.
    gpu_job = 'python3 -c "import os, time; d = os.environ[\'SMI_DIR\']; open(os.path.join(d, str(os.getpid())), \'w\').close(); c = os.path.join(d, \'calls\'); [time.sleep(0.05) for _ in iter(lambda: not os.path.exists(c) or int(open(c).read() or 0) < 2, False)]"'
    (workdir / "exp.runfile").write_text(f"{gpu_job}\ntrue\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SMI_DIR": str(smi_dir)}
    launch = run_batchrun("launch", "exp.runfile", "--gpus", "0", cwd=workdir, env=env)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    meta = read_metadata(workdir / "runs" / "exp")
    assert meta[job_id_of(gpu_job)]["max_gpu_mem_mb"] == 1500
    assert "max_gpu_mem_mb" not in meta[job_id_of("true")]  # where known only
    status = json.loads(run_batchrun("status", "exp.runfile", "--json", cwd=workdir).stdout)
    assert status["jobs"][job_id_of(gpu_job)]["max_gpu_mem_mb"] == 1500
    rows = {row["job_id"]: row for row in json.loads(run_batchrun("results", "exp.runfile", "--json", cwd=workdir).stdout)}
    assert rows[job_id_of(gpu_job)]["max_gpu_mem_mb"] == 1500 and rows[job_id_of("true")]["max_gpu_mem_mb"] is None
    resources = json.loads(run_batchrun("status", "exp.runfile", "--resources", "--json", cwd=workdir).stdout)
    assert resources["gpu_mb"]["max"] == 1500.0
    assert "peak GPU memory" in run_batchrun("status", "exp.runfile", "--resources", cwd=workdir).stdout
