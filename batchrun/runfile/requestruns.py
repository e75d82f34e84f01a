"""The requests of a runfile's jobs, kept per run of lines: one entry per directive, not one per job.

A directive (`# batchrun: gpus=2 cpus=8`) applies to the jobs after it, up
to the next one, so a job table stores where each run of jobs with one
request starts and that request: a runfile with three directives costs
three entries whatever its length, and one with none costs nothing. A
job's request is found by bisection (`at`).

Pure: no I/O.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Collection, Iterator

from batchrun.resources import Request

__all__ = ["RequestRuns"]


class RequestRuns:
    """Runs of consecutive jobs (by index in their table) that ask for the same request; None: no request."""

    __slots__ = ("_requests", "_starts")

    def __init__(self) -> None:
        self._starts = array("q")  # the index of each run's first job, increasing
        self._requests: list[Request | None] = []

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestRuns):
            return NotImplemented
        return self._starts == other._starts and self._requests == other._requests

    __hash__ = None  # type: ignore[assignment]  # mutable

    def at(self, index: int) -> Request | None:
        """The request of the job at `index`."""
        if not self._starts:
            return None
        run = bisect_right(self._starts, index) - 1
        return self._requests[run] if run >= 0 else None

    def each(self, count: int) -> Iterator[Request | None]:
        """The requests of jobs 0..count-1, in order, without a search per job."""
        starts, requests = self._starts, self._requests
        current: Request | None = None
        run = 0
        for index in range(count):
            while run < len(starts) and starts[run] <= index:
                current = requests[run]
                run += 1
            yield current

    def distinct(self) -> list[Request]:
        """Every request some run asks for (not None), each once."""
        return list(dict.fromkeys(request for request in self._requests if request is not None))

    def note(self, index: int, request: Request | None) -> None:
        """The job at `index` (the next one appended) asks for `request`: start a run if it differs from the last."""
        request = request or None  # an empty request is no request
        if self._starts and self._starts[-1] == index:
            # A directive with no job before the next one: the later one counts.
            self._requests[-1] = request
            if len(self._starts) > 1 and self._requests[-2] == request:
                self._starts.pop()
                self._requests.pop()
            return
        last = self._requests[-1] if self._requests else None
        if request != last:
            self._starts.append(index)
            self._requests.append(request)

    def drop(self, dropped: Collection[int]) -> None:
        """Jobs at these indices left their table: the runs' starts move back by the jobs dropped before them."""
        if not self._starts or not dropped:
            return
        order = sorted(dropped)
        kept = RequestRuns()
        gone = 0
        for start, request in zip(self._starts, self._requests, strict=True):
            while gone < len(order) and order[gone] < start:
                gone += 1
            kept.note(start - gone, request)
        self._starts, self._requests = kept._starts, kept._requests

    def truncate(self, count: int) -> None:
        """Only jobs 0..count-1 stay: runs that start after them go (one that starts at `count` stays in effect for the next job appended)."""
        while self._starts and self._starts[-1] > count:
            self._starts.pop()
            self._requests.pop()

    def extend(self, other: RequestRuns, offset: int) -> None:
        """Jobs whose runs `other` holds were appended from index `offset` on: their runs follow this one's."""
        for start, request in zip(other._starts, other._requests, strict=True):
            self.note(offset + start, request)

    def clear(self) -> None:
        self._starts = array("q")
        self._requests = []
