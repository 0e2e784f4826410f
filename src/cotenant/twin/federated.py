"""A federated twin run: one simulated engine per provider on one clock, the federation
routing between them, and the same scenario without its pools run beside it so the
report can say what the pools saved in waiting and what they cost
(docs/design/0014-providers.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cotenant.cluster.topology import Topology
from cotenant.engine.clock import SimClock
from cotenant.engine.core import Engine
from cotenant.federation.core import Federation
from cotenant.federation.providers import ClusterProvider, PoolProvider, ProviderSet
from cotenant.model.contracts import Commitment, Contract, LendingTerms
from cotenant.model.jobs import JobSpec
from cotenant.model.time import DAY
from cotenant.twin.fedreport import add_lease_costs, federation_section
from cotenant.twin.report import Report
from cotenant.twin.runtime import build_sim_engine, home_report, prepare_home, workload_of
from cotenant.twin.scenario import Scenario

POOL_POLICY = "fifo-backfill"  # a pool has no contracts to honour: first come, first served


@dataclass
class FederatedRun:
    federation: Federation
    home: Engine
    report: Report


def simulate_federated(
    scenario: Scenario,
    policy: str | None = None,
    jobs: list[JobSpec] | None = None,
    progress: Callable[[int], None] | None = None,
    engine_hook: Callable[[Engine], None] | None = None,
    failure_scale: float | None = None,
    baseline: bool = True,
) -> tuple[Engine, Report]:
    """Run the scenario federated; with pools and ``baseline``, run it again without
    them and put the comparison in the report."""
    assert scenario.providers is not None
    run = run_federated(
        scenario, scenario.providers, policy, jobs, progress, engine_hook, failure_scale
    )
    fed = run.report.extra["federation"]
    if baseline and scenario.providers.pools():
        base = run_federated(
            scenario,
            scenario.providers.without_pools(),
            policy,
            jobs,
            None,
            engine_hook,
            failure_scale,
        )
        fed["baseline"] = base.report.extra["federation"]
    return run.home, run.report


def run_federated(
    scenario: Scenario,
    providers: ProviderSet,
    policy: str | None = None,
    jobs: list[JobSpec] | None = None,
    progress: Callable[[int], None] | None = None,
    engine_hook: Callable[[Engine], None] | None = None,
    failure_scale: float | None = None,
    federation_hook: Callable[[Federation], None] | None = None,
) -> FederatedRun:
    """One federated run of ``scenario`` on ``providers``; ``federation_hook`` sees the
    federation before it runs (tests check invariants at every step with it)."""
    clock = SimClock(scenario.start_s)
    home_provider = providers.home()
    assert home_provider is not None
    home = build_sim_engine(scenario, policy, clock=clock)
    prep = prepare_home(home, scenario, engine_hook, failure_scale)
    engines: dict[str, Engine] = {}
    for p in providers.providers:
        if p is home_provider:
            engines[p.name] = home
        elif isinstance(p, ClusterProvider):
            engines[p.name] = _cluster_engine(p, scenario, policy, clock)
        else:
            engines[p.name] = _pool_engine(p, scenario, providers, clock)
    fed = Federation(providers, engines, clock, seed=scenario.seed)
    if federation_hook is not None:
        federation_hook(fed)
    for spec in jobs if jobs is not None else workload_of(scenario, prep.failures):
        fed.submit(spec)
    t0 = time.perf_counter()
    fed.run(scenario.end_s, progress=prep.progress(progress))
    wall = time.perf_counter() - t0
    report = home_report(home, scenario, prep, wall)
    section = federation_section(fed, scenario.start_s, scenario.end_s)
    add_lease_costs(section, home_provider.name, report.extra["metering"])
    report.extra["federation"] = section
    return FederatedRun(fed, home, report)


def _cluster_engine(
    p: ClusterProvider, scenario: Scenario, policy: str | None, clock: SimClock
) -> Engine:
    topo = Topology(p.cluster)
    tenants = [c.tenant for c in p.contracts]
    return build_sim_engine(scenario, policy, topo, clock, list(p.contracts), tenants)


def _pool_engine(
    p: PoolProvider, scenario: Scenario, providers: ProviderSet, clock: SimClock
) -> Engine:
    """A pool as an engine over its GPUs: gangs placed whole, rivals (as their lease
    contracts name them) never on one node. Its tenants hold no commitment there."""
    users = sorted(t for t, terms in providers.tenants.items() if p.name in terms.providers)
    rivals = {c.tenant: c.isolation for c in scenario.contracts()}
    contracts = [
        Contract(
            t,
            scenario.start_s,
            scenario.end_s + 365 * DAY,
            Commitment(0),
            lending=LendingTerms(lend_idle=False),
            isolation=rivals[t],
        )
        for t in users
        if t in rivals
    ]
    return build_sim_engine(scenario, POOL_POLICY, Topology(p.cluster()), clock, contracts, users)
