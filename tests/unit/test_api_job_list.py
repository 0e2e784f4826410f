"""The job list's filters (name, a time window like sacct -S/-E) and the end fields every
job carries (exit_code, signal, ended_at, attempts), in process."""

from __future__ import annotations

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


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    s = Settings(
        db=f"sqlite:///{tmp_path / 'a.db'}",
        demo=True,
        scenario="small-lease",
        speed=3600,
        min_step_s=0.01,
    )
    store = Store(s.db)
    keys = bootstrap(store, s)
    store.close()
    op = next(k.token for k in keys if k.role.value == "operator")
    with TestClient(create_app(s)) as c:
        yield c, {"Authorization": f"Bearer {op}"}


def test_filters_and_end_fields(client: tuple[TestClient, dict[str, str]]) -> None:
    c, h = client

    def submit(name: str, duration_s: int) -> dict[str, Any]:
        body = {"tenant": "lessee-lab", "gpus": 8, "duration_s": duration_s, "name": name}
        r = c.post("/v1/jobs", json=body, headers=h)
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        assert job["attempts"] == [] and job["exit_code"] is None and job["ended_at"] is None
        return job

    short = submit("short", 60)
    long = submit("long", 100 * 86_400)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = c.get(f"/v1/jobs/{short['id']}", headers=h).json()
        if got["state"] == "completed":
            break
        time.sleep(0.05)
    assert got["state"] == "completed", got
    assert got["exit_code"] == 0 and got["ended_at"] == got["end_s"] is not None
    (a,) = got["attempts"]
    assert a["outcome"] == "completed" and a["nodes"] and a["end_s"] == got["end_s"]

    def names(**params: Any) -> list[str]:
        r = c.get("/v1/jobs", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [j["name"] for j in r.json()["items"]]

    assert names(name="long") == ["long"]
    assert names(until_s=short["submit_s"] - 1) == []  # none submitted before the window
    assert set(names(until_s=long["submit_s"])) == {"short", "long"}
    assert names(since_s=got["end_s"] + 1) == ["long"]  # short ended before the window
    assert c.get("/v1/jobs", params={"since_s": -1}, headers=h).status_code == 422
