"""The live server's router between the lease and its pools (server/overflow.py), on
simulated engines sharing one clock: the routes it takes, the re-check at max_wait that
moves a queued job to the pool, jobs naming providers, and what it reads back after a
restart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from builders import DAY, H100, HOUR, T0, cluster, contract, job
from cotenant.backends.sim import SimBackend
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.engine.clock import SimClock
from cotenant.engine.core import Engine
from cotenant.federation.providers import (
    ClusterProvider,
    PoolProvider,
    ProviderSet,
    TenantProviders,
)
from cotenant.model.jobs import JobKind, JobState
from cotenant.scheduler.policies import get_policy
from cotenant.server.overflow import Routed, Router, pool_engine, pool_topology

LAB = "lab"
USD = 1_000_000
POOL = PoolProvider("cloud", H100, 16, 3 * USD, provisioning_s=120)


class World:
    """A 16-GPU lease (the lab committed 16), a 16-GPU pool, one clock, a router."""

    def __init__(self, budget_usd: int = 100, max_wait_s: int = 2 * HOUR, topo: Any = None):
        self.clock = SimClock(T0)
        topo = topo or cluster(nodes=2, per_rack=2, racks_per_block=1)
        lease_contract = contract(LAB, 16)
        self.lease = Engine(
            topo, [lease_contract], get_policy("contract"), SimBackend(), self.clock, tenants=[LAB]
        )
        terms = TenantProviders(
            LAB, ("lease", "cloud"), budget_usd * USD, {JobKind.EXPERIMENT: max_wait_s}
        )
        self.providers = ProviderSet(
            (ClusterProvider("lease", topo.spec, home=True), POOL), {LAB: terms}
        )
        pool = pool_engine(
            POOL,
            pool_topology(POOL),
            self.providers,
            {LAB: lease_contract},
            SimBackend(),
            self.clock,
            T0,
        )
        self.router = Router(self.providers, self.lease, {"cloud": pool}, self.clock)
        self.routes: list[dict[str, Any]] = []
        self.router.sinks.append(self.routes.append)

    @property
    def pool(self) -> Engine:
        return self.router.pools["cloud"]

    def run(self, until_s: int) -> None:
        """The runner's loop with pools, in simulated time."""
        engines = [self.lease, self.pool]
        while True:
            times = [t for t in (e.peek() for e in engines) if t is not None]
            if (r := self.router.peek()) is not None:
                times.append(r)
            if not times or min(times) > until_s:
                break
            now = self.clock.wait_until(min(times))
            for e in engines:
                t = e.peek()
                if t is not None and t <= now:
                    e.step(now)
            self.router.step(now)
        self.clock.wait_until(until_s)

    def reasons(self) -> list[tuple[str, str, str]]:
        return [(r["job"], r["provider"], r["reason"]) for r in self.routes]


def test_a_job_queued_past_its_max_wait_moves_to_the_pool() -> None:
    w = World()
    # the lab's 16 GPUs are held for 10 h, estimated at 1 h: the next job should wait 1 h
    w.router.submit(job("long", LAB, 16, 10 * HOUR, estimate_s=HOUR))
    w.run(T0 + 60)
    w.router.submit(job("next", LAB, 8, HOUR, submit_s=T0 + 60))
    assert w.reasons()[-1] == ("next", "lease", "wait-within-max")
    w.run(T0 + 60 + 2 * HOUR)  # its max_wait: still queued, never started; it may wait on
    assert w.reasons()[-1] == ("next", "lease", "wait-within-max")  # (its estimate passed)
    w.run(T0 + 61 + 2 * HOUR)  # a second more: it has waited longer than its max_wait
    assert w.reasons()[-1] == ("next", "cloud", "overflowed"), w.routes[-1]
    assert w.lease.jobs["next"].state is JobState.CANCELLED  # (its copy on the lease)
    assert w.router.engine_of("next") is w.pool
    assert w.router.why("next")[0] == "provisioning"
    w.run(T0 + 61 + 2 * HOUR + 120)
    run = w.pool.jobs["next"]
    assert run.state is JobState.RUNNING and run.start_s == T0 + 61 + 2 * HOUR + 120
    spent = w.router.spent[(LAB, "2026-10")]
    assert spent == w.routes[-1]["cost_micro"] > 0
    assert w.router.budget_left(LAB, T0) == 100 * USD - spent


