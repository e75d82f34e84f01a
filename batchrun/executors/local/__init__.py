"""The local executor: each job a process of this machine, started by a long-lived helper per slot."""
