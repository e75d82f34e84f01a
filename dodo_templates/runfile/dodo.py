"""Run every line of experiments.runfile as a doit task, with batchrun's records.

    doit -n 4                 # run what has not finished, 4 at a time
    doit list --all           # one task per line: experiments:<job id>   <command>
    batchrun status experiments.runfile

Each line is a task `experiments:<job id>`; the job id is the SHA-256 of the
command, so editing a line makes it a new job and only new lines run. Logs
and metadata.json go to runs/experiments/, exactly as with
`batchrun launch experiments.runfile`: the two are interchangeable.
"""

from batchrun.dodo import DOIT_CONFIG, runfile_tasks  # noqa: F401 (doit reads DOIT_CONFIG)


def task_experiments():
    """Every line of experiments.runfile."""
    # retry_failed=True would also rerun jobs that failed in an earlier run;
    # env={"OMP_NUM_THREADS": "1"} would add variables to every job.
    yield from runfile_tasks("experiments.runfile")


def task_report():
    """Runs once every experiment has succeeded (task_dep on the whole group)."""
    return {
        "actions": ["echo 'every experiment succeeded: see runs/experiments/metadata.json'"],
        "task_dep": ["experiments"],
        "verbosity": 2,
    }
