"""Estimate pi by Monte Carlo: a tiny, dependency-free experiment for batchrun.

Usage: python3 pi.py --samples=100000 --seed=1 [--method=uniform|stratified]

Reports its metrics the way any program can, with no import: one JSON line
per history point, appended to the file $BATCHRUN_METRICS names (batchrun
sets it for every job; in Python, `batchrun.log` does the same). The history
is the running error as points are drawn; the last line is the summary.
`batchrun results grid.yml` and `batchrun report grid.yml` read them.
"""

import json
import math
import os
import random
import sys
import time


def parse_args(argv):
    args = {"samples": "100000", "seed": "0", "method": "uniform"}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            sys.exit(f"pi.py: expected --key=value, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        if key not in args:
            sys.exit(f"pi.py: unknown option --{key}")
        args[key] = value
    return int(args["samples"]), int(args["seed"]), args["method"]


def log(line):
    """Append one JSON line to $BATCHRUN_METRICS (the whole protocol); nothing outside batchrun."""
    path = os.environ.get("BATCHRUN_METRICS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def estimate(samples, seed, method):
    rng = random.Random(seed)
    inside = 0
    if method == "uniform":
        every = max(1, samples // 20)
        for drawn in range(1, samples + 1):
            x, y = rng.random(), rng.random()
            inside += x * x + y * y <= 1.0
            if drawn % every == 0:
                log({"abs_error": abs(4.0 * inside / drawn - math.pi), "_step": drawn})
    elif method == "stratified":
        side = max(1, int(math.sqrt(samples)))
        for i in range(side):
            for j in range(side):
                x, y = (i + rng.random()) / side, (j + rng.random()) / side
                inside += x * x + y * y <= 1.0
        samples = side * side
    else:
        sys.exit(f"pi.py: unknown method {method!r}")
    return 4.0 * inside / samples, samples


def main():
    samples, seed, method = parse_args(sys.argv[1:])
    started = time.time()
    pi_hat, used = estimate(samples, seed, method)
    result = {"estimate": pi_hat, "abs_error": abs(pi_hat - math.pi), "seconds": round(time.time() - started, 4)}
    log({"_summary": result})
    print(f"pi ~ {pi_hat:.6f} (error {result['abs_error']:.2e}) from {used} samples, seed {seed}, {method}")


if __name__ == "__main__":
    main()
