"""The live clock's step gap (``min_step_s``) coalesces bursts of submissions into one
cycle; a reclaim deadline is not held back by it (at speed 60 the 50 ms gap was up to
3 s of lateness, and the job the room was reclaimed for started that much late). A
deadline's step is at the deadline's own time, and no step starts when a deadline is
nearer than a step takes (bench_live: the jobs that started late all had a deadline
step 1-12 s late: rounding down, wake-up jitter, a step begun just before)."""

from __future__ import annotations

import threading
import time

import pytest

from cotenant.engine.clock import LiveClock

SPEED = 1000  # 100 simulated s = 0.1 s of wall time
GAP_S = 1.0


def clock_with(
    deadlines: list[int], speed: float = SPEED, gap_s: float = GAP_S, guard_s: float = 0.0
) -> LiveClock:
    lock = threading.Lock()
    lock.acquire()  # the engine thread holds it; waiting lets go of it
    clock = LiveClock(
        1_700_000_000,
        speed,
        lock,
        lambda: None,
        gap_s,
        lambda: min(deadlines) if deadlines else None,
        lambda: guard_s,
    )
    clock.wait_until(clock.now())  # a step just happened: the gap runs from now
    return clock


def waited(clock: LiveClock, t: int) -> float:
    began = time.monotonic()
    reached = clock.wait_until(t)
    assert reached >= t
    return time.monotonic() - began


@pytest.mark.parametrize("deadline_later", [False, True], ids=["deadline-next", "none-due"])
def test_a_deadline_is_not_held_back_by_the_step_gap(deadline_later: bool) -> None:
    deadlines: list[int] = []
    clock = clock_with(deadlines)
    t = clock.now() + 100  # 0.1 s away, well inside the 1 s gap
    deadlines.append(t + 10_000 if deadline_later else t)
    took = waited(clock, t)
    if deadline_later:  # the next event is not a deadline: the gap holds
        assert took >= GAP_S * 0.9
    else:
        assert took < GAP_S * 0.6


def test_a_deadlines_step_is_at_the_deadline_itself() -> None:
    """At 10,000 simulated s per wall second, a wake-up a fraction of a millisecond late
    is seconds late: the wall clock rounded down put the step past the deadline."""
    deadlines: list[int] = []
    clock = clock_with(deadlines, speed=10_000, gap_s=0.0)
    for k in range(5):
        d = clock.now() + 200 + k  # 20 ms away
        deadlines[:] = [d]
        assert clock.wait_until(d) == d
        assert clock.now() >= d  # time never goes back, even when the step began early


def test_no_step_starts_when_a_deadline_is_nearer_than_a_step_takes() -> None:
    """Steps take 0.3 s: an event due 0.1 s before a deadline waits for the deadline's
    step (handled in it, a little late) instead of making the deadline wait for its
    step; new work arriving then does not cut the wait short either."""
    deadlines: list[int] = []
    clock = clock_with(deadlines, gap_s=0.0, guard_s=0.3)
    d = clock.now() + 200  # 0.2 s away, nearer than a step takes
    deadlines.append(d)
    threading.Timer(0.05, clock.wake).start()  # a submission arrives meanwhile
    assert clock.wait_until(d - 100) == d


def test_far_from_a_deadline_new_work_still_steps_at_once() -> None:
    deadlines: list[int] = []
    clock = clock_with(deadlines, gap_s=0.0, guard_s=0.3)
    d = clock.now() + 3000  # 3 s away
    deadlines.append(d)
    threading.Timer(0.05, clock.wake).start()
    began = time.monotonic()
    reached = clock.wait_until(d)
    assert reached < d and time.monotonic() - began < 1.0
