"""What one job asks for (`Request`: GPUs, CPUs, memory, time) and the one syntax it is written in.

A request is written `gpus=2 cpus=8 mem=64G time=2h`: in a runfile as a
directive line `# batchrun: gpus=2 cpus=8 mem=64G` (a `#` line, so the
original batchrun and any plain reader see a comment, and a job's identity
stays its command text), in a gridspec's `resources:` block, and in the
journal's record of what a running job holds. Every folder reads and writes
requests through this module, so the syntax, the units and the arithmetic
live in one place: runfiles (directives), sweeps (gridspec blocks), the
launch (the local scheduler packs by them), executors (SLURM's `--gres`,
`--cpus-per-task`, `--mem`, `--time`; Dask's worker resources).

- `gpus`: a whole count (`2`), or a fraction of one GPU (`0.25`, `1/4`):
  four quarter-GPU jobs share a GPU. `gpus=0` asks for no GPU at all (the
  job sees none, even under `--gpus`).
- `cpus`: a whole number of CPUs, at least 1.
- `mem`: a size, `64G`, `512M`, `1.5G` (units K, M, G, T are powers of 1024,
  an optional B or iB is allowed; a bare number is megabytes, as SLURM reads it).
- `time`: a duration, `90` (seconds), `30m`, `2h`, `1h30m`.

Pure: no I/O, no printing. Errors are `ValueError`s with a one-line message;
callers add where the text came from.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, replace
from fractions import Fraction

__all__ = [
    "KEYS",
    "NO_REQUEST",
    "Request",
    "directive_body",
    "directive_request",
    "format_duration",
    "format_size",
    "merge_requests",
    "parse_duration",
    "parse_gpus",
    "parse_request",
    "parse_size",
    "time_limit",
]

# The keys a request takes, in the order they are written.
KEYS = ("gpus", "cpus", "mem", "time")
# A directive line, stripped: `#`, optional blanks, `batchrun:`, then the request.
_DIRECTIVE = re.compile(r"#\s*batchrun:(.*)\Z", re.DOTALL)
# Units of a size (powers of 1024); a bare number is megabytes, as SLURM's --mem reads it.
_SIZE_UNITS = {"": 1 << 20, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\Z")
# Units of a duration; a bare number is seconds.
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Request:
    """What a job asks for; None: it asks nothing of that kind (the launch's default applies)."""

    gpus: Fraction | None = None
    cpus: int | None = None
    mem: int | None = None  # bytes
    time: float | None = None  # seconds

    def __bool__(self) -> bool:
        return self != NO_REQUEST

    def text(self) -> str:
        """`gpus=2 cpus=8 mem=64G time=2h`: what `parse_request` reads back to an equal request."""
        parts = []
        if self.gpus is not None:
            parts.append(f"gpus={_fraction_text(self.gpus)}")
        if self.cpus is not None:
            parts.append(f"cpus={self.cpus}")
        if self.mem is not None:
            parts.append(f"mem={format_size(self.mem)}")
        if self.time is not None:
            parts.append(f"time={format_duration(self.time)}")
        return " ".join(parts)

    def directive(self) -> str:
        """The runfile line that makes the lines after it ask for this (`# batchrun:` alone: nothing)."""
        text = self.text()
        return f"# batchrun: {text}" if text else "# batchrun:"

    @property
    def whole_gpus(self) -> int:
        """GPUs that must be wholly this job's: the count, or 0 for a fraction of one."""
        return int(self.gpus) if self.gpus is not None and self.gpus >= 1 else 0


NO_REQUEST = Request()


def time_limit(request: Request | None, timeout: float | None) -> float | None:
    """A job's time limit in seconds: its own request's `time` (its directive's), else the launch's `--timeout`; None: none.

    The one rule for it: the launch enforces it locally, SLURM as `--time`.
    """
    return request.time if request is not None and request.time is not None else timeout


def directive_body(line: str) -> str | None:
    """The request text of a directive line (stripped), or None when the line is no directive.

    A `# batchrun:` line is a directive when nothing follows the colon (a
    reset) or its first word is a `key=value`: other such lines, like the
    note a bayes search's runfile starts with, stay plain comments.
    """
    match = _DIRECTIVE.match(line)
    if match is None:
        return None
    body = match.group(1).strip()
    if body and "=" not in body.split(None, 1)[0]:
        return None
    return body


def directive_request(line: str) -> Request | None:
    """What a directive line asks for (`NO_REQUEST` for a reset), or None when the line is no directive.

    Raises:
        ValueError: a directive that is no request, in one line quoting it.
    """
    body = directive_body(line)
    if body is None:
        return None
    try:
        return parse_request(body)
    except ValueError as err:
        raise ValueError(f"bad directive {line!r}: {err}") from None


def parse_request(text: str) -> Request:
    """The request `key=value` words spell (`gpus=2 cpus=8 mem=64G time=2h`); "" is no request.

    Raises:
        ValueError: an unknown key (with the nearest known one), a key twice, a bad value.
    """
    values: dict[str, object] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value words ({', '.join(KEYS)}), not {word!r}")
        key = key.lower()
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise ValueError(f"unknown request {key!r}" + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(KEYS)}"))
        if key in values:
            raise ValueError(f"{key} given twice")
        values[key] = _PARSERS[key](value)
    return Request(**values)  # type: ignore[arg-type]


def merge_requests(base: Request, over: Request) -> Request:
    """`base` with every field `over` asks for replaced by `over`'s."""
    changes = {key: getattr(over, key) for key in KEYS if getattr(over, key) is not None}
    return replace(base, **changes) if changes else base


def parse_gpus(text: str | float | int) -> Fraction:
    """A GPU count: whole (`2`), or a fraction of one GPU (`0.25`, `1/4`), or 0 for none.

    Raises:
        ValueError: not a number, negative, or a fraction above 1 (`1.5`).
    """
    try:
        value = Fraction(text) if not isinstance(text, float) else Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"gpus must be a number of GPUs (2) or a fraction of one (0.25, 1/4), not {text!r}") from None
    if value < 0:
        raise ValueError(f"gpus must be 0 or more, not {text!r}")
    if value > 1 and value.denominator != 1:
        raise ValueError(f"gpus above 1 must be a whole number, not {text!r}; a fraction shares one GPU (0.25: four jobs to a GPU)")
    return value


