"""Which runs directories lie under a folder, and the runfile or gridspec each was launched from.

`batchrun ui DIR` lists every runs directory under DIR, and `batchrun report
runs/x` is given a runs directory: both want the sweep behind it, for its
name (the title) and its spec (a parameter's distribution says its axis).
A launch of `x.yml` or `x.runfile` writes `runs/x/` beside them, so a runs
directory `P/runs/x` is paired with `P/x.yml` (or `.yaml`), else
`P/x.runfile`; anything else stays a bare runs directory, whose parameters
come from the commands' flags. `store.target.resolve_target` resolves a
gridspec against the current directory, so the pair is built here with
absolute paths instead.

Pure reading: no printing, nothing written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batchrun.store.journal import JOURNAL_NAME
from batchrun.store.rundir import DEFAULT_METADATA_NAME, RunsDir
from batchrun.store.target import Target, resolve_target

__all__ = ["find_runs_dirs", "sweep_target", "target_spec", "target_title"]

# How deep under DIR runs directories are looked for: DIR/project/runs/name is 3.
MAX_DEPTH = 4
# Folders never looked into: a runs directory's job logs, and tool folders that hold thousands of files.
_SKIPPED = {"logs", "node_modules", "__pycache__", "site-packages"}
# The files a runfile or gridspec of a runs directory named x may be, in the order they are tried.
_SPEC_SUFFIXES = (".yml", ".yaml")
_RUNFILE_SUFFIXES = (".runfile", ".txt", "")


def _is_runs_dir(path: Path) -> bool:
    # The original batchrun wrote metadata.json and logs/ only; a metadata.json alone is anyone's (a browser's caches have one).
    return (path / JOURNAL_NAME).is_file() or ((path / DEFAULT_METADATA_NAME).is_file() and RunsDir(path).logs.is_dir())


def find_runs_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Every runs directory under `root` (itself included), sorted, as absolute paths."""
    found = sorted(_walk(Path(os.path.abspath(root)), max_depth))
    return found


def _walk(path: Path, depth: int) -> Iterator[Path]:
    if _is_runs_dir(path):
        yield path
        return  # a runs directory holds none: its logs/ are a job's own files
    if depth <= 0:
        return
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name in _SKIPPED:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), depth - 1)
        except OSError:
            continue


def sweep_target(runs_dir: Path) -> Target:
    """The target a runs directory was launched from: `P/x.yml`, `P/x.runfile` beside `P/runs/x`, else the directory alone."""
    runs_dir = Path(os.path.abspath(runs_dir))
    if runs_dir.parent.name == "runs":
        home = runs_dir.parent.parent
        name = runs_dir.name
        for suffix in _SPEC_SUFFIXES:
            spec = home / f"{name}{suffix}"
            if spec.is_file():
                return Target(spec, RunsDir(runs_dir), home / f"{name}.runfile", spec)
        for suffix in _RUNFILE_SUFFIXES:
            runfile = home / f"{name}{suffix}"
            if runfile.is_file():
                return Target(runfile, RunsDir(runs_dir), runfile)
    return resolve_target(runs_dir)


def target_title(target: Target) -> str:
    """What a page about a target is called: the gridspec's or runfile's file name, else the runs directory's."""
    named = target.gridspec or target.runfile
    if named is not None:
        return named.name
    return target.runs_dir.path.name


def target_spec(target: Target) -> Any | None:
    """The gridspec of a target (a `sweeps.gridspec.Gridspec`), or None: no gridspec, or one that no longer reads."""
    if target.gridspec is None:
        return None
    from batchrun.errors import BatchrunError
    from batchrun.sweeps.gridspec import load_gridspec

    try:
        return load_gridspec(target.gridspec)
    except (BatchrunError, OSError):
        return None
