"""The federation's policy: where a job runs, as a pure function over snapshots of the
providers (docs/design/0014-providers.md). No engine, no clock: views in, routes out.

1. A job pinned by its dependencies runs where they run.
2. A job stays on the first lease it accepts whose expected wait is within its
   ``max_wait`` (room inside its entitlement, room it may borrow now, or its own runs
   ending soon enough).
3. Otherwise it overflows to the cheapest pool it accepts that has room, when the cost
   fits what is left of its tenant's overflow budget this month.
4. Otherwise it stays (queued on the lease), with the reason it could not overflow.

Under notice, ``drain`` moves a tenant's running work beyond its entitlement to its other
providers, most important first; it is not overflow and is not charged to the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cotenant.model.jobs import JobKind
from cotenant.model.time import HOUR


class RouteReason(StrEnum):
    ENTITLED = "entitled-room"  # fits inside its entitlement on the lease
    BORROWABLE = "borrowable-room"  # idle GPUs it may borrow now
    WAIT_OK = "wait-within-max"  # expected wait within its max_wait
    NO_OVERFLOW = "no-overflow"  # no max_wait for its kind: it never overflows
    PINNED = "pinned"  # its dependencies run there
    NAMED = "named-provider"  # it accepts only pools
    OVERFLOWED = "overflowed"
    OVER_BUDGET = "over-budget"
    NO_POOL_ROOM = "no-pool-room"
    NO_POOL = "no-pool"
    MIGRATED = "migrated"
    NO_TARGET = "nowhere-to-migrate"


@dataclass(frozen=True, slots=True)
class JobAsk:
    """What routing needs of a job."""

    job_id: str
    tenant: str
    gpus: int
    kind: JobKind
    priority: int
    wall_s: int  # wall time to do its remaining work, checkpoint writes included
    max_wait_s: int | None  # None: it never overflows
    candidates: tuple[str, ...]  # the providers it accepts, in its tenant's order
    waited_s: int = 0  # how long it has waited already
    accelerator: str | None = None
    pinned: str | None = None  # the provider its dependencies run on


@dataclass(frozen=True, slots=True)
class ClusterView:
    """A cluster as one tenant's job sees it."""

    name: str
    room_entitled: int  # its tenant's entitlement minus what the tenant holds
    free_gpus: int  # idle healthy GPUs of the job's kind: borrowable now
    noticed: bool  # its tenant is under notice here: it borrows nothing more
    releases: tuple[tuple[int, int], ...]  # (seconds from now, GPUs) of its tenant's runs
    ahead_gpus: int = 0  # GPUs its tenant's queued jobs ahead of it ask for
    fits: bool = True  # the job's kind exists here and it is not larger than the cluster


@dataclass(frozen=True, slots=True)
class PoolView:
    """A pool as one job sees it."""

    name: str
    free_gpus: int  # the maximum minus what is held, queued or on its way
    start_delay_s: int  # provisioning plus moving the job's data in
    cost_micro: int  # what the job would cost there, reserved against the budget
    fits: bool = True  # the pool has the job's kind


View = ClusterView | PoolView


@dataclass(frozen=True, slots=True)
class Route:
    """A routing decision and its reason, for the decision log."""

    job_id: str
    tenant: str
    provider: str | None  # None: nowhere (a drain that found no target)
    reason: RouteReason
    detail: str
    expected_wait_s: int | None = None  # on the lease it left or stays on
    cost_micro: int = 0  # reserved for a pool
    overflow: bool = False  # counts against the overflow budget

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "job": self.job_id,
            "tenant": self.tenant,
            "provider": self.provider,
            "reason": self.reason.value,
            "detail": self.detail,
        }
        if self.expected_wait_s is not None:
            out["expected_wait_s"] = self.expected_wait_s
        if self.cost_micro:
            out["cost_micro"] = self.cost_micro
        return out


def expected_wait_s(view: ClusterView, gpus: int) -> int | None:
    """How long the job should wait on this cluster (None: no run of its tenant's ending
    frees enough). Room inside the entitlement is served within the grace period (0);
    idle GPUs are borrowable now unless the tenant is under notice; otherwise the
    tenant's own runs must end, in order of expected end, until what they free covers
    the queue ahead of the job and the job."""
    if not view.fits:
        return None
    need = view.ahead_gpus + gpus
    have = max(0, view.room_entitled)
    if not view.noticed:
        have = max(have, view.free_gpus)
    if have >= need:
        return 0
    for after_s, freed in view.releases:
        have += freed
        if have >= need:
            return max(0, after_s)
    return None


