"""A sweep's generated lines written as a runfile: streamed in chunks, through the one atomic write.

`write_lines` serves `batchrun sweep` (a gridspec or a command line), `batchrun
run` and `launch grid.yml`: the runfile is replaced whole or not at all, and
an error found while expanding (bad input deep in a million lines) leaves the
old runfile as it was.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

from batchrun.atomic import write_atomic
from batchrun.errors import RunfileError

__all__ = ["write_lines"]

# Lines per write(): enough to amortise the call, few enough to keep memory flat.
_WRITE_CHUNK = 8192


def write_lines(out: Path, lines: Iterable[str], header: str | None = None) -> int:
    """Write `header` (`#` lines, if given) and then the lines to `out`, fsynced; return how many lines (the header's aside).

    Raises:
        RunfileError: `out` is a directory or cannot be written.
    """
    out = Path(out)
    if out.is_dir():
        raise RunfileError("is a directory; give a file name for the runfile", out)
    count = 0

    def chunks() -> Iterator[str]:
        nonlocal count
        if header is not None:
            yield header + "\n"
        iterator = iter(lines)
        while chunk := list(itertools.islice(iterator, _WRITE_CHUNK)):
            count += len(chunk)
            yield "\n".join(chunk) + "\n"

    try:
        write_atomic(out, chunks(), sync=True)
    except OSError as err:
        raise RunfileError(f"cannot write the runfile: {err.strerror or err}", out) from err
    return count
