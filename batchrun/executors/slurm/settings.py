"""The SLURM executor's own settings (`--sbatch-args`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SlurmSettings"]


@dataclass(frozen=True)
class SlurmSettings:
    """What only the SLURM executor takes from a launch's options."""

    # Extra sbatch options for every array (`--sbatch-args`, split as the shell would).
    sbatch_args: list[str] = field(default_factory=list)
