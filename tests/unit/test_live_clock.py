"""The live clock's step gap (``min_step_s``) coalesces bursts of submissions into one
cycle; a reclaim deadline is not held back by it (at speed 60 the 50 ms gap was up to
3 s of lateness, and the job the room was reclaimed for started that much late)."""

from __future__ import annotations

import threading
import time

import pytest

from cotenant.server.runner import LiveClock

SPEED = 1000  # 100 simulated s = 0.1 s of wall time
GAP_S = 1.0


def clock_with(deadlines: list[int]) -> LiveClock:
    lock = threading.Lock()
    lock.acquire()  # the engine thread holds it; waiting lets go of it
    clock = LiveClock(
        1_700_000_000,
        SPEED,
        lock,
        lambda: None,
        GAP_S,
        lambda: min(deadlines) if deadlines else None,
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
