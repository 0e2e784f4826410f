"""Clocks. The engine loop is the same for simulated and live time; only this differs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int: ...

    def wait_until(self, t: int) -> int:
        """Block until ``t`` or until woken; return the time reached."""
        ...

    def wake(self) -> None: ...


class SimClock:
    """Simulated time: waiting is a jump."""

    def __init__(self, start_s: int) -> None:
        self._now = start_s

    def now(self) -> int:
        return self._now

    def wait_until(self, t: int) -> int:
        self._now = max(self._now, t)
        return self._now

    def wake(self) -> None:
        return None


class LaggingClock(SimClock):
    """A fault injector for tests: simulated time whose steps run late, as a loaded live
    server's do. Waiting for ``t`` reaches ``t + lag_s`` (``lag_s`` may be changed between
    steps), and ``jump`` moves time on at once, like a wall clock that leaps (a process
    paused, a host suspended). The twin then sees the timing the live engine sees."""

    def __init__(self, start_s: int, lag_s: int = 0) -> None:
        super().__init__(start_s)
        self.lag_s = lag_s

    def wait_until(self, t: int) -> int:
        self._now = max(self._now, t + self.lag_s)
        return self._now

    def jump(self, s: int) -> None:
        self._now += s


class WallClock:
    """Live time, optionally accelerated (``speed`` simulated seconds per wall second)."""

    def __init__(self, start_s: int | None = None, speed: float = 1.0) -> None:
        self._wall0 = time.time()
        self._sim0 = int(self._wall0) if start_s is None else start_s
        self.speed = speed
        self._woken = threading.Event()

    def now(self) -> int:
        return self._sim0 + int((time.time() - self._wall0) * self.speed)

    def now_exact(self) -> float:
        """Simulated time with its fraction (for measuring lag finer than one second)."""
        return self._sim0 + (time.time() - self._wall0) * self.speed

    def wait_until(self, t: int) -> int:
        # Wait for the wall instant of t itself, not from a rounded-down now(): otherwise
        # every turn drifts by the time the turn took.
        delay = self._wall0 + (t - self._sim0) / self.speed - time.time()
        if delay > 0:
            self._woken.wait(timeout=min(delay, 1.0))
            self._woken.clear()
        return self.now()

    def wake(self) -> None:
        self._woken.set()


DEADLINE_LEAD_S = 0.02  # a deadline's step may begin this many wall seconds early
MAX_GUARD_S = 0.5  # the longest a step is kept from starting before a deadline


class LiveClock(WallClock):
    """The live server's clock: the wall clock, releasing the engine lock while it waits;
    after waiting it runs ``on_wake`` (with the lock held again) so the engine takes new
    submissions.

    Steps are at least ``min_step_s`` apart, so that a burst of submissions makes one
    cycle. A reclaim deadline (``next_deadline``) is kept on time, as the contract's
    grace period ends then and the job the room was reclaimed for is owed it at once
    (bench_live: every job that started late had a deadline step 1-12 s late):

    - it is not held back by the step gap;
    - no step starts when a deadline is nearer than a step takes (``guard_s``: the
      recent steps' duration, at most ``MAX_GUARD_S``): its events wait for the
      deadline's step, rather than the deadline for theirs;
    - the deadline's step begins up to ``DEADLINE_LEAD_S`` of wall time early and is
      the deadline's own time: the wall clock's rounding down and a thread's wake-up
      jitter (a loaded host) no longer make it a second late (at speed 60 one second
      is 17 ms). Time never goes back: ``now`` is at least the time last returned.
    """

    def __init__(
        self,
        start_s: int,
        speed: float,
        lock: threading.Lock,
        on_wake: Callable[[], None],
        min_step_s: float,
        next_deadline: Callable[[], int | None] = lambda: None,
        guard_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        super().__init__(start_s, speed)
        self.lock = lock
        self.on_wake = on_wake
        self.min_step_s = min_step_s
        self.next_deadline = next_deadline
        self.guard_s = guard_s
        self._last = 0.0
        self._floor = start_s  # the latest time returned: now() never goes below it

    def now(self) -> int:
        return max(super().now(), self._floor)

    def wait_until(self, t: int) -> int:
        self.lock.release()
        try:
            reached = self._wait(t)
        finally:
            self.lock.acquire()
        self._last = time.monotonic()
        self.on_wake()
        return reached

    def _until(self, s: int) -> float:
        """Wall seconds until simulated time ``s`` (negative: past)."""
        return self._wall0 + (s - self._sim0) / self.speed - time.time()

    def _wait(self, t: int) -> int:
        gap = self.min_step_s - (time.monotonic() - self._last)
        deadline = self.next_deadline()
        guard = min(max(self.guard_s(), 0.0), MAX_GUARD_S)
        if deadline is None or (deadline > t and self._until(deadline) > guard + DEADLINE_LEAD_S):
            if gap > 0:  # no deadline near: the step gap, then ``t`` or new work
                time.sleep(gap)
            return WallClock.wait_until(self, t)
        # A deadline is next, or too near for a step to run first.
        free = self._until(deadline) - DEADLINE_LEAD_S - guard  # until the guard opens
        if free > 0:  # (only when the deadline is the next event) new work may step first
            if gap > 0:
                time.sleep(min(gap, free))
                free = self._until(deadline) - DEADLINE_LEAD_S - guard
            if free > 0:
                self._woken.wait(timeout=min(free, 1.0))
                self._woken.clear()
                if self._until(deadline) - DEADLINE_LEAD_S > guard:
                    return self.now()  # woken (or a second passed): step, then wait again
        left = self._until(deadline) - DEADLINE_LEAD_S
        if left > 0:
            time.sleep(left)
        self._woken.clear()  # (what woke it is taken by this step)
        self._floor = max(self.now(), deadline)
        return self._floor
