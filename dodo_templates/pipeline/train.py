"""A stand-in for a training script: takes --key=value, writes result.json."""

import json
import os
import sys

args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
loss = float(args["lr"]) * 10 / int(args["layers"]) + int(args["seed"]) * 0.01
out = os.path.join(os.environ.get("BATCHRUN_LOG_DIR", "."), "result.json")
with open(out, "w") as f:
    json.dump({**args, "loss": loss}, f)
print(f"loss={loss:.4f}")
