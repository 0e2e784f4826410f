"""Keep-up metrics of the live server (TestClient, a real Service on a temporary SQLite
file, speed 60): engine lag, step histograms, decisions by kind, the engine's time."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cotenant.api.app import create_app
from cotenant.engine.keepup import Histogram
from cotenant.server.bootstrap import bootstrap
from cotenant.server.service import Service
from cotenant.server.settings import Settings
from cotenant.store.repo import Store

LESSEE = "lessee-lab"


class Live:
    def __init__(self, c: TestClient, keys: dict[str, str]) -> None:
        self.c = c
        self.keys = keys
        self.svc: Service = c.app.state.service  # type: ignore[attr-defined]

    def get(self, who: str, path: str) -> Any:
        return self.c.get(path, headers={"Authorization": f"Bearer {self.keys[who]}"})

    def metrics(self) -> dict[str, float]:
        text = self.get("operator", "/metrics").text
        return {
            k: float(v)
            for k, v in (
                ln.rsplit(" ", 1) for ln in text.splitlines() if ln.startswith("cotenant_")
            )
        }

    def submit(self, gpus: int = 8) -> Any:
        return self.c.post(
            "/v1/jobs",
            json={"gpus": gpus, "duration_s": 3600},
            headers={"Authorization": f"Bearer {self.keys[LESSEE]}"},
        )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    s = Settings(
        db=f"sqlite:///{tmp_path / 'k.db'}",
        demo=True,
        scenario="small-lease",
        speed=60,
        min_step_s=0.01,
    )
    store = Store(s.db)
    keys = bootstrap(store, s)
    store.close()
    with TestClient(create_app(s)) as c:
        yield Live(c, {(k.tenant or k.role.value): k.token for k in keys})


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_stalled_engine_shows_a_growing_lag(live: Live) -> None:
    wait_for(lambda: live.metrics()["cotenant_engine_lag_seconds"] < 0.2)
    with live.svc.lock:  # the engine cannot step while this is held
        assert live.submit().status_code == 201  # accepted: it waits in the inbox
        first = live.metrics()
        time.sleep(1.0)
        second = live.metrics()
        cluster_t = live.get("operator", "/v1/cluster").json()["time_s"]
    assert second["cotenant_engine_lag_seconds"] >= first["cotenant_engine_lag_seconds"] + 0.8
    assert second["cotenant_engine_lag_seconds"] >= 0.9
    # The engine's time stood still while it was stalled; the wall clock did not.
    assert (
        cluster_t == second["cotenant_engine_time_seconds"] == first["cotenant_engine_time_seconds"]
    )
    assert live.svc.clock.now() - cluster_t >= 50  # 1 s at speed 60
    # Released, it catches up; the step that took the submission began about 1 s late.
    wait_for(lambda: live.metrics()["cotenant_engine_lag_seconds"] < 0.2)
    m = live.metrics()
    assert (
        m['cotenant_engine_step_lag_seconds_bucket{le="0.5"}']
        < m['cotenant_engine_step_lag_seconds_bucket{le="+Inf"}']
    )
    assert m["cotenant_engine_step_duration_seconds_count"] >= 1


def test_decisions_are_counted_by_kind_and_waits_apart(live: Live) -> None:
    for _ in range(3):
        assert live.submit(gpus=8).status_code == 201
    wait_for(lambda: live.metrics().get('cotenant_decisions_total{kind="place"}', 0) >= 3)
    m = live.metrics()
    kinds = {k for k in m if k.startswith("cotenant_decisions_total{")}
    assert all('kind="' in k for k in kinds)
    assert not any("wait" in k for k in kinds)
    assert "cotenant_wait_verdicts_total" in m


def test_reads_are_answered_while_the_engine_holds_its_lock(live: Live) -> None:
    """Reads never wait for the engine: with its lock held (a long cycle), every read
    endpoint still answers."""
    job = live.submit().json()
    wait_for(lambda: live.get(LESSEE, f"/v1/jobs/{job['id']}").json()["state"] == "running")
    paths = [
        (LESSEE, "/v1/jobs?limit=100"),
        (LESSEE, f"/v1/jobs/{job['id']}"),
        (LESSEE, f"/v1/jobs/{job['id']}/why"),
        (LESSEE, "/v1/cluster"),
        ("operator", "/v1/tenants"),
        ("operator", "/metrics"),
    ]
    with live.svc.lock, ThreadPoolExecutor(1) as pool:
        for who, path in paths:
            r = pool.submit(live.get, who, path).result(timeout=10)
            assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize(
    ("xs", "want"),
    [
        pytest.param([], [("1.0", 0.0), ("+Inf", 0.0)], id="empty"),
        pytest.param([0.5, 1.0, 3.0], [("1.0", 2.0), ("+Inf", 3.0)], id="bound-inclusive"),
    ],
)
def test_histogram_buckets_are_cumulative(xs: list[float], want: list[tuple[str, float]]) -> None:
    h = Histogram([1.0])
    for x in xs:
        h.observe(x)
    assert h.buckets() == want and h.sum == sum(xs)


def test_garbage_collection_pauses_are_measured(live: Live) -> None:
    """Every collection is timed while the server runs (a stall of every thread that the
    engine's own measures cannot tell apart from a slow step)."""
    before = live.metrics()["cotenant_gc_pause_seconds_count"]
    gc.collect()
    after = live.metrics()
    assert after["cotenant_gc_pause_seconds_count"] >= before + 1
    assert after["cotenant_gc_pause_seconds_sum"] > 0
    assert live.svc.gc_pauses.max_s > 0
    assert after['cotenant_gc_pause_max_seconds{generation="2"}'] > 0  # gc.collect(): all
