"""The runs directories `test_matrix.py` reads: every kind of target, with a job in every state, made by real launches.

Each kind of target gets one working directory, prepared once by
the launches a user would run, in this order:

1. a launch (`--timeout`) whose jobs succeed, fail, hang until the timeout,
   hang until `batchrun kill`, and (specs with `early_terminate`) log a bad
   loss until hyperband stops them;
2. two more points, and a launch stopped by SIGINT while it runs them:
   interrupted, and requeued (it exits 75 on its SIGTERM);
3. `doit ignore` of a succeeded job; the point of another removed from the
   target; one more point never launched: pending. This is the `settled`
   variant.
4. two copies of it: `orphan`, where a launch is killed with SIGKILL while it
   reruns the interrupted job (left running, no launch watching), and `live`,
   where that launch still runs (running under a live launch; the pending job
   waits for its slot). Both are left so until the matrix module ends.

A job does what `job.py` finds in `behave/<job id>` (default: succeed), so
any kind of target, a bayes search included, gets the same jobs. Kinds are
`Kind`s in `KINDS`; a new kind of target joins by being added there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from conftest import REPO, batchrun_cmd, exit_text

from batchrun.liveness import lock_held
from batchrun.runfile.file import job_id_of

# What each job does, by the role it plays; the state it ends in is `ROLE_STATE`'s.
JOB_PY = '''"""A matrix job: does what behave/<its job id> says (default: succeed), and says so on stdout."""
import json, os, sys, time
from pathlib import Path

here = Path(__file__).parent
job_id = os.environ.get("BATCHRUN_JOB_ID", "")
behaviour = (here / "behave" / job_id).read_text().strip() if (here / "behave" / job_id).exists() else "ok"
print(f"job {job_id} behaves {behaviour}", flush=True)
(here / "marks").mkdir(exist_ok=True)
(here / "marks" / f"{behaviour}-{job_id}-{os.getpid()}").write_text(str(os.getpid()))
metrics = os.environ.get("BATCHRUN_METRICS")


def log(value, step):
    if metrics:
        with open(metrics, "a") as f:
            f.write(json.dumps({"loss": value, "_step": step}) + "\\n")


if behaviour == "requeue":  # asks to run again (it saved its state) once told to
    while not (here / "go-requeue").exists():
        time.sleep(0.05)
    sys.exit(75)
if behaviour in ("ok", "fail"):
    for step in range(30):  # every hyperband band up to 27: a bad run is judged against these
        log(0.1, step)  # a failing run logs as well as the others: hyperband must not stop it first
    sys.exit(1 if behaviour == "fail" else 0)
for step in range(3000):
    if behaviour == "bad":
        log(100.0, step)
    time.sleep(0.3)
'''

# The roles of the first launch's jobs, and the behaviour each is given.
FIRST = {"succeeded": "ok", "failed": "fail", "ignored": "ok", "removed": "ok", "killed": "killme", "timeout": "hang"}
# The job of each state, once the variants are made: (role, variant).
ROLE_STATE = {
    "succeeded": ("succeeded", "settled"),
    "failed": ("failed", "settled"),
    "timeout": ("timeout", "settled"),
    "killed": ("killed", "settled"),
    "stopped": ("stopped", "settled"),
    "interrupted": ("interrupted", "settled"),
    "requeued": ("requeued", "settled"),
    "ignored": ("ignored", "settled"),
    "removed": ("removed", "settled"),
    "pending": ("pending", "settled"),
    "running": ("interrupted", "live"),  # the interrupted job, run again under a live launch
    "orphan": ("interrupted", "orphan"),  # ... and left running by a launch killed with SIGKILL
}
# How long the first launch lets a job run: the hanging job times out, every other has ended well before.
TIMEOUT = "6"
VARIANTS = ("settled", "orphan", "live")


def run(args: list[str], cwd: Path, check: int | None = 0, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check is not None and proc.returncode != check:
        raise AssertionError(f"{args} in {cwd}: exit {proc.returncode}, wanted {check}\n{proc.stdout}\n{proc.stderr}")
    return proc


def batchrun(*args: str, cwd: Path, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    return run(batchrun_cmd(*args), cwd, check)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def started(d: Path, behaviour: str, job_id: str) -> bool:
    return any(p.name.startswith(f"{behaviour}-{job_id}-") for p in (d / "marks").glob("*"))


@dataclass
class Kind:
    """A kind of target: how its points are made, launched and named to the read commands.

    `given` is what the read commands are given; `launch` what `batchrun
    launch` is given (plus `launch_args`). `lines` makes the target hold one
    point per name in `points` and returns {name: command}.
    """

    name: str
    given: str
    launch: str
    lines: Callable[[Path, list[str]], dict[str, str]]
    runfile: str  # the runfile the launches run (for `doit ignore`)
    launch_args: tuple[str, ...] = ()
    runs_dir: str | None = None  # for `doit ignore`: the runs directory when not runs/<runfile stem>
    early_terminate: bool = False
    # Roles whose jobs exist before the first launch (the original batchrun's records): role -> command.
    existing: dict[str, str] = field(default_factory=dict)
    first_launch: Callable[[Kind, Path, dict[str, str]], None] | None = None
    shares: str | None = None  # prepared with another kind (a runs directory read by path)
    reads_runfile: bool = True  # False: a runs directory; `plan` refuses it

    @property
    def states(self) -> list[str]:
        return [s for s in ROLE_STATE if s != "stopped" or self.early_terminate]


def _cmd(n: str) -> str:
    return f"python3 job.py --x={n}"


def _write_runfile(d: Path, name: str, points: list[str], header: str = "") -> dict[str, str]:
    (d / name).write_text(header + "".join(_cmd(p) + "\n" for p in points))
    return {p: _cmd(p) for p in points}


def _runfile_lines(d: Path, points: list[str]) -> dict[str, str]:
    return _write_runfile(d, "exp.runfile", points, "# a plain runfile: one job per line\n")


def _spec(d: Path, name: str, body: dict[str, object], points: list[str]) -> dict[str, str]:
    (d / name).write_text(yaml.safe_dump(body, sort_keys=False))
    batchrun("sweep", name, cwd=d)
    commands = [line for line in (d / name.replace(".yml", ".runfile")).read_text().splitlines() if line and not line.startswith("#")]
    return {c.rsplit("--x=", 1)[1]: c for c in commands}


_WANDB = {"command": ["python3", "job.py", "${args}"], "metric": {"name": "loss", "goal": "minimize"},
          "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3}}


def _grid_lines(d: Path, points: list[str]) -> dict[str, str]:
    return _spec(d, "grid.yml", {"program": "python3 job.py", "parameters": {"x": {"values": points}}}, points)


def _wgrid_lines(d: Path, points: list[str]) -> dict[str, str]:
    return _spec(d, "wgrid.yml", {"method": "grid", **_WANDB, "parameters": {"x": {"values": points}}}, points)


def _wrand_lines(d: Path, points: list[str]) -> dict[str, str]:
    """A random spec draws its points: `points` name them in the order they are drawn; a removed one is excluded by its value.

    run_cap is the number of points, so removing one brings the next draw in: a new point.
    """
    known = _read_names(d)
    spec: dict[str, object] = {"method": "random", "run_cap": len(points), "seed": 7, **_WANDB,
                               "parameters": {"x": {"distribution": "int_uniform", "min": 1, "max": 10**9}}}
    excluded = [f"x == {value}" for name, value in known.items() if name not in points]
    if excluded:
        spec["exclude"] = excluded
    (d / "wrand.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    batchrun("sweep", "wrand.yml", cwd=d)
    drawn = [int(line.rsplit("--x=", 1)[1]) for line in (d / "wrand.runfile").read_text().splitlines() if line.strip()]
    new_names = iter(p for p in points if p not in known)
    for value in drawn:
        if value not in known.values():
            known[next(new_names)] = value
    (d / "names.yml").write_text(yaml.safe_dump(known))
    return {name: f"python3 job.py --x={value}" for name, value in known.items() if value in drawn}


def _read_names(d: Path) -> dict[str, int]:
    path = d / "names.yml"
    return dict(yaml.safe_load(path.read_text())) if path.exists() else {}


def _bayes_lines(d: Path, points: list[str]) -> dict[str, str]:
    """A bayes search whose points are written into its runfile (each a point of the space), run_cap all of them: it proposes none."""
    spec = {"method": "bayes", "run_cap": len(points), **_WANDB, "parameters": {"x": {"values": [str(n) for n in range(1, 60)]}}}
    (d / "bayes.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return _write_runfile(d, "bayes.runfile", points, "# points of the bayes search of bayes.yml, written here by the test\n")


def _run_lines(d: Path, points: list[str]) -> dict[str, str]:
    batchrun("sweep", "-o", "r.runfile", f"python3 job.py --x={{{','.join(points)}}}", cwd=d)
    return {p: _cmd(p) for p in points}


def _orig_lines(d: Path, points: list[str]) -> dict[str, str]:
    originals = [line for line in (REPO / "tests/data/original/grid.runfile").read_text().splitlines() if line]
    ours = [p for p in points if not p.startswith("orig")]
    kept = [line for line in originals if f"orig{line.split('--x=')[1].split()[0]}" in points]
    (d / "grid.runfile").write_text("".join(line + "\n" for line in kept) + "".join(_cmd(p) + "\n" for p in ours))
    return {**{f"orig{line.split('--x=')[1].split()[0]}": line for line in kept}, **{p: _cmd(p) for p in ours}}


def _dodo_first_launch(kind: Kind, d: Path, roles: dict[str, str]) -> None:
    """A dodo.py's runs directory: the jobs that end by themselves run under plain doit, the rest under batchrun launch."""
    quick = [name for name, role in roles.items() if FIRST.get(role) in ("ok", "fail")]
    everything = _read_points(d)
    _write_points(d, kind, quick)
    done = run([sys.executable, "-m", "doit", "-n", "4"], d, check=None)
    assert done.returncode == 1 and "TaskFailed" in done.stdout + done.stderr, done.stdout + done.stderr
    _write_points(d, kind, everything)


