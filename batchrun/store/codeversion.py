"""Which code a launch ran: the git commit of its working directory, whether the tree was dirty, and the diff.

Recorded at each launch whose working directory is inside a git repository:
a version is named `<commit:12>` for a clean tree, `<commit:12>-<diff
sha256:12>` for a dirty one, and kept once in the runs directory:

    code/<version>.json    {"commit", "dirty", "repo", "diff": "<version>.diff" or null, "untracked": [...]}
    code/<version>.diff    `git diff HEAD --binary` (staged and unstaged changes of tracked files)
    code/<version>/        --snapshot: a copy of the tracked files as they were (jobs run there)

Each job's start record names the version it ran under (`JobRecord.code`).
Untracked files are in neither the diff nor the snapshot; their names are
listed (`untracked`), so a run that used one can be told apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from batchrun.atomic import write_atomic
from batchrun.errors import MetadataError, UsageError

__all__ = ["CODE_DIR", "CodeVersion", "capture", "current_version", "name_of", "snapshot", "snapshot_of_cwd"]

CODE_DIR = "code"
# Untracked names listed in a version's record, at most (a build directory can hold thousands).
_UNTRACKED_SHOWN = 50


@dataclass(frozen=True)
class CodeVersion:
    """The code in a working directory now: its repository, commit, and uncommitted changes."""

    repo: Path  # the repository's top level
    commit: str
    diff: bytes  # `git diff HEAD --binary`: empty for a clean tree
    untracked: tuple[str, ...] = ()

    @property
    def dirty(self) -> bool:
        return bool(self.diff)

    @property
    def name(self) -> str:
        """`<commit:12>`, or `<commit:12>-<sha256 of the diff:12>` for a dirty tree: one name per distinct code."""
        if not self.diff:
            return self.commit[:12]
        return f"{self.commit[:12]}-{hashlib.sha256(self.diff).hexdigest()[:12]}"


def name_of(version: CodeVersion | None) -> str | None:
    """The name a version goes by in the jobs' start lines; None for none (outside git)."""
    return version.name if version is not None else None


def _git(cwd: str | Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def current_version(cwd: str | Path) -> CodeVersion | None:
    """The code of `cwd` now; None outside a git repository (or without git, or before a first commit)."""
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top is None:
        return None  # not in a repository: asked once, not once per question
    commit = _git(cwd, "rev-parse", "--verify", "HEAD")
    if commit is None:
        return None
    diff = _git(cwd, "diff", "HEAD", "--binary", "--no-ext-diff", "--no-color")
    if diff is None:
        return None
    untracked = _git(cwd, "ls-files", "--others", "--exclude-standard", "--directory", "-z", ":/")
    names = tuple(os.fsdecode(name) for name in (untracked or b"").split(b"\0") if name)
    return CodeVersion(Path(os.fsdecode(top.strip())), commit.decode().strip(), diff, names)


def capture(cwd: str | Path, runs_dir: Path) -> CodeVersion | None:
    """Record the code of `cwd` in `runs_dir/code/` (once per distinct version); the version, None outside git.

    Raises:
        MetadataError: the record cannot be written.
    """
    version = current_version(cwd)
    if version is None:
        return None
    code_dir = runs_dir / CODE_DIR
    record = code_dir / f"{version.name}.json"
    if record.exists():
        return version
    try:
        code_dir.mkdir(parents=True, exist_ok=True)
        diff_name = None
        if version.dirty:
            diff_name = f"{version.name}.diff"
            write_atomic(code_dir / diff_name, [version.diff])
        doc = {
            "commit": version.commit, "dirty": version.dirty, "repo": str(version.repo), "diff": diff_name,
            "untracked": list(version.untracked[:_UNTRACKED_SHOWN]), "untracked_count": len(version.untracked),
        }
        write_atomic(record, [json.dumps(doc, indent=1).encode() + b"\n"])
    except OSError as err:
        raise MetadataError(f"{code_dir}: cannot record the code version: {err.strerror}") from err
    return version


def snapshot(version: CodeVersion, runs_dir: Path, cwd: str | Path) -> Path:
    """A copy of the tracked files of `version`'s tree as they are now (made once per version); where in it `cwd` is.

    Made under a temporary name and renamed, so a launch killed while
    copying leaves no half copy that a later one would take for whole.

    Raises:
        MetadataError: the files cannot be listed or copied.
    """
    root = runs_dir / CODE_DIR / version.name
    where = root / os.path.relpath(os.path.realpath(cwd), os.path.realpath(version.repo))
    if root.is_dir():
        return where
    listed = _git(version.repo, "ls-files", "-z", "--cached")
    if listed is None:
        raise MetadataError(f"{version.repo}: cannot list the tracked files for --snapshot")
    partial = root.with_name(f".{version.name}.{os.getpid()}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        for name in dict.fromkeys(listed.split(b"\0")):
            if not name:
                continue
            source = version.repo / os.fsdecode(name)
            target = partial / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                os.symlink(os.readlink(source), target)
            elif source.is_file():
                shutil.copy2(source, target)
            # A tracked file deleted in the working tree: absent here too, as in the tree.
        os.rename(partial, root)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise MetadataError(f"{root}: cannot make the --snapshot copy: {err.strerror}") from err
    where.mkdir(parents=True, exist_ok=True)
    return where


def snapshot_of_cwd(runs_dir: Path) -> tuple[CodeVersion, str]:
    """--snapshot: the code version of the working directory and the copy of its tree the jobs run in.

    Raises:
        UsageError: the working directory is in no git repository (or one with no commit yet).
    """
    cwd = os.getcwd()
    code = capture(cwd, runs_dir)
    if code is None:
        raise UsageError(f"--snapshot needs a git repository: {cwd} is in none (or it has no commit yet)")
    return code, str(snapshot(code, runs_dir, cwd))
