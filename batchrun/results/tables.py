"""The results as text: the aligned table and CSV of `batchrun results`, and how numbers and durations read.

Shared by the CLI and the doit task `results_task`, so both print the same table.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from batchrun.store.records import USAGE_FIELDS

__all__ = ["format_duration", "format_text_cells", "format_value", "mean_text", "typed_value", "warn_skipped", "write_csv", "write_csv_windows", "write_table", "write_table_windows"]

# The short job id of tables; the full one is in --json and --csv.
_SHORT_ID = 8
_NUMBER_CHARS = "0123456789+-.eE"
_BOOLEANS = {"True": True, "true": True, "False": False, "false": False}


def format_duration(seconds: float | None) -> str:
    """`0.31s`, `12.0s`, `4m05s`, `2h03m`; `-` for unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_value(value: Any) -> str:
    """A cell of any table (status, results, --over, --best): floats with 6 significant digits, booleans as true/false, None as blank."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def typed_value(value: str | bool) -> Any:
    """A flag's text as the number or boolean it spells (as YAML wrote it into the gridspec), else the text."""
    if isinstance(value, bool):
        return value
    # Only digits, signs, points and exponents can be numbers: no regex, and float() never sees "nan" or "1_000".
    if value and not value.strip(_NUMBER_CHARS):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
        return value
    if value in _BOOLEANS:
        return _BOOLEANS[value]
    return value


def format_text_cells(values: list[Any]) -> list[str]:
    """Cells of parameters as commands spell them (`--lr=0.21693951420108287`), shown as `results` shows the same values.

    Each distinct text is read once: a sweep's columns repeat a few values many times.
    """
    seen: dict[Any, str] = {}
    cells = []
    for value in values:
        cell = seen.get(value)
        if cell is None:
            cell = seen[value] = format_value(typed_value(value) if isinstance(value, str) else value)
        cells.append(cell)
    return cells


def warn_skipped(lines: list[str]) -> None:
    """What reading skipped, one warning line per reason, on stderr."""
    for line in lines:
        sys.stderr.write(f"batchrun: warning: {line}\n")


def write_csv(out: IO[str], rows: list[dict[str, Any]], params: list[str], metrics: list[str], grouped: bool) -> None:
    """Rows as CSV: every column, floats to the last digit (`repr`), None as empty."""
    write_csv_windows(out, iter([rows]), params, metrics, grouped)


def write_csv_windows(out: IO[str], windows: Iterator[list[dict[str, Any]]], params: list[str], metrics: list[str], grouped: bool) -> None:
    """`write_csv` of rows made a window at a time."""
    writer = csv.writer(out, lineterminator="\n")
    if grouped:
        header = [*params, "runs", *(f"{m}{suffix}" for m in metrics for suffix in ("", "_std", "_n"))]
    else:
        header = ["line", "job_id", "state", *params, *metrics, "runtime", *USAGE_FIELDS, "code", "command", "log_dir"]
    writer.writerow(header)
    for rows in windows:
        writer.writerows([_csv_cell(row.get(name)) for name in header] for row in rows)


def _csv_cell(value: Any) -> Any:
    """Floats to the last digit (`repr`), booleans as in every table, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return format_value(value) if value is True or value is False else value


def write_table(out: IO[str], rows: list[dict[str, Any]], params: list[str], metrics: list[str], grouped: bool) -> None:
    """Rows as aligned columns (grouped rows: mean ± std (count) per metric)."""
    write_table_windows(out, lambda: iter([rows]), params, metrics, grouped)


def write_table_windows(out: IO[str], windows: Callable[[], Iterator[list[dict[str, Any]]]], params: list[str], metrics: list[str], grouped: bool = False) -> None:
    """`write_table` of rows made a window at a time (`windows` is called twice: once for the widths, once to print)."""
    columns = _table_columns([], params, metrics, grouped)
    names = [name for name, _, _ in columns]
    widths = [len(name) for name in names]
    # Numbers right-aligned, as in any table of figures; texts left. A column of
    # numbers (True) has only number texts: checked as those told from their cells (None).
    numeric = [kind is not False for _, _, kind in columns]
    for rows in windows():
        for k, (_, cells, _) in enumerate(_table_columns(rows, params, metrics, grouped)):
            widths[k] = max(widths[k], max(map(len, cells), default=0))
            if numeric[k]:
                numeric[k] = all(map(_is_number_text, cells))
    out.write("  ".join(name.rjust(width) if right else name.ljust(width) for name, width, right in zip(names, widths, numeric, strict=True)).rstrip() + "\n")
    for rows in windows():
        columns = _table_columns(rows, params, metrics, grouped)
        padded = [[text.rjust(width) if right else text.ljust(width) for text in cells] for (_, cells, _), width, right in zip(columns, widths, numeric, strict=True)]
        out.write("".join("  ".join(line).rstrip() + "\n" for line in zip(*padded, strict=True)))


def _table_columns(rows: list[dict[str, Any]], params: list[str], metrics: list[str], grouped: bool) -> list[tuple[str, list[str], bool | None]]:
    """The table's columns of these rows: name, cells, numeric (None: tell from the cells)."""
    # Built a column at a time: one formatting rule per column, not one test per cell (100,000 rows).
    columns: list[tuple[str, list[str], bool | None]]
    if grouped:
        columns = [(p, _cells([row.get(p) for row in rows]), None) for p in params]
        columns.append(("runs", [str(row["runs"]) for row in rows], True))
        columns += [(m, [mean_text(row, m) for row in rows], None) for m in metrics]
    else:
        columns = [
            ("line", _cells([row["line"] for row in rows]), None),
            ("id", [row["job_id"][:_SHORT_ID] for row in rows], False),
            ("state", [row["state"] for row in rows], False),
        ]
        for name in (*params, *metrics):
            values = [row.get(name) for row in rows]
            kinds = {type(value) for value in values}
            columns.append((name, _cells(values), True if kinds <= {int, float, type(None)} else None))
        columns.append(("runtime", [_runtime(row["runtime"]) for row in rows], None))
    return columns


def _cells(values: list[Any]) -> list[str]:
    return [f"{value:.6g}" if type(value) is float else format_value(value) for value in values]


def mean_text(row: dict[str, Any], metric: str) -> str:
    """`0.0231976 ± 0.00851234`: a metric's mean and standard deviation over a group's runs.

    The group's `runs` column counts them; `(2 of 3)` says when fewer runs have the metric.
    """
    if row.get(metric) is None:
        return ""
    n = row[f"{metric}_n"]
    count = f" ({n} of {row['runs']})" if n != row.get("runs") else ""
    return f"{format_value(row[metric])} ± {format_value(row[f'{metric}_std'])}{count}"


def _runtime(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.2f}s" if seconds < 10 else format_duration(seconds)


def _is_number_text(text: str) -> bool:
    if not text:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
