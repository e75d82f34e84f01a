"""batchrun: launch, track and resume batches of shell commands on doit."""

from batchrun.metrics.client import log, summary

__all__ = ["__version__", "log", "summary"]

__version__ = "0.1.0"
