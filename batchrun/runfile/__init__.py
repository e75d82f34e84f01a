"""The runfile model: runfile text -> jobs, the compact job table, and following a file as it grows."""
