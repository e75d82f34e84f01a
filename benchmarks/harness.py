"""What bench.py's sections share: sizes, one measured run of a command, the peers.

A child's peak RSS and CPU time come from `os.wait4`, which reports on that
child alone (plus the jobs it reaped), unlike `RUSAGE_CHILDREN`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Every runner gets the same number of workers; the targets were set at 2 on a 2-core machine.
WORKERS = 2
# `deleted` runs last: deleting a big runs directory slows file creation for about a minute.
SECTIONS = ("throughput", "resume", "memory", "sweep", "plan", "million", "results", "deleted")
# The wider throughput row: more workers than cores, as users do to hide I/O waits.
WIDE_WORKERS = 8
# "Flat" sweep memory: the big grid may peak at most this much above a grid 100x smaller.
FLAT_MEMORY_MB = 20.0
# The job alone is timed over at most this many serial `sh -c` runs: enough for a stable mean.
JOB_ALONE_MAX = 2_000

# Whether measured commands run as grandchildren (see run_measured, which sets it at its first call).
SUBREAPER = False


class BenchError(Exception):
    """A measured command failed or produced the wrong result."""


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is."""

    jobs: int  # throughput: trivial jobs per run
    resume_lines: int  # lines of the runfile that is launched once and resumed
    pending: int  # unfinished lines in the partial resume
    sweep_grid: tuple[int, ...]  # points per parameter of the big sweep
    sweep_small_grid: tuple[int, ...]  # a grid 100x smaller, to show memory stays flat
    repeat: int
    million_grid: tuple[int, ...]  # the sweep whose runfile is launched, resumed and queried
    results_jobs: int = 100_000  # jobs of the sweep whose metrics `batchrun results` reads


FULL = Sizes(10_000, 100_000, 100, (10, 10, 100, 100), (10, 10, 10, 10), 3, (10, 10, 100, 100))
SMOKE = Sizes(200, 2_000, 100, (10, 10, 10, 10), (10, 10, 10, 1), 1, (10, 10, 10, 1), 500)


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    seconds: float
    rss_mb: float  # peak RSS of the child (or of a job it reaped, if larger)
    cpu_seconds: float  # user + system time of the child and the jobs it reaped
    stdout: str


@dataclass
class Samples:
    """Repeated measurements of one thing by one tool."""

    runs: list[Run] = field(default_factory=list)

    def median(self, key: Callable[[Run], float]) -> float:
        return statistics.median(key(run) for run in self.runs)

    def spread(self, key: Callable[[Run], float]) -> tuple[float, float]:
        values = [key(run) for run in self.runs]
        return min(values), max(values)


@dataclass
class Bench:
    """State shared by the measurements of one benchmark run."""

    root: Path
    sizes: Sizes
    batchrun: list[str]
    peers: dict[str, str]  # available peer name -> version
    notes: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Samples]] = field(default_factory=dict)
    # Finished runs directories that `deleted` may remove (each of `sizes.jobs` jobs).
    deletable: list[Path] = field(default_factory=list)
    _dirs: int = 0

    def fresh_dir(self, label: str) -> Path:
        """A new, empty directory under the run's temporary root."""
        self._dirs += 1
        path = self.root / f"{self._dirs:03d}-{label}"
        path.mkdir()
        return path

    def record(self, measure: str, tool: str, run: Run) -> None:
        self.results.setdefault(measure, {}).setdefault(tool, Samples()).runs.append(run)

    def samples(self, measure: str, tool: str) -> Samples | None:
        return self.results.get(measure, {}).get(tool)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# Runs the measured command as sh's child, so that its peak RSS starts from sh's few pages:
# exec records the exec'ing process's old peak RSS in the new program's ru_maxrss, and a
# child of this script starts as a copy of this script (tens of MB). The child waits on fd 3
# until sh has exited (sh would reap it if it ended first, taking its rusage along); `trap -`
# undoes the SIGINT/SIGQUIT ignore sh gives background jobs; its stdout must not hold the pipe
# that `$!` goes back through, which tells us whom to wait for.
_LAUNCHER = ('in=$1 out=$2 err=$3; shift 3; '
             '( trap - INT QUIT; read _ <&3; exec "$@" <"$in" >"$out" 2>"$err" 3<&- ) >/dev/null & echo $!')
# prctl option making orphaned descendants our children (Linux 3.4+), so we can wait4 sh's child.
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so the launcher's child can be waited for; Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def log_dirs_cost(root: Path, count: int = 1_000) -> Run:
    """What this file system charges for the files batchrun makes per job: a directory and two files in it.

    Measured in this process (wall and CPU, mostly the kernel's), a thousand
    of them in a fresh directory, left in place: deleted, they would make the
    next runner's files dearer (ext4 without a journal passes over inodes
    freed in the last minute or more, reading each one's deletion time:
    `recently_deleted`). Every throughput figure of batchrun carries this
    cost (xargs' carries none), and it varies more from one machine or
    moment to the next than anything batchrun does: the same 2-core machine
    charged 0.02 ms on tmpfs, 0.06-0.08 ms on its ext4 disk, 0.3-0.9 ms
    there right after files were deleted.
    """
    work = root / "log-dirs"
    work.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    before, start = os.times(), time.perf_counter()
    for n in range(count):
        folder = work / f"{n:016x}"
        folder.mkdir()
        for name in ("out.log", "err.log"):
            os.close(os.open(folder / name, flags, 0o644))
    seconds, after = time.perf_counter() - start, os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return Run(seconds / count, 0.0, cpu / count, "")


