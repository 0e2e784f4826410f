"""The composition root: settings in, wired objects out. The only place that knows
whether time is simulated or live and which backend runs the work."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from cotenant.backends.sim import SimBackend
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import SimClock
from cotenant.engine.core import Engine
from cotenant.model.jobs import JobSpec
from cotenant.report import Report, build_report
from cotenant.scenario import Scenario
from cotenant.scheduler.policies import get_policy


def workload_of(scenario: Scenario) -> list[JobSpec]:
    """All jobs the scenario's generators submit, in submit order; seeded, so repeatable."""
    rng = np.random.default_rng(scenario.seed)
    jobs: list[JobSpec] = []
    for w in scenario.workloads:
        jobs.extend(w.generate(rng, scenario.start_s, scenario.duration_s))
    jobs.sort(key=lambda j: (j.submit_s, j.id))
    return jobs


def build_sim_engine(
    scenario: Scenario, policy: str | None = None, topo: Topology | None = None
) -> Engine:
    topo = topo or Topology(scenario.cluster)
    return Engine(
        topo,
        scenario.contracts(),
        get_policy(policy or scenario.policy),
        SimBackend(),
        SimClock(scenario.start_s),
        restart_cost_s=scenario.restart_cost_s,
        tenants=[t.name for t in scenario.tenants],
    )


def simulate(
    scenario: Scenario,
    policy: str | None = None,
    jobs: list[JobSpec] | None = None,
    progress: Callable[[int], None] | None = None,
    engine_hook: Callable[[Engine], None] | None = None,
) -> tuple[Engine, Report]:
    """Run the scenario in simulated time and report."""
    engine = build_sim_engine(scenario, policy)
    if engine_hook is not None:
        engine_hook(engine)
    for spec in jobs if jobs is not None else workload_of(scenario):
        engine.submit(spec)
    t0 = time.perf_counter()
    engine.run(scenario.end_s, progress=progress)
    wall = time.perf_counter() - t0
    return engine, build_report(engine, scenario.name, scenario.start_s, scenario.end_s, wall)
