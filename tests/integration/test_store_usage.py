"""Usage and invoices aggregated in SQL equal the Python ledger computation, on SQLite
and on a real PostgreSQL: the same stored ledger and running jobs, the same ``now``,
every kind of window (open, clipping records at either end, empty, a calendar month).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotenant.metering.ledger import UsageRecord
from cotenant.metering.rating import month_bounds, rate_month
from cotenant.model.jobs import JobKind, JobSpec
from cotenant.server.bootstrap import bootstrap
from cotenant.server.service import Service
from cotenant.server.settings import Settings
from cotenant.store import repo
from cotenant.store.mapping import pending_job_row
from cotenant.store.repo import Store
from harness.postgres import LocalPostgres

_names = itertools.count()
T0 = 1_790_812_800  # 2026-10-01, the small-lease scenario's start
NOW = T0 + 40 * 86_400  # into November
TENANTS = ("owner-lab", "lessee-lab")


@pytest.fixture(params=["sqlite", "postgresql"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        pg: LocalPostgres = request.getfixturevalue("postgres_server")
        url = pg.create_database(f"usage_{next(_names)}_{int(time.time() * 1000) % 10**8}")
    store = Store(url)
    bootstrap(store, Settings(db=url, scenario="small-lease"))
    _seed(store, random.Random(19))
    service = Service(store, Settings(db=url))  # not started: the engine plays no part
    yield service
    store.close()


def _seed(store: Store, rng: random.Random) -> None:
    """Closed intervals in the ledger (some spanning the month boundary), and jobs in
    every state; the running ones with an open interval, some opening after ``NOW``."""
    records = []
    for i in range(600):
        start = NOW - rng.randrange(60 * 86_400)
        records.append(
            UsageRecord(
                f"job-{i % 250:04d}",
                rng.choice(TENANTS),
                rng.choice((1, 8, 16, 64)),
                "H100-SXM-80GB",
                (rng.randrange(16),),
                start,
                start + rng.choice((0, 1, 59, 3600, 86_400 * 3)),
                rng.random() < 0.4,
                rng.choice([k.value for k in JobKind]),
            )
        )
    jobs, updates = [], []
    for i in range(300):
        tenant = rng.choice(TENANTS)
        spec = JobSpec(f"job-{i:04d}", tenant, rng.choice((1, 8, 32)), 3600, T0 + i)
        jobs.append(pending_job_row(spec, None, "f" * 64, "k", T0, reason=""))
        state = rng.choice(("pending", "running", "reclaiming", "completed", "running"))
        placed = state in ("running", "reclaiming") and rng.random() < 0.95
        since = NOW - rng.randrange(-3600, 45 * 86_400) if state != "pending" else None
        updates.append(
            {
                "id": spec.id,
                "state": state,
                "nodes": "[3]" if placed else None,
                "node_gpus": f"[{spec.gpus}]" if placed else None,
                "usage_since_s": since,
                "borrowed": rng.random() < 0.5,
            }
        )

    def op(tx: repo.Tx) -> None:
        repo.append_ledger(tx, records)
        for row in jobs:
            repo.insert_job(tx, row)
        tx.flush_inserts()
        repo.update_jobs(tx, updates)

    store.writer.call(op)


m0, m1 = month_bounds("2026-11")
WINDOWS = [
    pytest.param(None, None, id="all-time"),
    pytest.param(m0, m1, id="month"),
    pytest.param(None, m0, id="before-month"),
    pytest.param(m0, None, id="from-month"),
    pytest.param(NOW - 3600, NOW + 3600, id="around-now"),
    pytest.param(NOW + 10, NOW + 20, id="future"),
    pytest.param(m0, m0, id="empty"),
]


@pytest.mark.parametrize(("start_s", "end_s"), WINDOWS)
def test_sql_usage_equals_the_python_ledger(
    svc: Service, start_s: int | None, end_s: int | None
) -> None:
    for tenant in (None, *TENANTS):
        python = svc.ledger_now(tenant, now=NOW)
        sql = svc.usage_now(tenant, now=NOW)
        assert python.gpu_seconds(tenant) > 0
        for who in (None, *TENANTS):
            for borrowed in (None, False, True):
                want = python.gpu_seconds(who, start_s, end_s, borrowed)
                assert sql.gpu_seconds(who, start_s, end_s, borrowed) == want, (
                    tenant,
                    who,
                    borrowed,
                )


@pytest.mark.parametrize("month", ["2026-10", "2026-11", "2026-12"])
def test_invoices_from_sql_usage_equal_the_python_ones(svc: Service, month: str) -> None:
    for tenant in TENANTS:
        contract = svc.contracts[tenant]
        cap = svc.topo.capacity_of(contract.commitment.accelerator)
        others = list(svc.contracts.values())
        python = rate_month(contract, month, svc.ledger_now(tenant, now=NOW), cap, others)
        sql = rate_month(contract, month, svc.usage_now(tenant, now=NOW), cap, others)
        assert sql == python
        assert python.used_gpu_seconds > 0 or month == "2026-12"