def run_measured(argv: Sequence[str], cwd: Path, stdin: Path | None = None,
                 env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> Run:
    """Run argv in cwd; return its wall time, peak RSS and CPU time.

    Raises:
        BenchError: the command exited with a code not in `ok`.
    """
    global SUBREAPER  # noqa: PLW0603 - one per process
    if not SUBREAPER:
        # Started as our own child, a command's peak RSS would be at least this
        # process's own: an exec keeps the high-water mark of the memory it
        # replaces (with vfork, this very process's), so a script that built a
        # million-job runs directory before measuring saw every command at its
        # own 159 MB. A grandchild forked by a small /bin/sh starts from sh's.
        SUBREAPER = become_subreaper()
    out_path, err_path = cwd / "_bench.stdout", cwd / "_bench.stderr"
    stdin_path = str(stdin or os.devnull)
    if SUBREAPER:
        gate, release = os.pipe()
        try:
            launcher = subprocess.run(
                ["/bin/sh", "-c", f"exec 3<&{gate}; {_LAUNCHER}", "sh", stdin_path, str(out_path),
                 str(err_path), *argv],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, pass_fds=(gate,),
                check=False)
        finally:
            os.close(gate)
        if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
            os.close(release)
            raise BenchError(f"could not start {shlex.join(argv)} through /bin/sh")
        pid = int(launcher.stdout)
        start = time.perf_counter()
        os.close(release)  # the child now execs the command
    else:
        start = time.perf_counter()
        with open(out_path, "wb") as out, open(err_path, "wb") as err, open(stdin_path, "rb") as inp:
            pid = subprocess.Popen(argv, cwd=cwd, stdin=inp, stdout=out, stderr=err, env=env).pid
    # wait4 rather than waitpid or RUSAGE_CHILDREN: its rusage is this child's alone.
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    _reap_strays()
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        tail = err_path.read_text(errors="replace")[-2000:]
        raise BenchError(f"{shlex.join(argv)} (in {cwd}) exited {code}:\n{tail}")
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Run(seconds, rss_bytes / 2**20, usage.ru_utime + usage.ru_stime, _tail(out_path))


def _tail(path: Path, size: int = 1 << 16) -> str:
    """The end of a file: enough for batchrun's summary, never a million-row status table."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode(errors="replace")


def _reap_strays() -> None:
    """Reap descendants orphaned to us (jobs a runner left behind), so no zombies pile up."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def count_lines(path: Path) -> int:
    lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def runfile_text(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def trivial_jobs(first: int, count: int) -> list[str]:
    return [f"true {i}" for i in range(first, first + count)]


def synthetic_joblog(commands: Sequence[str]) -> str:
    """GNU parallel's --joblog for commands that all ran and exited 0, in its exact format."""
    start = time.time() - len(commands) * 0.004
    rows = [f"{seq}\t:\t{start + seq * 0.004:.3f}\t{0.003:10.3f}\t0\t0\t0\t0\t{command}\n"
            for seq, command in enumerate(commands, 1)]
    return "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n" + "".join(rows)


def check_ran(bench: Bench, run: Run, expected: int, what: str) -> None:
    """Warn when batchrun's summary does not say that `expected` jobs ran."""
    match = re.search(r"\((\d+) ran now\)", run.stdout)
    if match is None or int(match.group(1)) != expected:
        note = f"{what}: expected batchrun to run {expected} jobs; its summary says: {run.stdout.strip()!r}"
        progress("WARNING " + note)
        bench.notes.append("WARNING " + note)


def check_joblog(path: Path, expected_rows: int, what: str) -> None:
    rows = count_lines(path) - 1
    if rows != expected_rows:
        raise BenchError(f"{what}: GNU parallel's joblog has {rows} rows, expected {expected_rows}")


# --- peers -------------------------------------------------------------------------------------

def detect_peers(notes: list[str]) -> dict[str, str]:
    """Find GNU parallel and xargs; return name -> version of those usable, noting the rest."""
    peers: dict[str, str] = {}
    if shutil.which("parallel") is None:
        notes.append("GNU parallel not found: its columns are skipped "
                     "(Debian/Ubuntu: `apt-get install parallel`).")
    else:
        first = _first_line(["parallel", "--version"])
        if first.startswith("GNU parallel"):
            peers["parallel"] = first
        else:
            notes.append("`parallel` on PATH is not GNU parallel (moreutils' perhaps): skipped; "
                         "install the Debian package `parallel`.")
    if shutil.which("xargs") is None:
        notes.append("xargs not found: its columns are skipped (Debian/Ubuntu: package `findutils`).")
    else:
        peers["xargs"] = _first_line(["xargs", "--version"]) or "xargs (version unknown)"
    return peers


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.splitlines()[0].strip() if out.strip() else ""


def parallel_env() -> dict[str, str]:
    # GNU parallel otherwise picks the shell of an ancestor process (bash here); batchrun and
    # xargs run every job with /bin/sh, so parallel does too.
    return {**os.environ, "PARALLEL_SHELL": "/bin/sh"}


def _product(grid: Sequence[int]) -> int:
    total = 1
    for points in grid:
        total *= points
    return total
