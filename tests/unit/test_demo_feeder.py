"""The live demo's feeder: the scenario's jobs reach the store through the service at
their times (each once, across a restart), and its failure model fires in the live
engine."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient

from cotenant.api.app import create_app
from cotenant.server.bootstrap import bootstrap
from cotenant.server.settings import Settings
from cotenant.store.repo import Store
from cotenant.twin.runtime import workload_of
from cotenant.twin.scenario import load_scenario
from cotenant.twin.scenarios import __file__ as scenarios_init

SMALL = Path(scenarios_init).parent / "small-lease.toml"


def demo_settings(tmp_path: Path) -> Settings:
    scenario = tmp_path / "busy.toml"
    text = SMALL.read_text().replace('name = "small-lease"', 'name = "busy-small-lease"')
    scenario.write_text(text + "\n[failures]\nenabled = true\nrate_per_gpu_day = 0.5\n")
    return Settings(
        db=f"sqlite:///{tmp_path / 'demo.db'}",
        demo=True,
        scenario=str(scenario),
        workload=True,
        speed=3600,
        min_step_s=0.01,
    )


def demo_jobs(store: Store) -> list[dict[str, object]]:
    return [r for r in store.jobs(limit=100_000) if r["submitted_by"] == "demo-feeder"]


def test_the_feeder_submits_each_job_once_at_its_time_and_faults_fire(tmp_path: Path) -> None:
    s = demo_settings(tmp_path)
    store = Store(s.db)
    bootstrap(store, s)
    store.close()
    sc = load_scenario(s.scenario or "")
    planned = workload_of(sc)
    with TestClient(create_app(s)) as c:
        svc = c.app.state.service  # type: ignore[attr-defined]
        time.sleep(3.0)  # three hours of service time
        now = svc.clock.now()
        due = [j for j in planned if j.submit_s <= now - 60]
        # Each due job is stored soon (the feeder's thread may run a few hundred ms late
        # on a busy machine: at 3,600x that is minutes of service time).
        deadline = time.monotonic() + 10
        while len(stored := demo_jobs(svc.store)) < len(due) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(stored) >= len(due) > 5
        assert len(stored) <= len([j for j in planned if j.submit_s <= svc.clock.now()])
        assert all(r["idempotency_key"].startswith("demo-") for r in stored)
        kinds = Counter(e.kind for e in svc.store.audit_entries())
        assert kinds["node-health"] > 0  # the failure model runs in the live engine
        assert kinds["place"] > 0
    before = {r["id"] for r in demo_jobs(Store(s.db, read_only=True))}
    with TestClient(create_app(s)) as c:
        svc = c.app.state.service  # type: ignore[attr-defined]
        time.sleep(1.0)
        rows = demo_jobs(svc.store)
    keys = Counter(r["idempotency_key"] for r in rows)
    assert keys and max(keys.values()) == 1  # nothing submitted twice across the restart
    assert before <= {r["id"] for r in rows}
