"""A million-line command-line sweep: `batchrun sweep` writes it, `batchrun run --dry-run` streams it.

    .venv/bin/python benchmarks/notation.py

Runs each command in a fresh process and prints wall time and peak RSS (the
child's ru_maxrss), for 1,000 lines and for 1,000,000: flat memory shows as
the same peak for both. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "braces": ["python train.py --a={1..1000} --b={1..N}"],
    "parallel": ["python train.py --a {1} --b {2}", ":::", *map(str, range(1000)), ":::", "SEQ"],
    "hydra": ["python", "app.py", "-m", "a=range(1000)", "b=range(N)"],
}


def measure(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "batchrun", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> None:
    print(f"{'notation':<10} {'lines':>10} {'command':<14} {'wall s':>8} {'peak MB':>8}")
    for name, words in CASES.items():
        for n in (1, 1000):
            expanded: list[str] = []
            for word in words:
                if word == "SEQ":
                    expanded += [str(i) for i in range(n)]
                else:
                    expanded.append(word.replace("{1..N}", f"{{1..{n}}}").replace("range(N)", f"range({n})"))
            with tempfile.TemporaryDirectory() as tmp:
                for command in (["sweep", "-o", "out.runfile"], ["run", "--dry-run"]):
                    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the small case first.
                    wall, peak = measure([*command, *expanded], Path(tmp))
                    print(f"{name:<10} {1000 * n:>10,} {command[0] + (' --dry-run' if command[0] == 'run' else ''):<14} {wall:>8.2f} {peak:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
