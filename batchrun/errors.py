"""The one exception hierarchy of batchrun.

Every error a user can cause (bad input, a busy runs directory, a broken
environment) is a `BatchrunError`; the CLI prints it as one line and exits
with its `exit_code`. Anything else escaping the core is a bug.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BatchrunError",
    "ExecutorError",
    "GridspecError",
    "InputError",
    "LockedError",
    "MetadataError",
    "RunfileError",
    "UsageError",
]


class BatchrunError(Exception):
    """Base of every error batchrun reports to the user as one line."""

    exit_code = 2


class UsageError(BatchrunError):
    """Raised when options contradict each other or name nothing usable."""


class InputError(BatchrunError):
    """Raised when an input file is missing or malformed; names the file and line."""

    def __init__(self, message: str, path: Path | str | None = None, lineno: int | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.lineno = lineno
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = str(self.path) if self.lineno is None else f"{self.path}:{self.lineno}"
        return f"{where}: {self.message}"


class RunfileError(InputError):
    """Raised when a runfile cannot be read or is not a text file of commands."""


class GridspecError(InputError):
    """Raised when a gridspec is not valid YAML or not a valid sweep."""


class MetadataError(BatchrunError):
    """Raised when the runs directory's records cannot be read or written."""


class LockedError(BatchrunError):
    """Raised when another launch holds the runs directory."""


class ExecutorError(BatchrunError):
    """Raised when an executor cannot start (missing extra, unreachable cluster)."""
