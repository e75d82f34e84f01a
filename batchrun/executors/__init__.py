"""Where jobs run. `local` runs them as processes of this machine.

Executors for clusters plug in here; the launch only needs a way to start a
job with its log directory and environment, wait for it, and stop it.
"""
