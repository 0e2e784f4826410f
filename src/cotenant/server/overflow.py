"""Overflow to elastic pools in the live server (docs/design/0014-providers.md, "For the
live server"): each pool is a provider beside the lease, with an engine of its own on the
server's clock, and a router sends each job where the federation's pure policy says.

- The lease is the server's engine as before (the twin's backend, the local one, one
  Slurm cluster or several). A tenant none of whose providers is a pool is never routed,
  and a server without pools runs exactly as before.
- A pool is an engine over its GPUs (``max_gpus / gpus_per_node`` nodes named
  ``<pool>-1``, ...) under ``fifo-backfill`` (a pool has no contracts to honour; its
  tenants hold a zero commitment carrying their lease's isolation terms, so rivals never
  share a pool node), run by the local backend (by the sim backend where the server runs
  simulated). Its node indices follow the lease's in the server's node space, so stored
  placements and the job book name its nodes.
- ``Router.submit`` (engine thread, lock held) routes each committed submission of a
  tenant with a pool among its providers with ``federation.policy.route`` over
  ``federation.views``: the job stays on the lease while its expected wait there is
  within its ``max_wait``; else it overflows to the cheapest pool with room, if what it
  would cost fits what is left of its tenant's budget this month; else it waits on the
  lease with the reason (``over-budget``, ``no-pool-room``, ``no-pool``), which ``jobs
  why`` shows. A job sent to a pool is queued there after provisioning and its data move.
- A job still queued on the lease a second past its ``max_wait``, never started, is
  routed again with the time it waited (``step``): having waited longer than its
  ``max_wait``, it overflows if a pool has room and the budget allows.
- Every routing choice is a ``route`` decision: audited, stored in ``job_routes`` (with
  the reservation) in the transaction of the step that made it, and the job's ``route``
  column names its pool. After a restart the budget spent, each job's pool and the
  re-checks come back from the store (``load``, ``restored``).

Jobs with dependencies and pipeline stages stay on the lease (the jobs they wait for are
there); a job on a pool finishes there (design note, non-goals).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cotenant.backends.base import Backend
from cotenant.cluster.topology import ClusterSpec, Topology
from cotenant.engine.clock import Clock
from cotenant.engine.core import Engine
from cotenant.engine.events import (
    ContractChanged,
    EngineEvent,
    JobCancelled,
    JobRejected,
    RunEnded,
)
from cotenant.engine.jobs import JobRun
from cotenant.federation.core import job_held, month_of, next_checkpoint_s
from cotenant.federation.policy import JobAsk, Route, RouteReason, View, drain, route
from cotenant.federation.providers import ClusterProvider, PoolProvider, ProviderSet
from cotenant.federation.spec import read_pool, read_tenant_terms
from cotenant.federation.views import ask_of, cluster_view, noticed, pool_view
from cotenant.model.contracts import Commitment, Contract, LendingTerms
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobKind, JobSpec, JobState
from cotenant.model.time import DAY, HOUR
from cotenant.scheduler.policies import get_policy

if TYPE_CHECKING:
    from cotenant.server.settings import Settings

POOL_POLICY = "fifo-backfill"  # as the twin's pools: first come, first served
LIVE = (JobState.PENDING, JobState.RUNNING, JobState.RECLAIMING)
WAITS = (RouteReason.OVER_BUDGET, RouteReason.NO_POOL_ROOM, RouteReason.NO_POOL)
PROVISIONING = "provisioning"  # the reason of a job on its way to a pool
LEASE = "lease"  # the server's own engine, as a provider in tenants' and jobs' lists
RECHECK, NOTICE, CUTOVER = 0, 1, 2  # the router's own events


def live_providers(settings: Settings, lease: ClusterSpec | None = None) -> ProviderSet:
    """The lease and the settings' pools as providers, with each tenant's terms
    (``[overflow.<tenant>]``); bad input raises ``SpecError`` naming the field."""
    pools: list[PoolProvider] = []
    for i, raw in enumerate(settings.pools):
        f = f"pools[{i}]"
        p = read_pool(raw, f)
        if p.spot:
            raise SpecError(
                f"{f}.spot",
                "the live server rents pools on demand only (it cannot see a cloud's spot "
                "interruptions); leave spot out",
            )
        taken = [LEASE, *(c.name for c in settings.slurm_clusters)]
        taken += [q.name for q in pools]
        if p.name in taken:
            raise SpecError(f"{f}.name", f"{p.name!r} already names a provider")
        pools.append(p)
    names = [LEASE, *(p.name for p in pools)]
    home = ClusterProvider(LEASE, lease or ClusterSpec(LEASE, ()), home=True)
    tenants = {
        t: read_tenant_terms(t, raw, f"overflow.{t}", names, LEASE)
        for t, raw in sorted(settings.overflow.items())
    }
    return ProviderSet((home, *pools), tenants)


def pool_topology(pool: PoolProvider) -> Topology:
    """The pool's GPUs as whole nodes, named after the pool."""
    spec = pool.cluster()
    n = pool.max_gpus // pool.gpus_per_node
    return Topology(replace(spec, node_names=tuple(f"{pool.name}-{i + 1}" for i in range(n))))


