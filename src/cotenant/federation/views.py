"""Snapshots of the providers for the federation's policy: what one job would find on
each provider now (mechanism reading engines; the policy never sees an engine)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from cotenant.engine.core import Engine
from cotenant.federation.policy import ClusterView, JobAsk, PoolView
from cotenant.federation.providers import PoolProvider, TenantProviders
from cotenant.model.checkpoints import run_length_s
from cotenant.model.jobs import JobKind, JobSpec, JobState
from cotenant.model.time import HOUR


def wall_s(spec: JobSpec, work_s: int, write_s: int) -> int:
    """Wall time to do ``work_s`` of the job's work, a checkpoint written every interval."""
    return run_length_s(work_s, spec.checkpoint_interval_s, write_s)


def ask_of(
    spec: JobSpec,
    terms: TenantProviders,
    work_s: int,
    write_s: int,
    waited_s: int = 0,
    pinned: str | None = None,
) -> JobAsk:
    accepted = spec.providers or terms.providers
    candidates = tuple(p for p in terms.providers if p in accepted)
    return JobAsk(
        spec.id,
        spec.tenant,
        spec.gpus,
        spec.kind,
        spec.priority,
        wall_s(spec, work_s, write_s),
        terms.max_wait_for(spec.kind, spec.max_wait_s),
        candidates,
        waited_s,
        spec.accelerator,
        pinned,
    )


def noticed(engine: Engine, tenant: str, now: int) -> bool:
    c = engine.contracts.get(tenant)
    return c is not None and c.notice.given_at is not None and c.notice.given_at <= now


@dataclass(frozen=True, slots=True)
class TenantLoad:
    """A tenant's runs and queue on one cluster at one instant (shared by the views of
    all its jobs routed then): its runs by expected end, and the GPUs its queue asks for
    at each priority or above."""

    ends: tuple[tuple[int, int], ...]
    priorities: tuple[int, ...]  # distinct queued priorities, highest first
    gpus_at_or_above: tuple[int, ...]  # GPUs queued at that priority or above
    queued: frozenset[str]


def tenant_load(engine: Engine, tenant: str, now: int) -> TenantLoad:
    ends = sorted(
        (view.expected_end_s - now, view.spec.gpus)
        for view in (
            engine.jobs[j].running_view() for j in engine.owners.running_by_tenant.get(tenant, {})
        )
        if view.spec.kind is not JobKind.SERVICE
    )
    by_pri: dict[int, int] = {}
    queued = []
    for pj in engine.queue.of_tenant(tenant):
        by_pri[pj.spec.priority] = by_pri.get(pj.spec.priority, 0) + pj.spec.gpus
        queued.append(pj.spec.id)
    pris = tuple(sorted(by_pri, reverse=True))
    acc, cum = 0, []
    for p in pris:
        acc += by_pri[p]
        cum.append(acc)
    return TenantLoad(tuple(ends), pris, tuple(cum), frozenset(queued))


def ahead_gpus(load: TenantLoad, spec: JobSpec) -> int:
    """GPUs the tenant's queue asks for at the job's priority or above (itself apart)."""
    k = bisect_right([-p for p in load.priorities], -spec.priority)
    total = load.gpus_at_or_above[k - 1] if k else 0
    return total - (spec.gpus if spec.id in load.queued else 0)


def cluster_view(
    name: str, engine: Engine, spec: JobSpec, now: int, load: TenantLoad | None = None
) -> ClusterView:
    """The cluster as ``spec``'s job sees it: room inside its tenant's entitlement, idle
    GPUs, its tenant's runs by expected end and its tenant's queue ahead of it."""
    tenant = spec.tenant
    topo = engine.topo
    kinds = topo.capacity_by_kind()
    kind = spec.accelerator
    fits = (kind is None or kind in kinds) and spec.gpus <= kinds.get(kind, 0)
    state = engine.state
    usable = state.usable()
    if kind is not None and kind in kinds:
        usable = usable & (topo.node_kind == topo.kinds.index(kind))
    free = int(state.free[usable].sum())
    room = engine.entitled.get(tenant, 0) - engine.owned.get(tenant, 0)
    if load is None:
        load = tenant_load(engine, tenant, now)
    return ClusterView(
        name, room, free, noticed(engine, tenant, now), load.ends, ahead_gpus(load, spec), fits
    )


def pool_view(
    pool: PoolProvider,
    busy_gpus: int,
    spec: JobSpec,
    terms: TenantProviders,
    work_s: int,
    write_s: int,
    restart_s: int,
) -> PoolView:
    """The pool as ``spec``'s job sees it, with the cost reserved for it there: on demand
    for its run; on spot (a job that checkpoints, on a pool that uses spot) the
    on-demand price for the run, one restart, and the work and writes one interruption
    can lose (after one interruption a job runs on demand), so what it costs never
    exceeds what was reserved. Plus moving its data in."""
    fits = spec.accelerator is None or spec.accelerator == pool.accelerator
    run_s = wall_s(spec, work_s, write_s)
    if spot_eligible(pool, spec):
        run_s += restart_s + spec.checkpoint_interval_s + 2 * write_s
    micro = (spec.gpus * run_s * pool.on_demand_micro_per_gpu_hour + HOUR - 1) // HOUR
    micro += pool.move_in_micro(spec.gpus, terms.data_gb_per_gpu)
    return PoolView(
        pool.name,
        pool.max_gpus - busy_gpus,
        pool.move_in_s(spec.gpus, terms.data_gb_per_gpu),
        micro,
        fits and spec.gpus <= pool.max_gpus,
    )


def spot_eligible(pool: PoolProvider, spec: JobSpec) -> bool:
    return pool.spot and spec.checkpoint_interval_s > 0


def live(state: JobState) -> bool:
    return state in (JobState.PENDING, JobState.RUNNING, JobState.RECLAIMING)
