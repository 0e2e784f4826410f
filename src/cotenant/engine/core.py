"""The engine: one event loop for live and simulated time.

Each turn: take the next time (engine events and the backend's), integrate the
accounting up to it, take what the backend reports, handle engine events due
(submissions, reclaim deadlines, contract changes, faults), then run one
scheduling cycle if anything changed. The cycle snapshots the cluster, asks the
policy for decisions, and applies them: decide first, act second.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from cotenant.backends.base import Backend, JobEnded, NodeHealthChanged, StartRequest
from cotenant.cluster.state import ClusterState, Health, Placement
from cotenant.cluster.topology import Topology
from cotenant.contracts.entitlement import deliverable, entitlements, next_change, stable_until
from cotenant.engine.accounting import Accounting
from cotenant.engine.clock import Clock
from cotenant.engine.dependencies import Dependencies
from cotenant.engine.events import (
    ContractChanged,
    EngineEvent,
    JobCancelled,
    JobRejected,
    JobSubmitted,
    NodeHealthSet,
    RunEnded,
    RunInterrupted,
    RunPlaced,
    RunPreempted,
    RunReclaimed,
    RunRetagged,
)
from cotenant.engine.faults import FaultLog, NodeFaults, interruptible
from cotenant.engine.jobs import JobRun
from cotenant.engine.queue import PendingQueue, queue_key
from cotenant.metering.energy import SiteEnergy, topology_power_headroom
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.model.contracts import Contract
from cotenant.model.errors import Conflict, NotFound, SpecError
from cotenant.model.jobs import JobKind, JobSpec, JobState
from cotenant.scheduler.decisions import Decisions, Reason
from cotenant.scheduler.placement import find_placement
from cotenant.scheduler.policies import Policy
from cotenant.scheduler.snapshot import RunningJob, Snapshot, blocked_nodes, rival_map

# Event kinds, in the order they are handled at one instant (0: scheduled callbacks).
_CALLBACK, _DEADLINE, _SUBMIT, _CONTRACT, _TICK, _TICK_NOW, _POLICY_WAKE = 0, 1, 2, 3, 4, 5, 6

DecisionSink = Callable[[dict[str, Any]], None]
Observer = Callable[[EngineEvent], None]


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
        self.topo = topo
        self.state = ClusterState(topo)
        # Per contracted tenant: the cluster without other tenants' borrowed allocations.
        self._guarantee_views: dict[str, ClusterState] = {}
        self._owed: dict[str, set[str]] = {}
        self._promised: set[str] = set()
        # Tenants whose ownership may need rebalancing: what a rebalance reads of them
        # (entitlement, runs, owned and borrowed GPUs, promises) changed since their last.
        self._unbalanced: set[str] = set()
        self._promised_for: set[str] = set()  # tenants with a promise at the last rebalance
        self._demotions = 0  # owned runs retagged as borrowed, ever
        self._policy_wake_s = -1  # the cycle a time-driven policy asked for
        self._order: list[str] = []  # tenants by contract priority (see _tenant_order)
        self._order_for = -1
        # Entitlements at [_ent_from, _ent_until) and the key of what was delivered of them.
        self._ent_full: dict[str, int] = {}
        self._ent_from, self._ent_until = 0, -1
        self._delivered_for_down: int | None = None  # down GPUs `entitled` was derived for
        self.guarantee_window = 64
        self.contracts: dict[str, Contract] = {}
        self.policy = policy
        self.backend = backend
        self.clock = clock
        self.restart_cost_s = restart_cost_s
        self.checkpoint_write_s = checkpoint_write_s
        self.tick_s = tick_s
        self.jobs: dict[str, JobRun] = {}
        self.ledger = UsageLedger()
        self.site: SiteEnergy | None = None  # set by the composition root; its power cap binds
        self.sinks: list[DecisionSink] = []  # each event's JSON form (the decision log)
        self.observers: list[Observer] = []  # each event as its typed record
        self.acct = Accounting(clock.now(), topo.total_gpus, sample_step_s)
        self._capacity = topo.capacity_by_kind()
        self._events: list[tuple[int, int, int, str]] = []
        self._seq = itertools.count()
        self.queue = PendingQueue(topo)
        self._running_keys: list[tuple[int, str]] = []
        self._running_views: list[RunningJob] = []
        # The runs being reclaimed, by running key (expected end, id), and as a tuple.
        self._reclaiming: dict[tuple[int, str], RunningJob] = {}
        self._reclaiming_tuple: tuple[RunningJob, ...] | None = ()
        self._lenders_stale = True  # owned GPUs or entitlements changed since the last refresh
        self._running_by_tenant: dict[str, dict[str, None]] = defaultdict(dict)
        self._borrowed_sizes: dict[str, Counter[int]] = defaultdict(Counter)
        self._borrowed_prio: dict[str, Counter[int]] = defaultdict(Counter)
        self.owned_by_priority: dict[str, Counter[int]] = defaultdict(Counter)
        self.allocated: dict[str, int] = defaultdict(int)
        self.owned: dict[str, int] = defaultdict(int)
        self.borrowed: dict[str, int] = defaultdict(int)
        self.entitled: dict[str, int] = {}
        self._lenders_idle: dict[str, int] = {}
        self._rivals: dict[str, Any] = {}
        self._open_usage: dict[str, tuple[int, bool]] = {}
        self._tenant_reason: dict[str, tuple[str, str]] = {}
        # Strict FIFO's verdict for the jobs from the head on: (head's key, reason, detail).
        self._behind: tuple[tuple[int, int, int, str], str, str] | None = None
        self._node_jobs: dict[int, set[str]] = defaultdict(set)
        self._callbacks: dict[str, Callable[[int], Any]] = {}
        self.deficit: dict[str, int] = {}
        self.faults = NodeFaults(self, topo.n_nodes)
        self.deps = Dependencies(self)  # jobs held for their dependencies; pipelines
        self._dirty = True
        # (reason, detail) while the engine may start nothing new (the live service's
        # store cannot record decisions); running work goes on.
        self.hold: tuple[str, str] | None = None
        self._cycle_no = 0
        self.cycles = 0
        self.decisions_made = 0  # every verdict of every cycle, waits included
        self.waits = 0  # of which "still waiting" verdicts
        for t in tenants:
            self.state.tenant_index(t)
        for c in contracts:
            self.set_contract(c)

    # -- inputs ---------------------------------------------------------------------------
    def set_contract(self, contract: Contract) -> None:
        """Add or amend a contract; entitlements are re-read at the next cycle."""
        self.contracts[contract.tenant] = contract
        self._ent_until = -1  # re-read entitlements at the next cycle
        self._order_for = -1  # and the tenants' order
        self.state.tenant_index(contract.tenant)
        self._rivals = rival_map(self.contracts)
        now = self.clock.now()
        nxt = next_change(self.contracts.values(), now)
        if nxt is not None:
            self._push(nxt, _CONTRACT, "")
        if contract.notice.given_at is not None:
            self._push(max(now, contract.notice.given_at), _TICK, "")
        self._wake()
        self._emit(ContractChanged(now, contract.tenant))

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
        if spec.id in self.jobs:
            raise Conflict(f"job id {spec.id!r} already exists")
        if spec.gpus < 1:
            raise SpecError("gpus", f"must be >= 1, got {spec.gpus}")
        if spec.duration_s < 0:
            raise SpecError("duration_s", f"must not be negative, got {spec.duration_s}")
        self.deps.check(spec)
        run = JobRun(spec, queued_since_s=spec.submit_s)
        self.jobs[spec.id] = run
        self.state.tenant_index(spec.tenant)
        if spec.kind is not JobKind.SERVICE:  # replicas come and go with demand; the
            self.acct.tenants[spec.tenant].submitted += 1  # services report counts them
        at = max(spec.submit_s, self.clock.now())
        self._push(at, _SUBMIT, spec.id)
        self.clock.wake()
        return run

    def cancel(self, job_id: str) -> JobRun:
        run = self._job(job_id)
        now = self.clock.now()
        if run.state is JobState.PENDING:
            self.queue.remove(run)
        elif run.state in (JobState.RUNNING, JobState.RECLAIMING):
            self.backend.stop(job_id, now)
            self._stop_run(run, now)
        else:
            raise Conflict(f"job {job_id!r} is already {run.state.value}")
        run.state = JobState.CANCELLED
        run.end_s = now
        self._wake()
        self._emit(JobCancelled(now, job_id, run.tenant))
        return run

    def why(self, job_id: str) -> tuple[str, str]:
        run = self._job(job_id)
        if run.state is not JobState.PENDING:
            return run.state.value, run.reason_detail
        held = self.deps.why(run)
        if held is not None:
            return held
        if self.hold is not None:
            return self.hold
        if self._behind is not None and queue_key(run) >= self._behind[0]:
            return self._behind[1], self._behind[2]
        if run.reason:
            return run.reason, run.reason_detail
        return self._tenant_reason.get(run.tenant, ("queued", "not yet considered"))

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
            nxt = self._next_time()
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
        if self._dirty:
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
                self._on_ended(ev)
            elif isinstance(ev, NodeHealthChanged):
                self._advance(t)
                self.node_reported(ev.node, ev.health, ev.reason, t)
        self._advance(t)
        while self._events and self._events[0][0] <= t:
            due, kind, _, key = heapq.heappop(self._events)
            self._on_event(kind, key, due, t)

    def lag_s(self, now: int) -> int:
        """How far the engine is behind ``now``: now minus the time of the oldest event
        (its own or the backend's) still waiting to be handled; 0 when nothing is due."""
        nxt = self._next_time()
        return 0 if nxt is None or nxt >= now else now - nxt

    def _wake(self) -> None:
        """Something changed outside an event (cancel, health, contract): cycle now."""
        self._dirty = True
        self._push(self.clock.now(), _TICK_NOW, "")
        self.clock.wake()

    def next_event_time(self) -> int | None:
        """The time of the next event, the engine's own or the backend's (None: none)."""
        return self._next_time()

    def peek(self) -> int | None:
        """The time of the next event (SimPy's ``peek``): ``next_event_time``."""
        return self._next_time()

    def _next_time(self) -> int | None:
        times = [self._events[0][0]] if self._events else []
        b = self.backend.next_event_time()
        if b is not None:
            times.append(b)
        return min(times) if times else None

    def _push(self, t: int, kind: int, key: str) -> None:
        heapq.heappush(self._events, (t, kind, next(self._seq), key))

    def _on_event(self, kind: int, key: str, due: int, now: int) -> None:
        """Handle one event that fell due at ``due``, at the step's time ``now`` (>= due).
        Whether an event still applies is judged by its own time, never by the step's;
        what it does happens at ``now`` (the GPUs were held until then)."""
        if kind == _CALLBACK:
            self._callbacks.pop(key)(now)
        elif kind == _SUBMIT:
            run = self.jobs[key]
            if run.state is JobState.PENDING and run not in self.queue:
                run.queued_since_s = max(run.spec.submit_s, min(run.queued_since_s, due))
                if not self.deps.hold(run, now):
                    self._enqueue(run)
                self._emit(JobSubmitted(now, key, run.tenant, run.spec.gpus))
        elif kind == _DEADLINE:
            run = self.jobs[key]
            # A deadline event is stale when the run was since stopped or reclaimed anew
            # (another deadline); a live one is honoured however late the step is.
            if run.state is JobState.RECLAIMING and run.reclaim_deadline_s == due:
                self._preempt(run, now)
        elif kind == _CONTRACT:
            nxt = next_change(self.contracts.values(), due)
            if nxt is not None:
                self._push(nxt, _CONTRACT, "")
        elif kind == _TICK and any(
            c.notice.given_at is not None
            and c.notice.given_at <= due < c.notice.given_at + c.notice.period_s
            for c in self.contracts.values()
        ):
            self._push(due + self.tick_s, _TICK, "")
        self._dirty = True

    # -- the cycle ------------------------------------------------------------------------
    def snapshot(self, now: int) -> Snapshot:
        return Snapshot(
            now=now,
            state=self.state,
            pending=tuple(self.queue.views),
            running=tuple(self._running_views),
            contracts=self.contracts,
            entitlements=self.entitled,
            owned_gpus=self.owned,
            owned_by_priority=self.owned_by_priority,
            borrowed_gpus=self.borrowed,
            rivals=self._rivals,
            power_headroom_gpus=topology_power_headroom(self.site, self.topo, self.state),
            never_fit=frozenset(self.queue.never_fit),
            pending_tenants=self.queue.tenants_waiting(),
            pending_by_tenant=self.queue.by_tenant(),
            reclaiming=self._reclaiming_runs(),
        )

    def cycle(self, now: int) -> Decisions:
        """One scheduling cycle: entitlements, ownership, decide, apply, check guarantees."""
        if self.hold is not None:  # decide nothing now; cycle again once released
            self._dirty = True
            return Decisions()
        self._dirty = False
        self._cycle_no += 1
        self._read_entitlements(now)
        self._rebalance(now)
        if not self.queue:
            self._refresh_lenders()
            return Decisions()
        snap = self.snapshot(now)
        d = self.policy.decide(snap)
        self.cycles += 1
        self.decisions_made += len(d)
        self.waits += d.wait_count()
        self._apply(d, now)
        demoted = self._demotions
        self._rebalance(now)
        if self._demotions != demoted:
            # Work just became borrowed (a more important job of its tenant started): other
            # tenants may reclaim it now, so decide again at this instant, not next event.
            self._dirty = True
            self._push(now, _TICK_NOW, "")
        self._check_guarantees(now)
        self._refresh_lenders()
        self._schedule_policy_wake(now)
        return d

    def _schedule_policy_wake(self, now: int) -> None:
        """A policy whose decisions change with time alone (LAS demotes a job once it has
        had its quantum) sets ``wake_every_s``: while work waits and work runs, the engine
        cycles at that interval, not only on events."""
        every = self.policy.wake_every_s
        if every is None or every <= 0 or self._policy_wake_s > now:
            return
        if self.queue and self._running_views:
            self._policy_wake_s = now + every
            self._push(self._policy_wake_s, _POLICY_WAKE, "")

    def _read_entitlements(self, now: int) -> None:
        """Entitlements and what can be delivered of them, recomputed only when a contract
        changes, its term or notice reaches a boundary, or node health changes."""
        if not (self._ent_from <= now < self._ent_until):
            self._ent_full = entitlements(self.contracts.values(), now, self._capacity)
            until = stable_until(self.contracts.values(), now)
            self._ent_from, self._ent_until = now, (until if until is not None else 1 << 62)
            self._delivered_for_down = None
        down = self.down_gpus()
        if down != self._delivered_for_down:
            self.entitled, self.deficit = deliverable(
                self._ent_full, self.contracts, down, self.topo.total_gpus
            )
            self._unbalanced.update(self._running_by_tenant)
            self._lenders_stale = True
            self._delivered_for_down = down

    def _apply(self, d: Decisions, now: int) -> None:
        self._tenant_reason = {t: (w.reason.value, w.detail) for t, w in d.tenant_waits.items()}
        b = d.behind
        head = None if b is None else self.queue.head_key(b.index)
        self._behind = None if b is None or head is None else (head, b.reason.value, b.detail)
        for rj in d.rejects:
            run = self.jobs[rj.job_id]
            self.queue.remove(run)
            run.state = JobState.FAILED
            run.end_s = now
            run.reason, run.reason_detail = rj.reason.value, rj.detail
            self.acct.tenants[run.tenant].rejected += 1
            self._emit(JobRejected(now, rj.job_id, run.tenant, rj.reason.value, rj.detail))
        for pl in d.places:
            run = self.jobs[pl.job_id]
            if self.policy.honours_contracts:
                borrowed = pl.borrowed
            else:
                borrowed = self.owned[run.tenant] + run.spec.gpus > self.entitled.get(run.tenant, 0)
            self._start(run, pl.placement, borrowed, now, pl.reason)
        for rc in d.reclaims:
            run = self.jobs[rc.victim_id]
            hastened = (
                run.state is JobState.RECLAIMING
                and run.reclaim_deadline_s is not None
                and rc.deadline_s < run.reclaim_deadline_s
            )
            if run.state is not JobState.RUNNING and not hastened:
                continue
            self._running_remove(run)
            run.state = JobState.RECLAIMING
            self._unbalanced.add(run.tenant)
            run.reclaim_deadline_s = rc.deadline_s
            # The victim writes a checkpoint that completes by the deadline; a grace period
            # shorter than the write time leaves it its last periodic checkpoint.
            run.checkpoint_at_notice_s = run.current_run().saved_on_notice_s(now, rc.deadline_s)
            run.touch()
            self._running_add(run)
            self.backend.checkpoint(run.id, now)
            self._push(rc.deadline_s, _DEADLINE, run.id)
            self._emit(
                RunReclaimed(
                    now,
                    run.id,
                    run.tenant,
                    rc.beneficiary_id,
                    self.jobs[rc.beneficiary_id].tenant,
                    rc.deadline_s,
                    rc.rule.value,
                    True if hastened else None,
                )
            )
        for w in d.waits:
            run = self.jobs[w.job_id]
            run.reason, run.reason_detail = w.reason.value, w.detail
            if w.promise is None:
                self._promised.discard(run.id)
            else:
                self._promised.add(run.id)
            if w.promise != run.promise:
                if w.promise is None:
                    run.promised_since_s = None
                elif run.promised_since_s is None:
                    run.promised_since_s = now
                run.promise = w.promise
                self.queue.refresh(run)

    def _start(self, run: JobRun, placement: Any, borrowed: bool, now: int, reason: Reason) -> None:
        self.queue.remove(run)
        self.state.apply(run.tenant, placement)
        run.state = JobState.RUNNING
        run.placement = placement
        run.start_s = now
        run.restart_s = self.restart_cost_s if run.attempt > 0 else 0
        run.attempt += 1
        run.write_s = self.checkpoint_write_s
        run.borrowed = borrowed
        for n in placement.nodes:
            self._node_jobs[n].add(run.id)
        run.reclaim_deadline_s = None
        run.reason, run.reason_detail = reason.value, ""
        run.touch()
        if run.first_start_s is None:
            run.first_start_s = now
            self.acct.tenants[run.tenant].queue_delays_s.append(now - self.deps.eligible_s(run))
        c = self.contracts.get(run.tenant)
        if c is not None and run.entitled_since_s is not None:
            late = now - run.entitled_since_s - c.lending.reclaim_grace_s
            if late > 0:
                tt = self.acct.tenants[run.tenant]
                tt.violation_s += late
                tt.violation_jobs += 1
        run.entitled_since_s = None
        run.promise = run.promised_since_s = None
        self._promised.discard(run.id)
        self._running_add(run)
        self._hold(run, +1)
        self._open_usage[run.id] = (now, borrowed)
        names = self.topo.node_names
        self.backend.start(
            StartRequest(
                run.spec,
                run.attempt,
                placement,
                tuple(names[n] for n in placement.nodes),
                now,
                run.work_saved_s,
                run.restart_s,
                self.checkpoint_write_s,
            )
        )
        self._emit(
            RunPlaced(
                now, run.id, run.tenant, run.spec.gpus, placement.nodes, borrowed, reason.value
            )
        )

    def _hold(self, run: JobRun, sign: int) -> None:
        if run.placement is not None:
            for viewer, view in self._guarantee_views.items():
                if viewer == run.tenant or not run.borrowed:
                    if sign > 0:
                        view.apply(run.tenant, run.placement)
                    else:
                        view.release(run.tenant, run.placement)
        g = run.spec.gpus * sign
        self.allocated[run.tenant] += g
        if run.borrowed:
            self.borrowed[run.tenant] += g
            _count(self._borrowed_sizes[run.tenant], run.spec.gpus, sign)
            _count(self._borrowed_prio[run.tenant], run.spec.priority, sign)
        else:
            self.owned[run.tenant] += g
            _count(self.owned_by_priority[run.tenant], run.spec.priority, g)
            self._lenders_stale = True
        if sign > 0:
            self._running_by_tenant[run.tenant][run.id] = None
        else:
            self._running_by_tenant[run.tenant].pop(run.id, None)
        self._unbalanced.add(run.tenant)

    def _stop_run(self, run: JobRun, now: int) -> None:
        """Release a run's GPUs and close its usage interval."""
        assert run.placement is not None
        self._running_remove(run)
        self.state.release(run.tenant, run.placement)
        self._hold(run, -1)
        self._close_usage(run, now)
        for n in run.placement.nodes:
            self._node_jobs[n].discard(run.id)
        tt = self.acct.tenants[run.tenant]
        tt.restart_gpu_s += min(run.restart_s, now - run.start_s) * run.spec.gpus
        tt.checkpoint_gpu_s += run.checkpoint_overhead_s(now) * run.spec.gpus
        run.attained_gpu_s += (now - run.start_s) * run.spec.gpus
        run.placement = None
        run.reclaim_deadline_s = None
        run.touch()
        self._dirty = True

    def _close_usage(self, run: JobRun, now: int) -> None:
        start, borrowed = self._open_usage.pop(run.id)
        if now > start and run.placement is not None:
            self.ledger.append(
                UsageRecord(
                    run.id,
                    run.tenant,
                    run.spec.gpus,
                    self.topo.kind_of_node(run.placement.nodes[0]),
                    run.placement.nodes,
                    start,
                    now,
                    borrowed,
                    run.spec.kind.value,
                )
            )

    def _on_ended(self, ev: JobEnded) -> None:
        run = self.jobs.get(ev.job_id)
        if run is None or run.attempt != ev.attempt or run.placement is None:
            return
        t = ev.end_s
        self._stop_run(run, t)
        tt = self.acct.tenants[run.tenant]
        if ev.exit_code == 0:
            run.state = JobState.COMPLETED
            run.work_saved_s = run.spec.duration_s
            tt.completed += run.spec.kind is not JobKind.SERVICE
            tt.useful_gpu_s += run.spec.duration_s * run.spec.gpus
        else:
            run.state = JobState.FAILED
        run.end_s = t
        self._emit(RunEnded(t, run.id, run.tenant, run.state.value, ev.exit_code))

    def _preempt(self, run: JobRun, t: int) -> None:
        """Stop a reclaimed run at its deadline; it resumes later from its checkpoint (the
        one written on notice, else its last periodic one), queued from now."""
        saved = run.checkpoint_at_notice_s
        if saved is None:
            saved = run.saved_by_periodic_checkpoints_s(t)
        lost = self._stop_and_requeue(run, t, saved, queued_since_s=t, detail="")
        tt = self.acct.tenants[run.tenant]
        tt.preemptions += 1
        tt.preempted_lost_gpu_s += lost * run.spec.gpus
        run.preemptions += 1
        self._emit(RunPreempted(t, run.id, run.tenant, lost))

    def interrupt(self, run: JobRun, t: int, cause: str, planned: bool = False) -> None:
        """Stop a running job because of a fault; it resumes from its last checkpoint (a
        drain gives notice: one written in time), back in the queue at its original place:
        a fault is not the job's fault."""
        if not interruptible(run):
            return
        ckpt = run.current_run()
        saved = ckpt.checkpoint_by_s(t) if planned else ckpt.saved_s(t)
        lost = self._stop_and_requeue(
            run, t, saved, queued_since_s=run.spec.submit_s, detail=f"interrupted: {cause}"
        )
        run.interruptions += 1
        tt = self.acct.tenants[run.tenant]
        tt.interruptions += 1
        tt.failure_lost_gpu_s += lost * run.spec.gpus
        self.faults.record(run, cause, lost, planned)
        self._emit(RunInterrupted(t, run.id, run.tenant, cause, lost))

    def _stop_and_requeue(
        self, run: JobRun, t: int, saved: int, *, queued_since_s: int, detail: str
    ) -> int:
        """The one requeue path (preemption and faults): stop the run at ``t`` keeping
        ``saved`` of the job's work, and queue it again from ``queued_since_s``. Returns
        the work lost (s): what the run had done beyond ``saved``."""
        lost = max(0, run.progress_s(t) - saved)
        self.backend.stop(run.id, t)
        self._stop_run(run, t)
        run.lost_gpu_s += lost * run.spec.gpus
        run.work_saved_s = max(run.work_saved_s, saved)
        run.checkpoint_at_notice_s = None
        run.state = JobState.PENDING
        run.queued_since_s = queued_since_s
        run.reason, run.reason_detail = "requeued", detail
        run.touch()
        self._enqueue(run)
        return lost

    # -- node health ----------------------------------------------------------------------
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
        ids = self._node_jobs.get(node)
        return [self.jobs[j] for j in sorted(ids)] if ids else []

    def at(self, t: int, fn: Callable[[int], Any]) -> None:
        """Run ``fn(now)`` when the clock reaches ``t`` (before that instant's cycle). ``now``
        is the step's time: ``t`` itself in the twin, later if a live step runs late; the
        callback acts then (a fault found late takes its nodes down from then on)."""
        key = str(next(self._seq))
        self._callbacks[key] = fn
        self._push(t, _CALLBACK, key)

    def set_node_health(self, node: int, health: Health, reason: str, now: int) -> None:
        self.state.set_health(node, health)
        if health is not Health.HEALTHY:
            # Room promised on this node is lost to a fault, not to the scheduler: a job
            # waiting for it is owed afresh from now (the shortfall is the fault report's).
            for job_id in self._promised:
                run = self.jobs[job_id]
                if (
                    run.entitled_since_s is not None
                    and run.promise is not None
                    and node in run.promise.nodes
                ):
                    run.entitled_since_s = now
        for view in self._guarantee_views.values():
            view.set_health(node, health)
        self._wake()
        self._emit(NodeHealthSet(now, node, health.name.lower(), reason))

    # -- ownership ------------------------------------------------------------------------
    def _rebalance(self, now: int) -> None:
        """Keep each tenant's owned GPUs within its entitlement, given to its most important
        work: promote a borrowed run when room opens (or when lower-priority owned runs can
        give it room), then demote the least important owned runs (lowest priority, latest
        start) until the tenant owns no more than its entitlement. A tenant with a job
        waiting for a reclaim promotes nothing: that room is promised."""
        promised = self._promised_tenants()
        if promised != self._promised_for:
            self._unbalanced |= promised ^ self._promised_for
            self._promised_for = promised
        if not self._unbalanced:
            return
        # A tenant whose inputs did not change since a rebalance that changed nothing for it
        # would change nothing again; one that changed something (a retag) is marked anew.
        todo = [t for t in self._running_by_tenant if t in self._unbalanced]
        self._unbalanced.clear()
        for tenant in todo:
            ent = self.entitled.get(tenant, 0)
            sizes = self._borrowed_sizes.get(tenant)
            if sizes and tenant not in promised:
                top = max(self._borrowed_prio[tenant])
                if ent - self.owned[tenant] + self.owned_below(tenant, top) >= min(sizes):
                    self._promote(tenant, ent, now)
            if self.owned[tenant] > ent:
                runs = [self.jobs[j] for j in self._running_by_tenant[tenant]]
                runs = [r for r in runs if not r.borrowed]
                runs.sort(key=lambda r: (r.spec.priority, -r.start_s, r.id))
                for r in runs:
                    if self.owned[tenant] <= ent:
                        break
                    self._retag(r, True, now)

    def _promote(self, tenant: str, ent: int, now: int) -> None:
        runs = [self.jobs[j] for j in self._running_by_tenant[tenant]]
        runs = [r for r in runs if r.borrowed and r.state is JobState.RUNNING]
        runs.sort(key=lambda r: (-r.spec.priority, r.start_s, r.id))
        for r in runs:
            room = ent - self.owned[tenant] + self.owned_below(tenant, r.spec.priority)
            if r.spec.gpus <= room:
                self._retag(r, False, now)

    def owned_below(self, tenant: str, priority: int) -> int:
        """GPUs the tenant owns in runs less important than ``priority``."""
        return sum(g for p, g in self.owned_by_priority[tenant].items() if p < priority)

    def _promised_tenants(self) -> set[str]:
        return {self.jobs[j].tenant for j in self._promised}

    def _retag(self, run: JobRun, borrowed: bool, now: int) -> None:
        self._hold(run, -1)
        self._running_remove(run)
        self._close_usage(run, now)
        run.borrowed = borrowed
        self._demotions += borrowed
        run.touch()
        self._open_usage[run.id] = (now, borrowed)
        self._running_add(run)
        self._hold(run, +1)
        self._emit(RunRetagged(now, run.id, run.tenant, borrowed))

    def _refresh_lenders(self) -> None:
        if not self._lenders_stale:
            return
        self._lenders_stale = False
        self._lenders_idle = {
            t: max(0, e - self.owned[t])
            for t, e in self.entitled.items()
            if self.contracts[t].lending.lend_idle
        }

    # -- guarantees -----------------------------------------------------------------------
    def _check_guarantees(self, now: int) -> None:
        """Measure, independently of the policy, whether demand inside an entitlement waits
        longer than the grace period.

        A tenant's demand inside its entitlement is the prefix of its own queue that fits
        its headroom. A job in it is owed from the first cycle at which it would fit with
        other tenants' borrowed allocations gone and the owed demand ahead of it (tenants
        in contract-priority order) placed first; until then the tenant's own work, or the
        topology, holds it back, not a borrower. The check places on a per-tenant view kept
        incrementally and undoes its placements: no copies. Only the first
        ``guarantee_window`` jobs of each prefix are placed each cycle; later ones keep
        their state (a bound on the work per cycle; see docs/design/0001-core.md)."""
        if not any(self._owed.values()) and (not self.queue or not self.contracts):
            return  # nothing was owed, and nothing waits or nothing can be owed
        owed: list[tuple[str, Any]] = []
        promises = self._entitled_promises() if self._promised else []
        for tenant in self._tenant_order():
            keys = self.queue.tenant_keys(tenant)
            room = self.entitled.get(tenant, 0) - self.owned[tenant]
            if tenant not in self.contracts or room <= 0 or not keys:
                for job_id in self._owed.pop(tenant, set()):
                    self.jobs[job_id].entitled_since_s = None
                continue
            trial = self._guarantee_view(tenant)
            here: list[tuple[str, Any]] = []
            try:
                for other, p in promises:
                    q = trial.free_part(p) if other != tenant else None
                    if q is not None:
                        trial.apply(other, q)
                        here.append((other, q))
                for other, p in owed:
                    trial.apply(other, p, check=False)
                    here.append((other, p))
                # The site's power cap limits what is deliverable as much as the GPUs do;
                # other tenants' borrowers are gone in this view, so their power counts.
                power = topology_power_headroom(self.site, self.topo, trial)
                self._check_prefix(tenant, keys, room, power, trial, now, here, owed)
            finally:
                for other, p in reversed(here):
                    trial.release(other, p)

    def _check_prefix(
        self,
        tenant: str,
        keys: list[tuple[int, int, int, str]],
        room: int,
        power: int | None,
        trial: ClusterState,
        now: int,
        here: list[tuple[str, Any]],
        owed: list[tuple[str, Any]],
    ) -> None:
        usable = trial.usable()
        blocked = blocked_nodes(trial, tenant, self._rivals)
        elig = usable if blocked is None else usable & ~blocked
        owed_now: set[str] = set()
        power_room = (1 << 62) if power is None else power
        try:
            self._walk_prefix(
                tenant, keys, room, power_room, trial, elig, now, here, owed, owed_now
            )
        finally:
            # Jobs no longer owed (e.g. a job ahead of them is now held back) start afresh.
            for job_id in self._owed.get(tenant, set()) - owed_now:
                self.jobs[job_id].entitled_since_s = None
            self._owed[tenant] = owed_now

    def _walk_prefix(
        self,
        tenant: str,
        keys: list[tuple[int, int, int, str]],
        room: int,
        power_room: int,
        trial: ClusterState,
        elig: Any,
        now: int,
        here: list[tuple[str, Any]],
        owed: list[tuple[str, Any]],
        owed_now: set[str],
    ) -> None:
        # The tenant's jobs already promised room come first, as the policy serves them
        # (a promise is kept): room they hold is the tenant's own work holding it, not
        # a borrower, whatever their place in the queue (a job requeued after a fault
        # goes back to its old place, ahead of them).
        for run in self._own_promised(tenant):
            if run.spec.gpus > room:
                continue
            if run.spec.gpus > power_room:
                # Held for power, as the policy holds it: it keeps the power there is now
                # (the tenant's own work holds the rest), so what follows is not owed it.
                room -= run.spec.gpus
                power_room -= min(power_room, run.spec.gpus)
                continue
            p = run.promise
            if p is None or trial.free_part(p) != p:
                p = find_placement(
                    self.topo, trial.free, elig, run.spec.gpus, run.spec.constraint
                )
            if p is None:
                continue
            room -= run.spec.gpus
            power_room -= run.spec.gpus
            self._owe(tenant, run, p, trial, now, here, owed, owed_now)
        for n, key in enumerate(keys):
            run = self.jobs[key[3]]
            if run.id in owed_now:
                continue
            if run.spec.gpus > room or n >= self.guarantee_window:
                break
            if run.spec.gpus > power_room:
                break  # held for power by the site's cap: not deliverable, not owed
            room -= run.spec.gpus
            power_room -= run.spec.gpus
            p = find_placement(self.topo, trial.free, elig, run.spec.gpus, run.spec.constraint)
            if p is None:
                # Held back by the tenant's own work (or the topology): it is not owed yet,
                # and neither is anything behind it in the tenant's own order.
                break
            self._owe(tenant, run, p, trial, now, here, owed, owed_now)

    def _owe(
        self,
        tenant: str,
        run: JobRun,
        p: Placement,
        trial: ClusterState,
        now: int,
        here: list[tuple[str, Any]],
        owed: list[tuple[str, Any]],
        owed_now: set[str],
    ) -> None:
        """The job fits inside its entitlement with borrowers gone: it is owed (from now,
        if it was not already), and its room is taken in the trial view."""
        trial.apply(tenant, p)
        here.append((tenant, p))
        owed.append((tenant, p))
        owed_now.add(run.id)
        if run.entitled_since_s is None:
            run.entitled_since_s = now

    def _own_promised(self, tenant: str) -> list[JobRun]:
        """The tenant's pending jobs with room promised, in the order the policy serves
        them (oldest promise first)."""
        if not self._promised:
            return []
        runs = [self.jobs[j] for j in self._promised if self.jobs[j].tenant == tenant]
        runs.sort(key=lambda r: (r.promised_since_s or 0, r.id))
        return runs

    def _entitled_promises(self) -> list[tuple[str, Placement]]:
        """Room being reclaimed for jobs inside their tenant's entitlement (counting the
        room of the tenant's less important owned work, which such a job may take): it is
        spoken for, so other tenants are not owed it. Checked here against the contracts,
        not taken on the policy's word."""
        out: list[tuple[str, Placement]] = []
        spent: Counter[str] = Counter()
        runs = sorted(
            (self.jobs[j] for j in self._promised),
            key=lambda r: (r.promised_since_s or 0, r.id),
        )
        for run in runs:
            t, p = run.tenant, run.promise
            if p is None or t not in self.contracts:
                continue
            room = (
                self.entitled.get(t, 0)
                - self.owned[t]
                + self.owned_below(t, run.spec.priority)
                - spent[t]
            )
            if run.spec.gpus <= room:
                spent[t] += run.spec.gpus
                out.append((t, p))
        return out

    def _guarantee_view(self, tenant: str) -> ClusterState:
        view = self._guarantee_views.get(tenant)
        if view is None:
            view = self.state.copy()
            for rv in self._running_views:
                if rv.borrowed and rv.tenant != tenant:
                    view.release(rv.tenant, rv.placement)
            self._guarantee_views[tenant] = view
        return view

    def _tenant_order(self) -> list[str]:
        """Tenants with a queue, in contract-priority order (then name)."""
        seen = self.queue.tenants_seen()
        if len(seen) != self._order_for:
            self._order = sorted(seen, key=self._tenant_rank)
            self._order_for = len(seen)
        return self._order

    def _tenant_rank(self, t: str) -> tuple[int, str]:
        return (-(self.contracts[t].priority if t in self.contracts else -(1 << 30)), t)

    # -- bookkeeping ----------------------------------------------------------------------
    def _advance(self, t: int) -> None:
        if t <= self.acct.last_s:
            return
        healthy = self.topo.total_gpus - self.down_gpus()
        dt = t - self.acct.last_s
        for tenant, d in self.deficit.items():
            if d > 0:
                # Demand the full entitlement covers but the deliverable one (failures beyond
                # the spare pool taken out) does not.
                ent = self.entitled.get(tenant, 0)
                want = self.owned[tenant] + self.queue.gpus[tenant]
                short = max(0, min(ent + d, want) - ent)
                self.acct.tenants[tenant].shortfall_gpu_s += short * dt
        self.acct.advance(
            t, self.allocated, self.owned, self.borrowed, self.entitled, self._lenders_idle, healthy
        )

    def _enqueue(self, run: JobRun) -> None:
        self.queue.add(run)
        self._dirty = True

    def _running_add(self, run: JobRun) -> None:
        key = (run.expected_end_s(), run.id)
        i = bisect_left(self._running_keys, key)
        self._running_keys.insert(i, key)
        view = run.running_view()
        self._running_views.insert(i, view)
        if view.reclaiming:
            self._reclaiming[key] = view
            self._reclaiming_tuple = None

    def _running_remove(self, run: JobRun) -> None:
        key = (run.expected_end_s(), run.id)
        i = bisect_left(self._running_keys, key)
        if i < len(self._running_keys) and self._running_keys[i] == key:
            del self._running_keys[i]
            del self._running_views[i]
            if self._reclaiming.pop(key, None) is not None:
                self._reclaiming_tuple = None

    def _reclaiming_runs(self) -> tuple[RunningJob, ...]:
        """The runs being reclaimed, in the running set's order."""
        if self._reclaiming_tuple is None:
            self._reclaiming_tuple = tuple(self._reclaiming[k] for k in sorted(self._reclaiming))
        return self._reclaiming_tuple

    def _job(self, job_id: str) -> JobRun:
        run = self.jobs.get(job_id)
        if run is None:
            raise NotFound(f"no job {job_id!r}")
        return run

    def _emit(self, event: EngineEvent) -> None:
        """Tell the observers (typed) and the sinks (the JSON form, built once)."""
        for observer in self.observers:
            observer(event)
        if self.sinks:
            entry = event.to_json()
            for sink in self.sinks:
                sink(entry)

    # -- usage and restore ----------------------------------------------------------------
    def open_usage(self) -> Mapping[str, tuple[int, bool]]:
        """Allocation intervals still open, by job: (since, borrowed). Read-only."""
        return MappingProxyType(self._open_usage)

    def resume(
        self, run: JobRun, placement: Placement, borrowed: bool, start_s: int, usage_since_s: int
    ) -> None:
        """Take a run back as it was (restore after a restart): started at ``start_s`` on
        ``placement``, its open allocation interval from ``usage_since_s``. No decision is
        made; the backend is told to start it as on any start."""
        self._start(run, placement, borrowed, start_s, Reason.PLACED)
        self._open_usage[run.id] = (usage_since_s, borrowed)

    # -- views ----------------------------------------------------------------------------
    def pending_count(self) -> int:
        return len(self.queue)

    def pending_gpus(self, tenant: str) -> int:
        """GPUs asked for by the tenant's queued jobs."""
        return self.queue.gpus.get(tenant, 0)

    def pending_jobs_by_tenant(self) -> dict[str, int]:
        return self.queue.counts()

    def running_jobs_by_tenant(self) -> dict[str, int]:
        return {t: len(runs) for t, runs in self._running_by_tenant.items() if runs}

    def running(self) -> list[RunningJob]:
        return list(self._running_views)

    def tenants(self) -> list[str]:
        return list(self.state.tenants)

    def entitlements_now(self) -> Mapping[str, int]:
        return dict(self.entitled)


def _count(counter: Counter[int], key: int, delta: int) -> None:
    counter[key] += delta
    if counter[key] <= 0:
        del counter[key]
