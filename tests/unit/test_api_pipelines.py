"""Dependencies and pipelines through the API in process (a real Service on SQLite, the
small-lease scenario at 60x): a stage waits for the one before, a pipeline is cancelled
whole, and bad input is refused with one line naming the field."""

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
from cotenant.server.settings import Settings
from cotenant.store.repo import Store

OWNER, LESSEE = "owner-lab", "lessee-lab"


class Api:
    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.c = client
        self.keys = keys

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def get(self, who: str, path: str) -> Any:
        return self.c.get(path, headers=self.h(who))

    def post(self, who: str, path: str, body: Any = None) -> Any:
        return self.c.post(path, json=body, headers=self.h(who))

    def until(self, who: str, path: str, done: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc: dict[str, Any] = self.get(who, path).json()
            if done(doc) or time.monotonic() > deadline:
                return doc
            time.sleep(0.05)


def serve(tmp_path: Path, **settings: Any) -> Iterator[Api]:
    s = Settings(
        db=f"sqlite:///{tmp_path / 'api.db'}",
        demo=True,
        scenario="small-lease",
        speed=600,
        min_step_s=0.01,
        **settings,
    )
    store = Store(s.db)
    keys = bootstrap(store, s)
    store.close()
    with TestClient(create_app(s)) as c:
        yield Api(c, {(k.tenant or k.role.value): k.token for k in keys})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from serve(tmp_path)


@pytest.fixture
def keeping(tmp_path: Path) -> Iterator[Api]:
    yield from serve(tmp_path, dependency_never_met="keep")


def stage(name: str, gpus: int = 8, duration_s: int = 1800, **kw: Any) -> dict[str, Any]:
    return {"name": name, "gpus": gpus, "duration_s": duration_s, **kw}


THREE = [
    stage("pretrain", 16),
    stage("sft", after_ok=["pretrain"]),
    stage("eval", 4, after_ok=["sft"]),
]


def test_a_pipeline_runs_its_stages_one_after_the_other(api: Api) -> None:
    r = api.post(OWNER, "/v1/pipelines", {"name": "llm", "stages": THREE})
    assert r.status_code == 201, r.text
    p = r.json()
    assert [s["name"] for s in p["stages"]] == ["pretrain", "sft", "eval"]
    after = [{"kind": "after_ok", "jobs": ["pretrain"], "take_nodes": False}]
    assert p["stages"][1]["after"] == after
    listed_jobs = {j["id"]: j for j in api.get(OWNER, "/v1/jobs").json()["items"]}
    assert {s["job"] for s in p["stages"]} <= set(listed_jobs)  # the stages are jobs
    assert listed_jobs[p["stages"][2]["job"]]["pipeline"] == p["id"]
    sft = api.until(OWNER, f"/v1/jobs/{p['stages'][1]['job']}", lambda j: j["reason"] != "queued")
    assert sft["state"] == "pending" and sft["reason"] == "waiting-for-dependency"
    assert p["stages"][0]["job"] in sft["reason_detail"]
    assert sft["pipeline"] == p["id"]
    done = api.until(OWNER, f"/v1/pipelines/{p['id']}", lambda d: d["state"] == "completed")
    assert done["state"] == "completed", done
    st = done["stages"]
    assert st[0]["end_s"] <= st[1]["first_start_s"] and st[1]["end_s"] <= st[2]["first_start_s"]
    assert done["makespan_s"] == st[2]["end_s"] - done["submit_s"]
    listed = api.get(OWNER, "/v1/pipelines").json()["items"]
    assert [x["id"] for x in listed] == [p["id"]]
    assert api.get(LESSEE, "/v1/pipelines").json()["items"] == []
    assert api.get(LESSEE, f"/v1/pipelines/{p['id']}").status_code == 404


def test_cancelling_a_pipeline_cancels_its_running_and_waiting_stages(api: Api) -> None:
    long = [stage("a", 8, 86_400), stage("b", after_ok=["a"]), stage("c", after=["b"])]
    p = api.post(OWNER, "/v1/pipelines", {"name": "x", "stages": long}).json()
    first = f"/v1/jobs/{p['stages'][0]['job']}"
    api.until(OWNER, first, lambda j: j["state"] == "running")
    r = api.post(OWNER, f"/v1/pipelines/{p['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert [s["state"] for s in r.json()["stages"]] == ["cancelled"] * 3


def test_a_job_waits_for_another_and_a_failed_wait_never_starts(api: Api) -> None:
    a = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 86_400}).json()
    b = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 60, "after_ok": [a["id"]]})
    assert b.status_code == 201, b.text
    assert b.json()["after"] == [{"kind": "after_ok", "jobs": [a["id"]], "take_nodes": False}]
    api.until(OWNER, f"/v1/jobs/{a['id']}", lambda j: j["state"] == "running")
    api.post(OWNER, f"/v1/jobs/{a['id']}/cancel")
    got = api.until(OWNER, f"/v1/jobs/{b.json()['id']}", lambda j: j["state"] != "pending")
    assert (got["state"], got["reason"]) == ("cancelled", "dependency-never-met")


