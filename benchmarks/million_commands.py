"""The other commands on a 1,000,000-line runfile: seconds and peak RSS (issue 28, item 1).

`million_reads.py` measures `status`, `results`, `failed` and `plan`; this
measures the rest, on the same runs directories (built by its `build`, in
the same `--work`), each command under `/usr/bin/time -f "%M KB %e s"`:

* `reads`, on the `pending` and `finished` directories: `report`, `logs` of
  a job by line number, by id and `--err`, `wait` (a finished run answers at
  once), `kill` and `stop` (no launch running: refused after the lookup);
* `live`: the same runfile launched (`-j 2`, every line pending): `logs`,
  `kill`, `wait --timeout 5` and `stop` while it runs, `wait` until it ends;
* `ui`: `batchrun ui` over the finished directory: its overview and the
  sweep's document over HTTP (the server's peak RSS from /proc, the
  answers' sizes and times);
* `sweep`: a gridspec of 1,000,000 points (grid, random): `sweep --count`
  and `sweep` (writes the runfile); `run`: a command line of 1,000,000
  points: `--count`, `--dry-run` and `sweep 'CMD'` (the runfile `run` writes
  before it launches);
* `doit`: a dodo.py of `batchrun.dodo.runfile_tasks` over the finished
  directory: `doit list --status` and `doit info` of one job.

    python benchmarks/million_commands.py --work /tmp/million --only reads,ui \\
        --batchrun 'env PYTHONPATH=/work/main python -m batchrun' --batchrun 'python -m batchrun'
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from million_reads import build

GROUPS = ("reads", "live", "ui", "sweep", "run", "doit")
# A grid of 1,000,000 points, and a random search of as many.
GRID = "program: echo\nmethod: grid\nparameters:\n  a: {{values: [{a}]}}\n  b: {{values: [{b}]}}\n  c: {{values: [{c}]}}\n"
RANDOM = (
    "program: echo\nmethod: random\nrun_cap: {n}\nparameters:\n  lr: {{distribution: log_uniform_values, min: 0.00001, max: 0.1}}\n"
    "  seed: {{distribution: int_uniform, min: 1, max: 1000000}}\n"
)


def timed(argv: Sequence[str], cwd: Path, label: str, env: dict[str, str] | None = None, stdin: int | None = None) -> tuple[float, float, int]:
    """Run argv under /usr/bin/time; print and return (seconds, peak MB, exit code)."""
    with open(cwd / "_bench.stdout", "wb") as out:
        done = subprocess.run(["/usr/bin/time", "-f", "%M KB %e s", *argv], cwd=cwd, stdout=out, stderr=subprocess.PIPE, env=env,
                              stdin=stdin if stdin is not None else subprocess.DEVNULL, check=False)
    return _report(label, done.stderr.decode(errors="replace"), done.returncode)


def _report(label: str, stderr: str, code: int) -> tuple[float, float, int]:
    found = re.findall(r"(\d+) KB ([\d.]+) s", stderr)
    if not found:
        print(f"  {label:<44} no figure (exit {code}): {stderr.strip()[-300:]}", flush=True)
        return 0.0, 0.0, code
    kb, seconds = found[-1]
    said = "" if code == 0 else f"  exit {code}: " + next((line for line in stderr.splitlines() if "batchrun" in line or "Error" in line), "")[:120]
    print(f"  {label:<44} {float(seconds):8.2f} s {int(kb) / 1024:8.0f} MB{said}", flush=True)
    return float(seconds), int(kb) / 1024, code


def _job_id(work: Path, line: int) -> str:
    """The id of a runfile line, from metadata.json's entry (its JSON lines are in runfile order)."""
    with open(work / "runs" / "jobs" / "metadata.json", encoding="utf-8") as f:
        for text in f:
            if f'"line": {line},' in text:
                return text.split('"')[1]
    raise SystemExit(f"no line {line} in {work}/runs/jobs/metadata.json")


