"""Everything that touches doit: the journal backend, the task runner, doit commands and the task builders.

The only folder that imports doit; users reach it through `batchrun.dodo`.
"""
