"""The composition root: settings in, wired objects out. The only place that knows
whether time is simulated or live and which backend runs the work."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cotenant.backends.sim import SimBackend
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import Clock, SimClock
from cotenant.engine.core import Engine
from cotenant.faults.injector import FailureSettings, parse_failure_settings
from cotenant.faults.injector import install as install_failures
from cotenant.faults.model import job_mtbf_s, young_daly_interval
from cotenant.metering.run import (
    MeteringSettings,
    UsageProbe,
    metering_report,
    parse_metering_settings,
)
from cotenant.model.contracts import Contract
from cotenant.model.jobs import JobSpec
from cotenant.scheduler.policies import get_policy
from cotenant.serving.autoscaler import Autoscaler
from cotenant.serving.measure import services_report
from cotenant.serving.services import parse_services
from cotenant.twin.pipelines import pipeline_report
from cotenant.twin.report import Report, build_report, fault_report
from cotenant.twin.scenario import Scenario
from cotenant.workload.synthetic import FIXED_INTERVAL_S


def workload_of(scenario: Scenario, failures: FailureSettings | None = None) -> list[JobSpec]:
    """All jobs the scenario's generators submit, in submit order; seeded, so repeatable.

    The workloads' counts are for the scenario's written duration: a run made shorter
    keeps the jobs the written run submits in its first days (the same draws); one made
    longer draws its experiments, RL runs and pipelines at the same rate per day.

    A workload with ``checkpoint_interval = "auto"`` checkpoints each job at the
    Young/Daly interval for its size under the failures in force (``failures``, by
    default the scenario's own), planned drains included, and the scenario's
    checkpoint-write cost; with failures off, at the fixed interval."""
    if failures is None:
        failures = parse_failure_settings(scenario.sections.get("failures"))
    model = failures.model if failures.enabled else None
    write_s = scenario.checkpoint_write_s

    def interval_for(gpus: int) -> int:
        if model is None or model.interruptions_per_gpu_day() <= 0:
            return FIXED_INTERVAL_S
        return young_daly_interval(job_mtbf_s(model, gpus), write_s)

    rng = np.random.default_rng(scenario.seed)
    span = scenario.workload_span_s or scenario.duration_s
    horizon = max(span, scenario.duration_s)
    jobs: list[JobSpec] = []
    for w in scenario.workloads:
        if horizon > span:
            w = w.at_rate_over(horizon / span)
        jobs.extend(w.generate(rng, scenario.start_s, horizon, interval_for))
    if scenario.duration_s < horizon:  # a shorter run: the first days of the written one
        jobs = [j for j in jobs if j.submit_s < scenario.end_s]
    jobs.sort(key=lambda j: (j.submit_s, j.id))
    return jobs


def build_sim_engine(
    scenario: Scenario,
    policy: str | None = None,
    topo: Topology | None = None,
    clock: Clock | None = None,
    contracts: list[Contract] | None = None,
    tenants: list[str] | None = None,
) -> Engine:
    """A simulated engine with the scenario's costs and sampling; by default over its
    cluster, contracts and tenants (a federation's other providers name their own)."""
    return Engine(
        topo or Topology(scenario.cluster),
        scenario.contracts() if contracts is None else contracts,
        get_policy(policy or scenario.policy),
        SimBackend(),
        clock or SimClock(scenario.start_s),
        restart_cost_s=scenario.restart_cost_s,
        checkpoint_write_s=scenario.checkpoint_write_s,
        sample_step_s=scenario.sample_step_s,
        tenants=[t.name for t in scenario.tenants] if tenants is None else tenants,
    )


def simulate(
    scenario: Scenario,
    policy: str | None = None,
    jobs: list[JobSpec] | None = None,
    progress: Callable[[int], None] | None = None,
    engine_hook: Callable[[Engine], None] | None = None,
    failure_scale: float | None = None,
) -> tuple[Engine, Report]:
    """Run the scenario in simulated time and report. A scenario with providers runs
    federated (``twin/federated.py``), with the same run without its pools beside it."""
    if scenario.providers is not None:
        from cotenant.twin.federated import simulate_federated

        return simulate_federated(scenario, policy, jobs, progress, engine_hook, failure_scale)
    engine = build_sim_engine(scenario, policy)
    home = prepare_home(engine, scenario, engine_hook, failure_scale)
    for spec in jobs if jobs is not None else workload_of(scenario, home.failures):
        engine.submit(spec)
    t0 = time.perf_counter()
    engine.run(scenario.end_s, progress=home.progress(progress))
    wall = time.perf_counter() - t0
    return engine, home_report(engine, scenario, home, wall)


@dataclass
class HomeRun:
    """What a run on the home cluster carries besides its engine: metering settings, the
    failure model in force, the services' autoscaler and the usage probe."""

    metering: MeteringSettings
    failures: FailureSettings
    scaler: Autoscaler | None
    probe: UsageProbe

    def progress(self, then: Callable[[int], None] | None) -> Callable[[int], None]:
        return self.probe.progress(then if self.scaler is None else self.scaler.progress(then))


def prepare_home(
    engine: Engine,
    scenario: Scenario,
    engine_hook: Callable[[Engine], None] | None = None,
    failure_scale: float | None = None,
) -> HomeRun:
    """The home cluster's engine readied for a run: its power cap, failures, services."""
    metering = parse_metering_settings(scenario.sections.get("energy"))
    engine.site = metering.site  # its power cap binds the scheduler
    if engine_hook is not None:
        engine_hook(engine)
    failures = parse_failure_settings(scenario.sections.get("failures"), failure_scale)
    if failures.enabled:
        install_failures(
            engine,
            failures.model,
            scenario.seed + failures.seed_offset,
            scenario.start_s,
            scenario.end_s,
        )
    scaler = install_services(engine, scenario)
    return HomeRun(metering, failures, scaler, UsageProbe(engine))


def home_report(engine: Engine, scenario: Scenario, home: HomeRun, wall: float) -> Report:
    """The run report of the home cluster: tenants, faults, metering, services, pipelines."""
    report = build_report(engine, scenario.name, scenario.start_s, scenario.end_s, wall)
    report.extra["faults"] = fault_report(engine, home.failures)
    report.extra["metering"] = metering_report(engine, scenario, home.metering, home.probe)
    report.series["facility_power_mw"] = report.extra["metering"]["power"]["facility_mw"]
    if home.scaler is not None:
        report.extra["services"] = services_report(home.scaler)
    if any(r.spec.pipeline for r in engine.jobs.values()):
        report.extra["pipelines"] = pipeline_report(engine, scenario.end_s)
    return report


def install_services(engine: Engine, scenario: Scenario) -> Autoscaler | None:
    """The scenario's ``[[services]]`` with an autoscaler each, on the engine's tick."""
    services = parse_services(
        scenario.sections.get("services"),
        [t.name for t in scenario.tenants],
        scenario.seed,
        scenario.base_dir,
    )
    if not services:
        return None
    scaler = Autoscaler(
        engine, services, scenario.start_s, scenario.end_s, engine.acct.series.step_s
    )
    return scaler.install()
