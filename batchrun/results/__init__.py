"""What each run found: the results table, its views, the report and the best value so far.

`batchrun.results.load(target)` is the public way to the rows from Python.
"""

from batchrun.results.table import load

__all__ = ["load"]
