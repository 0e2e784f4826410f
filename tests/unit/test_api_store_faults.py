"""The API while the store cannot take writes (in process, writes made to fail): 503 with
the JSON error shape and Retry-After on every kind of write, on the fast path too;
/readyz 503 and /healthz 200; the metrics; and all of it back once the store is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_api import Api, key_map, settings_for

from cotenant.api.app import create_app
from cotenant.server.bootstrap import bootstrap
from cotenant.store.repo import Store


@pytest.fixture
def faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "faults"
    monkeypatch.setenv("COTENANT_STORE_FAULTS", str(path))
    return path


@pytest.fixture
def api(tmp_path: Path, faults: Path) -> Iterator[Api]:
    s = settings_for(tmp_path / "api.db")
    store = Store(s.db)
    keys = bootstrap(store, s)
    store.close()
    with TestClient(create_app(s)) as c:
        yield Api(c, key_map(keys))


def assert_503(r: object) -> None:
    assert r.status_code == 503, r.text  # type: ignore[attr-defined]
    err = r.json()["error"]  # type: ignore[attr-defined]
    assert err["status"] == 503 and "store" in err["message"]
    assert int(r.headers["retry-after"]) >= 1  # type: ignore[attr-defined]


def test_writes_answer_503_with_retry_after_while_the_store_is_down(api: Api, faults: Path) -> None:
    job = api.submit("owner-lab", gpus=8)
    faults.write_text("")
    r = api.post("owner-lab", "/v1/jobs", {"gpus": 8, "duration_s": 60})  # the fast path
    assert_503(r)
    assert_503(api.post("owner-lab", "/v1/jobs", {"gpus": 8, "duration_s": 60}))  # refused
    assert_503(api.post("operator", "/v1/tenants", {"name": "new-lab"}))
    assert_503(api.post("operator", f"/v1/jobs/{job['id']}/cancel"))
    assert_503(api.get("operator", "/v1/admin/invariants"))
    assert api.get("operator", f"/v1/jobs/{job['id']}").status_code == 200  # reads work

    ready = api.c.get("/readyz")
    assert ready.status_code == 503 and "store cannot take writes" in ready.json()["problems"][0]
    assert int(ready.headers["retry-after"]) >= 1
    assert api.c.get("/healthz").status_code == 200
    metrics = api.get("operator", "/metrics").text
    assert "cotenant_store_up 0.0" in metrics
    failures = [m for m in metrics.splitlines() if m.startswith("cotenant_store_write_failures")]
    assert failures and float(failures[0].split()[-1]) >= 1

    faults.unlink()
    deadline = time.monotonic() + 10
    while api.c.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service did not become ready again"
        time.sleep(0.05)
    assert api.submit("owner-lab", gpus=8)["state"] == "pending"
    assert api.get("operator", "/v1/admin/invariants").json() == {"ok": True, "problems": []}
    assert "cotenant_store_up 1.0" in api.get("operator", "/metrics").text
