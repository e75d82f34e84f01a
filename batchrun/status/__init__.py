"""The read-only state of a runs directory: job states, job look-up, previews of a launch, and the outcome.

Read without the launch's lock, so every command here works while a launch runs.
"""
