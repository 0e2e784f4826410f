"""The site power cap as a filter the engine owns (engine/powercap.py): whatever a policy
decides, no start passes the power headroom; a start that would is held for power, and
the decision log and the live server's audit log show the hold.

Cluster as in test_power_cap.py: 4 nodes of 8 H100 under a 22 kW cap, 12 GPUs of power.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builders import H100, HOUR, MIN, T0, TIGHT_POWER_SCENARIO, cluster, contract, engine, job
from cotenant.cluster.state import ClusterState, Placement
from cotenant.engine.core import Engine
from cotenant.engine.powercap import hold_for_power
from cotenant.metering.energy import SiteEnergy, energy_report
from cotenant.metering.power import PowerHolds
from cotenant.metering.run import metered_ledger
from cotenant.model.accelerators import CATALOGUE
from cotenant.scheduler.decisions import Decisions, Place, Reason, Wait
from cotenant.scheduler.policies import Policy, get_policy
from cotenant.scheduler.snapshot import PendingJob, Snapshot

CAP_MW = 0.022
SITE = SiteEnergy(power_cap_mw=CAP_MW)
POLICIES = ("contract", "fifo-backfill", "fifo", "sjf", "las")


# -- the filter, a pure function -----------------------------------------------------------
def snap(headroom: int | None, promised: dict[str, Placement] | None = None) -> Snapshot:
    promised = promised or {}
    pending = tuple(
        PendingJob(job(j, "alpha", 8), T0, promise=promised.get(j)) for j in ("a", "b", "c", "d")
    )
    return Snapshot(
        now=T0,
        state=ClusterState(cluster(nodes=4, per_rack=2, racks_per_block=2)),
        pending=pending,
        running=(),
        contracts={},
        entitlements={},
        owned_gpus={},
        borrowed_gpus={},
        power_headroom_gpus=headroom,
    )


def starts(*sizes: tuple[str, int]) -> Decisions:
    """Decisions placing each (job, GPUs) on a node of its own, and one wait of the policy."""
    places = [Place(j, Placement((i,), (g,)), Reason.PLACED) for i, (j, g) in enumerate(sizes)]
    return Decisions(places=places, waits=[Wait("z", Reason.NO_CAPACITY)])


@pytest.mark.parametrize(
    ("headroom", "sizes", "kept", "held"),
    [
        pytest.param(None, [("a", 8), ("b", 8)], ["a", "b"], [], id="no-cap"),
        pytest.param(16, [("a", 8), ("b", 8)], ["a", "b"], [], id="all-fit-exactly"),
        pytest.param(12, [("a", 8), ("b", 8)], ["a"], ["b"], id="second-over"),
        pytest.param(12, [("a", 8), ("b", 8), ("c", 4)], ["a", "c"], ["b"], id="smaller-after"),
        pytest.param(4, [("a", 8), ("b", 4)], ["b"], ["a"], id="first-over"),
        pytest.param(0, [("a", 1), ("b", 2)], [], ["a", "b"], id="no-headroom"),
    ],
)
def test_starts_past_the_headroom_are_held_in_the_policys_order(
    headroom: int | None, sizes: list[tuple[str, int]], kept: list[str], held: list[str]
) -> None:
    d = starts(*sizes)
    before = dataclasses.replace(d, places=list(d.places), waits=list(d.waits))
    out, waits = hold_for_power(snap(headroom), d)
    assert [p.job_id for p in out.places] == kept
    assert [w.job_id for w in waits] == held
    assert all(w.reason is Reason.HELD_FOR_POWER for w in waits)
    # The policy's own waits stay first; the held starts follow.
    assert [w.job_id for w in out.waits] == ["z", *held]
    assert d == before  # the input is not changed
    if not held:
        assert out is d


def test_the_detail_says_the_headroom_left_and_who_held_it() -> None:
    _, (w,) = hold_for_power(snap(12), starts(("a", 8), ("b", 8)))
    assert w.detail == (
        "4 GPUs of power headroom under the site cap (the policy started 8; held by the engine)"
    )


def test_a_held_job_keeps_the_room_promised_to_it() -> None:
    room = Placement((2,), (8,))
    _, waits = hold_for_power(snap(4, {"b": room}), starts(("a", 8), ("b", 8)))
    assert {w.job_id: w.promise for w in waits} == {"a": None, "b": room}


def test_reclaims_rejects_and_tenant_waits_pass_through() -> None:
    d = starts(("a", 8), ("b", 8))
    d.tenant_waits["beta"] = Wait("", Reason.OVER_ENTITLEMENT)
    out, _ = hold_for_power(snap(8), d)
    assert out.tenant_waits == d.tenant_waits and out.reclaims == d.reclaims
    assert out.rejects == d.rejects and out.behind == d.behind


# -- the engine applies it, whatever the policy ---------------------------------------------
class PowerBlind:
    """A policy that ignores the power cap: a built-in policy shown no headroom (as a
    policy written before the cap, or a user's own, would see it)."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = f"{inner.name}-power-blind"
        self.description = inner.description
        self.honours_contracts = inner.honours_contracts
        self.wake_every_s = inner.wake_every_s

    def decide(self, snap: Snapshot) -> Decisions:
        return self.inner.decide(dataclasses.replace(snap, power_headroom_gpus=None))


def blind_engine(policy: str, events: list[dict[str, Any]]) -> Engine:
    topo = cluster(nodes=4, per_rack=2, racks_per_block=2)
    deals = [contract("alpha", 16), contract("beta", 0)] if policy == "contract" else []
    eng = engine(topo, deals, policy, tenants=("alpha", "beta"), events=events)
    eng.policy = PowerBlind(get_policy(policy))
    eng.site = SITE
    return eng


@pytest.mark.parametrize("policy", POLICIES)
def test_a_policy_that_ignores_power_cannot_start_work_past_the_cap(policy: str) -> None:
    events: list[dict[str, Any]] = []
    eng = blind_engine(policy, events)
    watched = PowerHolds(eng)
    eng.submit(job("first", "alpha", 8, duration_s=HOUR))
    eng.submit(job("second", "alpha", 8, duration_s=HOUR, submit_s=T0 + MIN))
    eng.run(T0 + 30 * MIN)
    assert eng.jobs["first"].state.value == "running"
    assert eng.jobs["second"].state.value == "pending"
    state, detail = eng.why("second")
    assert state == Reason.HELD_FOR_POWER.value and "held by the engine" in detail
    # The decision log (the twin's audit trail; the server audits the same entries).
    holds = [e for e in events if e["event"] == "hold"]
    assert holds[0] == {
        "t": T0 + MIN,
        "event": "hold",
        "job": "second",
        "tenant": "alpha",
        "gpus": 8,
        "policy": f"{policy}-power-blind",
        "reason": "held-for-power",
        "detail": detail,
    }
    eng.run(T0 + 3 * HOUR)
    assert eng.jobs["second"].first_start_s == eng.jobs["first"].end_s
    # The run's power report counts the engine's holds as it counts a policy's.
    assert watched.jobs == {"alpha": {"second"}} and watched.cycles >= 1


@pytest.mark.parametrize("policy", POLICIES)
def test_facility_power_stays_under_the_cap_whatever_the_policy(policy: str) -> None:
    rng = np.random.default_rng(7)
    events: list[dict[str, Any]] = []
    eng = blind_engine(policy, events)
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
    report = energy_report(metered_ledger(eng, end), SITE, CATALOGUE, {H100: 32}, (T0, end))
    assert report.peak_facility_w <= CAP_MW * 1e6 and not report.over_power_cap
    assert any(e["event"] == "hold" for e in events)
    assert any(e["event"] == "place" for e in events)


# -- the live server's audit log ------------------------------------------------------------
def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_live_servers_audit_log_shows_the_hold(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from cotenant.api.app import create_app
    from cotenant.server.bootstrap import bootstrap
    from cotenant.server.settings import Settings
    from cotenant.store.repo import Store

    scenario = tmp_path / "tight-power.toml"
    scenario.write_text(TIGHT_POWER_SCENARIO)
    s = Settings(
        db=f"sqlite:///{tmp_path / 'p.db'}",
        demo=True,
        scenario=str(scenario),
        policy="fifo",
        speed=60,
        min_step_s=0.01,
    )
    store = Store(s.db)
    keys = {(k.tenant or k.role.value): k.token for k in bootstrap(store, s)}
    store.close()
    with TestClient(create_app(s)) as c:
        svc = c.app.state.service  # type: ignore[attr-defined]
        with svc.lock:  # (the engine does not step while this is held)
            svc.engine.policy = PowerBlind(svc.engine.policy)
        auth = {"Authorization": f"Bearer {keys['alpha']}"}
        for _ in range(2):
            r = c.post("/v1/jobs", json={"gpus": 8, "duration_s": 3600}, headers=auth)
            assert r.status_code == 201, r.text

        def held() -> list[Any]:
            return [e for e in svc.store.audit_entries() if e.kind == "hold"]

        wait_for(lambda: bool(held()))
        entry = held()[0]
        assert entry.payload["reason"] == "held-for-power"
        assert entry.payload["policy"] == "fifo-power-blind"
        assert entry.payload["gpus"] == 8 and entry.payload["tenant"] == "alpha"
        assert svc.store.verify_audit(full=True).ok
