"""The records of a runs directory: its lock, the journal, the metadata.json view, repairs, and the fast-path caches.

The journal is the one source of truth; metadata.json is the view the original
tool's users read. Nothing here knows how jobs are run.
"""
