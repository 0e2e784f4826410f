"""Adversarial search: hypothesis generates whole scenarios and the engine is checked
after every step.

A world is a small cluster (2-16 nodes, racks of 1-4, blocks of 1-2 racks), 2-6 tenants
with contracts (fixed or all-available, priorities, lending limits, grace periods, ramps
and notice given during the run, rival pairs at node or rack level, spares-backed or
not), maybe an inference service, maybe a site power cap, 4-40 jobs (gangs of 1 GPU to
the whole cluster, every topology constraint, priorities, checkpointing or not) and
bursts of node, rack-uplink, job-only and planned-drain failures. It is parsed through
the real scenario code (so only valid worlds run) and run on the twin.

After every engine step (``check_step``):
- no GPU given twice: the cluster state's own invariants, and the running placements add
  up to what it says each tenant holds;
- rivals never share a node (or a rack, under rack isolation);
- no running job holds a GPU on a node that is down;
- every placement went to healthy nodes and names its reason (checked as it is emitted).
At the end (``check_end``):
- entitled demand was placed within grace: no guarantee violation (a violation is
  measured against the *deliverable* entitlement, so faults beyond the spares are a
  shortfall, not a violation);
- metered GPU-seconds (closed ledger records and open intervals) equal the
  GPU-seconds allocated, per tenant;
- no job lost: submitted = done + running + pending + rejected + failed + cancelled;
- every pending job has a reason.

The default test run keeps a few hundred worlds (tests/property/test_adversarial.py);
``bench/bench_adversarial.py`` runs the deep profile and prints what it covered.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from cotenant.cluster.state import Health
from cotenant.engine.core import Engine
from cotenant.faults.injector import schedule
from cotenant.faults.model import Effect, FailureEvent
from cotenant.metering.run import metered_ledger, parse_metering_settings
from cotenant.model.contracts import IsolationLevel
from cotenant.model.jobs import Constraint, JobKind, JobSpec, JobState
from cotenant.twin.report import job_states
from cotenant.twin.runtime import build_sim_engine, install_services
from cotenant.twin.scenario import Scenario, parse_scenario

START = 1_790_812_800  # 2026-10-01T00:00:00Z
HOUR = 3600
H100 = "H100-SXM-80GB"
NODE_GPUS = 8


@dataclass
class World:
    """One generated scenario: its file (as a dict), jobs and failures."""

    raw: dict[str, Any]
    jobs: list[JobSpec]
    failures: list[FailureEvent]
    horizon_s: int

    def describe(self) -> str:
        """The world as JSON: saved under tests/fixtures/adversarial/, a regression case."""
        return json.dumps(
            {
                "scenario": self.raw,
                "jobs": [asdict(j) for j in self.jobs],
                "failures": [asdict(f) for f in self.failures],
                "horizon_s": self.horizon_s,
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str) -> World:
        d = json.loads(text)
        jobs = [
            JobSpec(
                **{
                    **j,
                    "kind": JobKind(j["kind"]),
                    "constraint": Constraint(j["constraint"]),
                    "command": tuple(j["command"]),
                }
            )
            for j in d["jobs"]
        ]
        failures = [FailureEvent(**{**f, "effect": Effect(f["effect"])}) for f in d["failures"]]
        return World(d["scenario"], jobs, failures, int(d["horizon_s"]))


@dataclass
class Coverage:
    """What the runs exercised, summed over worlds."""

    worlds: int = 0
    steps: int = 0
    jobs: int = 0
    faults: int = 0
    events: Counter[str] = field(default_factory=Counter)

    def add(self, other: Coverage) -> None:
        self.worlds += other.worlds
        self.steps += other.steps
        self.jobs += other.jobs
        self.faults += other.faults
        self.events.update(other.events)


@st.composite
def worlds(draw: st.DrawFn, bursts: int = 4) -> World:
    """A world; ``bursts`` is the most fault bursts it may draw (more: denser faults)."""
    per_rack = draw(st.sampled_from([1, 2, 4]))
    racks_per_block = draw(st.sampled_from([1, 2]))
    n_racks = draw(st.integers(1, max(1, 16 // per_rack)))
    nodes = per_rack * n_racks
    total = nodes * NODE_GPUS
    horizon = draw(st.sampled_from([4, 8, 12])) * HOUR

    n_tenants = draw(st.integers(2, 6))
    names = [f"t{i}" for i in range(n_tenants)]
    tenants: list[dict[str, Any]] = []
    left = total
    all_available_taken = False
    for i, name in enumerate(names):
        t: dict[str, Any] = {"name": name}
        has_contract = i == 0 or draw(st.booleans())
        if has_contract:
            if not all_available_taken and draw(st.integers(0, 3)) == 0:
                commitment: dict[str, Any] = {"all_available": True}
                reserve = draw(st.sampled_from([0, 0, NODE_GPUS]))
                if reserve and reserve <= left:
                    commitment["reserve_gpus"] = reserve
                    left -= reserve
                all_available_taken = True
            else:
                gpus = draw(st.integers(0, left)) if left else 0
                if gpus == 0:
                    tenants.append(t)
                    continue
                commitment = {"gpus": gpus}
                left -= gpus
            contract: dict[str, Any] = {
                "commitment": commitment,
                "term": {"start": START, "length": "365d"},
                "lending": {"reclaim_grace": f"{draw(st.sampled_from([0, 60, 300]))}s"},
                "priority": draw(st.sampled_from([0, 0, 10])),
            }
            if draw(st.integers(0, 4)) == 0:
                contract["lending"]["limit_gpus"] = draw(st.integers(0, total))
            if draw(st.integers(0, 4)) == 0:
                contract["notice"] = {
                    "given_at": START + draw(st.integers(0, horizon)),
                    "period": f"{draw(st.sampled_from([1, 3, 8]))}h",
                    "ramp": draw(st.sampled_from(["linear", "step"])),
                }
            if draw(st.booleans()):
                contract["spares_backed"] = True
            t["contract"] = contract
        tenants.append(t)
    if "contract" not in tenants[0]:  # at least one contract
        tenants[0]["contract"] = {"commitment": {"gpus": 0}, "term": {"start": START}}
    contracted = [t for t in tenants if "contract" in t]
    for t in contracted:
        others = [u["name"] for u in tenants if u["name"] != t["name"]]
        rivals = draw(st.lists(st.sampled_from(others), max_size=2, unique=True)) if others else []
        if rivals:
            t["contract"]["isolation"] = {
                "rivals": rivals,
                "level": draw(st.sampled_from(["node", "node", "rack"])),
            }

    raw: dict[str, Any] = {
        "name": "adversarial",
        "start": START,
        "duration": f"{horizon}s",
        "seed": draw(st.integers(0, 1000)),
        "policy": "contract",
        "cluster": {
            "groups": [
                {
                    "accelerator": H100,
                    "nodes": nodes,
                    "nodes_per_rack": per_rack,
                    "racks_per_block": racks_per_block,
                }
            ]
        },
        "tenants": tenants,
    }
    if draw(st.integers(0, 3)) == 0:
        owner = draw(st.sampled_from([t["name"] for t in contracted]))
        raw["services"] = [
            {
                "name": "svc",
                "tenant": owner,
                "gpus_per_replica": draw(st.sampled_from([1, 2, 8])),
                "throughput_rps_per_replica": 10.0,
                "latency_target_s": 2.0,
                "min_replicas": draw(st.integers(0, 2)),
                "max_replicas": draw(st.integers(2, 6)),
                "startup": "5m",
                "demand": {"kind": "diurnal", "peak_rps": draw(st.sampled_from([5.0, 30.0]))},
            }
        ]
    if draw(st.integers(0, 3)) == 0:
        # full power is about (700 W x GPUs + 2 kW x nodes) x PUE 1.2; cap somewhere below
        full_mw = (0.7 * total + 2.0 * nodes) * 1.2 / 1000
        raw["energy"] = {"power_cap_mw": round(full_mw * draw(st.sampled_from([0.4, 0.7, 1.0])), 4)}

    sizes = sorted({1, 2, 4, 8, 16, 32, 64, total} - {s for s in (32, 64) if s > total})
    sizes = [s for s in sizes if s <= total]
    jobs: list[JobSpec] = []
    for i in range(draw(st.integers(4, 40))):
        who = draw(st.sampled_from(names))
        jobs.append(
            JobSpec(
                id=f"j{i}",
                tenant=who,
                gpus=draw(st.sampled_from(sizes)),
                duration_s=draw(st.sampled_from([60, 600, HOUR, 3 * HOUR, 24 * HOUR])),
                submit_s=START + draw(st.integers(0, horizon * 3 // 4)),
                kind=draw(st.sampled_from([JobKind.TRAINING, JobKind.EXPERIMENT])),
                constraint=draw(st.sampled_from([Constraint.AUTO] * 4 + list(Constraint))),
                checkpoint_interval_s=draw(st.sampled_from([0, 600, 1800])),
                priority=draw(st.sampled_from([0, 0, 50, 100])),
            )
        )
    jobs.sort(key=lambda j: (j.submit_s, j.id))

    failures: list[FailureEvent] = []
    for _ in range(draw(st.integers(0, bursts))):
        at = START + draw(st.integers(0, horizon))
        for _ in range(draw(st.integers(1, 3))):
            effect = draw(st.sampled_from(list(Effect)))
            failures.append(
                FailureEvent(
                    time_s=at + draw(st.integers(0, 120)),
                    node=draw(st.integers(0, nodes - 1)),
                    cause="adversarial",
                    effect=effect,
                    repair_s=0
                    if effect is Effect.JOB_ONLY
                    else draw(st.sampled_from([300, HOUR, 4 * HOUR])),
                    notice_s=draw(st.sampled_from([0, 600]))
                    if effect is Effect.PLANNED_DRAIN
                    else 0,
                )
            )
    failures.sort(key=lambda f: (f.time_s, f.node))
    return World(raw, jobs, failures, horizon)


# -- running and checking ----------------------------------------------------------------------
def scenario_of(world: World) -> Scenario:
    """The world through the real scenario parser (as a scenario file's tables)."""
    return parse_scenario(world.raw)


def run_world(world: World) -> Coverage:
    """Run the world on the twin, checking after every step; AssertionError on a break."""
    sc = scenario_of(world)
    eng = build_sim_engine(sc)
    eng.site = parse_metering_settings(sc.sections.get("energy")).site
    cov = Coverage(worlds=1, jobs=len(world.jobs), faults=len(world.failures))
    rivals = _rival_pairs(sc)

    def on_event(e: dict[str, Any]) -> None:
        cov.events[str(e.get("event"))] += 1
        if e.get("event") == "place":
            assert e.get("reason"), f"a placement without a reason: {e}"
            nodes = e["nodes"]
            bad = [n for n in nodes if int(eng.state.health[n]) != int(Health.HEALTHY)]
            assert not bad, f"{e['job']} placed on nodes not healthy: {bad}"

    eng.sinks.append(on_event)
    scaler = install_services(eng, sc)
    schedule(eng, world.failures)
    for spec in world.jobs:
        eng.submit(spec)

    def step(t: int) -> None:
        cov.steps += 1
        check_step(eng, rivals)

    progress = step if scaler is None else scaler.progress(step)
    eng.run(sc.end_s, progress=progress)
    check_end(eng, sc.end_s)
    return cov


def _rival_pairs(sc: Scenario) -> list[tuple[str, str, IsolationLevel]]:
    return [(c.tenant, r, c.isolation.level) for c in sc.contracts() for r in c.isolation.rivals]


def check_step(eng: Engine, rivals: list[tuple[str, str, IsolationLevel]]) -> None:
    st_ = eng.state
    st_.check_invariants()
    held: dict[str, np.ndarray] = {}
    n = eng.topo.n_nodes
    down = st_.health == int(Health.DOWN)
    for r in eng.running():
        arr = held.setdefault(r.tenant, np.zeros(n, np.int64))
        for node, g in zip(r.placement.nodes, r.placement.gpus, strict=True):
            arr[node] += g
            assert not down[node], f"{r.spec.id} holds GPUs on down node {node}"
    for tenant, arr in held.items():
        idx = st_.tenant_index(tenant)
        assert np.array_equal(st_.tenant_gpus[idx], arr), f"{tenant}: placements != state"
    for a, b, level in rivals:
        if a not in held or b not in held:
            continue
        if level is IsolationLevel.RACK:
            racks_a = set(eng.topo.node_rack[held[a] > 0].tolist())
            racks_b = set(eng.topo.node_rack[held[b] > 0].tolist())
            assert not racks_a & racks_b, f"rivals {a} and {b} share racks {racks_a & racks_b}"
        else:
            both = np.flatnonzero((held[a] > 0) & (held[b] > 0))
            assert both.size == 0, f"rivals {a} and {b} share nodes {both.tolist()}"


def check_end(eng: Engine, end_s: int) -> None:
    for tenant, tt in sorted(eng.acct.tenants.items()):
        assert tt.violation_s == 0, (
            f"{tenant}: {tt.violation_s} s of guarantee violations on {tt.violation_jobs} jobs"
        )
    ledger = metered_ledger(eng, eng.acct.last_s)
    for tenant, tt in eng.acct.tenants.items():
        assert ledger.gpu_seconds(tenant=tenant) == tt.used_gpu_s, f"{tenant}: metered != used"
    for tenant, book in job_states(eng).items():
        assert book["lost"] == 0, f"{tenant}: {book['lost']} jobs lost ({book})"
    for run in eng.jobs.values():
        if run.state is JobState.PENDING and run.spec.submit_s <= end_s:
            reason, _ = eng.why(run.id)
            assert reason, f"{run.id} waits without a reason"
