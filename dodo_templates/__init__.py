"""dodo.py templates for `batchrun init`; installed as batchrun.templates."""
