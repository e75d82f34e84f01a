"""Estimate pi by Monte Carlo: a tiny, dependency-free experiment for batchrun.

Usage: python3 pi.py --samples=100000 --seed=1 [--method=uniform|stratified]

Writes result.json into the job's log directory (batchrun sets
BATCHRUN_LOG_DIR for every job), or into the current directory otherwise.
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


def estimate(samples, seed, method):
    rng = random.Random(seed)
    inside = 0
    if method == "uniform":
        for _ in range(samples):
            x, y = rng.random(), rng.random()
            inside += x * x + y * y <= 1.0
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
    result = {
        "samples": used,
        "seed": seed,
        "method": method,
        "estimate": pi_hat,
        "abs_error": abs(pi_hat - math.pi),
        "seconds": round(time.time() - started, 4),
    }
    out_dir = os.environ.get("BATCHRUN_LOG_DIR", ".")
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"pi ~ {pi_hat:.6f} (error {result['abs_error']:.2e}) from {used} samples, seed {seed}, {method}")


if __name__ == "__main__":
    main()
