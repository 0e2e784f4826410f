"""The hot reads from memory (``api/fastread.py``, ``api/readmodel.py``) answer exactly
what the FastAPI routes answer from the store, byte for byte, and stay in step with it.

A query parameter the fast path does not take (``x=1``, which the routes ignore) sends
the same read to the route, so each pair below is the same question asked both ways.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cotenant.api.app import CotenantAPI, create_app
from cotenant.api.schemas import Job
from cotenant.server.bootstrap import bootstrap
from cotenant.server.readmodel import DERIVED, JOB_COLUMNS
from cotenant.server.settings import Settings
from cotenant.store.repo import Store

OWNER, LESSEE = "owner-lab", "lessee-lab"
DAY = 86_400


class Client:
    def __init__(self, c: TestClient, keys: dict[str, str]) -> None:
        self.c = c
        self.keys = keys

    def get(self, who: str, path: str) -> Any:
        return self.c.get(path, headers={"Authorization": f"Bearer {self.keys[who]}"})

    @property
    def served(self) -> int:
        app = self.c.app
        assert isinstance(app, CotenantAPI) and app.fast_reads is not None
        return app.fast_reads.served


def start(path: Path, keys: dict[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    s = Settings(
        db=f"sqlite:///{path}", demo=True, scenario="small-lease", speed=60, min_step_s=0.01
    )
    if keys is None:
        store = Store(s.db)
        issued = bootstrap(store, s)
        store.close()
        keys = {(k.tenant or k.role.value): k.token for k in issued}
    return s, keys


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Client]:
    s, keys = start(tmp_path / "fast.db")
    with TestClient(create_app(s)) as c:
        yield Client(c, keys)


def submit(api: Client, who: str, gpus: int, duration_s: int, **more: Any) -> str:
    r = api.c.post(
        "/v1/jobs",
        json={"gpus": gpus, "duration_s": duration_s, **more},
        headers={"Authorization": f"Bearer {api.keys[who]}"},
    )
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    return job_id


def settle(api: Client, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 20
    while api.get("operator", f"/v1/jobs/{job_id}").json()["state"] != state:
        assert time.monotonic() < deadline, f"{job_id} never {state}"
        time.sleep(0.05)
    time.sleep(0.3)  # the engine's last step written, nothing more due for days


def same(api: Client, who: str, path: str) -> bytes:
    """The fast answer, checked against the route's."""
    before = api.served
    fast = api.get(who, path)
    assert api.served == before + 1, f"{path} was not answered by the fast path"
    slow = api.get(who, path + ("&" if "?" in path else "?") + "x=1")
    assert api.served == before + 1, "x=1 must go to the route"
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.content == slow.content, path
    body: bytes = fast.content
    return body


def test_job_columns_follow_the_schema() -> None:
    assert tuple(f for f in Job.model_fields if f not in DERIVED) == JOB_COLUMNS


def test_jobs_pages_and_cluster_answer_as_the_routes(api: Client) -> None:
    done = submit(api, LESSEE, 8, 60, name="short")  # a run that ended: an attempt
    settle(api, done, "completed")
    running = [submit(api, LESSEE, 8, 30 * DAY, name=f"long-{i}") for i in range(20)]
    owner = [submit(api, OWNER, 16, 30 * DAY, command=["train", "--é"]) for _ in range(3)]
    settle(api, owner[-1], api.get("operator", f"/v1/jobs/{owner[-1]}").json()["state"])
    states = {api.get("operator", f"/v1/jobs/{j}").json()["state"] for j in running + owner}
    assert {"running", "pending"} <= states  # 128 GPUs: some wait (a live reason)
    with api.c.app.state.service.lock:  # type: ignore[attr-defined]  # no step meanwhile
        compare_all(api, done, running, owner)


def compare_all(api: Client, done: str, running: list[str], owner: list[str]) -> None:
    for job_id in [done, *running, *owner]:
        tenant = OWNER if job_id in owner else LESSEE
        same(api, "operator", f"/v1/jobs/{job_id}")
        same(api, tenant, f"/v1/jobs/{job_id}")
    for who, query in [
        ("operator", "limit=5"),
        ("operator", f"limit=3&tenant={OWNER}"),
        (LESSEE, "limit=7"),
        (LESSEE, f"limit=1000&tenant={LESSEE}"),
        (OWNER, "limit=2"),
    ]:
        cursor, seen = None, 0
        while True:
            page = same(api, who, "/v1/jobs?" + query + (f"&cursor={cursor}" if cursor else ""))
            got = api.get(who, "/v1/jobs?" + query + (f"&cursor={cursor}" if cursor else ""))
            seen += len(got.json()["items"])
            cursor = got.json()["next_cursor"]
            assert page
            if cursor is None:
                break
        assert seen == {"operator": 24, LESSEE: 21, OWNER: 3}[who] or "tenant=" in query
    for who in ("operator", "auditor", LESSEE, OWNER):
        same(api, who, "/v1/cluster")


