"""What a job reports: the metrics-file protocol (`batchrun.log`), reading it, its cache, and `--scrape`.

Kept cheap to import: `import batchrun` loads the client from here.
"""
