"""The store on SQLite and on a real PostgreSQL: migrations, round trips, append-only
tables, tamper detection, and a service restart that rebuilds the engine.

PostgreSQL runs through the ``postgres_server`` fixture (skipped without it locally,
required in CI).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cotenant.audit.chain import verify
from cotenant.metering.ledger import UsageRecord
from cotenant.model.contracts import (
    Commitment,
    Contract,
    CreditCapBase,
    IsolationTerms,
    NoticeTerms,
    PriceTerms,
)
from cotenant.model.jobs import JobSpec
from cotenant.server.bootstrap import bootstrap
from cotenant.server.keys import Principal, Role
from cotenant.server.service import Service
from cotenant.server.settings import Settings
from cotenant.store import repo
from cotenant.store.db import head_revision, schema_revision
from cotenant.store.mapping import (
    contract_from_json,
    contract_to_json,
    pending_job_row,
    spec_from_row,
)
from cotenant.store.repo import Store
from cotenant.store.tables import Base
from harness.postgres import LocalPostgres

_names = itertools.count()
T0 = 1_790_812_800


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    pg: LocalPostgres = request.getfixturevalue("postgres_server")
    name = f"store_{next(_names)}_{int(time.time() * 1000) % 10**8}"
    yield pg.create_database(name)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def test_migrations_build_exactly_the_models(store: Store) -> None:
    assert schema_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    Store(store.url).close()  # migrating again is a no-op


def test_contracts_round_trip_exactly(store: Store) -> None:
    c = Contract(
        "lab-a",
        T0,
        T0 + 86_400 * 365,
        Commitment(16, False, 0, "H100-SXM-80GB"),
        notice=NoticeTerms(86_400 * 30, given_at=T0 + 5),
        isolation=IsolationTerms(("lab-b",)),
        price=PriceTerms(sla_credit_cap_percent=20, sla_credit_cap_base=CreditCapBase.COMMITTED),
        priority=3,
    )
    assert contract_from_json(contract_to_json(c)) == c

    def op(tx: repo.Tx) -> None:
        repo.add_tenant(tx, "lab-a", "Lab A", T0)
        repo.add_contract_version(tx, c, "create", T0)
        repo.add_contract_version(tx, c.with_notice(T0 + 9), "notice", T0 + 9)

    store.writer.call(op)
    assert store.contracts() == {"lab-a": c.with_notice(T0 + 9)}
    assert [r["version"] for r in store.contract_versions("lab-a")] == [1, 2]


def _job(i: int, tenant: str = "lab-a", key: str | None = None) -> dict[str, object]:
    spec = JobSpec(f"job-{i:04d}", tenant, 8, 60, T0 + i, name=f"n{i}")
    return pending_job_row(spec, key, "f" * 64, "k", T0, reason="")


def test_jobs_insert_update_page_and_keep_idempotency_keys_unique(store: Store) -> None:
    store.writer.call(lambda tx: [repo.insert_job(tx, _job(i, key=f"k{i}")) for i in range(5)])
    rows = store.jobs("lab-a", limit=2)
    assert [r["id"] for r in rows] == ["job-0000", "job-0001"]
    assert [r["id"] for r in store.jobs("lab-a", after_seq=rows[-1]["seq"])] == [
        "job-0002",
        "job-0003",
        "job-0004",
    ]
    update = {"id": "job-0003", "state": "running", "nodes": "[1,2]", "node_gpus": "[8,8]"}
    store.writer.call(lambda tx: repo.update_jobs(tx, [update]))
    got = store.job("job-0003")
    assert got is not None and got["state"] == "running" and got["nodes"] == "[1,2]"
    assert [r["id"] for r in store.jobs(states=["running"])] == ["job-0003"]
    with pytest.raises(sa.exc.IntegrityError):
        store.writer.call(lambda tx: repo.insert_job(tx, _job(9, key="k1")))
    store.writer.call(lambda tx: repo.insert_job(tx, _job(10, tenant="lab-b", key="k1")))


def test_a_job_comes_back_from_the_store_as_submitted(store: Store) -> None:
    spec = JobSpec("job-p", "lab-a", 8, 60, T0, name="p", providers=("west", "east"))
    row = pending_job_row(spec, None, "f" * 64, "k", T0, reason="")
    store.writer.call(lambda tx: repo.insert_job(tx, row))
    got = store.job("job-p")
    assert got is not None and spec_from_row(got) == spec
    older = {k: v for k, v in _job(1).items() if k != "providers"}  # as before 0006
    store.writer.call(lambda tx: repo.insert_job(tx, older))
    old = store.job("job-0001")
    assert old is not None and spec_from_row(old).providers == ()  # any provider


def test_a_failing_operation_does_not_fail_its_batch_neighbours(store: Store) -> None:
    store.writer.start()
    futs = [
        store.writer.submit(lambda tx, i=i: repo.insert_job(tx, _job(i, key="same")))
        for i in range(4)
    ]
    outcomes = []
    for f in futs:
        try:
            f.result(10)
            outcomes.append("ok")
        except sa.exc.IntegrityError:
            outcomes.append("duplicate")
    assert outcomes.count("ok") == 1
    assert len(store.jobs()) == 1


def test_audit_and_ledger_are_append_only(store: Store) -> None:
    rec = UsageRecord("job-1", "lab-a", 8, "H100-SXM-80GB", (0,), T0, T0 + 60)
    store.writer.call(lambda tx: (repo.append_ledger(tx, [rec]), tx.audit(T0, "x", {"a": 1})))
    assert store.ledger() == [rec]
    for stmt in (
        "UPDATE audit_log SET kind = 'y'",
        "DELETE FROM audit_log",
        "UPDATE ledger SET gpus = 1",
        "DELETE FROM ledger",
    ):
        with pytest.raises(sa.exc.DBAPIError), store.engine.begin() as conn:
            conn.execute(sa.text(stmt))
    assert verify(store.audit_entries(), store.audit_head()).ok


def _drop_guards(store: Store) -> None:
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP TRIGGER audit_log_append_only ON audit_log"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_log_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_log_no_delete"))


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        pytest.param("UPDATE audit_log SET payload = '{\"gpus\": 64}' WHERE seq = 4", 4, id="edit"),
        pytest.param("DELETE FROM audit_log WHERE seq = 3", 3, id="delete"),
        pytest.param("DELETE FROM audit_log WHERE seq = 6", 6, id="delete-last"),
        pytest.param("UPDATE audit_log SET seq = seq + 100 WHERE seq = 2", 2, id="move"),
    ],
)
def test_tampering_with_the_stored_chain_is_named(
    store: Store, tamper: str, first_bad: int
) -> None:
    store.writer.call(lambda tx: [tx.audit(T0 + i, "place", {"gpus": i}) for i in range(6)])
    assert verify(store.audit_entries(), store.audit_head()).ok
    _drop_guards(store)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(tamper)
    v = verify(store.audit_entries(), store.audit_head())
    assert not v.ok and v.first_bad_seq == first_bad, v


def test_the_service_restarts_from_the_store(db_url: str) -> None:
    settings = Settings(db=db_url, demo=True, scenario="small-lease", speed=60, min_step_s=0.01)
    store = Store(db_url)
    bootstrap(store, settings)
    svc = Service(store, settings)
    svc.start()
    op = Principal("test", Role.OPERATOR)
    fields = {
        "gpus": 32,
        "duration_s": 86_400,
        "kind": "training",
        "constraint": "auto",
        "checkpoint_interval_s": 3600,
        "priority": 0,
    }
    row, created = svc.submit_job(op, "lessee-lab", fields, "once").result(10)
    again, created2 = svc.submit_job(op, "lessee-lab", fields, "once").result(10)
    assert created and not created2 and again["id"] == row["id"]
    big, _ = svc.submit_job(op, "lessee-lab", {**fields, "gpus": 128}, None).result(10)
    deadline = time.monotonic() + 10
    while (r := store.job(row["id"])) is not None and r["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    placed = store.job(row["id"])
    svc.stop()
    store.close()

    store = Store(db_url)
    svc = Service(store, settings)
    svc.start()
    try:
        assert svc.invariants() == []
        assert svc.engine.jobs[row["id"]].placement is not None
        restored = store.job(row["id"])
        assert restored is not None and placed is not None
        assert (restored["state"], restored["nodes"]) == ("running", placed["nodes"])
        assert svc.engine.jobs[big["id"]].state.value == "pending"
        assert svc.status.allocated.get("lessee-lab", 0) in (0, 32)  # before/after first step
        assert verify(store.audit_entries(), store.audit_head()).ok
        kinds = [e.kind for e in store.audit_entries()]
        assert kinds.count("service-started") == 2
    finally:
        svc.stop()
        store.close()
