"""Tenant isolation over the real server: for every endpoint of the published schema, a
rival tenant's keys (admin and member) get 403 or 404 for the first tenant's objects,
404s that look exactly like "no such object", and never any of its data.
Members cannot act as admins.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import LiveServer

A, B = "owner-lab", "lessee-lab"  # A's data must never reach B
SECRET = "a-secret-run-name"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server where A has a running job, a pending job and a member key; B has a
    member key too. Returns what A owns that B must not see."""
    workdir: Path = tmp_path_factory.mktemp("isolation")
    with LiveServer(f"sqlite:///{workdir / 'iso.db'}", workdir) as s:
        with s.client(A) as a:
            running = a.post(
                "/v1/jobs", json={"gpus": 40, "duration_s": 86_400, "name": SECRET}
            ).json()
            pending = a.post(
                "/v1/jobs", json={"gpus": 48, "duration_s": 60, "name": SECRET + "-2"}
            ).json()
            member = a.post("/v1/keys", json={"role": "tenant-member", "name": "a-m"}).json()
            # A pipeline whose one stage waits (a day) for the running job to fail.
            stage = {"name": "s", "gpus": 1, "duration_s": 60, "after_failed": [running["id"]]}
            pipeline = a.post("/v1/pipelines", json={"name": SECRET, "stages": [stage]}).json()
        with s.client(B) as b:
            s.keys["b-member"] = b.post("/v1/keys", json={"role": "tenant-member"}).json()["token"]
        s.keys["a-member"] = member["token"]
        yield {
            "server": s,
            "jobs": [running["id"], pending["id"]],
            "key": member["key_id"],
            "pipeline": pipeline["id"],
        }


def cases(w: dict[str, Any]) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(method, path, body, params) of a request B might make about A, per endpoint."""
    job = w["jobs"][0]
    contract = {"commitment": {"gpus": 1}}
    stage = {"name": "s", "gpus": 1, "duration_s": 1}
    return [
        ("POST", "/v1/jobs", {"tenant": A, "gpus": 1, "duration_s": 1}, {}),
        ("GET", "/v1/jobs", None, {"tenant": A}),
        ("GET", "/v1/jobs/{job_id}", None, {"job_id": job}),
        ("POST", "/v1/jobs/{job_id}/cancel", None, {"job_id": job}),
        ("GET", "/v1/jobs/{job_id}/why", None, {"job_id": job}),
        ("GET", "/v1/jobs/{job_id}/logs", None, {"job_id": job}),
        ("GET", "/v1/tenants/{tenant}", None, {"tenant": A}),
        ("POST", "/v1/tenants", {"name": "b-shadow"}, {}),
        ("GET", "/v1/tenants/{tenant}/contract", None, {"tenant": A}),
        ("PUT", "/v1/tenants/{tenant}/contract", contract, {"tenant": A}),
        ("GET", "/v1/tenants/{tenant}/contract/versions", None, {"tenant": A}),
        ("POST", "/v1/tenants/{tenant}/contract/notice", {}, {"tenant": A}),
        ("GET", "/v1/usage", None, {"tenant": A}),
        ("GET", "/v1/invoices/{tenant}/{month}", None, {"tenant": A, "month": "2026-10"}),
        ("GET", "/v1/audit", None, {}),
        ("GET", "/v1/audit/head", None, {}),
        ("GET", "/v1/audit/verify", None, {}),
        ("POST", "/v1/keys", {"role": "tenant-member", "tenant": A}, {}),
        ("DELETE", "/v1/keys/{key_id}", None, {"key_id": w["key"]}),
        ("GET", "/v1/admin/invariants", None, {}),
        ("GET", "/metrics", None, {}),
        ("POST", "/v1/pipelines", {"tenant": A, "name": "x", "stages": [stage]}, {}),
        ("POST", "/v1/pipelines", {"name": "x", "stages": [{**stage, "after_ok": [job]}]}, {}),
        ("POST", "/v1/jobs", {"gpus": 1, "duration_s": 1, "after_ok": [job]}, {}),
        ("GET", "/v1/pipelines", None, {"tenant": A}),
        ("GET", "/v1/pipelines/{pipeline_id}", None, {"pipeline_id": w["pipeline"]}),
        ("POST", "/v1/pipelines/{pipeline_id}/cancel", None, {"pipeline_id": w["pipeline"]}),
    ]


# Endpoints B may use, that must answer only about B.
OWN_VIEWS = [
    ("GET", "/v1/jobs"),
    ("GET", "/v1/pipelines"),
    ("GET", "/v1/tenants"),
    ("GET", "/v1/cluster"),
    ("GET", "/v1/usage"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/whoami"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]


def call(
    w: dict[str, Any], who: str, method: str, template: str, body: Any, params: dict[str, Any]
) -> Any:
    path = template.format(**params)
    query = {k: v for k, v in params.items() if "{" + k + "}" not in template}
    with w["server"].client(who) as c:
        return c.request(method, path, json=body, params=query)


def tenants_in(path: str, body: Any) -> set[str]:
    """The tenants an own-view answer mentions."""
    if path in ("/v1/jobs", "/v1/pipelines"):
        return {j["tenant"] for j in body["items"]}
    if path == "/v1/tenants":
        return {t["name"] for t in body}
    if path in ("/v1/cluster", "/v1/usage"):
        return {t["tenant"] for t in body["tenants"]}
    if path == "/v1/keys":
        return {k["tenant"] for k in body}
    if path == "/v1/whoami":
        return {body["tenant"]}
    return set()


def leaks(w: dict[str, Any], text: str, sent: str = "") -> list[str]:
    """A's secrets in an answer, except what the request itself named (a 404 may echo it)."""
    secrets = (SECRET, *w["jobs"], w["key"], w["pipeline"])
    return [x for x in secrets if x in text and x not in sent]