def reads(tool: list[str], work: Path, label: str) -> None:
    job_id = _job_id(work, 500_000 if (work / "jobs.runfile").stat().st_size > 10_000_000 else 5)
    line = "500000" if (work / "jobs.runfile").stat().st_size > 10_000_000 else "5"
    logs = work / "runs" / "jobs" / "logs" / job_id
    if "finished" in work.name and not (logs / "out.log").exists():  # as the job would have left them
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "out.log").write_text("out\n" * 1000)
        (logs / "err.log").write_text("err\n" * 1000)
    for name, extra in (
        ("report", ["report", "jobs.runfile", "-o", "report.html"]),
        ("logs LINE", ["logs", "jobs.runfile", line]),
        ("logs ID", ["logs", "jobs.runfile", job_id[:8]]),
        ("logs LINE --err", ["logs", "jobs.runfile", line, "--err"]),
        ("wait", ["wait", "jobs.runfile"]),
        ("kill LINE (no launch)", ["kill", "jobs.runfile", line]),
        ("stop (no launch)", ["stop", "jobs.runfile"]),
    ):
        timed([*tool, *extra], work, f"{label} {name}")
    page = work / "report.html"
    if page.exists():
        print(f"  {label} report.html: {page.stat().st_size / 1e6:.1f} MB", flush=True)


