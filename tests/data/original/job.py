"""A job for the original batchrun's recorded runs: prints its x, fails for x=2."""

import sys

x = int(sys.argv[1].split("=")[1])
print(f"x={x}")
if x == 2:
    print("x=2 fails on purpose", file=sys.stderr)
    sys.exit(3)
