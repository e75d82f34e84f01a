"""What a job asks of a Dask worker: its request as Dask worker resources, and the check that some worker offers them.

A job's request (`batchrun.resources`) becomes abstract worker resources,
named as in Dask's documentation: `GPU` (a count, fractions allowed),
`CPU` and `MEMORY` (bytes). Dask runs a task asking resources only on a
worker started with at least as much (`dask worker --resources "GPU=2
CPU=16 MEMORY=64e9"`), and only as many at once as the worker's amounts
allow; a task no worker can run would wait forever, so a job whose
resources no worker offers is one clear line instead. Workers started
without `--resources` (and those of the local cluster batchrun starts) offer none.
"""

from __future__ import annotations

from typing import Any

from batchrun.errors import ExecutorError
from batchrun.executors.dask.client import one_line
from batchrun.resources import Request

__all__ = ["check_offered", "worker_resources"]


def worker_resources(request: Request | None) -> dict[str, float]:
    """The Dask worker resources a job asks for; {} when it asks none."""
    if request is None:
        return {}
    resources: dict[str, float] = {}
    if request.gpus:
        resources["GPU"] = float(request.gpus)
    if request.cpus:
        resources["CPU"] = float(request.cpus)
    if request.mem:
        resources["MEMORY"] = float(request.mem)
    return resources


def check_offered(client: Any, resources: dict[str, float], offered: set[tuple[tuple[str, float], ...]], job_id: str) -> None:
    """Refuse, in one line, a job whose resources no worker of the cluster offers now.

    `offered` remembers the resources some worker was seen to offer, so the
    scheduler is asked once per distinct request.

    Raises:
        ExecutorError: no worker offers them (naming what the workers offer and how to start one that does).
    """
    key = tuple(sorted(resources.items()))
    if key in offered:
        return
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except Exception as err:  # noqa: BLE001 - Dask raises many kinds for a lost scheduler
        raise ExecutorError(f"cannot ask the Dask scheduler which workers offer {_text(resources)}: {one_line(err)}") from err
    kinds = [dict(info.get("resources") or {}) for info in workers.values()]
    if any(all(worker.get(name, 0) >= amount for name, amount in resources.items()) for worker in kinds):
        offered.add(key)
        return
    seen = sorted({_text(worker) for worker in kinds if worker}) or ["none"]
    raise ExecutorError(
        f"job {job_id} asks the Dask workers for {_text(resources)}, which none of the {len(workers)} workers offers "
        f"(they offer: {'; '.join(seen)}); start workers with: dask worker ADDRESS --resources \"{_text(resources)}\""
    )


def _text(resources: dict[str, float]) -> str:
    return " ".join(f"{name}={amount:g}" for name, amount in sorted(resources.items()))
