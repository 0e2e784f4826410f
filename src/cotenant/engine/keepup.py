"""Whether a live engine keeps up with its clock: how late it handles what falls due,
how long its steps take, and what it decides, by kind.

The engine thread records; readers (the ``/metrics`` scrape) copy. Lag is in wall
seconds: a step that handles an event 2 simulated minutes late at speed 60 is 2 s late.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable

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
