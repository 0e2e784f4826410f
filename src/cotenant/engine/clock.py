"""Clocks. The engine loop is the same for simulated and live time; only this differs."""

from __future__ import annotations

import threading
import time
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
