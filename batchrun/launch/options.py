"""What one launch was asked to do, and the one place those options are checked.

`check_options` runs before anything else touches the runs directory, for
`launch --dry-run` as for a real launch, so the two refuse the same options
with the same message. The planner, runner and stopper only read options.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.errors import UsageError

__all__ = ["MODES", "ORDERS", "LaunchOptions", "Mode", "Order", "ValueEnum", "check_options", "parse_mode", "parse_order"]


class ValueEnum(str, enum.Enum):
    """A `str` enum that prints (and formats) as its value, as JSON stores it."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


class Mode(ValueEnum):
    """Which finished jobs a launch runs again."""

    RESUME = "resume"  # none: only new and unfinished jobs run
    RETRY_FAILED = "retry_failed"  # failed and timed-out jobs run again too
    OVERWRITE = "overwrite"  # every job runs again (--rerun-all)


class Order(ValueEnum):
    """In which order pending jobs start."""

    FILE = "file"
    SHUFFLE = "shuffle"


MODES = tuple(mode.value for mode in Mode)
ORDERS = tuple(order.value for order in Order)


@dataclass
class LaunchOptions:
    """What the user asked of one launch."""

    n_jobs: int = 1
    # A name is taken for its member (`parse_mode`), so every reader sees a `Mode`.
    mode: Mode = Mode.RESUME
    accounting_dir: Path | None = None
    metadata_name: str = "metadata.json"
    grace: float = 10.0
    env: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    # Runs again of a job that exits 75 (requeued), in this launch, before it counts as failed.
    max_requeues: int = 10
    timeout: float | None = None
    # --checkpoint-signal SIG@SECONDS: (signal number, seconds before the timeout) it reaches the job's group.
    checkpoint_signal: tuple[int, float] | None = None
    fail_fast: bool = False
    halt_now: bool = False
    gpus: list[str] = field(default_factory=list)
    jobs_per_gpu: int = 1
    # The local capacity jobs are packed into (`capacity.Capacity`); None: this machine's.
    cpus: int | None = None
    mem: int | None = None  # bytes
    # How the GPUs were chosen, for messages ("--gpus auto: 2 found"); "" for a list given.
    gpus_from: str = ""
    # -j was not given: the launch sets it to as many jobs as fit at once (`capacity.default_n_jobs`).
    auto_jobs: bool = False
    order: Order = Order.FILE
    seed: int = 0
    executor: str = "local"
    sbatch_args: list[str] = field(default_factory=list)
    scheduler: str | None = None
    detach: bool = False
    # After the pending jobs, keep taking the lines that enter the runfile (launch --follow).
    follow: bool = False
    # Run the jobs from a copy of the git tree as it was when the launch started (`store.codeversion.snapshot`).
    snapshot: bool = False

    def __post_init__(self) -> None:
        # A name given for a member becomes the member; an unknown one stays for `check_options` to refuse.
        if self.mode in MODES:
            self.mode = Mode(self.mode)
        if self.order in ORDERS:
            self.order = Order(self.order)


def parse_order(order: str) -> Order:
    """The `Order` named `order`.

    Raises:
        UsageError: no such order.
    """
    try:
        return Order(order)
    except ValueError:
        raise UsageError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}") from None


def parse_mode(mode: str) -> Mode:
    """The `Mode` named `mode`.

    Raises:
        UsageError: no such mode.
    """
    try:
        return Mode(mode)
    except ValueError:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}") from None


def check_options(options: LaunchOptions) -> None:
    """Refuse options no launch could run with; the first problem found wins.

    Raises:
        UsageError: naming the option and why.
    """
    if options.detach and options.executor == "dask" and not options.scheduler:
        raise UsageError("--detach with --executor dask needs --scheduler: a local cluster stops when batchrun exits")
    if options.follow and options.detach:
        raise UsageError("--follow and --detach do not go together: a detached launch exits at once, so nothing follows the runfile")
    if options.retries < 0:
        raise UsageError(f"--retries must be 0 or more, not {options.retries}")
    if options.checkpoint_signal is not None and options.timeout is None:
        raise UsageError("--checkpoint-signal needs --timeout: the signal comes that many seconds before the timeout")
    if options.checkpoint_signal is not None and options.executor not in ("local", "slurm"):
        # Dask takes any signal sent to a job for a stop; SLURM sends it itself (its --signal).
        raise UsageError(f"--checkpoint-signal runs with the local and slurm executors, not {options.executor}")
    if options.max_requeues < 0:
        raise UsageError(f"--max-requeues must be 0 or more, not {options.max_requeues}")
    parse_mode(options.mode)
    parse_order(options.order)
    if options.n_jobs < 1:
        raise UsageError(f"-j must be at least 1, not {options.n_jobs}")
    if options.jobs_per_gpu < 1:
        raise UsageError(f"--jobs-per-gpu must be at least 1, not {options.jobs_per_gpu}")
    if options.cpus is not None and options.cpus < 1:
        raise UsageError(f"--cpus must be at least 1, not {options.cpus}")
    if options.mem is not None and options.mem < 1:
        raise UsageError(f"--mem must be more than 0, not {options.mem}")
    if options.executor != "local" and (options.cpus is not None or options.mem is not None):
        raise UsageError(
            f"--cpus and --mem size this machine for local jobs; with --executor {options.executor} the cluster "
            "places each job by what it asks (its directive)"
        )
