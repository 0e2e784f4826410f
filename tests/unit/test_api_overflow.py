"""Overflow to an elastic pool in the live server (issue 16, server/overflow.py): the app
on a SQLite store, the sim backend at speed 60 (the lease and the pool), small-lease
with a 32-GPU pool the lessee may overflow to. A job whose expected wait on the lease
exceeds its max_wait runs on the pool while its cost fits the lessee's budget; then it
waits with the reason over-budget; a restart keeps the budget spent and each job's route.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_api import LESSEE, OWNER, Api, key_map

from cotenant.api.app import create_app
from cotenant.model.errors import SpecError
from cotenant.server.bootstrap import bootstrap
from cotenant.server.settings import Settings, load_settings
from cotenant.store.repo import Store
from cotenant.store.tables import ROUTES

POOL = {
    "name": "cloud",
    "accelerator": "H100-SXM-80GB",
    "max_gpus": 32,
    "on_demand_per_gpu_hour": "3.00",
    "provisioning": "60s",
    "data_move_per_tb": "20",
    "data_move_time_per_tb": "10m",
}
# 8 GPUs for an hour on the pool: $24, and 8 x 50 GB moved in at $20 per TB: $8
TERMS = {
    "providers": ["lease", "cloud"],
    "budget_per_month": "70",
    "max_wait": {"experiment": "10m"},
    "data_gb_per_gpu": 50,
}


def pool_settings(path: Path, **over: Any) -> Settings:
    raw: dict[str, Any] = {
        "db": f"sqlite:///{path}",
        "demo": True,
        "scenario": "small-lease",
        "speed": 60,
        "min_step_s": 0.01,
        "pools": (POOL,),
        "overflow": {LESSEE: TERMS},
    }
    return Settings(**{**raw, **over})


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    s = pool_settings(tmp_path / "api.db")
    store = Store(s.db)
    issued = bootstrap(store, s)
    store.close()
    return key_map(issued)


def app(tmp_path: Path, keys: dict[str, str]) -> Iterator[Api]:
    with TestClient(create_app(pool_settings(tmp_path / "api.db"))) as c:
        yield Api(c, keys)


def fill_lease(api: Api) -> None:
    """The lessee holds its 80 GPUs for 10 h, the owner its 48: the lease is full."""
    for who, gpus in ((LESSEE, 80), (OWNER, 48)):
        j = api.submit(who, gpus, duration_s=36000, command=["true"])
        assert api.wait_state(who, j["id"], "running")["state"] == "running"


def routes(tmp_path: Path) -> list[dict[str, Any]]:
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    try:
        return [dict(e.payload) for e in store.audit_entries() if e.kind == "route"]
    finally:
        store.close()


def test_overflow_within_budget_then_over_budget_and_a_restart_keeps_both(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    gen = app(tmp_path, keys)
    api = next(gen)
    fill_lease(api)
    first = api.submit(LESSEE, 8, duration_s=3600)
    why = api.get(LESSEE, f"/v1/jobs/{first['id']}/why").json()
    assert why["reason"] == "provisioning", why
    assert re.fullmatch(
        r"overflowed to cloud: expected wait 10\.0 h > max_wait 0\.2 h; cost \$32; "
        r"queued on cloud in \d+ s \(provisioning and moving its data in\)",
        why["detail"],
    ), why
    ran = api.wait_state(LESSEE, first["id"], "running", timeout=20)  # (5 s: 300 s to come)
    assert ran["placement"]["nodes"] == ["cloud-1"], ran
    second = api.submit(LESSEE, 8, duration_s=3600)
    ran = api.wait_state(LESSEE, second["id"], "running", timeout=20)
    assert ran["placement"]["nodes"] == ["cloud-2"], ran
    third = api.submit(LESSEE, 8, duration_s=3600)  # $32 more would pass the $70
    why = api.get(LESSEE, f"/v1/jobs/{third['id']}/why").json()
    assert why["state"] == "pending" and why["reason"] == "over-budget", why
    assert "overflow to cloud would cost $32, budget left $6" in why["detail"], why
    check_usage_and_invoice(api)
    owner_asks = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 60, "providers": ["cloud"]})
    assert owner_asks.status_code == 400, owner_asks.text
    assert (
        "providers[0]: provider 'cloud' is not one tenant 'owner-lab' may use "
        "(its providers: lease)" in owner_asks.text
    ), owner_asks.text
    gen.close()

    got = routes(tmp_path)  # (the lessee's 80 GPUs stayed: entitled-room)
    assert (got[0]["provider"], got[0]["reason"]) == ("lease", "entitled-room")
    assert [(r["job"], r["provider"], r["reason"], r["cost_micro"]) for r in got][1:4] == [
        (first["id"], "cloud", "overflowed", 32_000_000),
        (second["id"], "cloud", "overflowed", 32_000_000),
        (third["id"], "lease", "over-budget", 0),
    ]
    assert {r["reason"] for r in got[4:]} <= {"over-budget"}  # (its re-check at max_wait)

    # As if the server had died after storing the third job but before its route:
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    with store.engine.begin() as conn:
        conn.execute(sa.delete(ROUTES).where(ROUTES.c.job_id == third["id"]))
    store.close()
    gen = app(tmp_path, keys)  # a restart: the budget spent and the routes come back
    api = next(gen)
    why = api.get(LESSEE, f"/v1/jobs/{third['id']}/why").json()
    assert why["reason"] == "over-budget", why  # (routed again at the start)
    for j in (first, second):
        again = api.get(LESSEE, f"/v1/jobs/{j['id']}").json()
        assert again["state"] == "running" and again["placement"]["nodes"][0].startswith("cloud")
    fourth = api.submit(LESSEE, 8, duration_s=3600)
    why = api.get(LESSEE, f"/v1/jobs/{fourth['id']}/why").json()
    assert why["reason"] == "over-budget", why
    checked = api.get("operator", "/v1/admin/invariants").json()
    assert checked["ok"] and checked["problems"] == [], checked
    gen.close()
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    again = [r["reason"] for r in store.routes(LESSEE) if r["job_id"] == third["id"]]
    store.close()
    assert again and set(again) == {"over-budget"}, again  # (its route stored anew)


def check_usage_and_invoice(api: Api) -> None:
    """The pool's usage and bill on its own terms; the lease's usage without it."""
    time.sleep(0.5)  # (30 s of service time on the pool)
    [u] = api.get(LESSEE, "/v1/usage").json()["tenants"]
    [pool] = u["pools"]
    assert pool["provider"] == "cloud" and pool["gpu_seconds"] > 0, pool
    assert pool["gpu_seconds"] % 8 == 0 and pool["data_tb"] == 0.8, pool
    assert u["gpu_seconds"] % 80 == 0, u  # (only its 80-GPU job ran on the lease)
    per_hour = 300  # cents per GPU-hour
    moved = 2 * 800  # 0.4 TB per job at $20 per TB
    want = round(pool["gpu_seconds"] * per_hour / 3600) + moved
    assert abs(pool["cost_cents"] - want) <= 1, (pool, want)
    inv = api.get(LESSEE, f"/v1/invoices/{LESSEE}/2026-10").json()
    [bill] = inv["pools"]
    assert [x["description"] for x in bill["lines"]] == [
        "cloud H100-SXM-80GB on demand",
        "cloud data moved in",
    ], bill
    assert (
        bill["lines"][1]["amount_cents"] == moved and bill["lines"][1]["unit_price"] == "$20.00/TB"
    )
    assert bill["total_cents"] == sum(x["amount_cents"] for x in bill["lines"])
    assert inv["overflow"] == {"budget_cents": 7000, "reserved_cents": 6400, "left_cents": 600}
    view = api.get("operator", "/v1/cluster").json()["providers"]
    got = [(v["name"], v["total_gpus"], v["free_gpus"]) for v in view]
    assert got == [("lease", 128, 0), ("cloud", 32, 16)], view
    rc = api.get(OWNER, "/v1/usage").json()["tenants"][0]
    assert rc["pools"] == [], rc  # (its terms name no pool, and it ran on none: no zero row)
    every = {x["tenant"]: x["pools"] for x in api.get("operator", "/v1/usage").json()["tenants"]}
    assert [p["provider"] for p in every[LESSEE]] == ["cloud"] and every[OWNER] == [], every


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        pytest.param(
            {"overflow": {LESSEE: {**TERMS, "providers": ["lease", "aws"]}}},
            f"overflow.{LESSEE}.providers[1]",
            "unknown provider 'aws'; defined: lease, cloud",
            id="pool-not-defined",
        ),
        pytest.param(
            {"pools": ({**POOL, "on_demand_per_gpu_hour": "-3"},)},
            "pools[0].on_demand_per_gpu_hour",
            "negative",
            id="negative-price",
        ),
        pytest.param(
            {"pools": ({**POOL, "spot": True, "spot_per_gpu_hour": "1"},)},
            "pools[0].spot",
            "on demand only",
            id="spot",
        ),
        pytest.param(
            {"pools": ({**POOL, "name": "lease"},)},
            "pools[0].name",
            "already names a provider",
            id="pool-named-as-the-lease",
        ),
        pytest.param(
            {"overflow": {LESSEE: {**TERMS, "max_wait": {"dinner": "1h"}}}},
            f"overflow.{LESSEE}.overflow.max_wait.dinner",
            "unknown job kind",
            id="unknown-kind",
        ),
    ],
)
def test_bad_pool_settings_name_the_field(
    tmp_path: Path, over: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as e:
        pool_settings(tmp_path / "x.db", **over)
    assert e.value.field == field, e.value
    assert words in e.value.problem, e.value
    assert "\n" not in str(e.value)


def test_settings_file_reads_pools_and_terms(tmp_path: Path) -> None:
    cfg = tmp_path / "cotenant.toml"
    cfg.write_text(
        '[[pools]]\nname = "cloud"\naccelerator = "H100-SXM-80GB"\nmax_gpus = 16\n'
        'on_demand_per_gpu_hour = "3.00"\n'
        '[overflow.lessee-lab]\nproviders = ["lease", "cloud"]\nbudget_per_month = "100"\n'
        'max_wait = { experiment = "2h" }\n'
    )
    s = load_settings(cfg)
    assert s.pools[0]["name"] == "cloud" and s.overflow[LESSEE]["budget_per_month"] == "100"


def test_overflow_terms_for_a_tenant_the_store_lacks(tmp_path: Path, keys: dict[str, str]) -> None:
    s = pool_settings(tmp_path / "api.db", overflow={"nobody": TERMS})
    with pytest.raises(SpecError) as e, TestClient(create_app(s)):
        pass
    assert e.value.field == "overflow.nobody", e.value


def test_under_notice_a_training_run_migrates_to_the_pool_with_its_attempts(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    """An hour of service time a wall second: the lessee's five 16-GPU training runs fill
    its 80 GPUs; it gives notice; at the next hourly drain its entitlement has fallen
    below 80, and one run moves to the pool at its next checkpoint (attempt 1 on the
    lease ends `migrated`, attempt 2 runs on the pool); no job is lost."""
    s = pool_settings(tmp_path / "api.db", speed=3600)
    with TestClient(create_app(s)) as c:
        api = Api(c, keys)
        runs = [
            api.submit(
                LESSEE,
                16,
                duration_s=100 * 3600,
                kind="training",
                checkpoint_interval_s=1800,
                priority=i,  # (the most important moves first)
            )["id"]
            for i in range(5)
        ]
        for j in runs:
            assert api.wait_state(LESSEE, j, "running")["state"] == "running"
        r = api.post(LESSEE, f"/v1/tenants/{LESSEE}/contract/notice", {})
        assert r.status_code == 200, r.text
        moved = runs[-1]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            j = api.get(LESSEE, f"/v1/jobs/{moved}").json()
            if j["state"] == "running" and j["attempt"] == 2:
                break
            time.sleep(0.1)
        assert j["placement"]["nodes"][0].startswith("cloud-"), j
        first, second = j["attempts"]
        assert first["outcome"] == "migrated" and first["detail"] == "moved to cloud", first
        assert not first["nodes"][0].startswith("cloud-"), first
        assert second["nodes"][0].startswith("cloud-") and second["outcome"] is None, second
        listed = api.get(LESSEE, "/v1/jobs", params={"limit": 10}).json()["items"]
        assert moved in {x["id"] for x in listed}
        states = {api.get(LESSEE, f"/v1/jobs/{x}").json()["state"] for x in runs}
        assert states == {"running"}  # (none lost)
        cancelled = api.post(LESSEE, f"/v1/jobs/{moved}/cancel")  # (through the schema)
        assert cancelled.status_code == 200, cancelled.text
        assert [a["outcome"] for a in cancelled.json()["attempts"]] == ["migrated", "cancelled"]
    got = [(r["job"], r["provider"], r["reason"]) for r in routes(tmp_path)]
    assert (moved, "lease", "migrated") in got and (moved, "cloud", "migrated") in got, got