def test_every_endpoint_is_covered(world: dict[str, Any]) -> None:
    with world["server"].client("operator") as c:
        schema = c.get("/openapi.json").json()
    published = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    covered = {(m, p) for m, p, _, _ in cases(world)} | set(OWN_VIEWS)
    assert published == covered


@pytest.mark.parametrize("who", [B, "b-member"])
def test_a_rival_gets_403_or_404_and_no_data(world: dict[str, Any], who: str) -> None:
    for method, template, body, params in cases(world):
        r = call(world, who, method, template, body, params)
        assert r.status_code in (403, 404), (who, method, template, r.status_code, r.text)
        sent = json.dumps([body, params])
        assert leaks(world, r.text, sent) == [], (method, template)
    # nothing B did changed A's job or contract
    with world["server"].client(A) as a:
        assert a.get(f"/v1/jobs/{world['jobs'][0]}").json()["state"] == "running"
        assert a.get(f"/v1/pipelines/{world['pipeline']}").json()["state"] == "pending"
        assert a.get(f"/v1/tenants/{A}/contract").json()["notice"]["given_at"] is None
        assert a.get("/v1/whoami").status_code == 200


@pytest.mark.parametrize("who", [B, "b-member"])
def test_own_views_hold_only_the_callers_tenant(world: dict[str, Any], who: str) -> None:
    for method, path in OWN_VIEWS:
        r = call(world, who, method, path, None, {})
        if r.status_code == 403:
            assert (who, path) == ("b-member", "/v1/keys")
            continue
        assert r.status_code == 200, (path, r.text)
        assert leaks(world, r.text) == [], path
        body = r.json()
        assert tenants_in(path, body) <= {B}, (path, body)
    with world["server"].client(who) as c:
        view = c.get("/v1/cluster").json()
    assert view["queue_depth"] is None  # the whole queue would hint at A's demand
    assert view["free_gpus"] == 128 - 40 - view["tenants"][0]["allocated_gpus"]


def test_a_404_for_a_rivals_job_is_the_404_for_no_job(world: dict[str, Any]) -> None:
    for suffix in ("", "/why"):
        real = call(world, B, "GET", "/v1/jobs/{j}" + suffix, None, {"j": world["jobs"][1]})
        fake_id = "job-000000000000-0000000000"
        fake = call(world, B, "GET", "/v1/jobs/{j}" + suffix, None, {"j": fake_id})
        assert real.status_code == fake.status_code == 404
        assert real.json()["error"]["message"].replace(world["jobs"][1], "ID") == fake.json()[
            "error"
        ]["message"].replace(fake_id, "ID")
        assert real.headers.keys() == fake.headers.keys()
    real = call(world, B, "GET", "/v1/tenants/{t}", None, {"t": A})
    fake = call(world, B, "GET", "/v1/tenants/{t}", None, {"t": "no-such-lab"})
    assert json.dumps(real.json()).replace(A, "T") == json.dumps(fake.json()).replace(
        "no-such-lab", "T"
    )


def test_members_cannot_act_as_admins(world: dict[str, Any]) -> None:
    s = world["server"]
    with s.client(A) as a:
        admin_job = a.post("/v1/jobs", json={"gpus": 1, "duration_s": 60}).json()
    with s.client("a-member") as m:
        assert m.post(f"/v1/jobs/{admin_job['id']}/cancel").status_code == 403
        assert m.post("/v1/keys", json={"role": "tenant-member"}).status_code == 403
        assert m.get("/v1/keys").status_code == 403
        assert m.delete(f"/v1/keys/{world['key']}").status_code == 403
        assert m.get(f"/v1/invoices/{A}/2026-10").status_code == 403
        assert m.put(f"/v1/tenants/{A}/contract", json={}).status_code == 403
        own = m.post("/v1/jobs", json={"gpus": 1, "duration_s": 60}).json()
        assert m.post(f"/v1/jobs/{own['id']}/cancel").status_code == 200
    with s.client(A) as a:
        assert a.post(f"/v1/jobs/{admin_job['id']}/cancel").status_code == 200
