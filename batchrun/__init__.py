"""batchrun: launch, track and resume batches of shell commands on doit."""

from batchrun._metrics_client import log, summary

__all__ = ["__version__", "log", "summary"]

__version__ = "0.1.0"
