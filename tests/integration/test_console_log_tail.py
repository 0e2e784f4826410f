"""The console's job page follows a running job's output on the local backend (real
processes on this host): the log tail grows while the job runs."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from cotenant.api.app import create_app
from cotenant.server.bootstrap import bootstrap
from cotenant.server.settings import Settings
from cotenant.store.repo import Store


def wait_for(c: TestClient, path: str, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        body = c.get(path).text
        if text in body or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_the_job_page_follows_the_log_of_a_running_job(tmp_path: Path) -> None:
    s = Settings(
        db=f"sqlite:///{tmp_path / 'logs.db'}",
        demo=True,
        scenario="small-lease",
        backend="local",
        speed=1,
        min_step_s=0.01,
        state_dir=str(tmp_path / "runs"),
    )
    store = Store(s.db)
    keys = {(k.tenant or k.role.value): k.token for k in bootstrap(store, s)}
    store.close()
    auth = {"Authorization": f"Bearer {keys['owner-lab']}"}
    script = "echo first-line; sleep 1.5; echo second-line; sleep 60"
    with TestClient(create_app(s)) as c:
        job = c.post(
            "/v1/jobs",
            json={"gpus": 1, "duration_s": 600, "command": ["sh", "-c", script]},
            headers=auth,
        ).json()
        c.post("/signin", data={"key": keys["owner-lab"]})
        live = f"/jobs/{job['id']}/live"
        first = wait_for(c, live, "first-line")
        assert "first-line" in first and "second-line" not in first
        assert "second-line" in wait_for(c, live, "second-line")
        page = c.get(f"/jobs/{job['id']}").text
        assert 'hx-get="/jobs/' in page and "every 2s" in page  # the page polls its tail
        c.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
