"""The console in process (TestClient, a real Service on a temporary SQLite file):
its time series, sessions and CSRF, the jobs query, and what each role's data calls
return. The browser tests are in tests/e2e/test_e2e_console.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api import LESSEE, OWNER, key_map, settings_for

from cotenant.api.app import create_app
from cotenant.server.bootstrap import bootstrap
from cotenant.store.queries import JobQuery, job_page, job_trail, seq_at_time
from cotenant.store.repo import Store
from cotenant.web.series import Series, Tier


# -- series -------------------------------------------------------------------------------------
def test_a_tier_keeps_bucket_means_and_at_most_its_points() -> None:
    tier = Tier(step_s=60, points=3)
    for t in range(0, 600, 10):  # 6 samples a bucket, 10 buckets
        tier.add(t, {"x": t // 60})
    assert list(tier.times) == [360, 420, 480]  # bounded: the 3 newest closed buckets
    assert [r["x"] for r in tier.rows] == [6, 7, 8]
    view = tier.view()
    assert view["t"] == [360, 420, 480, 540]  # plus the open bucket
    assert view["series"]["x"] == [6, 7, 8, 9]


def test_a_bucket_is_the_mean_of_its_samples() -> None:
    tier = Tier(step_s=100, points=10)
    for t, v in ((0, 1.0), (50, 3.0), (100, 10.0)):
        tier.add(t, {"x": v})
    assert tier.view()["series"]["x"] == [2.0, 10.0]


def test_series_survive_a_dump_and_load_and_never_go_back() -> None:
    s = Series()
    for t in range(0, 3 * 86_400, 600):
        s.add(t, {"a": 1.0, "b": float(t)})
    s.add(3 * 86_400 + 3600, {"a": 1.0})  # close the last buckets
    again = Series()
    again.loads(s.dumps())
    assert list(again.day.times) == list(s.day.times)
    assert list(again.month.rows) == list(s.month.rows)
    assert len(again.day.times) == 288 and len(again.month.times) == 3 * 24
    again.month.add(0, {"a": 5.0})  # a sample from before the restored end changes nothing
    again.month.add(7200, {"a": 5.0})
    assert list(again.month.times) == list(s.month.times)


# -- in process ---------------------------------------------------------------------------------
class Console:
    def __init__(self, c: TestClient, keys: dict[str, str]) -> None:
        self.c = c
        self.keys = keys

    def sign_in(self, who: str) -> TestClient:
        self.c.cookies.clear()
        r = self.c.post("/signin", data={"key": self.keys[who]}, follow_redirects=False)
        assert r.status_code == 303, r.text
        return self.c

    def api(self, who: str, method: str, path: str, **kw: Any) -> Any:
        return self.c.request(
            method, path, headers={"Authorization": f"Bearer {self.keys[who]}"}, **kw
        )


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    s = settings_for(tmp_path / "console.db")
    store = Store(s.db)
    keys = key_map(bootstrap(store, s))
    store.close()
    with TestClient(create_app(s), base_url="http://testserver") as c:
        yield Console(c, keys)


def test_sign_in_sets_a_strict_httponly_cookie_and_a_wrong_key_does_not(console: Console) -> None:
    r = console.c.post("/signin", data={"key": "ctk_wrong"}, follow_redirects=False)
    assert r.status_code == 401 and "unknown or revoked API key" in r.text
    r = console.c.post("/signin", data={"key": console.keys[OWNER]}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert console.keys[OWNER] not in r.headers["set-cookie"]  # the key stays on the server


def test_state_changing_forms_need_the_csrf_token(console: Console) -> None:
    c = console.sign_in("operator")
    page = c.get(f"/tenants/{LESSEE}/notice")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = c.post(f"/tenants/{LESSEE}/notice", data={"at": ""}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post(
        f"/tenants/{LESSEE}/notice",
        data={"at": "", "csrf": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "another site" in r.text
    assert (
        console.api("operator", "GET", f"/v1/tenants/{LESSEE}/contract").json()["notice"][
            "given_at"
        ]
        is None
    )
    r = c.post(f"/tenants/{LESSEE}/notice", data={"at": "", "csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    contract = console.api("operator", "GET", f"/v1/tenants/{LESSEE}/contract").json()
    assert contract["notice"]["given_at"] is not None
    r = c.post(f"/tenants/{LESSEE}/notice", data={"at": "", "csrf": token})
    assert r.status_code == 409 and "already given" in r.text  # the API's own message


def test_a_tenant_admin_gives_notice_for_its_own_tenant_only(console: Console) -> None:
    c = console.sign_in(LESSEE)
    assert "Give notice" in c.get(f"/tenants/{LESSEE}").text  # either side may exit
    assert c.get(f"/tenants/{LESSEE}/notice").status_code == 200
    assert c.get(f"/tenants/{OWNER}").status_code == 404  # a rival tenant looks absent
    assert c.get(f"/tenants/{OWNER}/notice").status_code == 404
    r = console.api(LESSEE, "POST", f"/v1/tenants/{OWNER}/contract/notice", json={})
    assert r.status_code == 404  # not the rival's notice to give, nor to know of


def test_a_revoked_key_ends_its_sessions(console: Console) -> None:
    k = console.api("operator", "POST", "/v1/keys", json={"role": "auditor"}).json()
    console.keys["temp"] = k["token"]
    c = console.sign_in("temp")
    assert c.get("/audit").status_code == 200
    console.api("operator", "DELETE", f"/v1/keys/{k['key_id']}")
    r = c.get("/audit", follow_redirects=False)
    assert r.status_code == 303 and "revoked" in r.headers["location"]


def test_tenant_series_hold_only_its_own_figures(console: Console) -> None:
    deadline = time.monotonic() + 10
    c = console.sign_in("operator")
    while not c.get("/console/series").json()["t"] and time.monotonic() < deadline:
        time.sleep(0.1)
    everything = set(c.get("/console/series?range=month").json()["series"])
    assert {f"alloc:{OWNER}", f"alloc:{LESSEE}", "power_w", "pending"} <= everything
    c = console.sign_in(LESSEE)
    mine = set(c.get("/console/series").json()["series"])
    assert mine == {f"alloc:{LESSEE}", f"ent:{LESSEE}", f"borrowed:{LESSEE}", "free"}
    assert c.get("/console/series?range=year").status_code == 400


def test_the_jobs_table_filters_sorts_and_pages_in_sql(console: Console) -> None:
    ids = []
    for i, (gpus, name) in enumerate([(8, "a%b"), (1, "axb"), (4, "plain"), (2, "a_b")]):
        r = console.api(
            OWNER, "POST", "/v1/jobs", json={"gpus": gpus, "duration_s": 60 + i, "name": name}
        )
        ids.append(r.json()["id"])
    console.api(LESSEE, "POST", "/v1/jobs", json={"gpus": 1, "duration_s": 60, "name": "rival"})
    store: Store = console.c.app.state.service.store  # type: ignore[attr-defined]
    now = int(time.time())
    rows, total = job_page(store, JobQuery(tenant=OWNER, sort="gpus", desc=False), now)
    assert total == 4 and [r["gpus"] for r in rows] == [1, 2, 4, 8]
    rows, total = job_page(store, JobQuery(tenant=OWNER, name="a%b"), now)
    assert [r["name"] for r in rows] == ["a%b"]  # % is a character, not a wildcard
    rows, total = job_page(store, JobQuery(tenant=OWNER, name="a_b"), now)
    assert [r["name"] for r in rows] == ["a_b"]
    rows, total = job_page(store, JobQuery(tenant=OWNER, offset=1, limit=2), now)
    assert total == 4 and [r["id"] for r in rows] == [ids[2], ids[1]]  # newest first
    c = console.sign_in(OWNER)
    page = c.get("/jobs/table?tenant=lessee-lab")
    assert page.status_code == 404  # as GET /v1/jobs?tenant=<rival> answers
    page = c.get("/jobs?sort=gpus&dir=desc")
    assert page.status_code == 200 and "rival" not in page.text
    assert page.text.index(ids[0]) < page.text.index(ids[1])


def test_series_outlive_a_restart(tmp_path: Path) -> None:
    s = settings_for(tmp_path / "restart.db")
    store = Store(s.db)
    keys = key_map(bootstrap(store, s))
    store.close()
    auth = {"Authorization": f"Bearer {keys['operator']}"}
    with TestClient(create_app(s)) as c:
        c.post("/signin", data={"key": keys["operator"]})
        deadline = time.monotonic() + 20
        while len(c.get("/console/series").json()["t"]) < 2 and time.monotonic() < deadline:
            c.post("/v1/jobs", json={"tenant": OWNER, "gpus": 1, "duration_s": 60}, headers=auth)
            time.sleep(0.2)
        before = c.get("/console/series").json()
    assert len(before["t"]) >= 2
    with TestClient(create_app(s)) as c:
        c.post("/signin", data={"key": keys["operator"]})
        after = c.get("/console/series").json()
    assert after["t"][: len(before["t"]) - 1] == before["t"][:-1]


@pytest.mark.parametrize(
    ("who", "tenants", "invoices"),
    [
        pytest.param("auditor", {OWNER, LESSEE}, {OWNER, LESSEE}, id="auditor-all"),
        pytest.param(LESSEE, {LESSEE}, {LESSEE}, id="tenant-admin-own"),
    ],
)
def test_usage_downloads_hold_what_the_role_may_see(
    console: Console, who: str, tenants: set[str], invoices: set[str]
) -> None:
    c = console.sign_in(who)
    r = c.get("/usage/download?month=2026-10&format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="cotenant-usage-2026-10.csv"' in r.headers["content-disposition"]
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("month,tenant,gpu_hours")
    assert {line.split(",")[1] for line in lines[1:]} == tenants
    body = c.get("/usage/download?month=2026-10&format=json").json()
    assert {u["tenant"] for u in body["usage"]["tenants"]} == tenants
    assert {i["tenant"] for i in body["invoices"]} == invoices
    assert c.get("/usage/download?month=2026-10&format=xml").status_code == 400


def test_a_tenant_member_sees_usage_but_no_invoice(console: Console) -> None:
    k = console.api(OWNER, "POST", "/v1/keys", json={"role": "tenant-member"}).json()
    console.keys["member"] = k["token"]
    c = console.sign_in("member")
    body = c.get("/usage/download?month=2026-10&format=json").json()
    assert [u["tenant"] for u in body["usage"]["tenants"]] == [OWNER]
    assert body["invoices"] == []  # GET /v1/invoices is not a member's either
    assert c.get("/audit").status_code == 403


def test_a_job_trail_is_searched_only_around_its_life(console: Console) -> None:
    job = console.api(OWNER, "POST", "/v1/jobs", json={"gpus": 1, "duration_s": 60}).json()
    store: Store = console.c.app.state.service.store  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        trail = job_trail(store, job["id"], job["submit_s"])
        if any(e.kind == "end" for e in trail):
            break
        time.sleep(0.1)
    kinds = [e.kind for e in trail]
    assert kinds[0] == "job-submitted" and "place" in kinds and kinds[-1] == "end"
    head = store.audit_head().seq
    assert seq_at_time(store, 0) == 1
    assert seq_at_time(store, 1 << 40) == head + 1
    assert job_trail(store, job["id"], job["submit_s"] + 86_400) == []  # outside its life
    first = seq_at_time(store, job["submit_s"])
    assert all(e.seq >= first for e in trail)
    c = console.sign_in(OWNER)
    page = c.get(f"/jobs/{job['id']}")
    assert page.status_code == 200 and "completed" in page.text and "Attempts" in page.text
    assert c.get(f"/jobs/{job['id']}/live").status_code == 286  # ended: htmx stops polling


def test_recent_faults_outlive_a_restart(tmp_path: Path) -> None:
    """A fault is audited; after a restart the console lists it again (from the log)."""
    s = settings_for(tmp_path / "faults.db")
    store = Store(s.db)
    keys = key_map(bootstrap(store, s))
    store.close()
    with TestClient(create_app(s)) as c:
        svc = c.app.state.service  # type: ignore[attr-defined]
        job = c.post(
            "/v1/jobs",
            json={"tenant": OWNER, "gpus": 8, "duration_s": 3600, "name": "hit"},
            headers={"Authorization": f"Bearer {keys['operator']}"},
        ).json()
        deadline = time.monotonic() + 10
        while svc.store.job(job["id"])["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        node = svc.topo.node_names.index(
            c.get(
                f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {keys['operator']}"}
            ).json()["placement"]["nodes"][0]
        )
        with svc.lock:
            svc.engine.fail_nodes([node], svc.clock.now(), "test_fault", 3600)
        svc.clock.wake()
        c.post("/signin", data={"key": keys["operator"]})
        assert "test_fault" in wait_text(c, "/nodes", "test_fault")
    with TestClient(create_app(s)) as c:
        c.post("/signin", data={"key": keys[OWNER]})
        page = c.get("/nodes").text
        assert "test_fault" in page and job["id"] in page  # its own interrupted job
        c.post("/signin", data={"key": keys[LESSEE]})
        page = c.get("/nodes").text
        assert "test_fault" in page and job["id"] not in page  # a rival's: not listed


def wait_text(c: TestClient, path: str, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        body = c.get(path).text
        if text in body or time.monotonic() > deadline:
            return body
        time.sleep(0.1)
