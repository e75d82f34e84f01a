"""The one atomic file write: readers see the old file or the new one, never a mix.

Every record batchrun rewrites whole (metadata.json, the resume fingerprint,
control requests, doit's values, a compacted journal, Dask's key files, the
SLURM task script, a swept runfile) goes through `write_atomic`: the bytes go
to a temporary file in the same directory, which is renamed over the target.
A rename within one filesystem is atomic, so a reader (or a launch killed
mid-write) never meets half a file; what a killed writer leaves is a
temporary file, which `store.repair` removes once its pid is dead.

Standard library only, and no import of batchrun: every folder may use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["temp_path_of", "write_atomic"]


def temp_path_of(path: Path, attempt: int = 0) -> Path:
    """The temporary file `write_atomic` writes before the rename: `.<name>.<pid>.tmp`.

    The pid in the name lets a later launch tell a dead writer's leftover from
    a live writer's file; `attempt` (> 0) tells apart two writers of one
    process writing the same file at once.
    """
    suffix = f".{attempt}" if attempt else ""
    return path.with_name(f".{path.name}.{os.getpid()}{suffix}.tmp")


def write_atomic(path: Path | str, content: str | bytes | Iterable[str] | Iterable[bytes | memoryview], *, sync: bool = False, mode: int | None = None) -> None:
    """Write `content` to `path` so that readers see the old file or the new one.

    `content` is text (written as UTF-8, surrogates kept), bytes, or pieces of
    either (or memoryviews, written as they are), written in order (a big
    file streams, never held whole). `sync`
    flushes the file to stable storage before the rename, for records a power
    loss must not take (a compacted journal); `mode` sets the new file's mode
    (else the umask decides, as for any new file).

    Raises:
        OSError: the directory cannot be written; the old file is unchanged
            and no temporary file is left.
    """
    path = Path(path)
    pieces = [content] if isinstance(content, (str, bytes)) else content
    attempt = 0
    while True:
        tmp = temp_path_of(path, attempt)
        try:
            # O_EXCL: never write through a file or a symlink someone else made.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666 if mode is None else mode)
        except FileExistsError:
            attempt += 1  # another thread of this process writes the same file now
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in pieces:
                f.write(piece.encode("utf-8", "surrogateescape") if isinstance(piece, str) else piece)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)  # the umask may have taken bits away at creation
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