def test_unusual_reads_go_to_the_route(api: Client) -> None:
    job = submit(api, LESSEE, 8, DAY)
    before = api.served
    for who, path, code in [
        (OWNER, f"/v1/jobs/{job}", 404),  # a rival's job: the route's 404
        ("auditor", f"/v1/jobs/{job}", 403),
        ("operator", "/v1/jobs/job-unknown", 404),
        ("operator", "/v1/jobs?limit=0", 422),
        ("operator", "/v1/jobs?limit=5&limit=6", 200),
        ("operator", "/v1/jobs?cursor=abc", 422),
        ("operator", "/v1/jobs?state=running", 200),
        (LESSEE, f"/v1/jobs?tenant={OWNER}", 404),
    ]:
        assert api.get(who, path).status_code == code, (who, path)
    assert api.c.get("/v1/cluster").status_code == 401
    assert api.c.get("/v1/cluster", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.served == before


def test_the_book_follows_every_write(api: Client) -> None:
    """A read after a write sees it: the book is refreshed before the write is answered."""
    ids = [submit(api, LESSEE, 64, 30 * DAY) for _ in range(3)]  # 128 GPUs: one waits
    for j in ids:
        assert api.get(LESSEE, f"/v1/jobs/{j}").status_code == 200  # at once after 201
    h = {"Authorization": f"Bearer {api.keys[LESSEE]}"}
    for j in ids:
        r = api.c.post(f"/v1/jobs/{j}/cancel", headers=h)
        assert r.status_code == 200, r.text
        got = api.get(LESSEE, f"/v1/jobs/{j}").json()
        assert got["state"] == "cancelled" and got == r.json()


def test_a_restarted_server_reads_what_was_stored(tmp_path: Path) -> None:
    s, keys = start(tmp_path / "restart.db")
    with TestClient(create_app(s)) as c:
        first = Client(c, keys)
        ids = [submit(first, OWNER, 8, 30 * DAY) for _ in range(5)]
        settle(first, ids[-1], "running")
    with TestClient(create_app(s)) as c:
        again = Client(c, keys)
        page = again.get(OWNER, "/v1/jobs?limit=10").json()
        assert [j["id"] for j in page["items"]] == ids
        assert again.served == 1
        for j in ids:
            same(again, OWNER, f"/v1/jobs/{j}")


def test_a_failed_read_back_sends_reads_to_the_store_until_the_book_is_read_again(
    api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cotenant.server.recorder

    svc = api.c.app.state.service  # type: ignore[attr-defined]
    first = submit(api, LESSEE, 8, DAY)
    real = svc.store.jobs

    def broken(*args: Any, **kw: Any) -> Any:
        raise OSError("disk I/O error")

    monkeypatch.setattr(svc.store, "jobs", broken)
    # New jobs go to the book as written; one short of a column is read back instead.
    monkeypatch.setattr(
        cotenant.server.recorder, "JOB_COLUMNS", cotenant.server.recorder.JOB_COLUMNS | {"later"}
    )
    second = submit(api, LESSEE, 8, DAY)  # committed; its read-back fails
    monkeypatch.setattr(svc.store, "jobs", real)
    assert not svc.book.ready
    before = api.served
    for j in (first, second):  # answered by the route, from the store
        assert api.get(LESSEE, f"/v1/jobs/{j}").json()["id"] == j
    assert api.served == before
    monkeypatch.setattr(cotenant.server.recorder, "BOOK_RETRY_S", 0.0)
    submit(api, LESSEE, 8, DAY)  # the next commit reads the book again
    assert svc.book.ready
    same(api, LESSEE, f"/v1/jobs/{second}")


def test_a_new_job_goes_to_the_book_as_written_without_reading_it_back(
    api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert gives each row its seq: the book takes the rows the submissions wrote,
    and a job is served from memory, exactly as the route serves it from the store."""
    svc = api.c.app.state.service  # type: ignore[attr-defined]
    first = submit(api, LESSEE, 8, DAY)
    real = svc.store.jobs

    def no_reads(*args: Any, **kw: Any) -> Any:
        raise AssertionError("read back")

    monkeypatch.setattr(svc.store, "jobs", no_reads)
    new = [submit(api, LESSEE, 8, DAY) for _ in range(3)]
    monkeypatch.setattr(svc.store, "jobs", real)
    assert svc.book.ready
    seqs = [svc.book.entries[j].seq for j in (first, *new)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    settle(api, new[-1], "running")
    for j in new:
        same(api, LESSEE, f"/v1/jobs/{j}")
    same(api, LESSEE, "/v1/jobs?limit=10")
