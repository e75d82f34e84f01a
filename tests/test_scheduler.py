"""The local scheduler (`launch.scheduler`) and the capacity it packs into (`launch.capacity`), in-process."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import pytest

from batchrun.errors import UsageError
from batchrun.launch.capacity import Capacity, capacity_of, check_plan, check_requests, default_n_jobs, machine_cpus, machine_mem
from batchrun.launch.options import LaunchOptions
from batchrun.launch.scheduler import Grant, Scheduler, parse_holds
from batchrun.resources import Request, parse_request
from batchrun.runfile.file import Job

GIB = 1 << 30


def ask(text: str) -> Request:
    return parse_request(text)


def take(scheduler: Scheduler, request: Request | None, job_id: str = "0" * 16) -> Grant:
    grant = scheduler.take(job_id, request)
    assert grant is not None
    return grant


def try_take(scheduler: Scheduler, request: Request | None, wait: float = 0.3) -> Grant | None:
    """Take in a thread; the grant if it came within `wait` seconds, else None (the thread then stops waiting)."""
    got: list[Grant | None] = []
    gave_up = threading.Event()
    thread = threading.Thread(target=lambda: got.append(scheduler.take("1" * 16, request, gave_up.is_set)), daemon=True)
    thread.start()
    thread.join(wait)
    gave_up.set()
    thread.join(5)
    assert not thread.is_alive()
    return got[0] if got else None


def test_whole_gpus_go_wholly_and_exactly() -> None:
    scheduler = Scheduler(4, Capacity(8, 64 * GIB, ("0", "1", "2", "3")))
    first, second = take(scheduler, ask("gpus=2")), take(scheduler, ask("gpus=2"))
    assert (first.gpu_ids, second.gpu_ids) == (["0", "1"], ["2", "3"])
    assert first.holds() == "gpu=0,1" and parse_holds(first.holds(), first.slot) == first
    assert try_take(scheduler, ask("gpus=2")) is None  # a third waits
    scheduler.give(first)
    third = take(scheduler, ask("gpus=1"))
    assert third.gpu_ids == ["0"]


def test_fractions_share_a_gpu_up_to_a_whole_one_and_fill_the_fullest_first() -> None:
    scheduler = Scheduler(16, Capacity(8, 64 * GIB, ("0", "1")))
    grants = [take(scheduler, ask("gpus=0.25")) for _ in range(6)]
    assert [g.gpu_ids[0] for g in grants] == ["0", "0", "0", "0", "1", "1"]
    assert grants[0].holds() == "gpu=0(1/4)" and parse_holds(grants[0].holds()).gpus == (("0", Fraction(1, 4)),)
    assert try_take(scheduler, ask("gpus=1")) is None  # GPU 1 is half used, GPU 0 full: no whole GPU
    assert take(scheduler, ask("gpus=0.5")).gpu_ids == ["1"]


def test_cpus_and_memory_are_counted() -> None:
    scheduler = Scheduler(4, Capacity(4, 8 * GIB))
    first = take(scheduler, ask("cpus=3"))
    assert first.holds() == "cpus=3"
    assert try_take(scheduler, ask("cpus=3")) is None
    assert take(scheduler, ask("cpus=1 mem=6G")).holds() == "cpus=1;mem=6G"
    assert try_take(scheduler, ask("mem=4G")) is None


def test_a_job_that_asks_nothing_takes_only_a_slot_and_under_gpus_its_slots_gpu() -> None:
    plain = Scheduler(2, Capacity(1, GIB))
    assert take(plain, None) == Grant(0) and take(plain, None) == Grant(1)  # -j alone bounds it
    legacy = Scheduler(6, Capacity(1, GIB, ("4", "5", "6"), jobs_per_gpu=2))
    grants = [take(legacy, None) for _ in range(6)]
    assert [(g.slot, g.gpu_ids) for g in grants] == [(s, [["4", "5", "6"][s % 3]]) for s in range(6)]  # slot s -> GPU s mod 3
    assert grants[0].holds() == "gpu=4(1/2)"
    assert try_take(legacy, None) is None  # no slot; and no GPU would run a third
    assert take(Scheduler(2, Capacity(1, GIB, ("0",))), ask("gpus=0")).gpu_ids == []  # gpus=0: no GPU at all


def test_the_job_waiting_longest_is_not_starved_by_smaller_ones_behind_it() -> None:
    scheduler = Scheduler(8, Capacity(4, 64 * GIB))
    small = [take(scheduler, ask("cpus=1")) for _ in range(3)]
    big: list[Grant | None] = []
    waiter = threading.Thread(target=lambda: big.append(scheduler.take("2" * 16, ask("cpus=4"))), daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert not big
    # One CPU is free, but the big job waits for it: a small job behind it waits too.
    assert try_take(scheduler, ask("cpus=1")) is None
    for grant in small:
        scheduler.give(grant)
    waiter.join(5)
    assert big and big[0] is not None and big[0].cpus == 4


def test_jobs_behind_the_reserved_one_go_ahead_with_what_it_does_not_wait_for() -> None:
    scheduler = Scheduler(8, Capacity(8, 64 * GIB, ("0",)))
    holder = take(scheduler, ask("gpus=1"))
    waiting = threading.Thread(target=lambda: scheduler.take("2" * 16, ask("gpus=1 cpus=2")), daemon=True)
    waiting.start()
    waiting.join(0.3)
    # It waits for the GPU: jobs asking CPUs alone (and no GPU) start while it waits.
    assert take(scheduler, ask("gpus=0 cpus=4")).cpus == 4
    assert try_take(scheduler, ask("gpus=0 cpus=4")) is None  # that would leave it fewer than its 2 CPUs
    assert take(scheduler, ask("gpus=0 cpus=2")).cpus == 2
    scheduler.give(holder)
    waiting.join(5)
    assert not waiting.is_alive()


def test_an_adopted_job_holds_what_its_record_says_until_it_ends() -> None:
    scheduler = Scheduler(4, Capacity(8, 64 * GIB, ("0", "1")))
    scheduler.hold("a" * 16, "gpu=0;cpus=6")
    assert take(scheduler, ask("gpus=1")).gpu_ids == ["1"]
    assert try_take(scheduler, ask("gpus=0 cpus=4")) is None
    adopted = take(scheduler, None, job_id="a" * 16)  # its thread: a slot, beside what it holds
    assert adopted.gpu_ids == ["0"] and adopted.cpus == 6
    scheduler.give(adopted)
    assert take(scheduler, ask("gpus=0 cpus=8")).cpus == 8


def test_an_adopted_job_no_thread_took_is_released() -> None:
    scheduler = Scheduler(4, Capacity(8, 64 * GIB))
    scheduler.hold("a" * 16, "cpus=8")
    assert try_take(scheduler, ask("cpus=1")) is None
    scheduler.release("a" * 16)
    assert take(scheduler, ask("cpus=8")).cpus == 8


def test_a_stopping_launch_ends_the_wait() -> None:
    scheduler = Scheduler(2, Capacity(1, GIB))
    take(scheduler, ask("cpus=1"))
    assert scheduler.take("3" * 16, ask("cpus=1"), lambda: True) is None


def test_a_request_that_can_never_fit_is_refused_not_waited_for() -> None:
    scheduler = Scheduler(2, Capacity(4, GIB, cpus_from="--cpus 4"))
    with pytest.raises(UsageError, match=r"job 0{16} asks for cpus=8, more than the launch's 4 CPUs \(--cpus 4\)"):
        scheduler.take("0" * 16, ask("cpus=8"))


def test_check_requests_names_the_first_line_and_counts_the_others(tmp_path: Path) -> None:
    capacity = Capacity(4, 8 * GIB, ("0", "1"), cpus_from="--cpus 4", mem_from="this machine's", gpus_from="--gpus 0,1")
    check_requests([(1, ask("gpus=2 cpus=4 mem=8G")), (2, None)], capacity, tmp_path / "x.runfile")
    cases = [
        ("gpus=4", "this job asks for gpus=4, more than the launch's 2 GPUs (--gpus 0,1)"),
        ("cpus=5", "this job asks for cpus=5, more than the launch's 4 CPUs (--cpus 4)"),
        ("mem=9G", "this job asks for mem=9G, more than the launch's 8G of memory (this machine's)"),
    ]
    for text, says in cases:
        with pytest.raises(UsageError) as raised:
            check_requests([(1, None), (3, ask(text)), (7, ask(text))], capacity, tmp_path / "x.runfile")
        assert str(raised.value) == f"{tmp_path / 'x.runfile'}:3: {says}; 2 jobs ask too much"
    with pytest.raises(UsageError, match=r"gpus=0.25 but the launch has no GPU \(give them with --gpus 0,1,... or --gpus auto\)$"):
        check_requests([(5, ask("gpus=0.25"))], Capacity(4, GIB), tmp_path / "x.runfile")


def test_detach_refuses_jobs_that_would_have_to_wait_for_room(tmp_path: Path) -> None:
    capacity = Capacity(4, GIB, ("0",))
    check_plan([Job("true", "0" * 16, 1)], capacity, tmp_path / "x.runfile", detach=True)  # plain: on its slot's GPU
    with pytest.raises(UsageError, match=r"x.runfile:2: --detach starts every job at once, so a job that asks for cpus=2 cannot wait"):
        check_plan([Job("true", "0" * 16, 2, ask("cpus=2"))], capacity, tmp_path / "x.runfile", detach=True)
    check_plan([Job("true", "0" * 16, 2, ask("cpus=2"))], None, tmp_path / "x.runfile", detach=True)  # a cluster places it


def test_minus_j_defaults_to_as_many_jobs_as_fit() -> None:
    capacity = Capacity(8, 64 * GIB, ("0", "1", "2", "3"))
    assert default_n_jobs([ask("gpus=0.25")], capacity, 4) == 16
    assert default_n_jobs([ask("gpus=2"), ask("gpus=0 cpus=1")], capacity, 4) == 8
    assert default_n_jobs([ask("cpus=3")], Capacity(8, GIB), 1) == 2
    assert default_n_jobs([ask("time=1h")], Capacity(8, GIB), 1) == 1  # asks nothing counted: -j's own default


def test_the_machine_is_the_default_capacity() -> None:
    capacity = capacity_of(LaunchOptions())
    assert capacity is not None and capacity.cpus == machine_cpus() >= 1 and capacity.mem == machine_mem() > 0
    assert capacity_of(LaunchOptions(cpus=3, mem=GIB, gpus=["7"])) == Capacity(
        3, GIB, ("7",), cpus_from="--cpus 3", mem_from="--mem 1G", gpus_from="--gpus 7"
    )
    assert capacity_of(LaunchOptions(executor="slurm")) is None