def test_a_stage_may_take_its_dependency_s_nodes(api: Api) -> None:
    """take_nodes is kept with the clause and shown; the stage starts on the nodes its
    dependency ran on (the audit log's place decisions say where each ran; the engine
    tests show it is the hand-over, not best fit, that puts it there)."""
    two = [stage("pre", 8, 60), stage("post", 8, 60, after_ok=["pre"], take_nodes=True)]
    p = api.post(OWNER, "/v1/pipelines", {"name": "h", "stages": two}).json()
    assert p["stages"][1]["after"] == [{"kind": "after_ok", "jobs": ["pre"], "take_nodes": True}]
    done = api.until(OWNER, f"/v1/pipelines/{p['id']}", lambda d: d["state"] == "completed")
    assert done["state"] == "completed", done
    jobs = [s["job"] for s in done["stages"]]
    places = {
        e["payload"]["job"]: e["payload"]["nodes"]
        for e in map(json.loads, api.get("auditor", "/v1/audit").text.splitlines())
        if e["kind"] == "place" and e["payload"].get("job") in jobs
    }
    assert places[jobs[0]] == places[jobs[1]], places
    r = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 60, "take_nodes": True})
    assert r.status_code == 400 and "take_nodes: waits for no job" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        pytest.param(
            {"name": "x", "stages": [stage("a", after_ok=["b"]), stage("b", after_ok=["a"])]},
            400,
            "stages: the dependencies form a cycle: a -> b -> a",
            id="cycle",
        ),
        pytest.param(
            {"name": "x", "stages": [stage("a", after_ok=["a"])]},
            400,
            "cycle: a -> a",
            id="self",
        ),
        pytest.param(
            {"name": "x", "stages": [stage("a"), stage("a")]},
            400,
            "stages[1].name: 'a' names stage 0 too",
            id="same-name",
        ),
        pytest.param(
            {"name": "x", "stages": [stage("a", after_ok=["job-nope"])]},
            404,
            "no job 'job-nope'",
            id="unknown-job",
        ),
        pytest.param(
            {"name": "x", "stages": [stage("a", gpus=10**6)]},
            400,
            "stages[0].gpus",
            id="too-large",
        ),
        pytest.param({"name": "x", "stages": []}, 422, "stages", id="no-stage"),
        pytest.param(
            {"name": "x", "stages": [stage("a", colour="red")]}, 422, "colour", id="unknown-key"
        ),
    ],
)
def test_bad_pipelines_are_refused_naming_the_field(
    api: Api, body: dict[str, Any], status: int, says: str
) -> None:
    r = api.post(OWNER, "/v1/pipelines", body)
    assert r.status_code == status, r.text
    msg = r.json()["error"]["message"]
    assert says in msg and "\n" not in msg
    assert api.get(OWNER, "/v1/pipelines").json()["items"] == []


def test_a_dependency_on_another_tenants_job_reads_as_not_found(api: Api) -> None:
    theirs = api.post(LESSEE, "/v1/jobs", {"gpus": 8, "duration_s": 60}).json()["id"]
    foreign = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 60, "after": [theirs]})
    unknown = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 60, "after": ["job-x"]})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["message"] == f"no job {theirs!r}"
    assert unknown.json()["error"]["message"] == "no job 'job-x'"


def test_keep_leaves_a_job_pending_whose_dependency_cannot_be_met(keeping: Api) -> None:
    api = keeping
    a = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 86_400}).json()
    b = api.post(OWNER, "/v1/jobs", {"gpus": 8, "duration_s": 60, "after_ok": [a["id"]]}).json()
    api.until(OWNER, f"/v1/jobs/{a['id']}", lambda j: j["state"] == "running")
    api.post(OWNER, f"/v1/jobs/{a['id']}/cancel")
    got = api.until(OWNER, f"/v1/jobs/{b['id']}", lambda j: j["reason"] == "dependency-never-met")
    assert (got["state"], got["reason"]) == ("pending", "dependency-never-met")
    assert f"job {a['id']} cancelled" in got["reason_detail"]
    assert api.post(OWNER, f"/v1/jobs/{b['id']}/cancel").json()["state"] == "cancelled"
