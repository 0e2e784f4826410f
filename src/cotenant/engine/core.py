"""The engine: one event loop for live and simulated time.

Each turn: take the next time (engine events and the backend's), integrate the
accounting up to it, take what the backend reports, handle engine events due
(submissions, reclaim deadlines, contract changes, faults), then run one
scheduling cycle if anything changed. The cycle snapshots the cluster, asks the
policy for decisions, and applies them: decide first, act second.

The engine composes its parts (Kueue's cache and queue manager under one scheduler
loop) and owns only the loop and the cycle:

- ``agenda``: its own events, one heap (``engine.agenda``);
- ``queue``: the pending queue (``engine.queue``);
- ``running``: the running set, the cache (``engine.running``);
- ``book``: contracts, rivals and entitlements (``engine.tenants``);
- ``owners``: owned and borrowed GPUs, the rebalance, lenders (``engine.ownership``);
- ``guarantees``: the guarantee monitor, violations and shortfall (``engine.guarantees``);
- ``usage``: allocation intervals into the ledger (``engine.usage``);
- ``life``: the job lifecycle, one requeue path (``engine.lifecycle``);
- ``faults``: node faults (``engine.faults``);
- ``verdicts``: why jobs wait, and counts (``engine.verdicts``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cotenant.backends.base import Backend, JobEnded, NodeHealthChanged
from cotenant.cluster.state import ClusterState, Health, Placement
from cotenant.cluster.topology import Topology
from cotenant.contracts.entitlement import next_change
from cotenant.engine.accounting import Accounting
from cotenant.engine.agenda import (
    CALLBACK,
    CONTRACT,
    DEADLINE,
    SUBMIT,
    TICK,
    TICK_NOW,
    Agenda,
)
from cotenant.engine.clock import Clock
from cotenant.engine.dependencies import Dependencies
from cotenant.engine.events import (
    ContractChanged,
    CycleWatcher,
    DecisionSink,
    Emitter,
    JobCancelled,
    NodeHealthSet,
    Observer,
    StartHeld,
)
from cotenant.engine.faults import FaultLog, NodeFaults
from cotenant.engine.guarantees import GuaranteeMonitor
from cotenant.engine.jobs import JobRun
from cotenant.engine.lifecycle import JobLifecycle
from cotenant.engine.ownership import Ownership
from cotenant.engine.powercap import hold_for_power
from cotenant.engine.queue import PendingQueue
from cotenant.engine.running import RunningSet
from cotenant.engine.tenants import TenantBook
from cotenant.engine.usage import UsageMeter
from cotenant.engine.verdicts import Verdicts
from cotenant.metering.energy import SiteEnergy, topology_power_headroom
from cotenant.metering.ledger import UsageLedger
from cotenant.model.contracts import Contract
from cotenant.model.errors import Conflict, NotFound
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.decisions import Decisions, Reason
from cotenant.scheduler.policies import Policy
from cotenant.scheduler.snapshot import RunningJob, Snapshot

__all__ = ["DecisionSink", "Engine", "Observer"]


class Engine:
    def __init__(
        self,
        topo: Topology,
        contracts: Iterable[Contract],
        policy: Policy,
        backend: Backend,
        clock: Clock,
        *,
        restart_cost_s: int = 600,
        checkpoint_write_s: int = 60,
        sample_step_s: int = 3600,
        tick_s: int = 3600,
        tenants: Iterable[str] = (),
    ) -> None:
        self.state = ClusterState(topo)
        self.policy = policy
        self.clock = clock
        self.jobs: dict[str, JobRun] = {}
        self.site: SiteEnergy | None = None  # set by the composition root; its power cap binds
        self.acct = Accounting(clock.now(), topo.total_gpus, sample_step_s)
        self.agenda = Agenda(tick_s)
        self.bus = Emitter()
        self.queue = PendingQueue(topo)
        self.running_set = RunningSet()
        self.book = TenantBook(topo)
        self.owners = Ownership(self.jobs)
        self.guarantees = GuaranteeMonitor(
            self.jobs, self.state, self.queue, self.running_set, self.book, self.owners, self.acct
        )
        self.usage = UsageMeter(topo)
        self.faults = NodeFaults(self, topo.n_nodes)
        self.life = JobLifecycle(
            self.jobs,
            self.state,
            self.queue,
            self.running_set,
            self.owners,
            self.guarantees,
            self.usage,
            self.book,
            self.acct,
            backend,
            self.agenda,
            self.bus.emit,
            self.faults.record,
            restart_cost_s=restart_cost_s,
            checkpoint_write_s=checkpoint_write_s,
        )
        self.verdicts = Verdicts()
        self.deps = Dependencies(self)  # jobs held for their dependencies; pipelines
        self.life.dependencies = self.deps
        for t in tenants:
            self.state.tenant_index(t)
        for c in contracts:
            self.set_contract(c)

    # -- inputs ---------------------------------------------------------------------------
    def set_contract(self, contract: Contract) -> None:
        """Add or amend a contract; entitlements are re-read at the next cycle."""
        self.book.set_contract(contract)
        self.state.tenant_index(contract.tenant)
        now = self.clock.now()
        nxt = next_change(self.book.contracts.values(), now)
        if nxt is not None:
            self.agenda.push(nxt, CONTRACT)
        if contract.notice.given_at is not None:
            self.agenda.push(max(now, contract.notice.given_at), TICK)
        self._wake()
        self.bus.emit(ContractChanged(now, contract.tenant))

    def give_notice(self, tenant: str, at_s: int | None = None) -> Contract:
        c = self.contracts.get(tenant)
        if c is None:
            raise NotFound(f"tenant {tenant!r} has no contract")
        if c.notice.given_at is not None:
            raise Conflict(f"notice was already given for {tenant!r} at {c.notice.given_at}")
        new = c.with_notice(self.clock.now() if at_s is None else at_s)
        self.set_contract(new)
        return new

    def submit(self, spec: JobSpec) -> JobRun:
        self.deps.check(spec)
        run = self.life.submit(spec, self.clock.now())
        self.clock.wake()
        return run

    def cancel(self, job_id: str) -> JobRun:
        run = self._job(job_id)
        now = self.clock.now()
        self.life.cancel(run, now)
        self._wake()
        self.bus.emit(JobCancelled(now, job_id, run.tenant))
        return run

    def why(self, job_id: str) -> tuple[str, str]:
        run = self._job(job_id)
        if run.state is JobState.PENDING:
            held = self.deps.why(run)
            if held is not None:
                return held
        return self.verdicts.why(run)

    # -- the loop -------------------------------------------------------------------------
    def run(
        self,
        until_s: int,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Run until ``until_s``; with ``stop``, keep running (live) until it says so or
        ``until_s`` is reached. Simulated time ends at ``until_s`` exactly."""
        while stop is None or not stop():
            nxt = self.peek()
            if nxt is None or nxt > until_s:
                if stop is None or self.clock.now() >= until_s:
                    break
                target = until_s  # live: sleep (the clock wakes on new work)
            else:
                target = nxt
            now = min(self.clock.wait_until(target), until_s)
            self.step(now)
            if progress is not None:
                progress(now)
        if self.clock.now() < until_s and stop is None:
            self.clock.wait_until(until_s)
        self._advance(min(until_s, self.clock.now()))

    def step(self, t: int) -> None:
        """Handle everything due by ``t``, then run a cycle if anything changed."""
        self.handle_due(t)
        if self.agenda.dirty:
            self.cycle(t)

    def handle_due(self, t: int) -> None:
        """Handle everything due by ``t``, without a scheduling cycle. A live step may run
        late (the clock's ``t`` past the events' own times): every event is still handled,
        each told its own time, so a reclaim deadline that passed during the lag is honoured
        now, not dropped. A job the backend saw end is released at its end (the accounting
        advanced to it first); what the engine itself does happens at ``t``."""
        for ev in self.backend.poll(t):
            if isinstance(ev, JobEnded):
                self._advance(min(ev.end_s, t))
                self.life.ended(ev)
            elif isinstance(ev, NodeHealthChanged):
                self._advance(t)
                self.node_reported(ev.node, ev.health, ev.reason, t)
        self._advance(t)
        while (entry := self.agenda.pop_due(t)) is not None:
            due, kind, _, key = entry
            self._on_event(kind, key, due, t)

    def lag_s(self, now: int) -> int:
        """How far the engine is behind ``now``: now minus the time of the oldest event
        (its own or the backend's) still waiting to be handled; 0 when nothing is due."""
        nxt = self.peek()
        return 0 if nxt is None or nxt >= now else now - nxt

    def _wake(self) -> None:
        """Something changed outside an event (cancel, health, contract): cycle now."""
        self.agenda.dirty = True
        self.agenda.push(self.clock.now(), TICK_NOW)
        self.clock.wake()

    def next_event_time(self) -> int | None:
        """The time of the next event, the engine's own or the backend's (None: none)."""
        return self.peek()

    def peek(self) -> int | None:
        """The time of the next event, the engine's own or the backend's (SimPy's
        ``peek``; None: none)."""
        own = self.agenda.next_time()
        b = self.backend.next_event_time()
        if b is None:
            return own
        return b if own is None else min(own, b)

    def _on_event(self, kind: int, key: str, due: int, now: int) -> None:
        """Handle one event that fell due at ``due``, at the step's time ``now`` (>= due).
        Whether an event still applies is judged by its own time, never by the step's;
        what it does happens at ``now`` (the GPUs were held until then)."""
        if kind == CALLBACK:
            self.agenda.callback(key)(now)
        elif kind == SUBMIT:
            self.life.queued(key, due, now)
        elif kind == DEADLINE:
            run = self.jobs[key]
            # A deadline event is stale when the run was since stopped or reclaimed anew
            # (another deadline); a live one is honoured however late the step is.
            if run.state is JobState.RECLAIMING and run.reclaim_deadline_s == due:
                self.life.preempt(run, now)
        elif kind == CONTRACT:
            nxt = next_change(self.book.contracts.values(), due)
            if nxt is not None:
                self.agenda.push(nxt, CONTRACT)
        elif kind == TICK and any(
            c.notice.given_at is not None
            and c.notice.given_at <= due < c.notice.given_at + c.notice.period_s
            for c in self.book.contracts.values()
        ):
            self.agenda.push(due + self.agenda.tick_s, TICK)
        self.agenda.dirty = True

    # -- the cycle ------------------------------------------------------------------------
    def snapshot(self, now: int) -> Snapshot:
        owners, book = self.owners, self.book
        return Snapshot(
            now=now,
            state=self.state,
            pending=self.queue.as_tuple(),
            running=self.running_set.as_tuple(),
            contracts=book.contracts,
            entitlements=book.entitled,
            owned_gpus=owners.owned,
            owned_by_priority=owners.owned_by_priority,
            borrowed_gpus=owners.borrowed,
            rivals=book.rivals,
            power_headroom_gpus=(
                None
                if self.site is None
                else topology_power_headroom(self.site, self.topo, self.state)
            ),
            never_fit=self.queue.never_fit_ids(),
            pending_tenants=self.queue.tenants_waiting(),
            pending_by_tenant=self.queue.by_tenant(),
            reclaiming=self.running_set.reclaiming(),
        )

    def cycle(self, now: int) -> Decisions:
        """One scheduling cycle, in numbered steps: (1) entitlements, (2) ownership,
        (3) decide on a snapshot, the site power cap holding any start past it
        (``engine/powercap.py``), (4) apply, (5) ownership again, (6) check guarantees."""
        if self.hold is not None:  # decide nothing now; cycle again once released
            self.agenda.dirty = True
            return Decisions()
        self.agenda.dirty = False
        self._read_entitlements(now)
        self._rebalance(now)
        if not self.queue:
            self._refresh_lenders()
            return Decisions()
        snap = self.snapshot(now)
        d, held = hold_for_power(snap, self.policy.decide(snap))
        for w in held:  # the policy's starts past the site power cap: waits, audited
            run = self.jobs[w.job_id]
            reason = w.reason.value
            self.bus.emit(
                StartHeld(
                    now, w.job_id, run.tenant, run.spec.gpus, self.policy.name, reason, w.detail
                )
            )
        for watch in self.bus.cycle_watchers:
            watch(now, d)
        self.verdicts.count(d)
        self._apply(d, now)
        self._drop_unstated_promises(d, now)
        demoted = self.owners.demotions
        self._rebalance(now)
        if self.owners.demotions != demoted:
            # Work just became borrowed (a more important job of its tenant started): other
            # tenants may reclaim it now, so decide again at this instant, not next event.
            self.agenda.dirty = True
            self.agenda.push(now, TICK_NOW)
        self.guarantees.check(now, self.site)
        self._refresh_lenders()
        self.agenda.wake_policy(
            now, self.policy.wake_every_s, bool(self.queue) and bool(self.running_set)
        )
        return d

    def _drop_unstated_promises(self, d: Decisions, now: int) -> None:
        """A promise lives while the policy restates it each cycle: a waiting job the
        cycle's decisions leave without one (it no longer fits its tenant's headroom, say)
        holds no room, for the policy's next cycle and for the guarantee monitor alike."""
        promised = self.guarantees.promised
        if not promised:
            return
        stated = {w.job_id for w in d.waits if w.promise is not None}
        for job_id in [j for j in promised if j not in stated]:
            run = self.jobs[job_id]
            if run.state is JobState.PENDING and self.guarantees.promise(run, None, now):
                self.queue.refresh(run)

    def _read_entitlements(self, now: int) -> None:
        if self.book.read(now, self.down_gpus()):
            self.owners.unbalanced.update(self.owners.running_by_tenant)
            self.owners.lenders_stale = True

    def _rebalance(self, now: int) -> None:
        promised = self.guarantees.promised_tenants()
        self.owners.rebalance(self.book.entitled, promised, self.life.retag, now)

    def _refresh_lenders(self) -> None:
        self.owners.refresh_lenders(self.book.entitled, self.book.contracts)

    def _apply(self, d: Decisions, now: int) -> None:
        """Act on the cycle's decisions: rejects, starts, reclaims, then waits."""
        self.verdicts.take(d, self.queue)
        life = self.life
        for rj in d.rejects:
            life.reject(rj, now)
        for pl in d.places:
            life.place(pl, now, self.policy.honours_contracts)
        for rc in d.reclaims:
            life.reclaim(rc, now)
        for w in d.waits:
            life.wait(w, now)

    def _advance(self, t: int) -> None:
        """Integrate the accounting up to ``t`` (state is constant since its last time)."""
        if t <= self.acct.last_s:
            return
        healthy = self.topo.total_gpus - self.down_gpus()
        self.guarantees.accrue_shortfall(t - self.acct.last_s)
        o = self.owners
        self.acct.advance(
            t,
            o.allocated,
            o.owned,
            o.borrowed,
            self.book.entitled,
            o.lenders_idle,
            healthy,
            o.changed,
        )

    # -- the job lifecycle and the fault path ---------------------------------------------
    def interrupt(self, run: JobRun, t: int, cause: str, planned: bool = False) -> None:
        """Stop a running job because of a fault (see ``JobLifecycle.interrupt``)."""
        self.life.interrupt(run, t, cause, planned)

    @property
    def backend(self) -> Backend:
        """The execution backend: the lifecycle's, so replacing it replaces it everywhere."""
        return self.life.backend

    @backend.setter
    def backend(self, value: Backend) -> None:
        self.life.backend = value

    @property
    def fault_log(self) -> FaultLog:
        return self.faults.log

    def fail_nodes(self, nodes: list[int], t: int, cause: str, repair_s: int) -> None:
        self.faults.fail_nodes(nodes, t, cause, repair_s)

    def repair_nodes(self, nodes: list[int], t: int, cause: str) -> None:
        self.faults.repair_nodes(nodes, t, cause)

    def drain_node(self, node: int, t: int, down_at_s: int, repair_s: int, cause: str) -> None:
        self.faults.drain_node(node, t, down_at_s, repair_s, cause)

    def interrupt_job_on_node(self, node: int, t: int, cause: str) -> None:
        self.faults.interrupt_job_on_node(node, t, cause)

    def node_reported(self, node: int, health: Health, reason: str, t: int) -> None:
        self.faults.node_reported(node, health, reason, t)

    def down_gpus(self) -> int:
        return self.state.down_gpus()

    def jobs_on_node(self, node: int) -> list[JobRun]:
        """The runs holding GPUs on ``node``, by job id."""
        return [self.jobs[j] for j in self.running_set.ids_on_node(node)]

    def at(self, t: int, fn: Callable[[int], Any]) -> None:
        """Run ``fn(now)`` when the clock reaches ``t`` (before that instant's cycle). ``now``
        is the step's time: ``t`` itself in the twin, later if a live step runs late; the
        callback acts then (a fault found late takes its nodes down from then on)."""
        self.agenda.at(t, fn)

    def set_node_health(self, node: int, health: Health, reason: str, now: int) -> None:
        self.state.set_health(node, health)
        self.guarantees.set_health(node, health, now)
        self._wake()
        self.bus.emit(NodeHealthSet(now, node, health.name.lower(), reason))

    # -- usage and restore ----------------------------------------------------------------
    def open_usage(self) -> Mapping[str, tuple[int, bool]]:
        """Allocation intervals still open, by job: (since, borrowed). Read-only."""
        return self.usage.open_intervals()

    def resume(
        self, run: JobRun, placement: Placement, borrowed: bool, start_s: int, usage_since_s: int
    ) -> None:
        """Take a run back as it was (restore after a restart): started at ``start_s`` on
        ``placement``, its open allocation interval from ``usage_since_s``. No decision is
        made; the backend is told to start it as on any start."""
        self.life.start(run, placement, borrowed, start_s, Reason.PLACED)
        self.usage.open(run.id, usage_since_s, borrowed)

    def _job(self, job_id: str) -> JobRun:
        run = self.jobs.get(job_id)
        if run is None:
            raise NotFound(f"no job {job_id!r}")
        return run

    # -- views ----------------------------------------------------------------------------
    def pending_count(self) -> int:
        return len(self.queue)

    def pending_gpus(self, tenant: str) -> int:
        """GPUs asked for by the tenant's queued jobs."""
        return self.queue.gpus.get(tenant, 0)

    def pending_jobs_by_tenant(self) -> dict[str, int]:
        return self.queue.counts()

    def running_jobs_by_tenant(self) -> dict[str, int]:
        return {t: len(runs) for t, runs in self.owners.running_by_tenant.items() if runs}

    def running(self) -> list[RunningJob]:
        return list(self.running_set.views)

    def tenants(self) -> list[str]:
        return list(self.state.tenants)

    def entitlements_now(self) -> Mapping[str, int]:
        return dict(self.book.entitled)

    # -- the parts' state under the names the rest of the package reads --------------------
    @property
    def topo(self) -> Topology:
        return self.state.topo

    @property
    def contracts(self) -> dict[str, Contract]:
        return self.book.contracts

    @property
    def entitled(self) -> dict[str, int]:
        return self.book.entitled

    @entitled.setter
    def entitled(self, value: dict[str, int]) -> None:
        self.book.entitled = value

    @property
    def deficit(self) -> dict[str, int]:
        return self.book.deficit

    @property
    def allocated(self) -> dict[str, int]:
        return self.owners.allocated

    @property
    def owned(self) -> dict[str, int]:
        return self.owners.owned

    @property
    def borrowed(self) -> dict[str, int]:
        return self.owners.borrowed

    @property
    def ledger(self) -> UsageLedger:
        return self.usage.ledger

    @ledger.setter
    def ledger(self, value: UsageLedger) -> None:
        self.usage.ledger = value

    @property
    def sinks(self) -> list[DecisionSink]:
        """Each event's JSON form (the decision log)."""
        return self.bus.sinks

    @sinks.setter
    def sinks(self, value: list[DecisionSink]) -> None:
        self.bus.sinks = value

    @property
    def observers(self) -> list[Observer]:
        """Each event as its typed record."""
        return self.bus.observers

    @property
    def cycle_watchers(self) -> list[CycleWatcher]:
        """Each cycle's decisions, whole and before they are applied (the policy is
        observed, never wrapped: e.g. ``metering.power.PowerHolds``)."""
        return self.bus.cycle_watchers

    @property
    def hold(self) -> tuple[str, str] | None:
        """(reason, detail) while the engine may start nothing new (the live service's
        store cannot record decisions); running work goes on."""
        return self.verdicts.hold

    @hold.setter
    def hold(self, value: tuple[str, str] | None) -> None:
        self.verdicts.hold = value

    @property
    def cycles(self) -> int:
        return self.verdicts.cycles

    @property
    def decisions_made(self) -> int:
        """Every verdict of every cycle, waits included."""
        return self.verdicts.decisions_made

    @property
    def waits(self) -> int:
        """Of ``decisions_made``, the "still waiting" verdicts."""
        return self.verdicts.waits

    @property
    def restart_cost_s(self) -> int:
        return self.life.restart_cost_s

    @property
    def checkpoint_write_s(self) -> int:
        return self.life.checkpoint_write_s

    @property
    def tick_s(self) -> int:
        return self.agenda.tick_s