def live(tool: list[str], work: Path, lines: int) -> None:
    """A running launch of every line (a fresh copy of the pending directory) and the commands that reach it."""
    here = work.parent / f"live-{lines}"
    shutil.rmtree(here, ignore_errors=True)
    shutil.copytree(work, here)
    with open(here / "_launch.err", "wb") as err:
        launch = subprocess.Popen(["/usr/bin/time", "-f", "%M KB %e s", *tool, "launch", "jobs.runfile", "-j", "2", "-q"], cwd=here,
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        time.sleep(20)
        timed([*tool, "logs", "jobs.runfile", "1"], here, "live logs 1")
        timed([*tool, "kill", "jobs.runfile", str(lines)], here, "live kill LAST (pending)")
        timed([*tool, "wait", "jobs.runfile", "--timeout", "5"], here, "live wait --timeout 5")
        timed([*tool, "stop", "jobs.runfile"], here, "live stop")
        timed([*tool, "wait", "jobs.runfile"], here, "live wait (until it stops)")
    finally:
        if launch.poll() is None:
            launch.send_signal(signal.SIGINT)
        launch.wait()
    _report("live launch itself (20 s and its stop)", (here / "_launch.err").read_text(errors="replace"), launch.returncode)


def ui(tool: list[str], work: Path) -> None:
    """`batchrun ui` over the finished directory: the overview and the sweep's document; the server's peak RSS."""
    server = subprocess.Popen([*tool, "ui", ".", "--port", "0"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = ""
        while not url:
            text = server.stdout.readline()
            if not text:
                raise SystemExit("ui ended: " + (server.stderr.read() if server.stderr else ""))
            if "token=" in text:
                url = text.strip()
        base, token = url.split("?token=")[0].rstrip("/"), url.split("token=")[1]

        def get(path: str) -> bytes:
            began = time.perf_counter()
            request = urllib.request.Request(base + path, headers={"X-Batchrun-Token": token})
            with urllib.request.urlopen(request, timeout=3600) as answer:
                body: bytes = answer.read()
            print(f"  ui GET {path[:40]:<40} {time.perf_counter() - began:8.2f} s {len(body) / 1e6:8.1f} MB sent, server peak {_hwm(server.pid):.0f} MB", flush=True)
            return body

        overview = json.loads(get("/api/overview"))
        for sweep in overview["sweeps"]:
            sid = sweep["id"] if "id" in sweep else sweep["sid"]
            doc = json.loads(get(f"/api/sweep/{sid}"))
            get(f"/api/sweep/{sid}?since=1")
            row = doc["rows"][len(doc["rows"]) // 2]
            get(f"/api/sweep/{sid}/run/{row[doc['columns'].index('job_id')]}")
            get(f"/api/sweep/{sid}/importance?metric={doc['metric']}")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def _hwm(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for text in f:
            if text.startswith("VmHWM:"):
                return int(text.split()[1]) / 1024
    return 0.0


def sweep(tool: list[str], work: Path, lines: int) -> None:
    here = work / "sweeps"
    here.mkdir(parents=True, exist_ok=True)
    side = round(lines ** (1 / 3))
    c = lines // (side * side)
    (here / "grid.yml").write_text(GRID.format(a=", ".join(map(str, range(side))), b=", ".join(map(str, range(side))), c=", ".join(map(str, range(c)))))
    (here / "random.yml").write_text(RANDOM.format(n=lines))
    for name in ("grid", "random"):
        timed([*tool, "sweep", f"{name}.yml", "--count"], here, f"sweep {name}.yml --count")
        timed([*tool, "sweep", f"{name}.yml"], here, f"sweep {name}.yml")


def run(tool: list[str], work: Path, lines: int) -> None:
    here = work / "cmdline"
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    side = round(lines**0.5)
    command = f"echo --a={{1..{side}}} --b={{1..{lines // side}}}"
    timed([*tool, "run", "--count", command], here, "run --count (braces)")
    timed([*tool, "run", "--dry-run", command], here, "run --dry-run (braces)")
    timed([*tool, "sweep", command], here, "sweep 'CMD' (the runfile run writes)")
    timed([*tool, "run", "--count", "echo", "{1}", "{2}", ":::", *map(str, range(side)), ":::", *map(str, range(lines // side))], here, "run --count (:::)")
    # `run` itself: the runfile written, then launched (`-j 2`) for 20 s and stopped as `batchrun stop` does.
    with open(here / "_run.err", "wb") as err:
        launched = subprocess.Popen(["/usr/bin/time", "-f", "%M KB %e s", *tool, "run", "-j", "2", "-q", "--name", "echo", command], cwd=here,
                                    stdout=subprocess.DEVNULL, stderr=err)
    try:
        time.sleep(20)
        timed([*tool, "stop", "echo.runfile"], here, "stop (of that run)")
    finally:
        launched.wait()
    _report("run -j 2 (written, launched 20 s, stopped)", (here / "_run.err").read_text(errors="replace"), launched.returncode)


DODO = "from batchrun.dodo import DOIT_CONFIG, runfile_tasks  # noqa: F401\n\n\ndef task_jobs():\n    yield from runfile_tasks('jobs.runfile')\n"


def doit(tool: list[str], work: Path) -> None:
    (work / "dodo.py").write_text(DODO)
    python = next((word for word in tool if "python" in word), sys.executable)
    env = dict(os.environ)
    for word in tool:
        if word.startswith("PYTHONPATH="):
            env["PYTHONPATH"] = word.split("=", 1)[1]
    job_id = _job_id(work, 5)
    timed([python, "-m", "doit", "list", "--status"], work, "doit list --status", env=env)
    timed([python, "-m", "doit", "list"], work, "doit list", env=env)
    timed([python, "-m", "doit", "info", f"jobs:{job_id}"], work, "doit info jobs:ID", env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/million-reads"))
    parser.add_argument("--batchrun", action="append", default=[], help="a batchrun command line (repeatable; default: this tree's)")
    parser.add_argument("--only", default=",".join(GROUPS), help="which groups: " + ", ".join(GROUPS))
    parser.add_argument("--dirs", default="pending,finished", help="which runs directories the reads use")
    args = parser.parse_args()
    tools = [shlex.split(text) for text in args.batchrun] or [[sys.executable, "-m", "batchrun"]]
    groups = args.only.split(",")
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    dirs = {}
    for label in ("pending", "finished") if {"reads", "live", "ui", "doit"} & set(groups) else ():
        where = args.work / f"{label}-{args.lines}"
        if not (where / "runs" / "jobs" / "metadata.json").exists():
            began = time.perf_counter()
            build(where, args.lines, finished=label == "finished")
            print(f"built {where} in {time.perf_counter() - began:.0f} s", flush=True)
        dirs[label] = where
    for tool in tools:
        print(f"== {shlex.join(tool)}", flush=True)
        if "reads" in groups:
            for label in args.dirs.split(","):
                reads(tool, dirs[label], label)
        if "live" in groups:
            live(tool, dirs["pending"], args.lines)
        if "ui" in groups:
            ui(tool, dirs["finished"])
        if "sweep" in groups:
            sweep(tool, args.work, args.lines)
        if "run" in groups:
            run(tool, args.work, args.lines)
        if "doit" in groups:
            doit(tool, dirs["finished"])
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
