"""Time series for the console's charts: bounded, downsampled, and kept in the store.

Two tiers over service time: the last day in 5-minute buckets (288 points) and the last
month in 1-hour buckets (720 points). A bucket holds the mean of the samples that fell
in it, so memory is fixed however fast the clock runs or however often it is sampled.
Both tiers are written to the store's meta table every 30 s and at shutdown, and read
back at start, so a chart still shows the last day and month after a restart.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DAY_STEP_S, DAY_POINTS = 300, 288
MONTH_STEP_S, MONTH_POINTS = 3600, 720
RANGES = {"day": (DAY_STEP_S, DAY_POINTS), "month": (MONTH_STEP_S, MONTH_POINTS)}


@dataclass(slots=True)
class Tier:
    step_s: int
    points: int
    times: deque[int] = field(default_factory=deque)
    rows: deque[dict[str, float]] = field(default_factory=deque)
    _bucket: int | None = None
    _sums: dict[str, float] = field(default_factory=dict)
    _n: int = 0

    def add(self, t: int, values: Mapping[str, float]) -> bool:
        """Fold one sample in; True when a bucket closed."""
        b = t - t % self.step_s
        closed = False
        if self._bucket is not None and b != self._bucket:
            closed = self._close()
        if self._bucket is None or b != self._bucket:
            self._bucket, self._sums, self._n = b, {}, 0
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._n += 1
        return closed

    def _close(self) -> bool:
        if self._bucket is None or not self._n:
            return False
        if self.times and self._bucket <= self.times[-1]:
            return False  # the clock never runs back; a restored tier may already hold it
        self.times.append(self._bucket)
        self.rows.append({k: v / self._n for k, v in self._sums.items()})
        while len(self.times) > self.points:
            self.times.popleft()
            self.rows.popleft()
        return True

    def view(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """Columnar: ``{"t": [...], "series": {key: [value or None, ...]}}``, the open
        bucket included as the last point."""
        times = list(self.times)
        rows = list(self.rows)
        if self._bucket is not None and self._n and (not times or self._bucket > times[-1]):
            times.append(self._bucket)
            rows.append({k: v / self._n for k, v in self._sums.items()})
        wanted = sorted({k for r in rows for k in r}) if keys is None else list(keys)
        return {
            "step_s": self.step_s,
            "t": times,
            "series": {k: [r.get(k) for r in rows] for k in wanted},
        }

    def dump(self) -> dict[str, Any]:
        """The closed buckets, columnar, values rounded to 3 decimals (a month of a busy
        cluster's figures stays a few hundred kB)."""
        keys = sorted({k for r in self.rows for k in r})
        return {
            "step_s": self.step_s,
            "t": list(self.times),
            "series": {k: [_round(r.get(k)) for r in self.rows] for k in keys},
        }

    def load(self, raw: Mapping[str, Any]) -> None:
        if int(raw.get("step_s", 0)) != self.step_s:
            return
        times = [int(t) for t in raw.get("t", [])][-self.points :]
        series: Mapping[str, list[float | None]] = raw.get("series", {})
        n0 = len(raw.get("t", [])) - len(times)
        self.times = deque(times)
        self.rows = deque(
            {k: float(x) for k, v in series.items() if (x := v[n0 + i]) is not None}
            for i in range(len(times))
        )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


class Series:
    """The console's two tiers; ``add`` one sample of every figure at service time t."""

    def __init__(self) -> None:
        self.day = Tier(DAY_STEP_S, DAY_POINTS)
        self.month = Tier(MONTH_STEP_S, MONTH_POINTS)

    def add(self, t: int, values: Mapping[str, float]) -> bool:
        """True when the month tier closed a bucket (a good time to save)."""
        self.day.add(t, values)
        return self.month.add(t, values)

    def tier(self, name: str) -> Tier:
        return self.month if name == "month" else self.day

    def dumps(self) -> str:
        return json.dumps({"day": self.day.dump(), "month": self.month.dump()})

    def loads(self, text: str) -> None:
        raw = json.loads(text)
        self.day.load(raw.get("day", {}))
        self.month.load(raw.get("month", {}))