KINDS = [
    Kind("runfile", "exp.runfile", "exp.runfile", _runfile_lines, "exp.runfile"),
    Kind("gridspec", "grid.yml", "grid.yml", _grid_lines, "grid.runfile"),
    Kind("wandb-grid", "wgrid.yml", "wgrid.yml", _wgrid_lines, "wgrid.runfile", early_terminate=True),
    Kind("runs-dir", "runs/wgrid", "wgrid.yml", _wgrid_lines, "wgrid.runfile", early_terminate=True, shares="wandb-grid", reads_runfile=False),
    Kind("wandb-random", "wrand.yml", "wrand.yml", _wrand_lines, "wrand.runfile", early_terminate=True),
    Kind("bayes", "bayes.yml", "bayes.yml", _bayes_lines, "bayes.runfile", early_terminate=True),
    Kind("original-0.0.14", "rundir", "grid.runfile", _orig_lines, "grid.runfile", launch_args=("--accounting_dir", "rundir"), runs_dir="rundir",
         existing={"succeeded": "orig3", "failed": "orig2", "ignored": "orig1"}, reads_runfile=False),
    Kind("dodo", "runs/d", "d.runfile", lambda d, points: _write_runfile(d, "d.runfile", points), "d.runfile",
         first_launch=_dodo_first_launch, reads_runfile=False),
    Kind("batchrun-run", "r.runfile", "r.runfile", _run_lines, "r.runfile"),
]
# "batchrun ui" joins the read commands (test_matrix.COMMANDS) when it lands; a new kind of target joins here.


