"""Ownership: each tenant's GPUs held, counted as owned (inside its entitlement) or
borrowed (beyond it, reclaimable), and the rebalance that keeps owned GPUs within the
entitlement and given to the tenant's most important work.

Also what lenders leave idle of their entitlement (for the lent GPU-seconds in the
report). The counters change only through ``hold``; a retag (owned <-> borrowed) is the
job lifecycle's, which the rebalance is given to call.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cotenant.model.contracts import Contract
from cotenant.model.jobs import JobState

if TYPE_CHECKING:
    from cotenant.engine.jobs import JobRun

Retag = Callable[["JobRun", bool, int], None]  # (run, borrowed, now)


class Ownership:
    def __init__(self, jobs: Mapping[str, JobRun]) -> None:
        self.jobs = jobs
        self.allocated: dict[str, int] = defaultdict(int)
        self.owned: dict[str, int] = defaultdict(int)
        self.borrowed: dict[str, int] = defaultdict(int)
        self.owned_by_priority: dict[str, Counter[int]] = defaultdict(Counter)
        self.running_by_tenant: dict[str, dict[str, None]] = defaultdict(dict)
        # The same runs split by how they are counted (True: borrowed), so a rebalance reads
        # only the runs it may retag, not every run of a tenant holding thousands.
        self._runs_counted: dict[tuple[str, bool], dict[str, None]] = defaultdict(dict)
        self._borrowed_sizes: dict[str, Counter[int]] = defaultdict(Counter)
        self._borrowed_prio: dict[str, Counter[int]] = defaultdict(Counter)
        # Tenants whose ownership may need rebalancing: what a rebalance reads of them
        # (entitlement, runs, owned and borrowed GPUs, promises) changed since their last.
        self.unbalanced: set[str] = set()
        self._promised_for: set[str] = set()  # tenants with a promise at the last rebalance
        self.demotions = 0  # owned runs retagged as borrowed, ever
        self.lenders_idle: dict[str, int] = {}
        self.lenders_stale = True  # owned GPUs or entitlements changed since the last refresh
        # Tenants whose ``allocated``, ``owned`` or ``borrowed`` changed since the accounting
        # last read them (it clears the set).
        self.changed: set[str] = set()

    def hold(self, run: JobRun, sign: int) -> None:
        """Count the run's GPUs (+1) or stop counting them (-1), as owned or borrowed."""
        g = run.spec.gpus * sign
        self.changed.add(run.tenant)
        self.allocated[run.tenant] += g
        if run.borrowed:
            self.borrowed[run.tenant] += g
            _count(self._borrowed_sizes[run.tenant], run.spec.gpus, sign)
            _count(self._borrowed_prio[run.tenant], run.spec.priority, sign)
        else:
            self.owned[run.tenant] += g
            _count(self.owned_by_priority[run.tenant], run.spec.priority, g)
            self.lenders_stale = True
        if sign > 0:
            self.running_by_tenant[run.tenant][run.id] = None
            self._runs_counted[run.tenant, run.borrowed][run.id] = None
        else:
            self.running_by_tenant[run.tenant].pop(run.id, None)
            self._runs_counted[run.tenant, run.borrowed].pop(run.id, None)
        self.unbalanced.add(run.tenant)

    def owned_below(self, tenant: str, priority: int) -> int:
        """GPUs the tenant owns in runs less important than ``priority``."""
        return sum(g for p, g in self.owned_by_priority[tenant].items() if p < priority)

    def rebalance(
        self, entitled: Mapping[str, int], promised: set[str], retag: Retag, now: int
    ) -> None:
        """Keep each tenant's owned GPUs within its entitlement, given to its most important
        work: promote a borrowed run when room opens (or when lower-priority owned runs can
        give it room), then demote the least important owned runs (lowest priority, latest
        start) until the tenant owns no more than its entitlement. A tenant with a job
        waiting for a reclaim (in ``promised``) promotes nothing: that room is promised."""
        if promised != self._promised_for:
            self.unbalanced |= promised ^ self._promised_for
            self._promised_for = promised
        if not self.unbalanced:
            return
        # A tenant whose inputs did not change since a rebalance that changed nothing for it
        # would change nothing again; one that changed something (a retag) is marked anew.
        todo = [t for t in self.running_by_tenant if t in self.unbalanced]
        self.unbalanced.clear()
        for tenant in todo:
            ent = entitled.get(tenant, 0)
            sizes = self._borrowed_sizes.get(tenant)
            if sizes and tenant not in promised:
                top = max(self._borrowed_prio[tenant])
                if ent - self.owned[tenant] + self.owned_below(tenant, top) >= min(sizes):
                    self._promote(tenant, ent, retag, now)
            if self.owned[tenant] > ent:
                self._demote(tenant, ent, retag, now)

    def _promote(self, tenant: str, ent: int, retag: Retag, now: int) -> None:
        runs = [self.jobs[j] for j in self._runs_counted[tenant, True]]
        runs = [r for r in runs if r.borrowed and r.state is JobState.RUNNING]
        runs.sort(key=lambda r: (-r.spec.priority, r.start_s, r.id))
        for r in runs:
            room = ent - self.owned[tenant] + self.owned_below(tenant, r.spec.priority)
            if r.spec.gpus <= room:
                retag(r, False, now)

    def _demote(self, tenant: str, ent: int, retag: Retag, now: int) -> None:
        runs = [self.jobs[j] for j in self._runs_counted[tenant, False]]
        runs = [r for r in runs if not r.borrowed]
        runs.sort(key=lambda r: (r.spec.priority, -r.start_s, r.id))
        for r in runs:
            if self.owned[tenant] <= ent:
                break
            retag(r, True, now)

    def refresh_lenders(
        self, entitled: Mapping[str, int], contracts: Mapping[str, Contract]
    ) -> None:
        """What each lending tenant leaves idle of its entitlement (when it changed)."""
        if not self.lenders_stale:
            return
        self.lenders_stale = False
        idle = {
            t: max(0, e - self.owned[t])
            for t, e in entitled.items()
            if contracts[t].lending.lend_idle
        }
        if idle != self.lenders_idle:  # replaced only when it changed (readers compare ids)
            self.lenders_idle = idle


def _count(counter: Counter[int], key: int, delta: int) -> None:
    counter[key] += delta
    if counter[key] <= 0:
        del counter[key]
