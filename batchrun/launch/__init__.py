"""A launch as a chain of steps: options, plan, settle, run, stop, control, the live queue.

Below it: the record store (`store`), the runfile model (`runfile`), the
executors and the sweeps; above it: the read-only views (`status`), the doit
layer (`_doit`) and the CLI.
"""
