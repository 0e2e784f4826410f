"""Replay a real trace on the digital twin under several policies and compare them.

A :class:`~cotenant.traces.Trace` becomes a :class:`~cotenant.twin.scenario.Scenario`:

- the cluster: ``--cluster`` (a preset name, ``NxG`` nodes, ``pooled:N`` GPUs
  with no topology, or a TOML file with a ``[cluster]`` table as in scenario
  files); without one, the trace's own node list (Alibaba: nodes grouped by
  accelerator kind and size) or, failing that, 8-GPU nodes sized to the trace
  (:func:`default_cluster`);
- tenants: every tenant of the trace; with ``tenants_from_trace`` each quota
  becomes a fixed commitment for the whole replay (tenants without a quota get
  no contract and only borrow; no isolation);
- start: the first submission; horizon: until every job has ended (or was
  rejected), with a safety cap;
- prices (for invoices; they do not change a decision): a trace carries none, so each
  commitment gets :data:`REPLAY_PRICE` unless a price-terms file
  (:func:`load_price_terms`) says otherwise.

Metered on request (``meter``): the report gets the ``metering`` section a simulated
run has (invoices per tenant and month, energy, power over time, economics), with each
commitment billed from the first submission to the end of the replay.

Each policy runs in the same process on the same jobs, one engine after the
other, and gets a :class:`~cotenant.twin.report.Report` with replay figures in
``extra`` (job completion time, queueing delay, makespan) and the per-job
values for plots in ``series``. See docs/design/0003-replay.md.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cotenant.cluster.presets import PRESETS, preset
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.contracts.terms import parse_price_terms
from cotenant.engine.core import Engine
from cotenant.engine.events import EngineEvent
from cotenant.metering.money import format_rate
from cotenant.metering.run import MeteringSettings, UsageProbe, metering_report
from cotenant.model.contracts import Commitment, Contract, PriceKind, PriceTerms, Tenant
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobSpec, JobState
from cotenant.model.time import DAY
from cotenant.scheduler.policies import get_policy
from cotenant.traces import Trace, TraceNode
from cotenant.twin.report import Report, build_report
from cotenant.twin.runtime import build_sim_engine
from cotenant.twin.scenario import Scenario, parse_cluster, read_toml

# The kind that names a trace-sized or pooled cluster. Replays compare scheduling, not
# energy, so the kind only names the pool; jobs in these traces ask for no kind.
POOL_KIND = "H100-SXM-80GB"
NODE_GPUS = 8
NODES_PER_RACK = 8
RACKS_PER_BLOCK = 8
# Without quotas, the trace-sized cluster holds this multiple of the trace's mean demand.
HEADROOM = 1.25

ProgressFn = Callable[[str, int, int, int], None]  # (policy, now_s, ended jobs, total jobs)

# What a commitment costs when the trace has no prices (Philly's virtual clusters were
# internal teams and paid nothing per hour). Illustrative 2025-26 H100 rental prices from
# ../shared/data/README.md ("about $2-4 per GPU-hour on demand, one-year reservations
# 35-40% lower"): overage at the on-demand midpoint, $3.00; the commitment at a one-year
# reservation, 37.5% (the midpoint of 35-40%) below it, $1.875. No SLA credit.
REPLAY_PRICE = PriceTerms(
    kind=PriceKind.RATE,
    committed_rate_micro_per_gpu_hour=1_875_000,
    overage_rate_micro_per_gpu_hour=3_000_000,
)


# -- quotas -----------------------------------------------------------------------------------
FIT = "fit"


def parse_quota_scale(text: str, field: str = "--quota-scale") -> Fraction | str:
    """A positive factor (``0.5``, ``96/352``) or ``fit`` (scale to the cluster's size)."""
    if text.strip().lower() == FIT:
        return FIT
    try:
        f = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise SpecError(
            field, f"expected a positive number, a fraction like 96/352, or 'fit'; got {text!r}"
        ) from None
    if f <= 0:
        raise SpecError(field, f"must be greater than 0, got {text!r}")
    return f


def scale_quotas(trace: Trace, scale: Fraction | str, cluster_gpus: int | None) -> Trace:
    """The trace with its quotas scaled, so a loaded-quota replay is one command.

    Quotas stay in whole nodes of ``NODE_GPUS`` when they all were (Philly's virtual
    clusters have node quotas), else in GPUs. A factor
    rounds each quota half up to that unit; a quota that rounds to 0 is dropped (that
    tenant only borrows). ``fit`` shares ``cluster_gpus`` among the quotas in
    proportion (largest remainders), so they add up to the cluster exactly."""
    quotas = trace.quotas_gpus
    if not quotas:
        raise SpecError("--quota-scale", f"the {trace.name} trace has no quotas to scale")
    total = sum(quotas.values())
    unit = NODE_GPUS if all(q % NODE_GPUS == 0 for q in quotas.values()) else 1
    if scale == FIT:
        if cluster_gpus is None:
            raise SpecError("--quota-scale", "'fit' scales the quotas to --cluster: give one")
        unit = math.gcd(unit, cluster_gpus)
        exact = {t: Fraction(q * cluster_gpus, total * unit) for t, q in quotas.items()}
        units = {t: math.floor(v) for t, v in exact.items()}
        left = cluster_gpus // unit - sum(units.values())
        by_remainder = sorted(exact, key=lambda t: (-(exact[t] - units[t]), t))
        for t in by_remainder[:left]:
            units[t] += 1
        how = f"fitted to {cluster_gpus:,} GPUs"
    else:
        assert isinstance(scale, Fraction)
        units = {
            t: math.floor(Fraction(q, unit) * scale + Fraction(1, 2)) for t, q in quotas.items()
        }
        how = f"scaled by {scale}"
    scaled = {t: n * unit for t, n in units.items()}
    dropped = sorted(t for t, q in scaled.items() if q <= 0)
    kept = {t: q for t, q in scaled.items() if q > 0}
    note = f"quotas {how} in units of {unit} GPUs: {total:,} -> {sum(kept.values()):,} GPUs"
    if dropped:
        note += f"; {len(dropped)} rounded to 0 and only borrow ({', '.join(dropped)})"
    return replace(trace, quotas_gpus=kept, notes=(*trace.notes, note))


# -- the cluster ------------------------------------------------------------------------------
def pooled_cluster(gpus: int, name: str | None = None) -> ClusterSpec:
    """``gpus`` GPUs with no topology: 1-GPU nodes, all in one rack and one block, so a
    gang of g GPUs fits exactly when g GPUs are free, wherever they are."""
    if gpus < 1:
        raise SpecError("cluster", f"a pooled cluster needs at least 1 GPU, got {gpus}")
    return ClusterSpec(name or f"pooled-{gpus}", (NodeGroup(POOL_KIND, gpus, gpus, 1, 1),))


def nodes_cluster(nodes: int, gpus_per_node: int, name: str | None = None) -> ClusterSpec:
    spec = ClusterSpec(
        name or f"{nodes}x{gpus_per_node}",
        (NodeGroup(POOL_KIND, nodes, NODES_PER_RACK, RACKS_PER_BLOCK, gpus_per_node),),
    )
    spec.validate("--cluster")
    return spec


def cluster_from_nodes(nodes: Sequence[TraceNode], name: str) -> ClusterSpec:
    """The trace's own nodes, one node group per (accelerator kind, GPUs per node), in the
    order the kinds first appear. The trace has no racks: 8 nodes to a rack, 8 racks to a
    block, within each group."""
    groups: dict[tuple[str, int], list[str]] = {}
    for n in nodes:
        groups.setdefault((n.accelerator, n.gpus), []).append(n.name)
    spec = ClusterSpec(
        name,
        tuple(
            NodeGroup(kind, len(names), NODES_PER_RACK, RACKS_PER_BLOCK, gpus)
            for (kind, gpus), names in groups.items()
        ),
        tuple(name for names in groups.values() for name in names),
    )
    spec.validate("trace nodes")
    return spec


def default_cluster(trace: Trace) -> ClusterSpec:
    """The cluster a trace implies when none is given.

    1. Its own node list, if it has one (Alibaba 2023).
    2. Else 8-GPU nodes adding up to the sum of its quotas (Philly: the virtual
       clusters' node quotas describe the cluster), and at least its largest job.
    3. Else 8-GPU nodes holding ``HEADROOM`` times its mean demand (GPU-seconds over
       the submission span plus the mean duration), and at least its largest job.
    """
    if trace.nodes:
        return cluster_from_nodes(trace.nodes, f"{trace.name}-nodes")
    biggest = max((j.gpus for j in trace.jobs), default=1)
    if trace.quotas_gpus:
        gpus = max(sum(trace.quotas_gpus.values()), biggest)
        how = "quotas"
    else:
        jobs = trace.jobs
        span = (jobs[-1].submit_s - jobs[0].submit_s) if jobs else 0
        mean_dur = sum(j.duration_s for j in jobs) / len(jobs) if jobs else 1.0
        demand = trace.gpu_seconds / max(1.0, span + mean_dur)
        gpus = max(math.ceil(HEADROOM * demand), biggest)
        how = "demand"
    nodes = max(1, -(-gpus // NODE_GPUS))
    return nodes_cluster(nodes, NODE_GPUS, f"{trace.name}-{how}-{nodes}x{NODE_GPUS}")


_NXG = re.compile(r"^(\d+)x(\d+)$")
_POOLED = re.compile(r"^pooled:(\d+)$")


MAX_CLUSTER_GPUS = 10_000_000


def _bounded(gpus: int) -> None:
    if gpus > MAX_CLUSTER_GPUS:
        raise SpecError("--cluster", f"at most {MAX_CLUSTER_GPUS:,} GPUs, got {gpus:,}")


def parse_cluster_arg(text: str) -> ClusterSpec:
    """``--cluster``: a preset name, ``NxG`` (N nodes of G GPUs), ``pooled:N`` (N GPUs, no
    topology) or a TOML file with a ``[cluster]`` table (``preset`` or ``[[cluster.groups]]``)."""
    text = text.strip()
    if text in PRESETS:
        return preset(text, "--cluster")
    if m := _NXG.match(text):
        _bounded(int(m[1]) * int(m[2]))
        return nodes_cluster(int(m[1]), int(m[2]))
    if m := _POOLED.match(text):
        _bounded(int(m[1]))
        return pooled_cluster(int(m[1]))
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError("--cluster", f"cluster file not found: {path}")
        raw = read_toml(path)
        if "cluster" not in raw:
            raise SpecError("cluster", "the file has no [cluster] table", str(path))
        try:
            return parse_cluster(raw["cluster"], "cluster")
        except SpecError as e:
            raise SpecError(e.field, e.problem, str(path)) from None
    raise SpecError(
        "--cluster",
        f"cannot read {text!r}: give a preset ({', '.join(sorted(PRESETS))}), "
        "NxG (e.g. 16x8), pooled:N (e.g. pooled:128) or a TOML file with [cluster]",
    )


# -- the jobs ---------------------------------------------------------------------------------
def select_jobs(
    trace: Trace, *, max_job_gpus: int | None = None, limit: int | None = None
) -> Trace:
    """Keep jobs of at most ``max_job_gpus`` GPUs (a filter: the others are not wanted,
    unlike the loaders' ``max_gpus``, which makes them bad rows), then the first ``limit``."""
    jobs = trace.jobs
    notes = list(trace.notes)
    if max_job_gpus is not None:
        if max_job_gpus < 1:
            raise SpecError("--max-job-gpus", f"must be at least 1, got {max_job_gpus}")
        kept = tuple(j for j in jobs if j.gpus <= max_job_gpus)
        if len(kept) < len(jobs):
            notes.append(f"{len(jobs) - len(kept)} jobs of more than {max_job_gpus} GPUs dropped")
        jobs = kept
    if limit is not None:
        if limit < 0:
            raise SpecError("--limit", f"must not be negative, got {limit}")
        if len(jobs) > limit:
            notes.append(f"kept the first {limit} of {len(jobs)} jobs (limit)")
            jobs = jobs[:limit]
    return replace(trace, jobs=jobs, notes=tuple(notes))


# -- prices -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReplayPrices:
    """The price terms of a replay's commitments: ``default`` for every tenant with a
    commitment, unless ``tenants`` has terms of its own (which replace the default whole;
    they are not merged with it). ``source`` names where they came from."""

    default: PriceTerms = REPLAY_PRICE
    tenants: Mapping[str, PriceTerms] = field(default_factory=dict)
    source: str = field(
        default_factory=lambda: (
            f"built-in: {format_rate(REPLAY_PRICE.committed_rate_micro_per_gpu_hour)} "
            f"committed, {format_rate(REPLAY_PRICE.overage_rate_micro_per_gpu_hour)} overage"
        )
    )

    def of(self, tenant: str) -> PriceTerms:
        return self.tenants.get(tenant, self.default)


_PRICE_FILE_KEYS = ("price", "tenants")


def load_price_terms(path: str | Path) -> ReplayPrices:
    """A price-terms file for a replay (TOML)::

        [price]                       # every commitment without a table of its own
        committed_rate_per_gpu_hour = "1.95"
        overage_rate_per_gpu_hour = "3.20"
        [tenants.6214e9]              # this tenant's terms, in full (not merged)
        flat_fee_per_month = 250000

    Each table takes the keys of a scenario's ``price`` table (``metering/terms.py``); an
    absent ``[price]`` keeps :data:`REPLAY_PRICE`. Errors name the file and the field,
    e.g. ``tenants.6214e9.flat_fee_per_month``."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("--price-terms", f"price-terms file not found: {path}")
    raw = read_toml(path)
    try:
        for key in raw:
            if key not in _PRICE_FILE_KEYS:
                raise SpecError(key, f"unknown table; valid: {', '.join(_PRICE_FILE_KEYS)}")
        default = parse_price_terms(raw["price"], "price") if "price" in raw else REPLAY_PRICE
        tables = raw.get("tenants", {})
        if not isinstance(tables, dict):
            raise SpecError("tenants", "expected tables [tenants.<name>] of price terms")
        tenants = {
            str(name): parse_price_terms(table, f"tenants.{name}")
            for name, table in sorted(tables.items())
        }
    except SpecError as e:
        raise SpecError(e.field, e.problem, str(path)) from None
    return ReplayPrices(default, tenants, str(path))


# -- the scenario -----------------------------------------------------------------------------
def safety_cap_s(jobs: Sequence[JobSpec], restart_cost_s: int) -> int:
    """A horizon no sane replay reaches: the last submission plus twice the jobs' serial
    run time (each with a restart) plus a day. Reaching it means jobs were stuck."""
    if not jobs:
        return DAY
    serial = sum(j.duration_s + restart_cost_s for j in jobs)
    return jobs[-1].submit_s - jobs[0].submit_s + 2 * serial + DAY


def replay_scenario(
    trace: Trace,
    cluster: ClusterSpec,
    *,
    tenants_from_trace: bool = False,
    restart_cost_s: int = 600,
    checkpoint_write_s: int = 60,
    prices: ReplayPrices | None = None,
) -> Scenario:
    """The scenario a replay runs: the trace's tenants on ``cluster`` from the first
    submission; with ``tenants_from_trace``, each quota is a fixed commitment at the
    price terms ``prices`` gives it (default :data:`REPLAY_PRICE`)."""
    if not trace.jobs:
        raise SpecError("trace", "no jobs to replay (check --start/--end/--limit)")
    start = trace.jobs[0].submit_s
    cap = safety_cap_s(trace.jobs, restart_cost_s)
    quotas = trace.quotas_gpus if tenants_from_trace else {}
    if tenants_from_trace and not quotas:
        raise SpecError("--tenants-from-trace", f"the {trace.name} trace has no quotas")
    committed = sum(quotas.values())
    if committed > cluster.total_gpus:
        raise SpecError(
            "--tenants-from-trace",
            f"the trace's quotas add up to {committed:,} GPUs, more than the cluster's "
            f"{cluster.total_gpus:,}; give a larger --cluster or leave the quotas out",
        )
    prices = prices or ReplayPrices()
    for name in prices.tenants:
        if name not in quotas:
            with_one = ", ".join(sorted(quotas)) or "none (give --tenants-from-trace)"
            raise SpecError(
                f"tenants.{name}",
                f"no commitment in this replay to price; tenants with one: {with_one}",
                prices.source,
            )
    tenants = []
    for name in sorted(set(trace.tenants) | set(quotas)):
        q = quotas.get(name)
        contract = None
        if q is not None:
            contract = Contract(
                name, start, start + cap + 1, Commitment(gpus=q), price=prices.of(name)
            )
        tenants.append(Tenant(name, name, contract))
    return Scenario(
        name=trace.name,
        start_s=start,
        duration_s=cap,
        seed=0,
        policy="contract",
        cluster=cluster,
        tenants=tuple(tenants),
        restart_cost_s=restart_cost_s,
        checkpoint_write_s=checkpoint_write_s,
    )


# -- running ----------------------------------------------------------------------------------
class _Progress:
    """Counts jobs that ended (completed, failed, rejected, cancelled) and runs that are
    held, from the engine's event stream; decides when the replay is over."""

    def __init__(self, total: int, last_submit_s: int, cap_s: int) -> None:
        self.total = total
        self.last_submit_s = last_submit_s
        self.cap_s = cap_s
        self.ended = 0
        self.running = 0
        self.stepped_s = -1

    def observe(self, e: EngineEvent) -> None:
        """(An observer of the typed records: no JSON form is built for it.)"""
        kind = e.kind
        if kind == "place":
            self.running += 1
        elif kind == "end":
            self.running -= 1
            self.ended += 1
        elif kind == "preempt":
            self.running -= 1
        elif kind in ("reject", "cancel"):
            self.ended += 1

    def over(self) -> bool:
        """Every job ended; or nothing runs, nothing more arrives and a cycle found nothing
        to start: the rest can never run (no event will come to change that); or the
        safety cap is reached (``Engine.run`` with a stop condition does not stop at its
        horizon by itself)."""
        if self.ended >= self.total or self.stepped_s >= self.cap_s:
            return True
        return self.running == 0 and self.stepped_s >= self.last_submit_s


def run_policy(
    scenario: Scenario,
    jobs: Sequence[JobSpec],
    policy: str,
    progress: ProgressFn | None = None,
    hook: Callable[[Engine], None] | None = None,
    meter: MeteringSettings | None = None,
) -> tuple[Engine, Report]:
    """Replay ``jobs`` under one policy until all have ended; report with replay figures.
    ``hook`` sees the engine before the jobs are submitted (e.g. to add an event sink).
    With ``meter`` the report has a ``metering`` section, as a simulated run's."""
    topo = Topology(scenario.cluster)
    engine = build_sim_engine(scenario, policy, topo)
    if hook is not None:
        hook(engine)
    probe = None
    if meter is not None:
        engine.site = meter.site  # as in a simulated run: a power cap binds the scheduler
        probe = UsageProbe(engine)
    track = _Progress(len(jobs), jobs[-1].submit_s if jobs else scenario.start_s, scenario.end_s)
    engine.observers.append(track.observe)
    for spec in jobs:
        engine.submit(spec)

    def step(t: int) -> None:
        track.stepped_s = t
        if probe is not None:
            probe.observe(t)
        if progress is not None:
            progress(policy, t, track.ended, track.total)

    t0 = time.perf_counter()
    engine.run(scenario.end_s, progress=step, stop=track.over)
    wall = time.perf_counter() - t0
    end = max(engine.clock.now(), scenario.start_s + 1)
    report = build_report(engine, scenario.name, scenario.start_s, end, wall)
    extra, per_job = job_figures(engine, scenario.start_s)
    report.extra.update(extra)
    report.extra["cluster"] = {"name": scenario.cluster.name, "gpus": topo.total_gpus}
    # Over the whole run a trace's long tail (a few week-long jobs) dilutes utilisation;
    # while jobs still arrive it shows how busy the policy kept the cluster.
    last_submit = jobs[-1].submit_s if jobs else scenario.start_s
    window = last_submit - scenario.start_s
    report.extra["utilization_arrivals"] = (
        engine.ledger.gpu_seconds(start_s=scenario.start_s, end_s=last_submit)
        / (topo.total_gpus * window)
        if window > 0
        else report.utilization
    )
    report.series.update(per_job)
    if meter is not None:
        report.extra["metering"] = metering_report(
            engine,
            replace(scenario, duration_s=end - scenario.start_s),
            meter,
            probe,
            # The commitments are billed until the replay ends, not to the safety cap.
            [replace(c, end_s=min(c.end_s, end)) for c in engine.contracts.values()],
        )
    return engine, report


def replay(
    trace: Trace,
    cluster: ClusterSpec,
    policies: Sequence[str],
    *,
    tenants_from_trace: bool = False,
    restart_cost_s: int = 600,
    progress: ProgressFn | None = None,
    prices: ReplayPrices | None = None,
    meter: MeteringSettings | None = None,
) -> list[Report]:
    """Replay the trace under each policy, in order, on the same jobs and cluster; with
    ``meter``, meter each run (invoices at ``prices``)."""
    if not policies:
        raise SpecError("--policy", "give at least one policy")
    for i, name in enumerate(policies):
        get_policy(name, "--policy")  # unknown names fail before anything runs
        if name in policies[:i]:
            raise SpecError("--policy", f"{name!r} is given twice")
    scenario = replay_scenario(
        trace,
        cluster,
        tenants_from_trace=tenants_from_trace,
        restart_cost_s=restart_cost_s,
        prices=prices,
    )
    reports = []
    for name in policies:
        _, report = run_policy(scenario, trace.jobs, name, progress, meter=meter)
        report.extra["trace"] = {
            "name": trace.name,
            "source": trace.source,
            "jobs": len(trace.jobs),
            "tenants": len(trace.tenants),
            "bad_rows": len(trace.problems),
            "tenants_from_trace": tenants_from_trace,
        }
        if "metering" in report.extra:
            report.extra["metering"]["price_terms"] = (prices or ReplayPrices()).source
        reports.append(report)
    return reports


# -- figures ----------------------------------------------------------------------------------
def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"avg": 0.0, "p50": 0.0, "p99": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "avg": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
    }


def job_figures(engine: Engine, start_s: int) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """Job completion time (end - submit, completed jobs), queueing delay (first start -
    submit, jobs that started), makespan (last end - start) and job counts; and the
    per-job values (in job-id order) for CDFs."""
    jct: list[int] = []
    queue: list[int] = []
    states: Counter[str] = Counter()
    last_end = start_s
    preemptions = 0
    for run in engine.jobs.values():
        states[run.state.value] += 1
        preemptions += run.preemptions
        if run.first_start_s is not None:
            queue.append(run.first_start_s - run.spec.submit_s)
        if run.end_s is not None:
            last_end = max(last_end, run.end_s)
            if run.state is JobState.COMPLETED:
                jct.append(run.end_s - run.spec.submit_s)
    ended = sum(states[s.value] for s in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED))
    extra: dict[str, Any] = {
        "jobs": {
            "total": len(engine.jobs),
            "completed": states[JobState.COMPLETED.value],
            "rejected_or_failed": states[JobState.FAILED.value],
            "unfinished": len(engine.jobs) - ended,
        },
        "jct_s": _stats(jct),
        "queue_delay_s": _stats(queue),
        "makespan_s": last_end - start_s,
        "preemptions": preemptions,
        "guarantee_violation_s": sum(tt.violation_s for tt in engine.acct.tenants.values()),
    }
    return extra, {"jct_s": jct, "queue_delay_s": queue}
