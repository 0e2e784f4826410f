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


@dataclass(slots=True)
class _Rates:
    """What ``Accounting.advance`` integrates, read from the engine's mappings: per tenant
    holding GPUs (totals, allocated, owned, borrowed), and the sums over tenants."""

    entitled: Mapping[str, int]
    lenders_idle: Mapping[str, int]
    held: dict[str, tuple[TenantTotals, int, int, int]]
    total_alloc: int
    borrowed_total: int
    total_entitled: int
    entitled_by: list[tuple[TenantTotals, int]]
    idle_by: list[tuple[TenantTotals, int]]
    from_lenders: int = 0  # borrowed GPUs beyond the capacity no contract covers
    idle_total: int = 0


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
        self._rates: _Rates | None = None  # what ``advance`` integrates, kept per ``version``

    def advance(
        self,
        t: int,
        allocated: Mapping[str, int],
        owned: Mapping[str, int],
        borrowed: Mapping[str, int],
        entitled: Mapping[str, int],
        lenders_idle: Mapping[str, int],
        healthy_gpus: int,
        changed: set[str] | None = None,
    ) -> None:
        """Integrate the current state over [last, t). With ``changed`` (the tenants whose
        ``allocated``, ``owned`` or ``borrowed`` changed since the last call, which the
        caller keeps; read and cleared here; ``entitled`` and ``lenders_idle`` are replaced
        when they change, never changed in place), what is integrated is read anew only
        for those tenants, not from every mapping at every event."""
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
        r = self._rates
        if r is None or changed is None or r.entitled is not entitled:
            r = self._rates = self._read_rates(allocated, owned, borrowed, entitled, lenders_idle)
            if changed:
                changed.clear()
        else:
            if r.lenders_idle is not lenders_idle:  # what lenders leave idle: its own list
                r.lenders_idle = lenders_idle
                r.idle_by = [(self.tenants[name], idle) for name, idle in lenders_idle.items()]
                self._lending(r)
            if changed:
                self._reread(r, changed, allocated, owned, borrowed)
                changed.clear()
        for tt, g, own, bor in r.held.values():
            tt.used_gpu_s += g * dt
            tt.own_gpu_s += own * dt
            tt.borrowed_gpu_s += bor * dt
        for tt, e in r.entitled_by:
            tt.entitled_gpu_s += e * dt
        self.allocated_gpu_s += r.total_alloc * dt
        self.capacity_gpu_s += self.capacity * dt
        self.healthy_gpu_s += healthy_gpus * dt
        if r.from_lenders > 0 and r.idle_total:
            share = min(1.0, r.from_lenders / r.idle_total)
            for tt, idle in r.idle_by:
                tt.lent_gpu_s += idle * share * dt
        self.last_s = t

    def _read_rates(
        self,
        allocated: Mapping[str, int],
        owned: Mapping[str, int],
        borrowed: Mapping[str, int],
        entitled: Mapping[str, int],
        lenders_idle: Mapping[str, int],
    ) -> _Rates:
        tenants = self.tenants
        r = _Rates(
            entitled,
            lenders_idle,
            {
                name: (tenants[name], g, owned.get(name, 0), borrowed.get(name, 0))
                for name, g in allocated.items()
                if g  # nothing held: nothing owned or borrowed either
            },
            0,
            sum(borrowed.values()),
            sum(entitled.values()),
            [(tenants[name], e) for name, e in entitled.items()],
            [(tenants[name], idle) for name, idle in lenders_idle.items()],
        )
        r.total_alloc = sum(h[1] for h in r.held.values())
        self._lending(r)
        return r

    def _reread(
        self,
        r: _Rates,
        changed: set[str],
        allocated: Mapping[str, int],
        owned: Mapping[str, int],
        borrowed: Mapping[str, int],
    ) -> None:
        """Read anew the tenants in ``changed`` (and the sums they are in)."""
        for name in changed:
            old = r.held.pop(name, None)
            if old is not None:
                r.total_alloc -= old[1]
                r.borrowed_total -= old[3]
            g = allocated.get(name, 0)
            if g:
                bor = borrowed.get(name, 0)
                r.held[name] = (self.tenants[name], g, owned.get(name, 0), bor)
                r.total_alloc += g
                r.borrowed_total += bor
        self._lending(r)

    def _lending(self, r: _Rates) -> None:
        # Borrowed GPUs come first from capacity no contract covers, then from lenders'
        # idle entitlement in proportion to it.
        r.from_lenders = (
            r.borrowed_total - max(0, self.capacity - r.total_entitled) if r.borrowed_total else 0
        )
        r.idle_total = sum(r.lenders_idle.values()) if r.from_lenders > 0 else 0

    def utilization(self) -> float:
        return self.allocated_gpu_s / self.capacity_gpu_s if self.capacity_gpu_s else 0.0


def percentile(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0