def route(ask: JobAsk, views: Sequence[View], budget_left_micro: int) -> Route:
    """Where ``ask`` runs: see the module's steps. ``views`` are the providers the job
    accepts, in its tenant's order of preference."""
    if ask.pinned is not None:
        return _route(ask, ask.pinned, RouteReason.PINNED, "runs where its dependencies run")
    clusters = [v for v in views if isinstance(v, ClusterView) and v.fits]
    pools = [v for v in views if isinstance(v, PoolView) and v.fits]
    if not clusters:
        roomy = [p for p in pools if p.free_gpus >= ask.gpus] or pools
        if not roomy:
            return _route(ask, None, RouteReason.NO_POOL, "no provider it accepts has its kind")
        p = min(roomy, key=lambda v: (v.cost_micro, ask.candidates.index(v.name)))
        return _route(ask, p.name, RouteReason.NAMED, "it accepts only pools", cost=p.cost_micro)
    waits = [(expected_wait_s(c, ask.gpus), c) for c in clusters]
    for wait, c in waits:
        if ask.max_wait_s is None:
            return _stay(ask, c, wait, RouteReason.NO_OVERFLOW, "no max_wait for its kind")
        if wait is not None and ask.waited_s + wait <= ask.max_wait_s:
            return _stay(ask, c, wait, *_why_stay(c, ask.gpus, wait))
    wait, best = min(waits, key=lambda wc: (_never(wc[0]), clusters.index(wc[1])))
    total = None if wait is None else ask.waited_s + wait
    over = f"expected wait {_hours(total)} > max_wait {_hours(ask.max_wait_s)}"
    if not pools:
        return _stay(ask, best, wait, RouteReason.NO_POOL, f"{over}; no pool it accepts")
    roomy = [p for p in pools if p.free_gpus >= ask.gpus]
    if not roomy:
        return _stay(ask, best, wait, RouteReason.NO_POOL_ROOM, f"{over}; no pool has room")
    p = min(roomy, key=lambda v: (v.cost_micro, ask.candidates.index(v.name)))
    if p.cost_micro > budget_left_micro:
        detail = (
            f"{over}; overflow to {p.name} would cost {_usd(p.cost_micro)}, "
            f"budget left {_usd(budget_left_micro)}"
        )
        return _stay(ask, best, wait, RouteReason.OVER_BUDGET, detail)
    detail = f"overflowed to {p.name}: {over}; cost {_usd(p.cost_micro)}"
    return Route(
        ask.job_id, ask.tenant, p.name, RouteReason.OVERFLOWED, detail, total, p.cost_micro, True
    )


def drain(
    source: str, excess_gpus: int, asks: Sequence[tuple[JobAsk, Sequence[View]]]
) -> list[Route]:
    """Under notice on ``source``: which running jobs move, and where, until the GPUs
    moved cover ``excess_gpus`` (what the tenant holds beyond its entitlement there).
    Most important jobs first (priority, then size, then id), so they get the room
    elsewhere; each to the first provider it accepts, in its tenant's order, that has
    room for it (a pool with free GPUs, a cluster with room inside the entitlement or
    idle GPUs it may borrow). A job with nowhere to go stays (and says so)."""
    out: list[Route] = []
    taken: dict[str, int] = {}
    left = excess_gpus
    order = sorted(asks, key=lambda av: (-av[0].priority, -av[0].gpus, av[0].job_id))
    for ask, views in order:
        if left <= 0:
            break
        target = _drain_target(ask, views, taken, source)
        if target is None:
            out.append(
                _route(ask, None, RouteReason.NO_TARGET, f"no other provider has room on {source}")
            )
            continue
        taken[target.name] = taken.get(target.name, 0) + ask.gpus
        left -= ask.gpus
        cost = target.cost_micro if isinstance(target, PoolView) else 0
        detail = f"migrated from {source} to {target.name} under notice"
        if cost:
            detail += f"; cost {_usd(cost)}"
        out.append(_route(ask, target.name, RouteReason.MIGRATED, detail, cost=cost))
    return out


def _drain_target(
    ask: JobAsk, views: Sequence[View], taken: dict[str, int], source: str
) -> View | None:
    for v in views:
        if v.name == source or not v.fits:
            continue
        free = v.free_gpus - taken.get(v.name, 0)
        if isinstance(v, PoolView) and free >= ask.gpus:
            return v
        if isinstance(v, ClusterView):
            room = max(v.room_entitled, 0 if v.noticed else v.free_gpus) - taken.get(v.name, 0)
            if room >= ask.gpus:
                return v
    return None


def _why_stay(c: ClusterView, gpus: int, wait: int) -> tuple[RouteReason, str]:
    if c.room_entitled >= c.ahead_gpus + gpus:
        return RouteReason.ENTITLED, "room inside its entitlement"
    if wait == 0:
        return RouteReason.BORROWABLE, "idle GPUs it may borrow"
    return RouteReason.WAIT_OK, f"expected wait {_hours(wait)} within its max_wait"


def _stay(ask: JobAsk, c: ClusterView, wait: int | None, reason: RouteReason, why: str) -> Route:
    return Route(ask.job_id, ask.tenant, c.name, reason, f"stays on {c.name}: {why}", wait)


def _route(
    ask: JobAsk, provider: str | None, reason: RouteReason, why: str, cost: int = 0
) -> Route:
    return Route(ask.job_id, ask.tenant, provider, reason, why, None, cost)


def _never(wait: int | None) -> float:
    return float("inf") if wait is None else float(wait)


def _hours(s: int | None) -> str:
    """A wait in hours to a tenth; one shorter than 3 minutes (which would read "0.0 h",
    or "0 h" for no wait at all) in seconds or whole minutes."""
    if s is None:
        return "unbounded"
    if s < HOUR // 20:
        return f"{s} s" if s < 60 else f"{s // 60} min"
    return f"{s / HOUR:.1f} h" if s % HOUR else f"{s // HOUR} h"


def _usd(micro: int) -> str:
    return f"${micro / 1_000_000:,.0f}"