# -- preparing one kind --------------------------------------------------------------


def _write_points(d: Path, kind: Kind, points: list[str]) -> dict[str, str]:
    (d / "points.yml").write_text(yaml.safe_dump(points))
    return kind.lines(d, points)


def _read_points(d: Path) -> list[str]:
    return list(yaml.safe_load((d / "points.yml").read_text()))


@dataclass
class Prepared:
    """One kind's three working directories and which job plays which role."""

    kind: Kind
    dirs: dict[str, Path]  # variant -> working directory
    commands: dict[str, str]  # role -> command
    live: subprocess.Popen[str] | None = None

    def job(self, state: str) -> tuple[str, str, Path]:
        """(job id, command, working directory) of the job in `state`."""
        role, variant = ROLE_STATE[state]
        command = self.commands[role]
        return job_id_of(command), command, self.dirs[variant]


def _behave(d: Path, command: str, behaviour: str) -> None:
    (d / "behave").mkdir(exist_ok=True)
    (d / "behave" / job_id_of(command)).write_text(behaviour)


def prepare(kind: Kind, root: Path) -> Prepared:
    """Make the settled, orphan and live variants of one kind (see the module's docstring)."""
    d = root / kind.name / "settled"
    d.mkdir(parents=True)
    (d / "job.py").write_text(JOB_PY)
    if kind.name == "original-0.0.14":
        shutil.copytree(REPO / "tests/data/original/rundir", d / "rundir")
    if kind.name == "dodo":
        (d / "dodo.py").write_text('from batchrun.dodo import DOIT_CONFIG, runfile_tasks  # noqa: F401\n\n\ndef task_d():\n    yield from runfile_tasks("d.runfile")\n')
    roles = dict(FIRST) | ({"stopped": "bad"} if kind.early_terminate else {})
    names: dict[str, str] = dict(kind.existing)
    for role in roles:
        names.setdefault(role, f"{len(names) + 1}")
    by_name = {name: role for role, name in names.items()}
    lines = _write_points(d, kind, list(names.values()))
    commands = {by_name[name]: command for name, command in lines.items()}
    for role, behaviour in roles.items():
        if role not in kind.existing:
            _behave(d, commands[role], behaviour)
    if kind.first_launch is not None:
        kind.first_launch(kind, d, by_name)
    # 1. the first launch: killme is killed with batchrun kill, hang times out, bad is stopped by hyperband.
    launch = subprocess.Popen(batchrun_cmd("launch", kind.launch, *kind.launch_args, "-j", "8", "--timeout", TIMEOUT),
                              cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killme = job_id_of(commands["killed"])
    wait_for(lambda: started(d, "killme", killme), f"{kind.name}: the job to kill to start")
    batchrun("kill", kind.given, killme, cwd=d)
    out, err = launch.communicate(timeout=120)
    assert launch.returncode == 1, f"{kind.name}: first launch exit {launch.returncode}\n{out}\n{err}"
    # 2. one more point, and a launch interrupted while it runs it.
    names["interrupted"] = f"{len(names) + 1}"
    commands["interrupted"] = _write_points(d, kind, [*_read_points(d), names["interrupted"]])[names["interrupted"]]
    _behave(d, commands["interrupted"], "hang")
    launch = subprocess.Popen(batchrun_cmd("launch", kind.launch, *kind.launch_args, "-j", "1"), cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = job_id_of(commands["interrupted"])
    wait_for(lambda: started(d, "hang", job), f"{kind.name}: the job to interrupt to start")
    launch.send_signal(signal.SIGINT)
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == 130, f"{kind.name}: interrupted launch exit {launch.returncode}\n{out}\n{err}"
    _requeue_unwatched(d, kind, names, commands, job)
    # 3. ignored, removed, pending.
    _ignore(d, kind, job_id_of(commands["ignored"]))
    points = [p for p in _read_points(d) if p != names["removed"]]
    names["pending"] = f"{len(names) + 1}"
    lines = _write_points(d, kind, [*points, names["pending"]])
    commands["pending"] = lines[names["pending"]]
    shutil.rmtree(d / "marks", ignore_errors=True)
    dirs = {"settled": d}
    # 4. the same, with the interrupted job running again: under a launch killed with SIGKILL, and under a live one.
    for variant in ("orphan", "live"):
        copy = root / kind.name / variant
        shutil.copytree(d, copy, symlinks=True)
        dirs[variant] = copy
        launch = subprocess.Popen(batchrun_cmd("launch", kind.launch, *kind.launch_args, "-j", "1"), cwd=copy,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        wait_for(lambda copy=copy: started(copy, "hang", job), f"{kind.name} {variant}: the job to run again")
        if variant == "orphan":
            launch.kill()
            launch.wait(timeout=30)
        else:
            live = launch
            # A runs directory read by path knows the pending job once the launch's first
            # flush of metadata.json (about a second after it starts) has named it.
            wait_for(lambda copy=copy: _named_in_metadata(copy, kind, job_id_of(commands["pending"])), f"{kind.name} live: metadata.json to name the pending job")
    return Prepared(kind, dirs, commands, live)


def _requeue_unwatched(d: Path, kind: Kind, names: dict[str, str], commands: dict[str, str], interrupted: str) -> None:
    """2b. one more point, run by a launch killed with SIGKILL, that then exits 75: requeued, as the next reader settles it.

    The interrupted job runs again under that launch too, and is stopped
    with its shell after the kill (no record: interrupted again).
    """
    names["requeued"] = f"{len(names) + 1}"
    commands["requeued"] = _write_points(d, kind, [*_read_points(d), names["requeued"]])[names["requeued"]]
    _behave(d, commands["requeued"], "requeue")
    requeued = job_id_of(commands["requeued"])
    shutil.rmtree(d / "marks", ignore_errors=True)
    launch = subprocess.Popen(batchrun_cmd("launch", kind.launch, *kind.launch_args, "-j", "2"), cwd=d,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: started(d, "hang", interrupted) and started(d, "requeue", requeued), f"{kind.name}: the jobs to requeue and interrupt to start")
    # A runs directory read by path knows the job (its command, its parameters) once metadata.json names it.
    wait_for(lambda: _named_in_metadata(d, kind, requeued), f"{kind.name}: metadata.json to name the job to requeue")
    launch.kill()
    launch.wait(timeout=30)
    for mark in (d / "marks").glob(f"hang-{interrupted}-*"):
        os.killpg(os.getpgid(int(re.sub(r".*-", "", mark.name))), signal.SIGKILL)
    (d / "go-requeue").touch()
    logs = _logs_of(d, kind)
    wait_for(lambda: exit_text(logs / requeued) is not None, f"{kind.name}: the requeued job's exit record")
    wait_for(lambda: not lock_held(logs / requeued / "out.log") and not lock_held(logs / interrupted / "out.log"), f"{kind.name}: both jobs to end")


def _runs_dir_of(d: Path, kind: Kind) -> Path:
    return d / (kind.runs_dir or f"runs/{Path(kind.runfile).stem}")


def _logs_of(d: Path, kind: Kind) -> Path:
    return _runs_dir_of(d, kind) / "logs"


def _named_in_metadata(d: Path, kind: Kind, job_id: str) -> bool:
    runs_dir = _runs_dir_of(d, kind)
    try:
        return job_id in json.loads((runs_dir / "metadata.json").read_text())
    except (OSError, ValueError):
        return False


def _ignore(d: Path, kind: Kind, job_id: str) -> None:
    """`doit ignore` of one job, through a dodo.py of the target's runfile (the dodo kind's own)."""
    if kind.name == "dodo":
        run([sys.executable, "-m", "doit", "ignore", f"d:{job_id}"], d)
        return
    runs_dir = f", runs_dir={kind.runs_dir!r}" if kind.runs_dir else ""
    (d / "ignore_dodo.py").write_text(
        f"from batchrun.dodo import DOIT_CONFIG, runfile_tasks  # noqa: F401\n\n\ndef task_m():\n    yield from runfile_tasks({kind.runfile!r}, basename=\"m\"{runs_dir})\n")
    run([sys.executable, "-m", "doit", "-f", "ignore_dodo.py", "ignore", f"m:{job_id}"], d)


def end(prepared: Prepared) -> None:
    """Stop what the variants left running: the live launch, and every job still hanging."""
    if prepared.live is not None and prepared.live.poll() is None:
        os.killpg(prepared.live.pid, signal.SIGKILL)
        prepared.live.wait(timeout=30)
    for d in prepared.dirs.values():
        for mark in (d / "marks").glob("*"):
            pid = int(re.sub(r".*-", "", mark.name))
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
