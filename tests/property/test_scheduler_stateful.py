"""A stateful machine drives the engine with random submissions, time steps, cancellations,
node outages and notices, and checks the scheduler's invariants after every step:

- no GPU is given twice (free + held == capacity, and the running placements add up to
  what the cluster state says each tenant holds);
- gangs are all-or-nothing and stay inside their constraint's domain (AUTO: a gang of one
  node's size stays on one node);
- rivals never hold GPUs on the same node;
- nothing new is placed on a node that is not healthy;
- entitlements never exceed capacity in sum;
- metered GPU-seconds (closed ledger records plus open intervals) equal the GPU-seconds
  the accounting integrated, per tenant and split into own and borrowed;
- under ``contract``, demand inside an entitlement is served within the grace period
  (the engine's independent guarantee check records no violation).

The cluster: 8 nodes of 8 GPUs, 2 nodes to a rack, 2 racks to a block (64 GPUs). Tenant A
has 24 GPUs committed and names C as its rival; B has all the rest, or 16 GPUs; C has no
contract and only borrows.

Time: every input happens at ``self.now``. ``Engine.run(until)`` leaves the simulated clock
at its last event (see tests/unit/test_engine.py), so the machine moves the clock to
``until`` and steps the engine there, as the live loop does within a second of an input.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from builders import HOUR, T0, cluster, contract, engine, job
from cotenant.cluster.state import Health
from cotenant.engine.core import Engine
from cotenant.model.contracts import Ramp
from cotenant.model.jobs import Constraint, JobState
from cotenant.scheduler.placement import Level, smallest_level

TOPO = cluster(nodes=8, per_rack=2, racks_per_block=2)
CAPACITY = TOPO.total_gpus
TENANTS = ("A", "B", "C")
RIVALS = ("A", "C")
LIVE = (JobState.PENDING, JobState.RUNNING, JobState.RECLAIMING)

durations = st.one_of(st.sampled_from([60, 300, HOUR, 4 * HOUR]), st.integers(1, 6 * HOUR))
steps = st.one_of(st.sampled_from([1, 59, 60, 299, 300, 301, 600, HOUR]), st.integers(1, 4 * HOUR))


class SchedulerMachine(RuleBasedStateMachine):
    policy = "contract"

    def __init__(self) -> None:
        super().__init__()
        self.eng: Engine
        self.now = T0
        self.n_jobs = 0
        self.bad_places: list[str] = []

    @initialize(
        b_all_available=st.booleans(),
        notice_period=st.sampled_from([HOUR, 3 * HOUR, 8 * HOUR]),
        ramp=st.sampled_from(list(Ramp)),
        grace=st.sampled_from([0, 60, 300]),
    )
    def setup(self, b_all_available: bool, notice_period: int, ramp: Ramp, grace: int) -> None:
        terms: dict[str, Any] = {"notice_period": notice_period, "ramp": ramp, "grace": grace}
        a = contract("A", 24, rivals=("C",), **terms)
        b = (
            contract("B", all_available=True, **terms)
            if b_all_available
            else contract("B", 16, **terms)
        )
        self.eng = engine(TOPO, [a, b], self.policy, tenants=["C"])
        self.eng.sinks.append(self._on_event)
        self._advance(T0)

    # -- helpers --------------------------------------------------------------------------
    def _on_event(self, e: dict[str, Any]) -> None:
        if e["event"] == "place":
            health = self.eng.state.health
            bad = [n for n in e["nodes"] if health[n] != Health.HEALTHY]
            if bad:
                self.bad_places.append(f"{e['job']} placed at {e['t']} on unhealthy nodes {bad}")

    def _advance(self, t: int) -> None:
        self.eng.run(t)
        self.eng.clock.wait_until(t)
        self.eng.step(t)
        self.now = t

    def _live_jobs(self) -> list[str]:
        return sorted(j for j, r in self.eng.jobs.items() if r.state in LIVE)

    def _idle_healthy_nodes(self) -> list[int]:
        st_ = self.eng.state
        return [
            n
            for n in range(TOPO.n_nodes)
            if st_.health[n] == Health.HEALTHY and st_.free[n] == TOPO.node_gpus[n]
        ]

    def _down_nodes(self) -> list[int]:
        return [n for n in range(TOPO.n_nodes) if self.eng.state.health[n] == Health.DOWN]

    # -- rules ----------------------------------------------------------------------------
    @rule(
        tenant=st.sampled_from(TENANTS),
        gpus=st.one_of(st.integers(1, 32), st.sampled_from([1, 8, 16, 24, 32])),
        constraint=st.sampled_from(list(Constraint)),
        duration=durations,
        every=st.sampled_from([0, 0, 300, 1000, HOUR]),
    )
    def submit(
        self, tenant: str, gpus: int, constraint: Constraint, duration: int, every: int
    ) -> None:
        self.n_jobs += 1
        self.eng.submit(
            job(
                f"j{self.n_jobs}",
                tenant,
                gpus,
                duration_s=duration,
                submit_s=self.now,
                constraint=constraint,
                checkpoint_interval_s=every,
            )
        )
        self.eng.step(self.now)

    @rule(dt=steps)
    def advance(self, dt: int) -> None:
        self._advance(self.now + dt)

    @precondition(lambda self: bool(self._live_jobs()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._live_jobs()), label="job")
        self.eng.cancel(job_id)
        self.eng.step(self.now)

    @precondition(lambda self: bool(self._idle_healthy_nodes()))
    @rule(data=st.data())
    def node_down(self, data: st.DataObject) -> None:
        # Only idle nodes: taking down a node with running work is the fault path's job.
        node = data.draw(st.sampled_from(self._idle_healthy_nodes()), label="node")
        self.eng.set_node_health(node, Health.DOWN, "test", self.now)
        self.eng.step(self.now)

    @precondition(lambda self: bool(self._down_nodes()))
    @rule(data=st.data())
    def node_up(self, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from(self._down_nodes()), label="node")
        self.eng.set_node_health(node, Health.HEALTHY, "test", self.now)
        self.eng.step(self.now)

    @precondition(lambda self: any(c.notice.given_at is None for c in self.eng.contracts.values()))
    @rule(data=st.data())
    def give_notice(self, data: st.DataObject) -> None:
        names = sorted(t for t, c in self.eng.contracts.items() if c.notice.given_at is None)
        tenant = data.draw(st.sampled_from(names), label="tenant")
        self.eng.give_notice(tenant, self.now)
        self.eng.step(self.now)

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def no_gpu_given_twice(self) -> None:
        st_ = self.eng.state
        st_.check_invariants()
        held = np.zeros_like(st_.tenant_gpus)
        for r in self.eng.running():
            held[st_.tenant_index(r.tenant), list(r.placement.nodes)] += r.placement.gpus
        assert np.array_equal(held, st_.tenant_gpus), "running placements != cluster state"

    @invariant()
    def gangs_are_whole_and_inside_their_domain(self) -> None:
        running = {r.spec.id for r in self.eng.running()}
        for job_id, run in self.eng.jobs.items():
            assert (run.state in (JobState.RUNNING, JobState.RECLAIMING)) == (job_id in running)
        for r in self.eng.running():
            p, spec = r.placement, r.spec
            nodes = np.asarray(p.nodes)
            assert p.total_gpus == spec.gpus, f"{spec.id}: {p} is not {spec.gpus} GPUs"
            assert len(set(p.nodes)) == len(p.nodes) and all(g > 0 for g in p.gpus)
            assert (np.asarray(p.gpus) <= TOPO.node_gpus[nodes]).all()
            if spec.constraint is Constraint.AUTO:
                # AUTO prefers the smallest domain but may widen; only one-node gangs are
                # held to their domain.
                level = smallest_level(TOPO, spec.gpus)
                level = level if level is Level.NODE else Level.ANY
            else:
                level = {
                    Constraint.NODE: Level.NODE,
                    Constraint.DOMAIN: Level.DOMAIN,
                    Constraint.RACK: Level.RACK,
                    Constraint.BLOCK: Level.BLOCK,
                    Constraint.ANY: Level.ANY,
                }[spec.constraint]
            if level is Level.NODE:
                assert len(p.nodes) == 1, f"{spec.id} ({spec.constraint}) spans nodes {p.nodes}"
            elif level is Level.DOMAIN:
                assert len(set(TOPO.node_domain[nodes])) == 1, f"{spec.id} spans domains"
            elif level is Level.RACK:
                assert len(set(TOPO.node_rack[nodes])) == 1, f"{spec.id} spans racks: {p.nodes}"
            elif level is Level.BLOCK:
                assert len(set(TOPO.node_block[nodes])) == 1, f"{spec.id} spans blocks: {p.nodes}"

    @invariant()
    def rivals_never_share_a_node(self) -> None:
        st_ = self.eng.state
        a, c = (st_.tenant_gpus[st_.tenant_index(t)] for t in RIVALS)
        shared = np.flatnonzero((a > 0) & (c > 0))
        assert shared.size == 0, f"rivals share nodes {shared.tolist()}"

    @invariant()
    def nothing_new_on_unhealthy_nodes(self) -> None:
        assert not self.bad_places, self.bad_places

    @invariant()
    def entitlements_fit_the_cluster(self) -> None:
        ent = self.eng.entitlements_now()
        assert all(v >= 0 for v in ent.values())
        assert sum(ent.values()) <= CAPACITY, ent

    @invariant()
    def metered_equals_allocated(self) -> None:
        eng = self.eng
        horizon = eng.acct.last_s
        metered: dict[tuple[str, bool], int] = defaultdict(int)
        for rec in eng.ledger:
            metered[rec.tenant, rec.borrowed] += rec.gpu_seconds
        # Open intervals: a run's usage since its start or its last retag (own <-> borrowed).
        for r in eng.running():
            closed = [
                rec.end_s
                for rec in eng.ledger
                if rec.job_id == r.spec.id and rec.start_s >= r.start_s
            ]
            opened = max(closed, default=r.start_s)
            metered[r.tenant, r.borrowed] += (horizon - opened) * r.gpus
        for tenant in TENANTS:
            tt = eng.acct.tenants[tenant]
            own, lent = metered[tenant, False], metered[tenant, True]
            assert (own + lent, own, lent) == (tt.used_gpu_s, tt.own_gpu_s, tt.borrowed_gpu_s), (
                f"{tenant}: metered (total, own, borrowed) != accounting"
            )
        assert sum(metered.values()) == eng.acct.allocated_gpu_s

    @invariant()
    def served_within_the_grace_period(self) -> None:
        if self.policy != "contract":
            return
        late = {t: tt.violation_s for t, tt in self.eng.acct.tenants.items() if tt.violation_s}
        assert not late, f"guarantee violated (seconds late per tenant): {late}"


class FifoBackfillMachine(SchedulerMachine):
    """The baseline ignores contracts; every invariant but the guarantee still holds."""

    policy = "fifo-backfill"


SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    "machine", [SchedulerMachine, FifoBackfillMachine], ids=["contract", "fifo-backfill"]
)
def test_scheduler_invariants(machine: type[SchedulerMachine]) -> None:
    machine.TestCase.settings = SETTINGS
    machine.TestCase().runTest()
