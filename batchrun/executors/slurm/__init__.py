"""The SLURM executor: jobs as tasks of job arrays, submitted with sbatch and followed with squeue."""