def pool_engine(
    pool: PoolProvider,
    topo: Topology,
    providers: ProviderSet,
    lease_contracts: Mapping[str, Contract],
    backend: Backend,
    clock: Clock,
    start_s: int,
) -> Engine:
    """A pool as an engine (as the twin's ``_pool_engine``): its users hold no commitment
    there, and keep the isolation terms of their lease contract."""
    users = sorted(t for t, terms in providers.tenants.items() if pool.name in terms.providers)
    contracts = [
        Contract(
            t,
            start_s,
            start_s + 100 * 365 * DAY,
            Commitment(0),
            lending=LendingTerms(lend_idle=False),
            isolation=lease_contracts[t].isolation,
        )
        for t in users
        if t in lease_contracts
    ]
    return Engine(topo, contracts, get_policy(POOL_POLICY), backend, clock, tenants=users)


def pool_state_dir(state_dir: str | Path, pool: str) -> Path:
    """Where a pool's local backend keeps its runs (its own lock, logs, checkpoints)."""
    return Path(state_dir) / "pools" / pool


@dataclass(frozen=True, slots=True)
class Routed:
    """A routing decision as stored (``job_routes``)."""

    job_id: str
    tenant: str
    provider: str
    reason: str
    detail: str
    t: int
    arrives_s: int  # queued there (a pool: after provisioning and the data move)
    cost_micro: int  # reserved on a pool
    overflow: bool  # counts against the tenant's monthly budget
    data_gb: int  # moved into a pool

    @property
    def month(self) -> str:
        return month_of(self.t)

    def row(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "tenant": self.tenant,
            "provider": self.provider,
            "reason": self.reason,
            "detail": self.detail[:500],
            "t": self.t,
            "month": self.month,
            "arrives_s": self.arrives_s,
            "cost_micro": self.cost_micro,
            "overflow": self.overflow,
            "data_gb": self.data_gb,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Routed:
        return cls(
            row["job_id"],
            row["tenant"],
            row["provider"],
            row["reason"],
            row["detail"],
            int(row["t"]),
            int(row["arrives_s"]),
            int(row["cost_micro"]),
            bool(row["overflow"]),
            int(row["data_gb"]),
        )


class Router:
    """Routes jobs between the lease's engine and the pools' (engine thread, lock held)."""

    def __init__(
        self,
        providers: ProviderSet,
        lease: Engine,
        pools: Mapping[str, Engine],
        clock: Clock,
        *,
        tick_s: int = HOUR,
    ) -> None:
        """``tick_s``: how often a noticed tenant's work beyond its entitlement is drained."""
        home = providers.home()
        assert home is not None
        self.providers = providers
        self.lease_name = home.name
        self.lease = lease
        self.pools = dict(pools)
        self.clock = clock
        self.where: dict[str, str] = {}  # a job on a pool -> that pool
        self.last: dict[str, Routed] = {}  # each routed job's latest route
        self.specs: dict[str, JobSpec] = {}  # routed jobs on the lease, as submitted
        self.spent: dict[tuple[str, str], int] = defaultdict(int)  # (tenant, month) -> micro
        self.sinks: list[Callable[[dict[str, Any]], None]] = []
        self.tick_s = tick_s
        self.leaving: dict[str, tuple[str, int]] = {}  # job -> (pool, attempt) at its checkpoint
        self.stuck: set[str] = set()  # running jobs a drain found nowhere to go
        # Copies a migrating job's checkpoint to the pool (job, pool): set by the server.
        self.carry: Callable[[str, str], None] | None = None
        self._agenda: list[tuple[int, int, int, str]] = []
        self._seq = 0
        self._noticed: set[str] = set()
        lease.observers.append(self._lease_event)
        for eng in self.pools.values():
            eng.observers.append(partial(self._ended, eng))
        for c in lease.contracts.values():
            if c.notice.given_at is not None:
                self._notice(c.tenant, c.notice.given_at)

    # -- where a job is -------------------------------------------------------------------
    def engine_of(self, job_id: str) -> Engine:
        p = self.where.get(job_id)
        return self.lease if p is None else self.pools[p]

    def accepted(self, spec: JobSpec) -> tuple[str, ...]:
        """The providers (the lease, pools) the job accepts, in its tenant's order: any of
        its tenant's when it names none; the lease when it names the lease or one of the
        lease's Slurm clusters."""
        mine = self.providers.terms(spec.tenant).providers
        if not spec.providers:
            return mine
        named = set(spec.providers)
        lease_ok = self.lease_name in named or bool(named & set(self.lease.topo.named_providers))
        return tuple(p for p in mine if p in named or (p == self.lease_name and lease_ok))

    def budget_left(self, tenant: str, now: int) -> int:
        terms = self.providers.terms(tenant)
        return terms.budget_micro_per_month - self.spent[(tenant, month_of(now))]

    def busy_gpus(self, pool: str) -> int:
        """GPUs held, queued or on their way on ``pool``."""
        return sum(r.spec.gpus for r in self.pools[pool].jobs.values() if r.state in LIVE)

    # -- routing --------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> None:
        """Route a committed submission and hand it to its provider's engine."""
        accepted = self.accepted(spec)
        if _fixed(spec) or not any(p in self.pools for p in accepted):
            self.lease.submit(self._on_lease(spec))
            return
        now = self.clock.now()
        r = self._route(spec, accepted, spec.duration_s, 0, now)
        if r.provider is not None and r.provider in self.pools:
            self._to_pool(spec, r, spec.duration_s, now)
            return
        self._record(r, self.lease_name, now, now, 0)
        self.specs[spec.id] = spec
        self.lease.submit(self._on_lease(spec))
        self._recheck_at(spec, spec.submit_s)

    def _route(
        self, spec: JobSpec, accepted: tuple[str, ...], work_s: int, waited_s: int, now: int
    ) -> Route:
        terms = self.providers.terms(spec.tenant)
        write = self.lease.checkpoint_write_s
        ask = ask_of(replace(spec, providers=accepted), terms, work_s, write, waited_s)
        views = [
            self._pool_view(name, spec, work_s)
            if name in self.pools
            else cluster_view(name, self.lease, spec, now)
            for name in ask.candidates
        ]
        return route(ask, views, self.budget_left(spec.tenant, now))

    def _pool_view(self, name: str, spec: JobSpec, work_s: int) -> View:
        """What running ``work_s`` of the job on pool ``name`` would take and cost now."""
        pool = self.providers.get(name)
        assert isinstance(pool, PoolProvider)
        eng = self.pools[name]
        terms = self.providers.terms(spec.tenant)
        busy, write, restart = self.busy_gpus(name), eng.checkpoint_write_s, eng.restart_cost_s
        return pool_view(pool, busy, spec, terms, work_s, write, restart)

    def _to_pool(self, spec: JobSpec, r: Route, work_s: int, now: int) -> None:
        assert r.provider is not None
        pool = self.providers.get(r.provider)
        assert isinstance(pool, PoolProvider)
        per_gpu = self.providers.terms(spec.tenant).data_gb_per_gpu
        arrives = now + pool.move_in_s(spec.gpus, per_gpu)
        self.where[spec.id] = pool.name  # (before anything else: the recorder follows it)
        self.specs.pop(spec.id, None)
        self._record(r, pool.name, now, arrives, spec.gpus * per_gpu)
        if r.overflow:
            self.spent[(spec.tenant, month_of(now))] += r.cost_micro
        self.pools[pool.name].submit(
            replace(spec, submit_s=arrives, duration_s=work_s, providers=(), after=())
        )

    def _on_lease(self, spec: JobSpec) -> JobSpec:
        """The job as the lease's engine takes it: the lease's own clusters it names."""
        if not spec.providers:
            return spec
        clusters = tuple(p for p in spec.providers if p in self.lease.topo.named_providers)
        return replace(spec, providers=clusters)

    def _record(self, r: Route, provider: str, now: int, arrives: int, data_gb: int) -> None:
        rec = Routed(
            r.job_id,
            r.tenant,
            provider,
            r.reason.value,
            r.detail,
            now,
            arrives,
            r.cost_micro if provider in self.pools else 0,
            r.overflow,
            data_gb,
        )
        self.last[r.job_id] = rec
        ev: dict[str, Any] = {"t": now, "event": "route", **r.to_json(), "provider": provider}
        ev.update(overflow=r.overflow, arrives_s=arrives, cost_micro=rec.cost_micro)
        ev.update(data_gb=data_gb)
        for sink in self.sinks:
            sink(ev)

    # -- re-checks at max_wait ------------------------------------------------------------
    def _recheck_at(self, spec: JobSpec, since: int) -> None:
        wait = self.providers.terms(spec.tenant).max_wait_for(spec.kind, spec.max_wait_s)
        if wait is not None:  # (a second past it: the time waited is then over it)
            self._push(since + wait + 1, RECHECK, spec.id)

    def _push(self, t: int, kind: int, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._agenda, (t, self._seq, kind, key))
        self.clock.wake()

    def peek(self) -> int | None:
        return self._agenda[0][0] if self._agenda else None

    def step(self, now: int) -> None:
        """The router's events due: re-checks at ``max_wait``, drains under notice,
        cut-overs at a migrating job's checkpoint."""
        while self._agenda and self._agenda[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._agenda)
            if kind == RECHECK:
                self._recheck(key, now)
            elif kind == NOTICE:
                self._drain(key, now)
            else:
                self._cutover(key, now)

    def _recheck(self, job_id: str, now: int, say_stay: bool = True) -> None:
        """Route again a job whose ``max_wait`` has passed on the lease, never started
        (``say_stay``: record the route when it stays too)."""
        spec = self.specs.get(job_id)
        run = self.lease.jobs.get(job_id)
        if spec is None or job_id in self.where or run is None:
            return
        if run.state is not JobState.PENDING or run.first_start_s is not None:
            return
        if job_held(self.lease, run):
            return
        work = run.remaining_s()
        r = self._route(spec, self.accepted(spec), work, now - run.queued_since_s, now)
        if r.provider is None or r.provider not in self.pools:
            if say_stay:
                self._record(r, self.lease_name, now, now, 0)  # (it waits: the reason now)
            return
        self.where[job_id] = r.provider  # the lease's cancel below is not the job's
        self.lease.cancel(job_id)
        self._to_pool(spec, r, work, now)

    # -- notice: drain to the pools ------------------------------------------------------
    def _ended(self, eng: Engine, ev: EngineEvent) -> None:
        """A job that ended for good needs no spec or route kept for it (its pool is)."""
        if isinstance(ev, RunEnded | JobCancelled | JobRejected):
            run = eng.jobs.get(ev.job)
            if run is not None and run.state not in LIVE and self.engine_of(ev.job) is eng:
                self.specs.pop(ev.job, None)
                self.last.pop(ev.job, None)

    def _lease_event(self, ev: EngineEvent) -> None:
        self._ended(self.lease, ev)
        if isinstance(ev, ContractChanged):
            c = self.lease.contracts.get(ev.tenant)
            if c is not None and c.notice.given_at is not None:
                self._notice(ev.tenant, c.notice.given_at)

    def _notice(self, tenant: str, at_s: int) -> None:
        terms = self.providers.terms(tenant)
        if tenant not in self._noticed and any(p in self.pools for p in terms.providers):
            self._noticed.add(tenant)
            self._push(max(at_s, self.clock.now()), NOTICE, tenant)

    def _drain(self, tenant: str, now: int) -> None:
        """Each ``tick_s`` under notice: the GPUs the tenant holds on the lease beyond its
        entitlement (which falls with the notice's ramp) are covered by moving its running
        jobs to its pools (``federation.policy.drain``: most important first), each at its
        next checkpoint; its queued jobs are routed again (it borrows nothing more)."""
        c = self.lease.contracts.get(tenant)
        if c is None or not noticed(self.lease, tenant, now):
            return
        lease = self.lease
        leaving = sum(
            lease.jobs[j].spec.gpus for j in self.leaving if lease.jobs[j].tenant == tenant
        )
        excess = lease.allocated.get(tenant, 0) - leaving - lease.entitled.get(tenant, 0)
        if excess > 0:
            self._plan(tenant, excess, now)
        for pj in list(lease.queue.of_tenant(tenant)):
            self._recheck(pj.spec.id, now, say_stay=False)
        end = (c.notice.given_at or now) + c.notice.period_s
        if now + self.tick_s <= end + DAY:
            self._push(now + self.tick_s, NOTICE, tenant)

    def _plan(self, tenant: str, excess: int, now: int) -> None:
        terms = self.providers.terms(tenant)
        asks: list[tuple[JobAsk, Sequence[View]]] = []
        for j in self.lease.owners.running_by_tenant.get(tenant, {}):
            run, spec = self.lease.jobs[j], self.specs.get(j)
            if (
                spec is None
                or j in self.leaving
                or run.state is not JobState.RUNNING
                or spec.checkpoint_interval_s <= 0
            ):
                continue
            work = max(1, run.spec.duration_s - run.progress_s(next_checkpoint_s(run, now)))
            pools = tuple(p for p in self.accepted(spec) if p in self.pools)
            write = self.lease.checkpoint_write_s
            ask = ask_of(replace(spec, providers=pools), terms, work, write)
            asks.append((ask, [self._pool_view(name, spec, work) for name in ask.candidates]))
        for r in drain(self.lease_name, excess, asks):
            run = self.lease.jobs[r.job_id]
            if r.provider is None:
                if r.job_id not in self.stuck:  # (said once)
                    self.stuck.add(r.job_id)
                    self._record(r, self.lease_name, now, now, 0)
                continue
            at = next_checkpoint_s(run, now)
            self.leaving[r.job_id] = (r.provider, run.attempt)
            detail = f"moves to {r.provider} at its next checkpoint (in {at - now} s) under notice"
            plan = replace(r, detail=detail, cost_micro=0)
            self._record(plan, self.lease_name, now, at, 0)
            self._push(at, CUTOVER, r.job_id)

    def _cutover(self, job_id: str, now: int) -> None:
        """A migrating job's checkpoint is written: stop it on the lease, and queue the
        work it has left on the pool (after provisioning and its data move)."""
        pool, attempt = self.leaving.pop(job_id)
        run = self.lease.jobs.get(job_id)
        spec = self.specs.get(job_id)
        if run is None or spec is None or job_id in self.where:
            return
        carried = run.carried_on_move(now, attempt)
        if carried is None:  # ended, or being reclaimed (a later drain takes it if it must)
            return
        saved, lost = carried
        work = max(1, spec.duration_s - saved)
        detail = (
            f"migrated from {self.lease_name} to {pool} under notice at its checkpoint: "
            f"{work} s of work carried, {lost} s lost"
        )
        r = Route(job_id, spec.tenant, pool, RouteReason.MIGRATED, detail)
        self.where[job_id] = pool  # the lease's cancel below closes its run as migrated
        self.lease.cancel(job_id)
        if self.carry is not None:
            self.carry(job_id, pool)
        self._to_pool(spec, r, work, now)
        self.pools[pool].jobs[job_id].attempt = run.attempt  # its runs on the pool number on

    # -- why ------------------------------------------------------------------------------
    def why(self, job_id: str) -> tuple[str, str]:
        """Why a pending job waits, as its engine says; on its way to a pool, or waiting
        on the lease because it could not overflow, as its route says."""
        eng = self.engine_of(job_id)
        reason, detail = eng.why(job_id)
        rec = self.last.get(job_id)
        run = eng.jobs.get(job_id)
        if rec is None or run is None or run.state is not JobState.PENDING:
            return reason, detail
        if job_id in self.where:
            left = rec.arrives_s - self.clock.now()
            if left > 0:
                return PROVISIONING, (
                    f"{rec.detail}; queued on {rec.provider} in {left} s "
                    "(provisioning and moving its data in)"
                )
            return reason, f"on {rec.provider}: {detail}" if detail else f"on {rec.provider}"
        if rec.reason in WAITS and run.first_start_s is None:
            return rec.reason, f"{rec.detail}; {detail}" if detail else rec.detail
        return reason, detail

    # -- after a restart ------------------------------------------------------------------
    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """The stored routing decisions (oldest first): each job's latest route and
        pool, and the budget spent per tenant and month."""
        for row in rows:
            rec = Routed.from_row(row)
            self.last[rec.job_id] = rec
            if rec.overflow:
                self.spent[(rec.tenant, rec.month)] += rec.cost_micro
            if rec.provider in self.pools:
                self.where[rec.job_id] = rec.provider
            else:
                self.where.pop(rec.job_id, None)

    def on_pool(self, spec: JobSpec) -> JobSpec:
        """A stored job of a pool as its engine takes it back: queued there when its
        provisioning ends, as first decided."""
        rec = self.last[spec.id]
        return replace(spec, submit_s=max(spec.submit_s, rec.arrives_s), providers=(), after=())

    def unrouted(self, spec: JobSpec) -> bool:
        """A stored pending job never routed (the server stopped before its route was
        stored) that routing concerns: it is routed again, not restored on the lease."""
        if spec.id in self.last or _fixed(spec):
            return False
        return any(p in self.pools for p in self.accepted(spec))

    def restored(self, on_lease: Sequence[JobRun], live: Collection[str] | None = None) -> None:
        """The routed jobs restored on the lease: re-checks for those pending; all may be
        drained under notice. Routes of jobs not ``live`` (ended) are let go."""
        if live is not None:
            self.last = {j: r for j, r in self.last.items() if j in live}
            self.where = {j: p for j, p in self.where.items() if j in live}
        for run in on_lease:
            spec = run.spec
            if spec.id in self.last and not _fixed(spec):
                self.specs[spec.id] = spec
                if run.state is JobState.PENDING and run.first_start_s is None:
                    self._recheck_at(spec, spec.submit_s)


def _fixed(spec: JobSpec) -> bool:
    """Jobs that stay on the lease: dependencies, pipeline stages, service replicas."""
    return bool(spec.after or spec.pipeline) or spec.kind is JobKind.SERVICE
