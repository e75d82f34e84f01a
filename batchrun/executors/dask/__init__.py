"""The Dask executor: one Dask task per job attempt, one supervised subprocess per task on a worker."""