@pytest.mark.parametrize(
    ("budget", "pool_busy", "reason"),
    [
        pytest.param(100, 0, "overflowed", id="fits"),
        pytest.param(1, 0, "over-budget", id="over-budget"),
        pytest.param(100, 16, "no-pool-room", id="pool-full"),
    ],
)
def test_a_full_lease_routes_by_budget_and_room(budget: int, pool_busy: int, reason: str) -> None:
    w = World(budget_usd=budget)
    w.router.submit(job("long", LAB, 16, 10 * HOUR))
    if pool_busy:
        w.router.submit(job("p", LAB, pool_busy, 10 * HOUR, providers=("cloud",)))
    w.run(T0 + 1)
    w.router.submit(job("next", LAB, 8, HOUR, submit_s=T0 + 1))
    assert w.reasons()[-1][2] == reason, w.routes[-1]
    on_pool = reason == "overflowed"
    assert (w.router.engine_of("next") is w.pool) == on_pool
    if not on_pool:
        assert w.router.why("next")[0] == reason  # waits on the lease, saying why


def test_a_job_naming_only_the_pool_goes_there_uncharged() -> None:
    w = World(budget_usd=0)
    w.router.submit(job("p", LAB, 8, HOUR, providers=("cloud",)))
    assert w.reasons() == [("p", "cloud", "named-provider")]
    assert w.router.spent[(LAB, "2026-10")] == 0 and not w.routes[0]["overflow"]


def test_a_job_naming_a_slurm_cluster_of_the_lease_stays_there() -> None:
    groups = (NodeGroup(H100, 1, 1, 1, provider="alpha"), NodeGroup(H100, 1, 1, 1, provider="beta"))
    w = World(topo=Topology(ClusterSpec("ab", groups)))
    spec = job("b", LAB, 8, HOUR, providers=("beta", "cloud"))
    assert w.router.accepted(spec) == ("lease", "cloud")
    w.router.submit(spec)
    [(_, provider, reason)] = w.reasons()
    assert provider == "lease" and reason in ("entitled-room", "borrowable-room"), reason
    assert w.lease.jobs["b"].spec.providers == ("beta",)  # (the lease keeps its cluster)


def stored(job_id: str, provider: str, cost: int, overflow: bool, t: int) -> dict[str, Any]:
    r = Routed(job_id, LAB, provider, "overflowed", "", t, t + 120, cost, overflow, 0)
    return r.row()


def test_load_reads_back_the_budget_and_the_pool_of_each_job() -> None:
    w = World()
    rows: Sequence[dict[str, Any]] = [
        stored("a", "cloud", 5 * USD, True, T0),
        stored("b", "cloud", 7 * USD, True, T0 + 40 * DAY),  # next month
        stored("c", "lease", 0, False, T0),
        stored("d", "cloud", 9 * USD, False, T0),  # named the pool: not overflow
    ]
    w.router.load(rows)
    assert w.router.spent[(LAB, "2026-10")] == 5 * USD
    assert w.router.spent[(LAB, "2026-11")] == 7 * USD
    assert {j: w.router.engine_of(j) is w.pool for j in "abcd"} == {
        "a": True,
        "b": True,
        "c": False,
        "d": True,
    }
    assert w.router.on_pool(job("a", LAB, 8)).submit_s == T0 + 120
    assert not w.router.unrouted(job("c", LAB, 8))
    assert w.router.unrouted(job("e", LAB, 8))
    assert not w.router.unrouted(job("f", "other", 8))  # (a tenant without pools)


def test_under_notice_a_training_run_moves_to_the_pool_at_its_next_checkpoint() -> None:
    w = World()
    w.router.tick_s = 10 * 60
    w.lease.set_contract(contract(LAB, 16, notice_period=16 * HOUR))
    w.router.submit(
        job("train", LAB, 16, 10 * HOUR, kind=JobKind.TRAINING, checkpoint_interval_s=HOUR)
    )
    w.run(T0 + 10 * 60)
    assert w.lease.jobs["train"].state is JobState.RUNNING
    w.lease.give_notice(LAB)  # entitlement falls from 16 to 0 over 16 h
    w.run(T0 + 3 * HOUR)
    got = [(r["provider"], r["reason"]) for r in w.routes]
    assert got == [("lease", "no-overflow"), ("lease", "migrated"), ("cloud", "migrated")], got
    plan, moved = w.routes[1], w.routes[2]
    assert plan["detail"].startswith("moves to cloud at its next checkpoint (in ")
    assert moved["detail"].startswith("migrated from lease to cloud under notice at its checkpoint")
    assert moved["detail"].endswith(", 0 s lost"), moved
    lease_run, pool_run = w.lease.jobs["train"], w.pool.jobs["train"]
    assert lease_run.state is JobState.CANCELLED
    saved = 10 * HOUR - pool_run.spec.duration_s  # whole hours: its checkpoints
    assert 0 < saved < 10 * HOUR and saved % HOUR == 0, saved
    assert f"{pool_run.spec.duration_s} s of work carried" in moved["detail"]
    assert pool_run.state is JobState.RUNNING and pool_run.attempt == 2  # (numbered on)
    assert w.router.spent[(LAB, "2026-10")] == 0  # migration is not overflow
