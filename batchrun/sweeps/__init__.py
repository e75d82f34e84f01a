"""Sweeps: gridspecs (the original format and W&B's) expanded to commands, bayes search, hyperband and its monitor."""
