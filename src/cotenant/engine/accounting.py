"""Running totals for the report, integrated between events (state is constant between them).

Per tenant: entitlement, use (own and borrowed), lent, queueing delays, preemptions,
work lost, and guarantee violations; for the cluster: utilisation over time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class TenantTotals:
    entitled_gpu_s: int = 0
    used_gpu_s: int = 0
    own_gpu_s: int = 0
    borrowed_gpu_s: int = 0
    lent_gpu_s: float = 0.0
    queue_delays_s: list[int] = field(default_factory=list)
    submitted: int = 0
    completed: int = 0
    rejected: int = 0
    preemptions: int = 0
    preempted_lost_gpu_s: int = 0
    interruptions: int = 0
    failure_lost_gpu_s: int = 0
    violation_s: int = 0
    violation_jobs: int = 0
    useful_gpu_s: int = 0
    restart_gpu_s: int = 0
    checkpoint_gpu_s: int = 0
    shortfall_gpu_s: int = 0


@dataclass(slots=True)
class Series:
    """Samples on a fixed step for plots: time, allocated per tenant, entitlement per tenant."""

    step_s: int
    times: list[int] = field(default_factory=list)
    allocated: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    entitled: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    borrowed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    healthy_gpus: list[int] = field(default_factory=list)


class Accounting:
    def __init__(self, start_s: int, capacity: int, sample_step_s: int = 3600) -> None:
        self.start_s = start_s
        self.last_s = start_s
        self.capacity = capacity
        self.tenants: dict[str, TenantTotals] = defaultdict(TenantTotals)
        self.allocated_gpu_s = 0
        self.capacity_gpu_s = 0
        self.healthy_gpu_s = 0
        self.series = Series(sample_step_s)
        self._next_sample = start_s

    def advance(
        self,
        t: int,
        allocated: Mapping[str, int],
        owned: Mapping[str, int],
        borrowed: Mapping[str, int],
        entitled: Mapping[str, int],
        lenders_idle: Mapping[str, int],
        healthy_gpus: int,
    ) -> None:
        """Integrate the current state over [last, t)."""
        while self._next_sample <= t and self._next_sample >= self.last_s:
            s = self.series
            s.times.append(self._next_sample)
            s.healthy_gpus.append(healthy_gpus)
            n = len(s.times) - 1
            for name in set(allocated) | set(entitled):
                for series, values in (
                    (s.allocated, allocated),
                    (s.entitled, entitled),
                    (s.borrowed, borrowed),
                ):
                    column = series[name]
                    if len(column) < n:  # a tenant first seen now: zeros before
                        column.extend([0] * (n - len(column)))
                    column.append(values.get(name, 0))
            self._next_sample += s.step_s
        dt = t - self.last_s
        if dt <= 0:
            return
        tenants = self.tenants
        total_alloc = 0
        for name, g in allocated.items():
            if not g:
                continue  # nothing held: nothing owned or borrowed either
            total_alloc += g
            tt = tenants[name]
            tt.used_gpu_s += g * dt
            tt.own_gpu_s += owned.get(name, 0) * dt
            tt.borrowed_gpu_s += borrowed.get(name, 0) * dt
        total_entitled = 0
        for name, e in entitled.items():
            total_entitled += e
            tenants[name].entitled_gpu_s += e * dt
        self.allocated_gpu_s += total_alloc * dt
        self.capacity_gpu_s += self.capacity * dt
        self.healthy_gpu_s += healthy_gpus * dt
        # Borrowed GPUs come first from capacity no contract covers, then from lenders'
        # idle entitlement in proportion to it.
        borrowed_total = sum(borrowed.values())
        if borrowed_total:
            from_lenders = borrowed_total - max(0, self.capacity - total_entitled)
            idle_total = sum(lenders_idle.values()) if from_lenders > 0 else 0
            if idle_total:
                share = min(1.0, from_lenders / idle_total)
                for name, idle in lenders_idle.items():
                    tenants[name].lent_gpu_s += idle * share * dt
        self.last_s = t

    def utilization(self) -> float:
        return self.allocated_gpu_s / self.capacity_gpu_s if self.capacity_gpu_s else 0.0


def percentile(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0
