"""The federation: one engine per provider on one shared clock, and the routing between
them (docs/design/0014-providers.md).

The federation owns no GPU: each provider's engine places gangs, keeps rivals apart and
never gives a GPU twice, so a gang never spans providers. The federation decides where a
job goes (``policy.route`` over ``views`` of the engines) and moves work when it must:

- a job is routed when its submit time comes: it stays on a lease while it would wait
  there within its ``max_wait``, else it overflows to a pool the budget allows;
- a job still queued on a lease when its ``max_wait`` has passed is routed again;
- under notice, each hour, running work beyond the tenant's entitlement on a lease moves
  to its other providers (``policy.drain``), each job at its next checkpoint, and queued
  work is routed again;
- on a pool that uses spot, a checkpointing job may be interrupted (seeded), and resumes
  from its checkpoint on demand.

Time comes only from the clock (``wait_until``): the same loop runs simulated or live,
like ``Engine.run``. Every routing choice is a ``Route`` with its reason, handed to
``sinks`` (JSON) and kept in ``routes``.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from cotenant.engine.clock import Clock
from cotenant.engine.core import Engine
from cotenant.engine.events import (
    ContractChanged,
    EngineEvent,
    JobCancelled,
    JobRejected,
    RunEnded,
    RunPlaced,
)
from cotenant.engine.jobs import JobRun
from cotenant.federation.policy import JobAsk, Route, View, drain, route
from cotenant.federation.providers import ClusterProvider, PoolProvider, ProviderSet
from cotenant.federation.spec import check_job_providers
from cotenant.federation.views import (
    TenantLoad,
    ask_of,
    cluster_view,
    noticed,
    pool_view,
    spot_eligible,
    tenant_load,
)
from cotenant.model.errors import Conflict, NotFound
from cotenant.model.jobs import JobKind, JobSpec, JobState
from cotenant.model.time import DAY, HOUR

ROUTE, RECHECK, NOTICE, CUTOVER = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Move:
    """A job moved between providers: overflow of a queued job, or migration under notice
    of a running one at its checkpoint."""

    job_id: str
    tenant: str
    source: str
    target: str
    t: int  # when it left the source
    arrives_s: int  # when it is queued on the target (provisioning and data moved)
    work_s: int  # work it carries (saved in its checkpoint)
    lost_s: int  # work done since the checkpoint, lost by the move
    gpus: int
    data_gb: int
    move_micro: int  # the data move's cost
    migration: bool


@dataclass
class FederationBook:
    """What the federation keeps of the jobs it routed: plain data, read by the reports."""

    specs: dict[str, JobSpec] = field(default_factory=dict)  # as submitted
    where: dict[str, str] = field(default_factory=dict)  # job -> the provider it is on now
    visited: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    moves: list[Move] = field(default_factory=list)
    # (tenant, month) -> micro-dollars reserved for overflow
    reserved: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    overflowed: dict[str, Route] = field(default_factory=dict)
    # pool -> GPUs held, queued or on their way there
    busy: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    leaving: dict[str, tuple[str, int]] = field(default_factory=dict)  # job -> (to, attempt)
    stuck: set[str] = field(default_factory=set)  # jobs a drain found nowhere to go
    spot_until: dict[tuple[str, str], int] = field(default_factory=dict)  # (pool, job)
    spot_interruptions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cancelled: set[str] = field(default_factory=set)  # cancelled before they were routed


class Federation:
    def __init__(
        self,
        providers: ProviderSet,
        engines: Mapping[str, Engine],
        clock: Clock,
        *,
        seed: int = 0,
        tick_s: int = HOUR,
    ) -> None:
        self.providers = providers
        self.engines = {p.name: engines[p.name] for p in providers.providers}
        self.clock = clock
        self.tick_s = tick_s
        self.rng = np.random.default_rng(seed)
        self._agenda: list[tuple[int, int, int, str]] = []
        self._seq = 0
        self.book = FederationBook()
        self.routes: list[Route] = []
        self.sinks: list[Callable[[dict[str, object]], None]] = []
        self._noticed: set[tuple[str, str]] = set()
        self._version = 0  # bumped whenever the federation changes an engine
        self._loads: dict[tuple[str, str], tuple[int, int, TenantLoad]] = {}
        for name, eng in self.engines.items():
            eng.observers.append(self._observer(name))
            if isinstance(self.providers.get(name), ClusterProvider):
                for c in eng.contracts.values():
                    if c.notice.given_at is not None:
                        self._notice(name, c.tenant, c.notice.given_at)

    # -- inputs ---------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> None:
        """Take a job; it is routed when its submit time comes. A job naming a provider its
        tenant may not use is refused (``SpecError`` on ``providers``)."""
        if spec.id in self.book.specs:
            raise Conflict(f"job id {spec.id!r} already exists")
        check_job_providers(self.providers, spec.tenant, spec.providers)
        self.book.specs[spec.id] = spec
        self._push(max(spec.submit_s, self.clock.now()), ROUTE, spec.id)
        self.clock.wake()

    def cancel(self, job_id: str) -> None:
        """Cancel a job wherever it is (not yet routed: it never will be)."""
        if job_id not in self.book.specs:
            raise NotFound(f"no job {job_id!r}")
        where = self.book.where.get(job_id)
        if where is None:
            if job_id in self.book.cancelled:
                raise Conflict(f"job {job_id!r} is already cancelled")
            self.book.cancelled.add(job_id)
            return
        self.engines[where].cancel(job_id)

    def why(self, job_id: str) -> tuple[str, str]:
        """Where the job is and why it waits there, as its engine says."""
        where = self.book.where.get(job_id)
        if where is None:
            if job_id in self.book.cancelled:
                return "cancelled", "before it was routed"
            if job_id not in self.book.specs:
                raise NotFound(f"no job {job_id!r}")
            return "not-routed-yet", f"routed at its submit time {self.book.specs[job_id].submit_s}"
        state, detail = self.engines[where].why(job_id)
        return state, f"on {where}" + (f": {detail}" if detail else "")

    def give_notice(self, provider: str, tenant: str, at_s: int | None = None) -> None:
        """Notice on one provider's contract; the drain starts at its time."""
        c = self.engines[provider].give_notice(tenant, at_s)
        assert c.notice.given_at is not None
        self._notice(provider, tenant, c.notice.given_at)

    # -- the loop -------------------------------------------------------------------------
    def peek(self) -> int | None:
        times = [t for t in (e.peek() for e in self.engines.values()) if t is not None]
        if self._agenda:
            times.append(self._agenda[0][0])
        return min(times) if times else None

    def run(self, until_s: int, progress: Callable[[int], None] | None = None) -> None:
        """Run every provider to ``until_s`` on the shared clock (as ``Engine.run``)."""
        while True:
            nxt = self.peek()
            if nxt is None or nxt > until_s:
                break
            now = min(self.clock.wait_until(nxt), until_s)
            self.step(now)
            if progress is not None:
                progress(now)
        for eng in self.engines.values():
            eng.run(until_s)

    def step(self, now: int) -> None:
        """Step every engine with something due, then the federation's own events."""
        for eng in self.engines.values():
            t = eng.peek()
            if t is not None and t <= now:
                eng.step(now)
        while self._agenda and self._agenda[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._agenda)
            if kind == ROUTE:
                if key not in self.book.cancelled:
                    self._route_new(self.book.specs[key], now)
            elif kind == RECHECK:
                self._recheck(key, now)
            elif kind == NOTICE:
                provider, tenant = key.split("\0")
                self._drain(provider, tenant, now)
            elif kind == CUTOVER:
                self._cutover(key, now)

    def _push(self, t: int, kind: int, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._agenda, (t, self._seq, kind, key))

    # -- routing --------------------------------------------------------------------------
    def _route_new(self, spec: JobSpec, now: int) -> None:
        pinned = self._pinned(spec)
        ask = self._ask(spec, spec.duration_s, 0, pinned)
        r = route(ask, self._views(ask, spec, spec.duration_s), self.budget_left(spec.tenant, now))
        self._log(r)
        target = r.provider or ask.candidates[0]
        if r.overflow:
            self.book.overflowed[spec.id] = r
            self.book.reserved[(spec.tenant, month_of(now))] += r.cost_micro
        self._send(spec, target, now, spec.duration_s)
        if not isinstance(self.providers.get(target), PoolProvider):
            self._maybe_recheck(spec, now)
        if r.overflow:
            self._record_move(spec, "", target, now, spec.duration_s, 0, migration=False)

    def _recheck(self, job_id: str, now: int) -> None:
        """A job still queued on a lease at its ``max_wait``, never started: route again
        with the time it waited."""
        src = self.book.where[job_id]
        if isinstance(self.providers.get(src), PoolProvider):
            return
        run = self.engines[src].jobs.get(job_id)
        if run is None or run.state is not JobState.PENDING or run.first_start_s is not None:
            return
        self._reroute(run, src, now)

    def _reroute(self, run: JobRun, src: str, now: int) -> None:
        spec = self.book.specs[run.id]
        if _fixed(spec) or job_held(self.engines[src], run):
            return
        work = run.remaining_s()
        ask = self._ask(spec, work, now - run.queued_since_s, None)  # waited in this queue
        r = route(ask, self._views(ask, spec, work), self.budget_left(spec.tenant, now))
        if not r.overflow or r.provider is None:
            return
        self._log(r)
        self.book.overflowed[spec.id] = r
        self.book.reserved[(spec.tenant, month_of(now))] += r.cost_micro
        self._leave(src, run, now)
        self._record_move(spec, src, r.provider, now, work, 0, migration=False)
        self._send(spec, r.provider, now, work)

    def _ask(self, spec: JobSpec, work_s: int, waited_s: int, pinned: str | None) -> JobAsk:
        write = next(iter(self.engines.values())).checkpoint_write_s
        return ask_of(spec, self.providers.terms(spec.tenant), work_s, write, waited_s, pinned)

    def _views(self, ask: JobAsk, spec: JobSpec, work_s: int) -> list[View]:
        out: list[View] = []
        terms = self.providers.terms(spec.tenant)
        now = self.clock.now()
        for name in ask.candidates:
            p = self.providers.get(name)
            eng = self.engines[name]
            if isinstance(p, PoolProvider):
                out.append(
                    pool_view(
                        p,
                        self.book.busy[name],
                        spec,
                        terms,
                        work_s,
                        eng.checkpoint_write_s,
                        eng.restart_cost_s,
                    )
                )
            else:
                out.append(cluster_view(name, eng, spec, now, self._load(name, spec.tenant, now)))
        return out

    def _load(self, name: str, tenant: str, now: int) -> TenantLoad:
        """The tenant's runs and queue on ``name``, read once per instant and change."""
        hit = self._loads.get((name, tenant))
        eng = self.engines[name]
        stamp = self._version + eng.cycles
        if hit is not None and hit[0] == now and hit[1] == stamp:
            return hit[2]
        load = tenant_load(eng, tenant, now)
        self._loads[(name, tenant)] = (now, stamp, load)
        return load

    def _pinned(self, spec: JobSpec) -> str | None:
        for dep in spec.after:
            for j in dep.jobs:
                if j in self.book.where:
                    return self.book.where[j]
        return None

    def budget_left(self, tenant: str, now: int) -> int:
        terms = self.providers.terms(tenant)
        return terms.budget_micro_per_month - self.book.reserved[(tenant, month_of(now))]

    def _log(self, r: Route) -> None:
        self.routes.append(r)
        if self.sinks:
            entry: dict[str, object] = {"t": self.clock.now(), "event": "route", **r.to_json()}
            for sink in self.sinks:
                sink(entry)

    # -- moving work ----------------------------------------------------------------------
    def _send(self, spec: JobSpec, target: str, now: int, work_s: int) -> None:
        """Submit the job (its remaining work) to ``target``'s engine: at once on a cluster,
        after provisioning and moving its data in on a pool."""
        eng = self.engines[target]
        p = self.providers.get(target)
        at = now
        if isinstance(p, PoolProvider):
            at = now + p.move_in_s(spec.gpus, self.providers.terms(spec.tenant).data_gb_per_gpu)
            self.book.busy[target] += spec.gpus
        est = spec.estimate_s
        done = spec.duration_s - work_s
        sent = replace(
            spec,
            submit_s=at,
            duration_s=work_s,
            estimate_s=None if est is None else max(0, est - done),
        )
        eng.submit(sent)
        self._version += 1
        self.book.where[spec.id] = target
        self.book.visited[spec.id].append(target)

    def _maybe_recheck(self, spec: JobSpec, now: int) -> None:
        wait = self.providers.terms(spec.tenant).max_wait_for(spec.kind, spec.max_wait_s)
        target = self.book.where[spec.id]
        if wait is not None and not _fixed(spec) and self._has_pool(spec, target):
            self._push(now + wait, RECHECK, spec.id)

    def _has_pool(self, spec: JobSpec, current: str) -> bool:
        accepted = spec.providers or self.providers.terms(spec.tenant).providers
        return any(
            n != current and isinstance(self.providers.get(n), PoolProvider) for n in accepted
        )

    def _leave(self, src: str, run: JobRun, now: int) -> None:
        """Take the job off ``src`` (its engine brought up to ``now`` first)."""
        eng = self.engines[src]
        eng.handle_due(now)  # its accounting up to now; no cycle
        eng.cancel(run.id)
        self._version += 1

    def _record_move(
        self,
        spec: JobSpec,
        src: str,
        target: str,
        now: int,
        work_s: int,
        lost_s: int,
        *,
        migration: bool,
    ) -> None:
        p = self.providers.get(target)
        gb = self.providers.terms(spec.tenant).data_gb_per_gpu
        data, micro, at = 0, 0, now
        if isinstance(p, PoolProvider):
            data, micro = spec.gpus * gb, p.move_in_micro(spec.gpus, gb)
            at = now + p.move_in_s(spec.gpus, gb)
        self.book.moves.append(
            Move(
                spec.id,
                spec.tenant,
                src,
                target,
                now,
                at,
                work_s,
                lost_s,
                spec.gpus,
                data,
                micro,
                migration,
            )
        )

    # -- notice: drain to other providers -------------------------------------------------
    def _notice(self, provider: str, tenant: str, at_s: int) -> None:
        if (provider, tenant) not in self._noticed:
            self._noticed.add((provider, tenant))
            self._push(max(at_s, self.clock.now()), NOTICE, f"{provider}\0{tenant}")

    def _drain(self, provider: str, tenant: str, now: int) -> None:
        """Hourly under notice: move the tenant's running work beyond its entitlement on
        ``provider`` to its other providers (at each job's next checkpoint), and route its
        queued work again."""
        eng = self.engines[provider]
        c = eng.contracts.get(tenant)
        if c is None or not noticed(eng, tenant, now):
            return
        eng.handle_due(now)
        self._version += 1
        leaving = sum(
            eng.jobs[j].spec.gpus
            for j in self.book.leaving
            if self.book.where.get(j) == provider and eng.jobs[j].tenant == tenant
        )
        excess = eng.allocated.get(tenant, 0) - leaving - eng.entitled.get(tenant, 0)
        if excess > 0:
            self._plan_drain(provider, eng, tenant, excess, now)
        for pj in list(eng.queue.of_tenant(tenant)):
            run = eng.jobs[pj.spec.id]
            if pj.spec.id in self.book.specs and run.state is JobState.PENDING:
                self._reroute(run, provider, now)
        end = c.notice.given_at + c.notice.period_s if c.notice.given_at is not None else now
        if now + self.tick_s <= end + DAY:
            self._push(now + self.tick_s, NOTICE, f"{provider}\0{tenant}")

    def _plan_drain(self, provider: str, eng: Engine, tenant: str, excess: int, now: int) -> None:
        asks: list[tuple[JobAsk, list[View]]] = []
        for j in eng.owners.running_by_tenant.get(tenant, {}):
            run = eng.jobs[j]
            spec = self.book.specs.get(j)
            if (
                spec is None
                or j in self.book.leaving
                or run.state is not JobState.RUNNING
                or spec.checkpoint_interval_s <= 0
                or _fixed(spec)
            ):
                continue
            work = max(1, run.spec.duration_s - run.progress_s(next_checkpoint_s(run, now)))
            ask = self._ask(spec, work, 0, None)
            ask = replace(ask, candidates=tuple(n for n in ask.candidates if n != provider))
            asks.append((ask, self._views(ask, spec, work)))
        for r in drain(provider, excess, asks):
            if r.provider is None:
                if r.job_id not in self.book.stuck:
                    self.book.stuck.add(r.job_id)
                    self._log(r)
                continue
            run = eng.jobs[r.job_id]
            self._log(r)
            self.book.leaving[r.job_id] = (r.provider, run.attempt)
            if isinstance(self.providers.get(r.provider), PoolProvider):
                self.book.busy[r.provider] += run.spec.gpus  # hold its room from now
            self._push(next_checkpoint_s(run, now), CUTOVER, r.job_id)

    def _cutover(self, job_id: str, now: int) -> None:
        """A migrating job's checkpoint is written: stop it here, carry on there."""
        target, attempt = self.book.leaving.pop(job_id)
        src = self.book.where[job_id]
        eng = self.engines[src]
        eng.handle_due(now)
        self._version += 1
        run = eng.jobs[job_id]
        pool = isinstance(self.providers.get(target), PoolProvider)
        if pool:
            self.book.busy[target] -= run.spec.gpus  # _send holds it again
        carried = run.carried_on_move(now, attempt)
        if carried is None:  # ended, or being reclaimed (the next drain takes it if it must)
            return
        saved, lost = carried
        spec = self.book.specs[job_id]
        work = run.spec.duration_s - saved
        eng.cancel(job_id)
        self._version += 1
        self._record_move(spec, src, target, now, work, lost, migration=True)
        self._send(spec, target, now, work)

    # -- pool events: spot interruptions, room coming back --------------------------------
    def _observer(self, name: str) -> Callable[[EngineEvent], None]:
        p = self.providers.get(name)
        if not isinstance(p, PoolProvider):
            eng = self.engines[name]

            def on_contract(ev: EngineEvent) -> None:
                # notice given on the engine itself (a live server's contract change)
                if isinstance(ev, ContractChanged):
                    c = eng.contracts.get(ev.tenant)
                    if c is not None and c.notice.given_at is not None:
                        self._notice(name, ev.tenant, c.notice.given_at)

            return on_contract

        def on(ev: EngineEvent) -> None:
            if isinstance(ev, RunPlaced):
                self._spot_start(p, ev)
            elif isinstance(ev, RunEnded | JobRejected | JobCancelled):
                self.book.busy[name] -= self.engines[name].jobs[ev.job].spec.gpus

        return on

    def _spot_start(self, pool: PoolProvider, ev: RunPlaced) -> None:
        eng = self.engines[pool.name]
        run = eng.jobs[ev.job]
        key = (pool.name, ev.job)
        if not spot_eligible(pool, run.spec) or run.attempt != 1:
            return
        self.book.spot_until[key] = 1 << 62
        rate = pool.spot_interruptions_per_node_day * len(ev.nodes)
        if rate <= 0:
            return
        after = math.ceil(self.rng.exponential(DAY / rate))
        attempt = run.attempt

        def interrupt(now: int) -> None:
            if run.state is JobState.RUNNING and run.attempt == attempt:
                self.book.spot_until[key] = now
                self.book.spot_interruptions[pool.name] += 1
                eng.interrupt(run, now, "spot")

        if ev.t + after < run.expected_end_s():
            eng.at(ev.t + after, interrupt)

    # -- views ----------------------------------------------------------------------------
    def job_book(self) -> dict[str, dict[str, int]]:
        """Per tenant, every submitted job by where it ended up, whatever provider it is
        on; ``lost`` (submitted minus the rest) must be 0."""
        keys = ("submitted", "completed", "running", "pending", "rejected", "failed", "cancelled")
        out: dict[str, dict[str, int]] = {}
        for job_id, spec in self.book.specs.items():
            book = out.setdefault(spec.tenant, {k: 0 for k in keys})
            book["submitted"] += 1
            where = self.book.where.get(job_id)
            if where is None:
                book["cancelled" if job_id in self.book.cancelled else "pending"] += 1
                continue
            run = self.engines[where].jobs[job_id]
            st = run.state
            if st is JobState.FAILED and run.first_start_s is None:
                book["rejected"] += 1
            elif st in (JobState.RUNNING, JobState.RECLAIMING):
                book["running"] += 1
            else:
                book[st.value] += 1
        for book in out.values():
            book["lost"] = book["submitted"] - sum(v for k, v in book.items() if k != "submitted")
        return out


def next_checkpoint_s(run: JobRun, now: int) -> int:
    """When the run's next periodic checkpoint is written (its end, if that comes first)."""
    every, write = run.spec.checkpoint_interval_s, run.write_s
    begin = run.start_s + run.restart_s
    end = run.expected_end_s()
    if every <= 0 or now < begin:
        return min(end, max(now, begin + every + write)) if every > 0 else end
    k = (now - begin) // (every + write) + 1
    return min(end, begin + k * (every + write))


def job_held(eng: Engine, run: JobRun) -> bool:
    return run.id in eng.deps.held


def month_of(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m")


def _fixed(spec: JobSpec) -> bool:
    """Jobs that never move once routed: pipeline stages and jobs with dependencies (the
    jobs they wait for must be on the same engine), and service replicas."""
    return bool(spec.after or spec.pipeline) or spec.kind is JobKind.SERVICE
