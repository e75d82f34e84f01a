"""The SLURM executor's own settings (`--sbatch-args`), and the launch's options it hands to SLURM (`--timeout`, `--checkpoint-signal`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SlurmSettings"]


@dataclass(frozen=True)
class SlurmSettings:
    """What the SLURM executor takes from a launch's options."""

    # Extra sbatch options for every array (`--sbatch-args`, split as the shell would).
    sbatch_args: list[str] = field(default_factory=list)
    # The launch's --timeout (seconds): a job's time limit when its request names none, SLURM's `--time`.
    timeout: float | None = None
    # --checkpoint-signal (signal number, seconds before the time limit): SLURM's `--signal=B:SIG@SECONDS`.
    checkpoint_signal: tuple[int, float] | None = None
