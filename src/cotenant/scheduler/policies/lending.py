"""The contract policy's step 2, lending: jobs beyond their tenant's entitlement borrow
what is lendable (capacity no entitlement covers, and what lending tenants leave idle),
the least served tenant first (borrowed GPUs per entitled GPU)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence

from cotenant.scheduler.decisions import Decisions, Place, Reason, Wait
from cotenant.scheduler.policies.common import power_budget
from cotenant.scheduler.snapshot import PendingJob, RunningJob, Snapshot
from cotenant.scheduler.workspace import Workspace

UNLIMITED = 1 << 60  # a lending limit that does not limit


def lendable(snap: Snapshot, headroom: Mapping[str, int]) -> int:
    """GPUs that may be lent: capacity no entitlement covers, plus what lending tenants
    leave idle of theirs (each up to its lending limit)."""
    capacity = snap.state.topo.total_gpus
    lendable = max(0, capacity - sum(snap.entitlements.values()))
    for t in snap.entitlements:
        c = snap.contracts.get(t)
        if c is None or not c.lending.lend_idle:
            continue
        idle = max(0, headroom.get(t, 0))
        limit = c.lending.limit_gpus if c.lending.limit_gpus is not None else UNLIMITED
        lendable += min(idle, limit)
    return lendable


def borrowed_after(snap: Snapshot, reclaiming: Sequence[RunningJob]) -> int:
    """GPUs borrowed now that stay borrowed once the reclaims under way are done."""
    leaving = sum(r.gpus for r in reclaiming if r.borrowed)
    return sum(snap.borrowed_gpus.values()) - leaving


class LendingRound:
    """Step 2's lending round: tenants take turns by borrowed GPUs per entitled GPU (the
    least served first), each placing the next job of its own queue that fits the budget,
    the free GPUs and the power left; a tenant with nothing that fits waits as a whole."""

    def __init__(
        self,
        snap: Snapshot,
        ws: Workspace,
        queues: dict[str, list[PendingJob]],
        budget: int,
        free_total: int,
        out: Decisions,
    ) -> None:
        self.snap = snap
        self.ws = ws
        self.queues = queues
        self.budget = budget
        self.free_total = free_total
        self.out = out
        self.power = power_budget(ws)
        self.borrowed = {t: snap.borrowed_gpus.get(t, 0) for t in queues}
        self.cursor = dict.fromkeys(queues, 0)
        # Smallest gang from each position to the end of a tenant's queue: a quick "nothing fits".
        self.suffix_min: dict[str, list[int]] = {}
        for t, q in queues.items():
            acc = list(itertools.accumulate((pj.spec.gpus for pj in reversed(q)), min))
            self.suffix_min[t] = [*acc[::-1], 0]

    def weight(self, t: str) -> float:
        return float(max(self.snap.entitlements.get(t, 0), 1))

    def run(self) -> None:
        out = self.out
        heap = [(self.borrowed[t] / self.weight(t), t) for t in sorted(self.queues)]
        heapq.heapify(heap)
        while heap:
            _, t = heapq.heappop(heap)
            q = self.queues[t]
            i = self.cursor[t]
            budget, free_total = self.budget, self.free_total
            if budget <= 0 or free_total <= 0:
                why = Reason.NO_LENDABLE_CAPACITY if budget <= 0 else Reason.NO_CAPACITY
                for rest_t in [t] + [x for _, x in heap]:
                    out.tenant_waits[rest_t] = Wait(
                        "", why, "beyond entitlement; waiting to borrow"
                    )
                return
            smallest = self.suffix_min[t][i]
            if smallest > budget or smallest > free_total:
                out.tenant_waits[t] = Wait(
                    "",
                    Reason.NO_LENDABLE_CAPACITY if smallest > budget else Reason.NO_CAPACITY,
                    "beyond entitlement; waiting to borrow",
                )
                continue
            i, placed = self.place_next(q, i)
            self.cursor[t] = i
            if placed and i < len(q):
                heapq.heappush(heap, (self.borrowed[t] / self.weight(t), t))

    def place_next(self, q: list[PendingJob], i: int) -> tuple[int, bool]:
        """Place the first job of ``q`` from ``i`` on that fits (each passed over waits);
        returns where the tenant's queue goes on from and whether a job was placed."""
        ws, out, power = self.ws, self.out, self.power
        while i < len(q):
            job = q[i].spec
            i += 1
            if job.gpus > self.budget:
                out.waits.append(
                    Wait(job.id, Reason.NO_LENDABLE_CAPACITY, f"{self.budget} GPUs lendable")
                )
                continue
            if job.gpus > self.free_total or ws.known_not_to_fit(job):
                out.waits.append(Wait(job.id, Reason.OVER_ENTITLEMENT, "no lendable room fits"))
                continue
            if not power.allows(job.gpus):
                power.hold(job.id, out)
                continue
            p = ws.try_now(job)
            if p is None:
                out.waits.append(Wait(job.id, Reason.OVER_ENTITLEMENT, "no lendable room fits"))
                continue
            ws.commit_now(job.tenant, p)
            power.spend(job.gpus)
            out.places.append(Place(job.id, p, Reason.PLACED_BORROWED, borrowed=True))
            self.budget -= job.gpus
            self.free_total -= job.gpus
            self.borrowed[job.tenant] += job.gpus
            return i, True
        return i, False
