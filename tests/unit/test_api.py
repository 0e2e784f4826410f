"""The API in process (TestClient, a real Service on a temporary SQLite file): validation
names fields, roles are enforced, idempotency, paging, contracts, keys, restart.

The real server over HTTP is tested in tests/e2e/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cotenant.api.app import create_app
from cotenant.server.bootstrap import bootstrap
from cotenant.server.keys import IssuedKey
from cotenant.server.settings import Settings
from cotenant.store.repo import Store

OWNER, LESSEE = "owner-lab", "lessee-lab"


class Api:
    """A running app and the keys bootstrap issued, by role or tenant name."""

    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.c = client
        self.keys = keys

    def h(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}", **extra}

    def get(self, who: str, path: str, **kw: Any) -> Any:
        return self.c.get(path, headers=self.h(who), **kw)

    def post(self, who: str, path: str, body: Any = None, **headers: str) -> Any:
        return self.c.post(path, json=body, headers=self.h(who, **headers))

    def submit(self, who: str, gpus: int = 8, **fields: Any) -> dict[str, Any]:
        r = self.post(who, "/v1/jobs", {"gpus": gpus, "duration_s": 3600, **fields})
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def wait_state(self, who: str, job_id: str, state: str, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            j = self.get(who, f"/v1/jobs/{job_id}").json()
            if j["state"] == state or time.monotonic() > deadline:
                return j
            time.sleep(0.02)


def key_map(keys: list[IssuedKey]) -> dict[str, str]:
    return {(k.tenant or k.role.value): k.token for k in keys}


def settings_for(path: Path) -> Settings:
    return Settings(
        db=f"sqlite:///{path}", demo=True, scenario="small-lease", speed=60, min_step_s=0.01
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    s = settings_for(tmp_path / "api.db")
    store = Store(s.db)
    keys = bootstrap(store, s)
    store.close()
    with TestClient(create_app(s)) as c:
        yield Api(c, key_map(keys))


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"gpus": 0, "duration_s": 1}, "body.gpus", id="gpus-zero"),
        pytest.param({"gpus": "eight", "duration_s": 1}, "body.gpus", id="gpus-not-int"),
        pytest.param({"duration_s": 1}, "body.gpus", id="gpus-missing"),
        pytest.param({"gpus": 1, "duration_s": -5}, "body.duration_s", id="negative-duration"),
        pytest.param({"gpus": 1, "duration_s": 1, "kind": "bogus"}, "body.kind", id="bad-kind"),
        pytest.param({"gpus": 1, "duration_s": 1, "colour": "red"}, "body.colour", id="unknown"),
        pytest.param({"gpus": 1, "duration_s": 1, "name": "a\x00b"}, "body.name", id="nul"),
        pytest.param(
            {"gpus": 1, "duration_s": 1, "priority": 10**6}, "body.priority", id="priority-range"
        ),
        pytest.param(
            {"gpus": 1, "duration_s": 1, "command": ["x" * 5000]}, "body.command[0]", id="long-arg"
        ),
        pytest.param(
            {"gpus": 1, "duration_s": 1, "tenant": "Bad Name"}, "body.tenant", id="tenant-pattern"
        ),
    ],
)
def test_bad_submissions_get_422_naming_the_field(api: Api, body: Any, field: str) -> None:
    r = api.post(LESSEE, "/v1/jobs", body)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == field
    assert field in err["message"]


@pytest.mark.parametrize(
    ("who", "body", "status", "field"),
    [
        pytest.param(LESSEE, {"gpus": 129, "duration_s": 1}, 400, "gpus", id="bigger-than-cluster"),
        pytest.param(
            LESSEE,
            {"gpus": 1, "duration_s": 1, "accelerator": "TPU-v9"},
            400,
            "accelerator",
            id="unknown-accelerator",
        ),
        pytest.param(
            LESSEE,
            {"gpus": 1, "duration_s": 1, "accelerator": "A100-SXM-80GB"},
            400,
            "accelerator",
            id="accelerator-not-in-cluster",
        ),
        pytest.param(
            "operator", {"gpus": 1, "duration_s": 1}, 400, "tenant", id="operator-must-name-tenant"
        ),
        pytest.param(
            "operator",
            {"gpus": 1, "duration_s": 1, "tenant": "nobody"},
            404,
            None,
            id="unknown-tenant",
        ),
        pytest.param("auditor", {"gpus": 1, "duration_s": 1}, 403, None, id="auditor-cannot"),
    ],
)
def test_wrong_values_get_a_4xx_that_says_which(
    api: Api, who: str, body: Any, status: int, field: str | None
) -> None:
    r = api.post(who, "/v1/jobs", body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field


def test_malformed_json_is_a_422(api: Api) -> None:
    r = api.c.post(
        "/v1/jobs",
        content=b"{not json",
        headers=api.h(LESSEE, **{"Content-Type": "application/json"}),
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"].startswith("body")


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        pytest.param({}, "Authorization", id="no-key"),
        pytest.param({"Authorization": "Bearer ctk_nope"}, "unknown", id="unknown-key"),
        pytest.param({"Authorization": "Basic abc"}, "Authorization", id="not-bearer"),
    ],
)
def test_requests_without_a_valid_key_get_401(
    api: Api, headers: dict[str, str], problem: str
) -> None:
    r = api.c.get("/v1/jobs", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert problem in r.json()["error"]["message"]


def test_unknown_routes_answer_in_the_same_error_shape(api: Api) -> None:
    r = api.get("operator", "/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["status"] == 404
    r = api.c.request("PATCH", "/v1/keys", headers=api.h("operator"))
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"


# -- jobs ----------------------------------------------------------------------------------------
def test_a_job_is_placed_and_explains_itself(api: Api) -> None:
    j = api.submit(LESSEE, 16, name="train", command=["python", "train.py"])
    assert j["state"] == "pending" and j["tenant"] == LESSEE
    j = api.wait_state(LESSEE, j["id"], "running")
    assert j["state"] == "running" and j["reason"] == "placed-own"
    assert sum(j["placement"]["gpus"]) == 16
    w = api.get(LESSEE, f"/v1/jobs/{j['id']}/why").json()
    assert w["state"] == "running"
    c = api.post(LESSEE, f"/v1/jobs/{j['id']}/cancel")
    assert c.status_code == 200 and c.json()["state"] == "cancelled"
    again = api.post(LESSEE, f"/v1/jobs/{j['id']}/cancel")
    assert again.status_code == 409


def test_a_pending_job_says_why_it_waits(api: Api) -> None:
    for _ in range(2):
        api.submit(OWNER, 64)
    j = api.submit(OWNER, 64)
    w = api.wait_state(OWNER, j["id"], "pending")
    why = api.get(OWNER, f"/v1/jobs/{w['id']}/why").json()
    assert why["state"] == "pending" and why["reason"] not in ("", "running")


def test_idempotent_retries_return_the_first_job(api: Api) -> None:
    body = {"gpus": 8, "duration_s": 60}
    r1 = api.post(LESSEE, "/v1/jobs", body, **{"Idempotency-Key": "run-42"})
    r2 = api.post(LESSEE, "/v1/jobs", body, **{"Idempotency-Key": "run-42"})
    assert (r1.status_code, r2.status_code) == (201, 200)
    assert r1.json()["id"] == r2.json()["id"]
    r3 = api.post(LESSEE, "/v1/jobs", {**body, "gpus": 16}, **{"Idempotency-Key": "run-42"})
    assert r3.status_code == 409
    # keys are per tenant: another tenant may use the same one
    r4 = api.post(OWNER, "/v1/jobs", body, **{"Idempotency-Key": "run-42"})
    assert r4.status_code == 201 and r4.json()["id"] != r1.json()["id"]


def test_listing_pages_through_every_job_once(api: Api) -> None:
    ids = [api.submit(LESSEE, 1)["id"] for _ in range(7)]
    api.submit(OWNER, 1)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get(LESSEE, "/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert (
        api.get("operator", "/v1/jobs", params={"tenant": OWNER}).json()["items"][0]["tenant"]
        == OWNER
    )
    bad = api.get(LESSEE, "/v1/jobs", params={"cursor": "abc"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "query.cursor"
    gone = api.get(LESSEE, "/v1/jobs", params={"cursor": "999999"}).json()
    assert gone == {"items": [], "next_cursor": None}


def test_state_filter(api: Api) -> None:
    j = api.submit(LESSEE, 1)
    api.post(LESSEE, f"/v1/jobs/{j['id']}/cancel")
    items = api.get(LESSEE, "/v1/jobs", params={"state": ["cancelled"]}).json()["items"]
    assert [x["id"] for x in items] == [j["id"]]
    assert api.get(LESSEE, "/v1/jobs", params={"state": ["completed"]}).json()["items"] == []


def test_a_member_cancels_only_its_own_jobs(api: Api) -> None:
    k = api.post(LESSEE, "/v1/keys", {"role": "tenant-member", "name": "alice"})
    assert k.status_code == 201
    api.keys["alice"] = k.json()["token"]
    admin_job = api.submit(LESSEE, 1)
    mine = api.submit("alice", 1)
    assert api.post("alice", f"/v1/jobs/{admin_job['id']}/cancel").status_code == 403
    assert api.post("alice", f"/v1/jobs/{mine['id']}/cancel").status_code == 200
    assert api.post(LESSEE, f"/v1/jobs/{admin_job['id']}/cancel").status_code == 200
    # a member sees the tenant's jobs but cannot act as an admin
    assert api.get("alice", f"/v1/jobs/{admin_job['id']}").status_code == 200
    assert api.post("alice", "/v1/keys", {"role": "tenant-member"}).status_code == 403
    assert api.get("alice", "/v1/keys").status_code == 403
    assert api.get("alice", f"/v1/invoices/{LESSEE}/2026-10").status_code == 403


# -- tenants and contracts -------------------------------------------------------------------------
CONTRACT = {
    "commitment": {"gpus": 16},
    "term": {"start": "2026-10-01", "end": "2027-10-01"},
    "notice": {"period": "30d", "ramp": "linear"},
    "lending": {"reclaim_grace": "5m"},
    "isolation": {"rivals": [OWNER]},
    "price": {"kind": "rate", "committed_rate_per_gpu_hour": "2.5"},
}


def test_a_tenant_admin_gives_notice_for_its_own_tenant_only(api: Api) -> None:
    # either side may exit on notice: the lessee's own admin may, for the lessee only
    assert api.post(LESSEE, f"/v1/tenants/{OWNER}/contract/notice", {}).status_code == 404
    r = api.post(LESSEE, f"/v1/tenants/{LESSEE}/contract/notice", {})
    assert r.status_code == 200 and r.json()["notice"]["given_at"] is not None
    notices = [
        json.loads(line)
        for line in api.get("auditor", "/v1/audit").text.splitlines()
        if "contract-notice" in line
    ]
    assert [(e["payload"]["tenant"], e["kind"]) for e in notices] == [(LESSEE, "contract-notice")]


def test_operator_creates_amends_and_gives_notice(api: Api) -> None:
    r = api.post("operator", "/v1/tenants", {"name": "third-lab", "contract": CONTRACT})
    assert r.status_code == 201, r.text
    assert r.json()["contract"]["commitment"]["gpus"] == 16
    amended = {**CONTRACT, "commitment": {"gpus": 24}}
    r = api.c.put("/v1/tenants/third-lab/contract", json=amended, headers=api.h("operator"))
    assert r.status_code == 200 and r.json()["commitment"]["gpus"] == 24
    r = api.post("operator", "/v1/tenants/third-lab/contract/notice", {})
    assert r.status_code == 200 and r.json()["notice"]["given_at"] is not None
    assert api.post("operator", "/v1/tenants/third-lab/contract/notice", {}).status_code == 409
    versions = api.get("operator", "/v1/tenants/third-lab/contract/versions").json()
    assert [v["change"] for v in versions] == ["create", "amend", "notice"]
    kinds = [
        line for line in api.get("auditor", "/v1/audit").text.splitlines() if "contract-" in line
    ]
    assert len(kinds) >= 3
    assert api.post(LESSEE, "/v1/tenants", {"name": "x"}).status_code == 403
    r = api.c.put(f"/v1/tenants/{LESSEE}/contract", json=CONTRACT, headers=api.h(LESSEE))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("contract", "field"),
    [
        pytest.param({"commitment": {"gpus": 500}}, "contract.commitment.gpus", id="too-big"),
        pytest.param(
            {"commitment": {"gpus": 100}},
            "contract.commitment.gpus",
            id="commitments-exceed-cluster",
        ),
        pytest.param(
            {"isolation": {"rivals": ["ghost-lab"]}},
            "contract.isolation.rivals",
            id="unknown-rival",
        ),
        pytest.param(
            {"commitment": {"all_available": True}},
            "contract.commitment.all_available",
            id="second-all-available",
        ),
        pytest.param(
            {"term": {"start": "2027-01-01", "end": "2026-01-01"}},
            "contract.term.end",
            id="term-backwards",
        ),
        pytest.param(
            {"term": {"start": "yesterday-ish"}}, "body.contract.term.start", id="bad-date"
        ),
        pytest.param(
            {"notice": {"period": "ninety days"}}, "body.contract.notice.period", id="bad-duration"
        ),
        pytest.param(
            {"price": {"kind": "flat"}}, "contract.price.flat_fee_per_month", id="flat-without-fee"
        ),
    ],
)
def test_bad_contracts_name_the_field(api: Api, contract: Any, field: str) -> None:
    r = api.post("operator", "/v1/tenants", {"name": "new-lab", "contract": contract})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["field"] == field, r.json()
    assert api.get("operator", "/v1/tenants/new-lab").status_code == 404


def test_duplicate_tenant_is_a_conflict(api: Api) -> None:
    assert api.post("operator", "/v1/tenants", {"name": LESSEE}).status_code == 409


# -- keys ----------------------------------------------------------------------------------------
def test_keys_are_issued_listed_and_revoked_within_a_tenant(api: Api) -> None:
    r = api.post(LESSEE, "/v1/keys", {"role": "operator"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "role"
    assert (
        api.post(LESSEE, "/v1/keys", {"role": "tenant-member", "tenant": OWNER}).status_code == 404
    )
    k = api.post(LESSEE, "/v1/keys", {"role": "tenant-member", "name": "bob"}).json()
    assert k["tenant"] == LESSEE and k["token"].startswith("ctk_")
    listed = api.get(LESSEE, "/v1/keys").json()
    assert {x["tenant"] for x in listed} == {LESSEE}
    assert all("token" not in x for x in listed)
    owner_key = next(x for x in api.get("operator", "/v1/keys").json() if x["tenant"] == OWNER)
    assert api.c.delete(f"/v1/keys/{owner_key['key_id']}", headers=api.h(LESSEE)).status_code == 404
    api.keys["bob"] = k["token"]
    assert api.get("bob", "/v1/whoami").json()["role"] == "tenant-member"
    assert api.c.delete(f"/v1/keys/{k['key_id']}", headers=api.h(LESSEE)).status_code == 200
    assert api.get("bob", "/v1/whoami").status_code == 401


# -- reports -------------------------------------------------------------------------------------
def test_usage_cluster_and_invoice_views(api: Api) -> None:
    j = api.submit(LESSEE, 8)
    api.wait_state(LESSEE, j["id"], "running")
    time.sleep(0.2)
    mine = api.get(LESSEE, "/v1/usage").json()["tenants"]
    assert [u["tenant"] for u in mine] == [LESSEE] and mine[0]["gpu_seconds"] > 0
    assert api.get(LESSEE, "/v1/usage", params={"tenant": OWNER}).status_code == 404
    assert {u["tenant"] for u in api.get("auditor", "/v1/usage").json()["tenants"]} == {
        OWNER,
        LESSEE,
    }
    view = api.get(LESSEE, "/v1/cluster").json()
    assert [a["tenant"] for a in view["tenants"]] == [LESSEE] and view["queue_depth"] is None
    assert view["free_gpus"] == 128 - 8
    inv = api.get(LESSEE, f"/v1/invoices/{LESSEE}/2026-10")
    assert inv.status_code == 200 and inv.json()["total"].startswith("$")
    assert api.get(LESSEE, f"/v1/invoices/{OWNER}/2026-10").status_code == 404
    assert api.get("operator", f"/v1/invoices/{LESSEE}/2026-13").status_code == 422
    metrics = api.get("operator", "/metrics").text
    assert f'cotenant_allocated_gpus{{tenant="{LESSEE}"}} 8.0' in metrics
    assert api.get(LESSEE, "/metrics").status_code == 403


# -- audit and restart ----------------------------------------------------------------------------
def test_audit_records_decisions_and_keys_and_verifies(api: Api) -> None:
    j = api.submit(LESSEE, 8)
    api.wait_state(LESSEE, j["id"], "running")
    time.sleep(0.1)
    lines = api.get("auditor", "/v1/audit").text.splitlines()
    kinds = [line.split('"kind":"')[1].split('"')[0] for line in lines]
    assert {"cluster-created", "key-issued", "contract-create", "job-submitted", "place"} <= set(
        kinds
    )
    v = api.get("auditor", "/v1/audit/verify").json()
    assert v["ok"] and v["entries"] >= len(lines) and v["after_seq"] == 0
    again = api.get("auditor", "/v1/audit/verify").json()  # from where the first one ended
    assert again["ok"] and again["after_seq"] == v["head"]["seq"]
    assert again["entries"] == again["head"]["seq"] - v["head"]["seq"]
    full = api.get("auditor", "/v1/audit/verify", params={"full": "true"}).json()
    assert full["ok"] and full["after_seq"] == 0 and full["entries"] == full["head"]["seq"]
    assert api.get(LESSEE, "/v1/audit").status_code == 403


def test_a_restart_rebuilds_the_engine_from_the_store(tmp_path: Path) -> None:
    s = settings_for(tmp_path / "restart.db")
    store = Store(s.db)
    keys = key_map(bootstrap(store, s))
    store.close()
    with TestClient(create_app(s)) as c:
        api = Api(c, keys)
        running = api.submit(LESSEE, 64, duration_s=86_400)
        api.wait_state(LESSEE, running["id"], "running")
        waiting = api.submit(LESSEE, 128, duration_s=3600)
        before = api.get(LESSEE, f"/v1/jobs/{running['id']}").json()
    with TestClient(create_app(s)) as c:
        api = Api(c, keys)
        after = api.get(LESSEE, f"/v1/jobs/{running['id']}").json()
        assert after["state"] == "running" and after["placement"] == before["placement"]
        assert api.get(LESSEE, f"/v1/jobs/{waiting['id']}").json()["state"] == "pending"
        assert api.get("operator", "/v1/admin/invariants").json() == {"ok": True, "problems": []}
        assert api.get("operator", "/v1/audit/verify").json()["ok"]
        # the pending job still runs once the big one is cancelled
        api.post(LESSEE, f"/v1/jobs/{running['id']}/cancel")
        assert api.wait_state(LESSEE, waiting["id"], "running")["state"] == "running"


# -- site power cap ------------------------------------------------------------------------------
def test_the_live_server_holds_work_beyond_the_seeding_scenarios_power_cap(tmp_path: Path) -> None:
    """A scenario whose [energy] cap leaves room for 16 busy GPUs seeds the store; after a
    restart the server still reads the cap from the store: an 8-GPU job runs, a 16-GPU job
    waits held-for-power, and /metrics shows the facility power under the cap."""
    from importlib import resources

    from cotenant.metering.energy import SiteEnergy, power_headroom_gpus

    def room(cap_mw: float) -> int:
        got = power_headroom_gpus(SiteEnergy(power_cap_mw=cap_mw), {"H100-SXM-80GB": (128, 16)}, {})
        assert got is not None
        return got

    lo, hi = 0.0, 1.0  # bisect the cap (MW) that leaves room for exactly 16 busy GPUs
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if room(mid) < 16 else (lo, mid)
    cap_mw = hi
    assert room(cap_mw) == 16
    text = (resources.files("cotenant.twin.scenarios") / "small-lease.toml").read_text()
    scenario = tmp_path / "capped.toml"
    scenario.write_text(
        text.replace('name = "small-lease"', 'name = "capped"')
        + (f"\n[energy]\npower_cap_mw = {cap_mw!r}\n")
    )
    db = tmp_path / "cap.db"
    s = Settings(db=f"sqlite:///{db}", demo=True, scenario=str(scenario), speed=60, min_step_s=0.01)
    store = Store(s.db)
    keys = key_map(bootstrap(store, s))
    store.close()
    restarted = Settings(db=f"sqlite:///{db}", speed=60, min_step_s=0.01)  # no scenario now
    with TestClient(create_app(restarted)) as c:
        api = Api(c, keys)
        small = api.submit(OWNER, gpus=8)
        assert api.wait_state(OWNER, small["id"], "running")["state"] == "running"
        big = api.submit(OWNER, gpus=16)
        deadline = time.monotonic() + 5
        why = api.get(OWNER, f"/v1/jobs/{big['id']}/why").json()
        while why["reason"] != "held-for-power" and time.monotonic() < deadline:
            time.sleep(0.02)
            why = api.get(OWNER, f"/v1/jobs/{big['id']}/why").json()
        assert why["state"] == "pending" and why["reason"] == "held-for-power"
        metrics = api.get("operator", "/metrics").text
        lines = dict(ln.rsplit(" ", 1) for ln in metrics.splitlines() if ln.startswith("cotenant_"))
        assert float(lines["cotenant_power_cap_watts"]) == pytest.approx(cap_mw * 1e6)
        assert 0 < float(lines["cotenant_facility_power_watts"]) <= cap_mw * 1e6
