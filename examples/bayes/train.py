"""A toy training run for the bayes example: a noisy learning curve, no libraries needed.

The final validation loss is the Branin function (three equal minima of
0.398) over the learning rate (log scale) and dropout, plus a penalty for
the wrong number of layers, plus noise; the loss falls towards it epoch by
epoch, so hyperband has a history to judge. Each epoch's `val_loss` is
logged with `batchrun.log` when batchrun provides it, else appended as a
JSON line to the file `$BATCHRUN_METRICS` names (batchrun's metrics file).

    python train.py --lr=0.01 --layers=2 --dropout=0.1 [--epochs=27] [--sleep=0.05]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections.abc import Callable

# How much worse each layer count ends: 2 is best.
LAYER_PENALTY = {1: 0.6, 2: 0.0, 3: 0.25}
# Noise of the final loss (one draw per run) and of each epoch's value.
RUN_NOISE, EPOCH_NOISE = 0.15, 0.05


def branin(x1: float, x2: float) -> float:
    """Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887."""
    b, c, r, s, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def final_loss(lr: float, layers: int, dropout: float) -> float:
    """The noiseless loss a run ends at: Branin over log10(lr) in [-4, -1] and dropout in [0, 0.5]."""
    x1 = -5 + 15 * (math.log10(lr) + 4) / 3
    x2 = 15 * dropout / 0.5
    return 0.1 + branin(x1, x2) / 10 + LAYER_PENALTY.get(layers, 1.0)


def curve(lr: float, layers: int, dropout: float, epochs: int, seed: int) -> list[float]:
    """The run's val_loss after each epoch: falling by 20 towards its (noisy) final loss."""
    rng = random.Random(seed)
    end = final_loss(lr, layers, dropout) + rng.gauss(0, RUN_NOISE)
    tau = 4 + layers  # deeper models learn more slowly, whatever their end
    return [end + 20 * math.exp(-(epoch + 1) / tau) + rng.gauss(0, EPOCH_NOISE) for epoch in range(epochs)]


def logger() -> Callable[[dict[str, float]], None]:
    try:
        from batchrun import log as batchrun_log  # batchrun's own, once it provides one
    except ImportError:
        batchrun_log = None
    if callable(batchrun_log):
        return batchrun_log
    path = os.environ.get("BATCHRUN_METRICS")

    def append(row: dict[str, float]) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
    return append


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--dropout", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds per epoch, to watch it run")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (default: from the other arguments)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else hash((args.lr, args.layers, args.dropout)) & 0xFFFF
    log = logger()
    for step, value in enumerate(curve(args.lr, args.layers, args.dropout, args.epochs, seed)):
        time.sleep(args.sleep)
        log({"val_loss": value, "_step": step})
        print(f"epoch {step + 1}: val_loss {value:.4f}", flush=True)


if __name__ == "__main__":
    main()
