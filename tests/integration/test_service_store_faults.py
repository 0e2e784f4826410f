"""The live service through a store outage, in process, where the engine's own ledger and
decisions can be compared with the store's: after the outage the store holds exactly the
usage records the engine computed and one audit entry per audited decision, in order;
during it nothing new starts and waiting jobs say why; the invariants check never reports
a disagreement that is only a write still in flight."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cotenant.model.errors import StoreUnavailable
from cotenant.server.bootstrap import bootstrap
from cotenant.server.keys import Principal, Role
from cotenant.server.recorder import AUDITED
from cotenant.server.service import Service
from cotenant.server.settings import Settings
from cotenant.store.health import Backoff
from cotenant.store.repo import Store

OP = Principal("test", Role.OPERATOR)


def fields(rng: random.Random, gpus: int | None = None) -> dict[str, Any]:
    return {
        "gpus": gpus or rng.choice([1, 2, 4, 8, 16]),
        "duration_s": rng.randrange(120, 1800),
        "kind": "experiment",
        "constraint": "auto",
        "checkpoint_interval_s": 300,
        "priority": 0,
    }


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    store = Store(url)
    bootstrap(store, settings(url))
    store.close()
    return url


def settings(url: str) -> Settings:
    return Settings(db=url, demo=True, scenario="small-lease", speed=600, min_step_s=0.01)


@pytest.fixture
def faults(tmp_path: Path) -> Path:
    return tmp_path / "faults"


@pytest.fixture
def service(url: str, faults: Path) -> Iterator[tuple[Service, list[tuple[str, str]]]]:
    store = Store(url)
    store.writer.faults_file = str(faults)
    store.writer.backoff = Backoff(base_s=0.01, cap_s=0.1)
    svc = Service(store, settings(url))
    svc.start()
    decided: list[tuple[str, str]] = []
    with svc.lock:  # every audited decision the engine makes from now on
        svc.engine.sinks.append(
            lambda ev: (
                decided.append((ev["event"], ev["job"]))
                if ev.get("event") in AUDITED and "job" in ev
                else None
            )
        )
    yield svc, decided
    faults.unlink(missing_ok=True)
    svc.stop()
    store.close()


def submit_many(svc: Service, rng: random.Random, n: int) -> list[str]:
    return [
        svc.submit_job(OP, "owner-lab", fields(rng), None).result(10)[0]["id"] for _ in range(n)
    ]


def test_the_store_holds_what_the_engine_decided_through_an_outage(
    service: tuple[Service, list[tuple[str, str]]], faults: Path, url: str
) -> None:
    svc, decided = service
    rng = random.Random(7)
    store = svc.store
    submit_many(svc, rng, 30)
    big = {**fields(rng, 128), "duration_s": 86_400}
    waiting = svc.submit_job(OP, "owner-lab", big, None).result(10)[0]["id"]
    time.sleep(0.5)  # placements, some ends (600x: 5 simulated minutes)
    placed_before = sum(1 for k, _ in decided if k == "place")

    faults.write_text("")
    wait_for(lambda: store.writer.down)
    with pytest.raises(StoreUnavailable):
        svc.submit_job(OP, "owner-lab", fields(rng), None).result(10)
    wait_for(lambda: svc.engine.hold is not None)
    why = svc.why(waiting)
    assert (why["state"], why["reason"]) == ("pending", "store-unavailable")
    assert svc.readiness_problems()
    with pytest.raises(StoreUnavailable):
        svc.invariants()
    time.sleep(1.0)  # running work goes on: some jobs end during the outage
    ends_in_outage = sum(1 for k, _ in decided if k == "end")
    places_in_outage = sum(1 for k, _ in decided if k == "place") - placed_before

    faults.unlink()
    wait_for(lambda: not store.writer.down)
    wait_for(lambda: svc.engine.hold is None)
    assert svc.invariants() == []
    assert svc.readiness_problems() == []

    with svc.lock:
        svc._flush_all()
        engine_ledger = sorted(svc.engine.ledger.records(), key=repr)
        audited = [
            (e.kind, e.payload["job"])
            for e in store.audit_entries()
            if e.kind in AUDITED and "job" in e.payload
        ]
        stored_ledger = sorted(store.ledger(None), key=repr)
    assert ends_in_outage > 0
    assert places_in_outage <= len(svc.engine.jobs)  # (the hold may lag one step)
    assert stored_ledger == engine_ledger
    assert audited[-len(decided) :] == decided

    svc.stop()
    again = Service(store, settings(url))
    again.start()
    try:
        assert again.invariants() == []
    finally:
        again.stop()


def test_invariants_never_report_a_write_in_flight_as_a_disagreement(
    service: tuple[Service, list[tuple[str, str]]],
) -> None:
    svc, _ = service
    rng = random.Random(3)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            svc.submit_job(OP, "lessee-lab", fields(rng), None).result(10)
            time.sleep(0.005)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        reports = [svc.invariants() for _ in range(60)]
    finally:
        stop.set()
        t.join(10)
    assert [r for r in reports if r] == []