def _parse_cpus(text: str | int) -> int:
    if isinstance(text, bool) or not str(text).strip().isdigit() or int(text) < 1:
        raise ValueError(f"cpus must be a whole number of at least 1, not {text!r}")
    return int(text)


def parse_size(text: str | int | float) -> int:
    """A memory size in bytes: `64G`, `512M`, `1.5G`, `100K`, `2048` (megabytes), `64GB`, `64GiB`.

    Raises:
        ValueError: not a size, or not more than 0.
    """
    if isinstance(text, bool):
        raise ValueError(f"mem must be a size like 64G or 512M, not {text!r}")
    match = _SIZE.match(str(text).strip().lower())
    if match is None or (match.group(3) and not match.group(2) and match.group(3) == "ib"):
        raise ValueError(f"mem must be a size like 64G, 512M or 1.5G, not {text!r}")
    unit = match.group(2) or ("b" if match.group(3) else "")
    size = math.ceil(Fraction(match.group(1)) * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"mem must be more than 0, not {text!r}")
    return size


def format_size(size: int) -> str:
    """A size as the largest unit that writes it exactly (`64G`, `1536M`, `100K`, `12345B`)."""
    for unit in "TGMK":
        factor = _SIZE_UNITS[unit.lower()]
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def parse_duration(text: str | int | float, allow_zero: bool = False) -> float:
    """Seconds: `90` (seconds), `45s`, `30m`, `2h`, `1h30m`, `1.5h`, `1d`; more than 0 unless `allow_zero`.

    Raises:
        ValueError: not a duration.
    """
    rest = str(text).strip().lower() if not isinstance(text, bool) else ""
    total, parts, number = 0.0, 0, ""
    if rest and rest[-1].isdigit():
        rest += "s"
    for char in rest:
        if char.isdigit() or char == ".":
            number += char
        elif char in _DURATION_UNITS and number:
            try:
                total += float(number) * _DURATION_UNITS[char]
            except ValueError:
                break
            number = ""
            parts += 1
        else:
            break
    else:
        if not number and parts and (total > 0 or allow_zero):
            return total
    raise ValueError(f"expected a duration like 90, 30m, 2h or 1h30m, not {text!r}")


def format_duration(seconds: float) -> str:
    """A duration as `parse_duration` reads it back: `2h`, `1h30m`, `90s` -> `1m30s`, `0.5s`."""
    whole = int(seconds)
    if whole != seconds or whole == 0:
        return f"{seconds:g}s"
    parts = []
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= factor:
            parts.append(f"{whole // factor}{unit}")
            whole %= factor
    return "".join(parts)


def _fraction_text(value: Fraction) -> str:
    """`2`, `0.25`; `1/3` where no short decimal is exact."""
    if value.denominator == 1:
        return str(value.numerator)
    decimal = f"{float(value):.6g}"
    return decimal if Fraction(decimal) == value else f"{value.numerator}/{value.denominator}"


def _parse_time(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"time must be a duration like 90, 30m, 2h or 1h30m, not {text!r}") from None


_PARSERS = {"gpus": parse_gpus, "cpus": _parse_cpus, "mem": parse_size, "time": _parse_time}
