"""Whether a live engine keeps up with its clock: how late it handles what falls due,
how long its steps take, and what it decides, by kind.

The engine thread records; readers (the ``/metrics`` scrape) copy. Lag is in wall
seconds: a step that handles an event 2 simulated minutes late at speed 60 is 2 s late.
"""

from __future__ import annotations

import gc
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import Any

# Wall seconds: from a millisecond to a minute.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """Counts of observations per upper bound (Prometheus' ``le`` buckets), and their sum."""

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.sum = 0.0
        self.n = 0

    def observe(self, x: float) -> None:
        self.counts[bisect_left(self.bounds, x)] += 1
        self.sum += x
        self.n += 1

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by upper bound, ending with ``+Inf`` (= the count)."""
        counts = self.counts[:]  # one read of the engine thread's list
        out: list[tuple[str, float]] = []
        total = 0
        for bound, c in zip((*self.bounds, float("inf")), counts, strict=True):
            total += c
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class KeepUp:
    """The engine thread's own measures."""

    def __init__(self) -> None:
        self.step_s = Histogram(STEP_BUCKETS)  # wall time of each step (events + cycle)
        self.lag_s = Histogram(LAG_BUCKETS)  # at each step's start: how late it began
        self.decisions: Counter[str] = Counter()  # decisions by kind (waits are not)
        self.max_lag_s = 0.0

    def stepped(self, lag_s: float, took_s: float) -> None:
        self.lag_s.observe(lag_s)
        self.step_s.observe(took_s)
        self.max_lag_s = max(self.max_lag_s, lag_s)


class GcPauses:
    """How long each garbage collection takes, in wall time: the thread that runs it
    waits, and so do the others unless a finalizer it runs lets go of the interpreter
    lock. A stall of the engine that neither its lag nor its steps explain shows here.
    Installed in ``gc.callbacks`` while the server runs."""

    def __init__(self) -> None:
        self.pause_s = Histogram(STEP_BUCKETS)
        self.max_s = 0.0
        self.max_by_generation = [0.0, 0.0, 0.0]  # the longest of each generation
        self._began: dict[int, float] = {}  # by thread (a collection runs in one thread)

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        me = threading.get_ident()
        if phase == "start":
            self._began[me] = now
            return
        began = self._began.pop(me, None)
        if began is not None:
            took = now - began
            self.pause_s.observe(took)
            self.max_s = max(self.max_s, took)
            gen = min(2, max(0, int(info.get("generation", 2))))
            self.max_by_generation[gen] = max(self.max_by_generation[gen], took)
