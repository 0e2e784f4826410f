"""The site power cap: headroom by hand, jobs held for power, and never above the cap.

Cluster: 4 nodes of 8 H100 (700 W busy, 90 W idle), 2000 W per node, PUE 1.2.
Every node on and every GPU idle: 32 * 90 + 4 * 2000 = 10,880 W IT. Each busy GPU adds
610 W. A 22 kW facility cap is 22,000 / 1.2 = 18,333.3 W IT, so
floor((18,333.3 - 10,880) / 610) = 12 GPUs may be busy at once.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from builders import H100, HOUR, MIN, T0, TIGHT_POWER_SCENARIO, cluster, contract, engine, job
from cotenant.engine.core import Engine
from cotenant.metering.energy import (
    SiteEnergy,
    busy_gpu_headroom,
    energy_report,
    power_headroom_gpus,
)
from cotenant.metering.run import metered_ledger
from cotenant.model.accelerators import CATALOGUE
from cotenant.scheduler.decisions import Decisions, Reason
from cotenant.scheduler.policies import Policy
from cotenant.scheduler.snapshot import Snapshot
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import parse_scenario

CAP_MW = 0.022
SITE = SiteEnergy(power_cap_mw=CAP_MW)
KIND = CATALOGUE[H100]
POLICIES = ("contract", "fifo-backfill", "fifo", "sjf", "las")


@pytest.mark.parametrize(
    ("busy", "headroom"),
    [(0, 12), (5, 7), (12, 0), (20, 0)],
    ids=["idle", "five-busy", "at-cap", "over-cap"],
)
def test_headroom_by_hand(busy: int, headroom: int) -> None:
    assert busy_gpu_headroom(SITE, KIND, busy, 32, 4) == headroom


def test_no_cap_no_headroom() -> None:
    assert busy_gpu_headroom(SiteEnergy(), KIND, 0, 32, 4) is None


def test_headroom_is_exact_at_the_boundary() -> None:
    # Exactly 12 busy GPUs under the cap: 1.2 * (10,880 + 12 * 610) = 21,840 W.
    site = SiteEnergy(power_cap_mw=0.02184)
    assert busy_gpu_headroom(site, KIND, 0, 32, 4) == 12
    assert busy_gpu_headroom(SiteEnergy(power_cap_mw=0.021839), KIND, 0, 32, 4) == 11


def test_mixed_kinds_count_the_largest_busy_step() -> None:
    # 8 H100 (1 node) + 8 GB200 (2 nodes of 4): idle 8*90 + 8*150 + 3*2000 = 7,920 W;
    # 2 GB200 busy add 2 * 1050. Cap 20 kW at PUE 1.0: room 20,000 - 10,020 = 9,980 W,
    # counted in GB200 steps (1050 W, the largest): 9 GPUs.
    site = SiteEnergy(pue=1.0, power_cap_mw=0.02)
    installed = {H100: (8, 1), "GB200-NVL72": (8, 2)}
    assert power_headroom_gpus(site, installed, {"GB200-NVL72": 2}) == 9


def _power_engine(policy: str, events: list[dict[str, object]] | None = None) -> Engine:
    topo = cluster(nodes=4, per_rack=2, racks_per_block=2)
    deals = [contract("alpha", 16), contract("beta", 0)] if policy == "contract" else []
    eng = engine(topo, deals, policy, tenants=("alpha", "beta"), events=events)
    eng.site = SITE
    return eng


@pytest.mark.parametrize("policy", POLICIES)
def test_a_job_over_the_power_budget_is_held_for_power(policy: str) -> None:
    eng = _power_engine(policy)
    eng.submit(job("first", "alpha", 8, duration_s=HOUR))
    eng.submit(job("second", "alpha", 8, duration_s=HOUR, submit_s=T0 + MIN))
    eng.run(T0 + 30 * MIN)
    assert eng.jobs["first"].state.value == "running"
    assert eng.jobs["second"].state.value == "pending"
    assert eng.why("second")[0] == Reason.HELD_FOR_POWER.value
    eng.run(T0 + 3 * HOUR)
    # Power frees when the first ends; the second runs then.
    assert eng.jobs["second"].first_start_s == eng.jobs["first"].end_s


def test_contract_policy_lends_nothing_while_entitled_demand_waits_for_power() -> None:
    eng = _power_engine("contract")
    eng.submit(job("a-small", "alpha", 8, duration_s=HOUR))
    eng.submit(job("a-big", "alpha", 8, duration_s=HOUR, submit_s=T0 + MIN))
    eng.submit(job("b-tiny", "beta", 1, duration_s=HOUR, submit_s=T0 + 2 * MIN))
    eng.run(T0 + 30 * MIN)
    # 4 GPUs of power are left, but alpha's entitled job is waiting for 8 of them.
    assert eng.why("a-big")[0] == Reason.HELD_FOR_POWER.value
    assert eng.jobs["b-tiny"].state.value == "pending"
    assert eng.why("b-tiny")[0] == Reason.HELD_FOR_POWER.value


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_facility_power_never_exceeds_the_cap(policy: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    events: list[dict[str, object]] = []
    eng = _power_engine(policy, events)
    for i in range(40):
        eng.submit(
            job(
                f"j{i}",
                str(rng.choice(["alpha", "beta"])),
                int(rng.choice([1, 2, 4, 8])),
                duration_s=int(rng.integers(10 * MIN, 3 * HOUR)),
                submit_s=T0 + int(rng.integers(0, 6 * HOUR)),
                checkpoint_interval_s=15 * MIN,
            )
        )
    end = T0 + 12 * HOUR
    eng.run(end)
    ledger = metered_ledger(eng, end)
    report = energy_report(ledger, SITE, CATALOGUE, {H100: 32}, (T0, end))
    assert report.peak_facility_w <= CAP_MW * 1e6
    assert not report.over_power_cap
    assert any(e.get("event") == "place" for e in events)
    # Each policy budgets power itself: the engine's filter (engine/powercap.py) never
    # has a start to hold.
    assert not any(e.get("event") == "hold" for e in events)


class RecordingPolicy:
    """The same interface as a policy: delegates, and keeps every wait reason it gave."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name, self.description = inner.name, inner.description
        self.honours_contracts = inner.honours_contracts
        self.wake_every_s = inner.wake_every_s
        self.reasons: set[Reason] = set()

    def decide(self, snap: Snapshot) -> Decisions:
        d = self.inner.decide(snap)
        self.reasons.update(w.reason for w in d.waits)
        self.reasons.update(w.reason for w in d.tenant_waits.values())
        return d


def test_a_scenario_with_a_low_cap_holds_jobs_and_stays_under_it() -> None:
    sc = parse_scenario(tomllib.loads(TIGHT_POWER_SCENARIO))
    recorder: list[RecordingPolicy] = []

    def hook(eng: Engine) -> None:
        recorder.append(RecordingPolicy(eng.policy))
        eng.policy = recorder[0]

    eng, report = simulate(sc, engine_hook=hook)
    assert Reason.HELD_FOR_POWER in recorder[0].reasons
    power = report.extra["metering"]["power"]
    assert power["cap_mw"] == CAP_MW
    assert 0 < power["peak_facility_mw"] <= CAP_MW
    assert max(power["facility_mw"]) <= CAP_MW
    assert report.series["facility_power_mw"] == power["facility_mw"]
    # From the ledger: never more than the 12 GPUs the cap allows busy at once.
    ledger = metered_ledger(eng, sc.end_s)
    from_ledger = energy_report(ledger, SITE, CATALOGUE, {H100: 32}, (sc.start_s, sc.end_s))
    assert from_ledger.peak_facility_w <= CAP_MW * 1e6
    assert from_ledger.peak_facility_w == pytest.approx(power["peak_facility_mw"] * 1e6)
