"""The local scheduler: slots for -j, and the machine's CPUs, memory and GPUs packed by what each job asks.

Each of a launch's worker threads (as many as -j) asks `take` for a job's
slot and resources and blocks until they fit; `give` returns them. A slot is
`BATCHRUN_SLOT` (the lowest free one, 0..-j-1) and caps the jobs at once.
What a job asks for is its directive's `Request` (`batchrun.resources`); a
job that asks nothing takes no CPUs or memory (-j alone bounds it, as
before requests existed) and, under `--gpus`, 1/K of a GPU (K =
`--jobs-per-gpu`), on its slot's GPU (slot s -> GPU s mod len) when that
one has room, so plain jobs are placed exactly as before.

Placement: whole GPUs go to a job wholly (the lowest-numbered free ones); a
fraction goes to the fullest GPU it fits on (best fit), so shared GPUs fill
up before whole ones are broken into.

The reservation rule (one reservation, no runtimes needed): the job that
has waited longest is the only one with a reservation. A job behind it may
start when it fits and takes nothing the reserved job is waiting for (it
leaves the reserved job as close to fitting as before: as many of the CPUs,
memory and whole or shared GPU it asks are free). So a big job is never
starved by a stream of small ones (what it waits for only accumulates), and
it holds back only the jobs that would take what it needs, and only until
it starts.

Jobs a killed launch left running keep what their start record says they
hold (`hold`), counted from before the first new job starts.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from batchrun.errors import UsageError
from batchrun.launch.capacity import Capacity, Need
from batchrun.resources import Request, format_size, parse_size

__all__ = ["Grant", "Scheduler", "parse_holds"]

# How often a waiting job looks whether the launch is stopping (a stop frees no resource to wake it).
_STOP_POLL = 0.25
_ONE = Fraction(1)
_ZERO = Fraction(0)


@dataclass(frozen=True)
class Grant:
    """What one job holds while it runs: its slot and, locally, its GPUs (with their shares), CPUs and memory."""

    slot: int
    gpus: tuple[tuple[str, Fraction], ...] = ()
    cpus: int = 0
    mem: int = 0
    # Taken while the slot's job still runs: the job waits behind it (`Scheduler.take`).
    queued: bool = False

    @property
    def gpu_ids(self) -> list[str]:
        return [gpu for gpu, _share in self.gpus]

    def holds(self) -> str | None:
        """The start record's text of it (`gpu=0,1;cpus=8;mem=64G`, `gpu=3(1/4)`); None when it holds only a slot."""
        parts = []
        if self.gpus:
            shares = [share for _gpu, share in self.gpus]
            ids = ",".join(self.gpu_ids)
            parts.append(f"gpu={ids}" if all(s == _ONE for s in shares) else f"gpu={ids}({shares[0]})")
        if self.cpus:
            parts.append(f"cpus={self.cpus}")
        if self.mem:
            parts.append(f"mem={format_size(self.mem)}")
        return ";".join(parts) or None


def parse_holds(text: str | None, slot: int = -1) -> Grant:
    """The `Grant` a start record's holds text describes; a damaged text holds nothing it cannot read."""
    gpus: list[tuple[str, Fraction]] = []
    cpus = mem = 0
    for part in (text or "").split(";"):
        key, _, value = part.partition("=")
        try:
            if key == "gpu":
                ids, _, share = value.partition("(")
                fraction = Fraction(share.rstrip(")")) if share else _ONE
                gpus = [(gpu, fraction) for gpu in ids.split(",") if gpu]
            elif key == "cpus":
                cpus = int(value)
            elif key == "mem":
                mem = parse_size(value)
        except (ValueError, ZeroDivisionError):
            continue
    return Grant(slot, tuple(gpus), cpus, mem)


def _never() -> bool:
    return False


