"""batchrun: launch, track and resume batches of shell commands on doit."""

__version__ = "0.1.0"
