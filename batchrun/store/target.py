"""What the user named on the command line (a runfile, a gridspec or a runs directory) and the runs directory it stands for.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from batchrun.errors import InputError
from batchrun.runfile.file import Runfile, load_runfile, parse_runfile_text
from batchrun.store.rundir import DEFAULT_METADATA_NAME, RunsDir

__all__ = ["Target", "is_gridspec", "resolve_target", "target_runfile"]

# A target with one of these suffixes is a gridspec: it stands for its runfile `<stem>.runfile`.
_GRIDSPEC_SUFFIXES = (".yml", ".yaml")


def is_gridspec(path: Path) -> bool:
    """Whether a target names a gridspec (by its suffix, as every command tells them)."""
    return path.suffix.lower() in _GRIDSPEC_SUFFIXES


@dataclass(frozen=True)
class Target:
    """What the user named: a runfile, a gridspec, or a runs directory."""

    given: Path
    runs_dir: RunsDir
    runfile: Path | None = None
    gridspec: Path | None = None

    @property
    def launch_command(self) -> str:
        """The command that launches this target."""
        runfile = self.runfile if self.runfile is not None else self.given
        launch = f"batchrun launch {shlex.quote(str(runfile))}"
        if self.gridspec is not None and not runfile.exists():
            # A launch of the gridspec writes its runfile (a bayes search's, point by point).
            return f"batchrun launch {shlex.quote(str(self.gridspec))}"
        return launch


def resolve_target(path: Path, accounting_dir: Path | None = None, metadata_name: str = DEFAULT_METADATA_NAME, *, must_exist: bool = True) -> Target:
    """Tell a runs directory, a gridspec and a runfile apart: the one way every command finds a target's runs directory.

    A gridspec `g.yml` stands for its runfile `g.runfile` in the current
    directory (`gridspec.default_runfile_path`, as `batchrun sweep` writes it)
    and that runfile's runs directory (`runs/g/`, or `accounting_dir`). A
    launch resolves with `must_exist=False`: what it needs is checked when it
    reads it.

    Raises:
        InputError: `path` does not exist (with `must_exist`).
    """
    if path.is_dir():
        return Target(path, RunsDir(Path(os.path.abspath(path)), metadata_name))
    if must_exist and not path.exists():
        raise InputError("no such runfile, gridspec or runs directory", path)
    if is_gridspec(path):
        from batchrun.sweeps.gridspec import default_runfile_path  # YAML and the sweep rules, only for gridspecs

        runfile = default_runfile_path(path)
        return Target(path, RunsDir.for_runfile(runfile, accounting_dir, metadata_name), runfile, path)
    return Target(path, RunsDir.for_runfile(path, accounting_dir, metadata_name), path)


def target_runfile(target: Target) -> Runfile | None:
    """The jobs a target stands for: its runfile, or for a gridspec whose runfile was never written, the gridspec's own
    commands (none yet for a bayes search, whose launch appends its points); None for a runs directory.

    Raises:
        InputError: the runfile or gridspec cannot be read.
    """
    if target.gridspec is not None:
        from batchrun.sweeps import gridspec as sweep  # only for gridspecs: it pulls in YAML and the sweep rules

        spec = sweep.load_gridspec(target.gridspec)  # read first: a broken gridspec is an error even beside its runfile
        if target.runfile is not None and target.runfile.exists():
            return load_runfile(target.runfile)
        if spec.method == "bayes":
            return parse_runfile_text("", target.runfile or target.gridspec)
        return parse_runfile_text("\n".join(spec.iter_commands()), target.runfile or target.gridspec)
    return load_runfile(target.runfile) if target.runfile is not None else None