class Scheduler:
    """Slots 0..N-1 and, with a `Capacity`, the machine's resources; thread-safe.

    Without a capacity (a cluster executor: the cluster places jobs) it
    hands out slots only, as the slot pool before it did.
    """

    def __init__(self, slots: int, capacity: Capacity | None = None, queue_young: float = 0.0) -> None:
        self._slots = list(range(slots))
        # A job that asks only for a slot may queue behind a busy slot's job that
        # started less than this long ago (seconds; 0: never), and at most one
        # per slot: its executor starts it the moment that one ends (`queued`).
        self._queue_young = queue_young
        self._since: dict[int, float] = {}  # busy slot -> when its job took it (monotonic)
        self._queued: set[int] = set()  # busy slots with a job queued behind
        self._line: deque[object] = deque()  # a turn for each job waiting for a slot only, in the order they came
        self._cond = threading.Condition()
        self.capacity = capacity
        self._cpus = capacity.cpus if capacity else 0
        self._mem = capacity.mem if capacity else 0
        self._gpus: dict[str, Fraction] = dict.fromkeys(capacity.gpus, _ONE) if capacity else {}
        self._waiting: list[Need] = []  # jobs that did not fit yet, longest waiting first
        self._held: dict[str, Grant] = {}  # adopted jobs' holdings, by job id, until their thread takes them

    # -- jobs a killed launch left running ------------------------------------

    def hold(self, job_id: str, holds: str | None) -> None:
        """An adopted job holds what its start record says, from now on (even beyond the capacity)."""
        grant = parse_holds(holds)
        with self._cond:
            self._held[job_id] = grant
            self._apply(grant, -1)

    def release(self, job_id: str) -> None:
        """An adopted job no thread came to has ended: what it held is free."""
        with self._cond:
            grant = self._held.pop(job_id, None)
            if grant is not None:
                self._apply(grant, +1)
                self._cond.notify_all()

    # -- taking and giving ----------------------------------------------------

    def take(self, job_id: str, request: Request | None, stop: Callable[[], bool] = _never, queue: bool = False, again: bool = False) -> Grant | None:
        """A slot and what `request` asks, once they fit (an adopted job: a slot, beside what it holds); None once `stop` says so.

        `queue`: with no slot free, a job that asks nothing else may take a
        slot whose job started just now, queued behind it (`Grant.queued`).
        `again`: the job was given back unstarted by the slot it queued
        behind; it queued from the head of the line, and goes back there,
        ahead of every job that came since.

        Raises:
            UsageError: the request can never fit (a line added while the launch ran).
        """
        with self._cond:
            held = self._held.pop(job_id, None) if self._held else None
            capacity = self.capacity
            # The common case first: a job that asks nothing of a launch without GPUs needs only a slot.
            need = None if capacity is None or (request is None and not capacity.gpus) else capacity.need(request)
            if held is not None or need is None or need.empty:
                # First come, first served: a job given back by the slot it waited behind keeps its turn.
                line, turn = self._line, object()
                if again:
                    line.appendleft(turn)
                else:
                    line.append(turn)
                try:
                    while line[0] is not turn or not self._slots:
                        if stop():
                            if held is not None:
                                self._held[job_id] = held
                            return None
                        behind = self._young_slot() if queue and held is None and line[0] is turn else None
                        if behind is not None:
                            self._queued.add(behind)
                            return Grant(behind, queued=True)
                        self._cond.wait(_STOP_POLL)
                    slot = heapq.heappop(self._slots)
                finally:
                    line.remove(turn)
                    if line:
                        self._cond.notify_all()
                self._since[slot] = time.monotonic()
                return Grant(slot, held.gpus, held.cpus, held.mem) if held is not None else Grant(slot)
            assert capacity is not None
            refusal = capacity.refusal(request)
            if refusal is not None:
                raise UsageError(f"job {job_id} asks for {refusal}")
            self._waiting.append(need)
            try:
                while not stop():
                    grant = self._place(need) if self._slots else None
                    if grant is not None:
                        return grant
                    self._cond.wait(_STOP_POLL)
                return None
            finally:
                self._waiting.remove(need)
                self._cond.notify_all()  # the reservation may have moved on

    def give(self, grant: Grant, withdrawn: bool = False) -> None:
        """A job ended (or a queued one was given back): its slot and resources are free, or its slot is the other holder's.

        A slot with a job queued behind has two holders; whichever gives it
        back first leaves it to the other, whatever their order (the queued
        job started as the first ended, or was given back unstarted). The
        slot's job is young again when a job that ran leaves (the queued one
        took over); a queued job `withdrawn` (given back unstarted) leaves the
        running job's age as it was, or the next job in line would queue
        behind a long job anew, and be given back, again and again while it
        runs.
        """
        with self._cond:
            self._apply(grant, +1)
            if grant.slot in self._queued:
                self._queued.discard(grant.slot)
                if not withdrawn:
                    self._since[grant.slot] = time.monotonic()  # the queued job took over the slot as this one ended
            else:
                self._since.pop(grant.slot, None)
                heapq.heappush(self._slots, grant.slot)
            self._cond.notify_all()

    def _young_slot(self) -> int | None:
        """The busy slot with no job queued behind whose job started last, if less than `queue_young` ago."""
        if not self._queue_young:
            return None
        since, slot = max(((t, s) for s, t in self._since.items() if s not in self._queued), default=(0.0, None))
        return slot if slot is not None and time.monotonic() - since < self._queue_young else None

    def _apply(self, grant: Grant, sign: int) -> None:
        self._cpus += sign * grant.cpus
        self._mem += sign * grant.mem
        for gpu, share in grant.gpus:
            if gpu in self._gpus:
                self._gpus[gpu] += sign * share

    # -- placing --------------------------------------------------------------

    def _place(self, need: Need) -> Grant | None:
        """Place `need` now if it fits and takes nothing the reserved job waits for; takes the slot."""
        if need.cpus > self._cpus or need.mem > self._mem:
            return None
        slot = self._slots[0]
        gpus = self._pick_gpus(need, slot)
        if gpus is None:
            return None
        grant = Grant(slot, gpus, need.cpus, need.mem)
        reserved = self._waiting[0]
        if reserved is not need:
            before = self._progress(reserved)
            self._apply(grant, -1)
            after = self._progress(reserved)
            self._apply(grant, +1)
            if after < before:
                return None
        heapq.heappop(self._slots)
        self._since[slot] = time.monotonic()
        self._apply(grant, -1)
        return grant

    def _pick_gpus(self, need: Need, slot: int) -> tuple[tuple[str, Fraction], ...] | None:
        if not need.gpus:
            return ()
        free = self._gpus
        if need.gpus >= 1 and need.gpus.denominator == 1 and not need.legacy:
            whole = [gpu for gpu, left in free.items() if left >= _ONE][: int(need.gpus)]
            return tuple((gpu, _ONE) for gpu in whole) if len(whole) == need.gpus else None
        if need.legacy:
            own = list(free)[slot % len(free)]
            if free[own] >= need.gpus:
                return ((own, need.gpus),)
        # Best fit: the fullest GPU it fits on (the first such in the list).
        fits = [(left, i, gpu) for i, (gpu, left) in enumerate(free.items()) if left >= need.gpus]
        if not fits:
            return None
        _left, _i, gpu = min(fits)
        return ((gpu, need.gpus),)

    def _progress(self, need: Need) -> _Progress:
        """For each kind the reserved job asks: whether what is free now covers all of it, else how much is free."""
        gpus: Fraction | int = 0
        if need.gpus >= 1 and need.gpus.denominator == 1 and not need.legacy:
            gpus = min(int(need.gpus), sum(1 for left in self._gpus.values() if left >= _ONE))
        elif need.gpus:
            gpus = min(need.gpus, max(self._gpus.values(), default=_ZERO))
        return _Progress(min(self._cpus, need.cpus), min(self._mem, need.mem), gpus)


@dataclass(frozen=True)
class _Progress:
    """How close a job is to fitting, per kind; `a < b`: `a` is worse in some kind."""

    cpus: int
    mem: int
    gpus: Fraction | int

    def __lt__(self, other: _Progress) -> bool:
        return self.cpus < other.cpus or self.mem < other.mem or self.gpus < other.gpus
