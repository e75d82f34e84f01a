"""A stand-in for a training script: takes --key=value, logs its loss as batchrun reads metrics.

Each epoch's loss goes to batchrun's metrics file ($BATCHRUN_METRICS, one JSON
line per call): `batchrun results grid.yml` tables it, `batchrun report
grid.yml` plots it. `batchrun.log` writes those lines; a python without
batchrun installed appends them by hand, which is the whole protocol.
"""

import json
import os
import sys

try:
    from batchrun import log
except ImportError:  # run by a python without batchrun: the same line, by hand

    def log(values, step=None):
        path = os.environ.get("BATCHRUN_METRICS")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({**values, **({"_step": step} if step is not None else {})}) + "\n")


args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
final = float(args["lr"]) * 10 / int(args["layers"]) + int(args["seed"]) * 0.01
for epoch in range(5):
    loss = final * (1 + 2 / (epoch + 1))
    log({"loss": loss}, step=epoch)
print(f"loss={loss:.4f}")
