"""The engine's own agenda: one heap of (time, kind, sequence, key), as SimPy's kernel.

The kind orders what falls due at one instant (a scheduled callback first, then reclaim
deadlines, submissions, contract boundaries, notice ticks, wake-ups); the sequence number
keeps the order of pushes among equals, so the same inputs give the same run. Beside the
heap the agenda keeps whether a scheduling cycle is due (``dirty``), and when a
time-driven policy asked to be woken.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

# Event kinds, in the order they are handled at one instant.
CALLBACK, DEADLINE, SUBMIT, CONTRACT, TICK, TICK_NOW, POLICY_WAKE = 0, 1, 2, 3, 4, 5, 6

Entry = tuple[int, int, int, str]  # (due, kind, sequence, key)


class Agenda:
    def __init__(self, tick_s: int) -> None:
        self.tick_s = tick_s  # notice ramp-downs are re-read at this interval
        self.dirty = True  # something changed since the last cycle: the loop cycles
        self.policy_wake_s = -1  # the cycle a time-driven policy asked for
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._callbacks: dict[str, Callable[[int], Any]] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, t: int, kind: int, key: str = "") -> None:
        heapq.heappush(self._heap, (t, kind, next(self._seq), key))

    def at(self, t: int, fn: Callable[[int], Any]) -> None:
        """Call ``fn(now)`` when the loop reaches ``t``."""
        key = str(next(self._seq))
        self._callbacks[key] = fn
        self.push(t, CALLBACK, key)

    def callback(self, key: str) -> Callable[[int], Any]:
        """The callback of a ``CALLBACK`` entry, taken off the agenda."""
        return self._callbacks.pop(key)

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, t: int) -> Entry | None:
        """The next entry due by ``t`` (None: nothing is)."""
        if self._heap and self._heap[0][0] <= t:
            return heapq.heappop(self._heap)
        return None

    def wake_policy(self, now: int, every: int | None, work_waits_and_runs: bool) -> None:
        """A policy whose decisions change with time alone (LAS demotes a job once it has
        had its quantum) sets ``wake_every_s``: while work waits and work runs, the engine
        cycles at that interval, not only on events."""
        if every is None or every <= 0 or self.policy_wake_s > now:
            return
        if work_waits_and_runs:
            self.policy_wake_s = now + every
            self.push(self.policy_wake_s, POLICY_WAKE)
