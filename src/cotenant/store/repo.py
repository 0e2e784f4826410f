"""The store: reads on pooled connections (any thread), writes as operations on a ``Tx``
that the single writer (``writer.py``) commits.

Nothing outside ``store/`` touches SQLAlchemy; callers get domain objects, plain
dicts of columns, or ``AuditEntry``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from cotenant.audit import AuditEntry, Head
from cotenant.cluster.topology import ClusterSpec
from cotenant.metering.ledger import UsageRecord
from cotenant.model.contracts import Contract
from cotenant.model.errors import SpecError
from cotenant.store import mapping
from cotenant.store.db import make_engine, migrate
from cotenant.store.tables import (
    ATTEMPTS,
    AUDIT,
    CLUSTER,
    CONTRACTS,
    JOBS,
    KEYS,
    LEDGER,
    META,
    TENANTS,
)
from cotenant.store.writer import Tx, Writer, read_head

LIVE_STATES = ("pending", "running", "reclaiming")

Row = dict[str, Any]


class Store:
    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """Open (and migrate) the store; ``read_only`` neither migrates nor writes."""
        self.url = url
        self.engine = make_engine(url)
        self._writer: Writer | None = None
        if not read_only:
            migrate(self.engine)
            self._writer = Writer(self.engine)

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise SpecError("db", "this store was opened read-only")
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
        self.engine.dispose()

    # -- reads ------------------------------------------------------------------------------
    def _all(self, stmt: sa.Executable) -> list[Row]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def _one(self, stmt: sa.Executable) -> Row | None:
        with self.engine.connect() as conn:
            r = conn.execute(stmt).mappings().first()
            return dict(r) if r is not None else None

    def meta(self, key: str) -> str | None:
        row = self._one(sa.select(META.c.value).where(META.c.key == key))
        return None if row is None else str(row["value"])

    def cluster_spec(self) -> ClusterSpec | None:
        row = self._one(sa.select(CLUSTER.c.spec).where(CLUSTER.c.id == 1))
        return None if row is None else mapping.cluster_from_json(row["spec"])

    def tenants(self) -> list[Row]:
        return self._all(sa.select(TENANTS).order_by(TENANTS.c.name))

    def tenant(self, name: str) -> Row | None:
        return self._one(sa.select(TENANTS).where(TENANTS.c.name == name))

    def contracts(self) -> dict[str, Contract]:
        """The contract in force per tenant (its highest version)."""
        latest = (
            sa.select(CONTRACTS.c.tenant, sa.func.max(CONTRACTS.c.version).label("v"))
            .group_by(CONTRACTS.c.tenant)
            .subquery()
        )
        stmt = (
            sa.select(CONTRACTS.c.tenant, CONTRACTS.c.body)
            .join(
                latest,
                sa.and_(CONTRACTS.c.tenant == latest.c.tenant, CONTRACTS.c.version == latest.c.v),
            )
            .order_by(CONTRACTS.c.tenant)
        )
        return {r["tenant"]: mapping.contract_from_json(r["body"]) for r in self._all(stmt)}

    def contract_versions(self, tenant: str) -> list[Row]:
        return self._all(
            sa.select(CONTRACTS).where(CONTRACTS.c.tenant == tenant).order_by(CONTRACTS.c.version)
        )

    def job(self, job_id: str) -> Row | None:
        return self._one(sa.select(JOBS).where(JOBS.c.id == job_id))

    def jobs(
        self,
        tenant: str | None = None,
        states: Iterable[str] = (),
        after_seq: int = 0,
        limit: int = 100,
        *,
        name: str | None = None,
        since_s: int | None = None,
        until_s: int | None = None,
    ) -> list[Row]:
        """Jobs in submission order. ``since_s``/``until_s`` keep the jobs that were in
        the system during the window (like sacct -S/-E): submitted before its end and
        not ended before its start."""
        stmt = sa.select(JOBS).where(JOBS.c.seq > after_seq)
        if tenant is not None:
            stmt = stmt.where(JOBS.c.tenant == tenant)
        if name is not None:
            stmt = stmt.where(JOBS.c.name == name)
        if until_s is not None:
            stmt = stmt.where(JOBS.c.submit_s <= until_s)
        if since_s is not None:
            stmt = stmt.where(sa.or_(JOBS.c.end_s.is_(None), JOBS.c.end_s >= since_s))
        st = list(states)
        if st:
            stmt = stmt.where(JOBS.c.state.in_(st))
        return self._all(stmt.order_by(JOBS.c.seq).limit(limit))

    def attempts(self, job_ids: Iterable[str]) -> dict[str, list[Row]]:
        """Each job's attempts, in order."""
        ids = sorted(set(job_ids))
        out: dict[str, list[Row]] = {j: [] for j in ids}
        for i in range(0, len(ids), 500):
            stmt = (
                sa.select(ATTEMPTS)
                .where(ATTEMPTS.c.job_id.in_(ids[i : i + 500]))
                .order_by(ATTEMPTS.c.job_id, ATTEMPTS.c.attempt)
            )
            for r in self._all(stmt):
                out[r["job_id"]].append(r)
        return out

    def live_jobs(self) -> list[Row]:
        """Jobs the engine must know after a restart, in submission order."""
        return self._all(sa.select(JOBS).where(JOBS.c.state.in_(LIVE_STATES)).order_by(JOBS.c.seq))

    def job_counts(self) -> dict[tuple[str, str], int]:
        rows = self._all(
            sa.select(JOBS.c.tenant, JOBS.c.state, sa.func.count().label("n")).group_by(
                JOBS.c.tenant, JOBS.c.state
            )
        )
        return {(r["tenant"], r["state"]): int(r["n"]) for r in rows}

    def ledger(self, tenant: str | None = None) -> list[UsageRecord]:
        stmt = sa.select(LEDGER).order_by(LEDGER.c.id)
        if tenant is not None:
            stmt = stmt.where(LEDGER.c.tenant == tenant)
        return [mapping.record_from_row(r) for r in self._all(stmt)]

    def audit_entries(self, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        """Entries in seq order, streamed in pages (an export of millions stays small)."""
        page = 5000
        seen = 0
        last = after_seq
        while limit is None or seen < limit:
            n = page if limit is None else min(page, limit - seen)
            with self.engine.connect() as conn:
                rows = list(
                    conn.execute(
                        sa.select(AUDIT).where(AUDIT.c.seq > last).order_by(AUDIT.c.seq).limit(n)
                    ).mappings()
                )
            for r in rows:
                yield AuditEntry(
                    r["seq"],
                    r["time"],
                    r["kind"],
                    json.loads(r["payload"]),
                    r["prev_hash"],
                    r["hash"],
                )
            if len(rows) < n:
                return
            seen += len(rows)
            last = rows[-1]["seq"]

    def audit_head(self) -> Head:
        with self.engine.connect() as conn:
            return read_head(conn)

    def keys(self, tenant: str | None = None) -> list[Row]:
        stmt = sa.select(KEYS).order_by(KEYS.c.created_s, KEYS.c.id)
        if tenant is not None:
            stmt = stmt.where(KEYS.c.tenant == tenant)
        return self._all(stmt)

    def key(self, key_id: str) -> Row | None:
        return self._one(sa.select(KEYS).where(KEYS.c.id == key_id))

    def active_keys(self) -> list[Row]:
        return self._all(sa.select(KEYS).where(KEYS.c.revoked_s.is_(None)))


# -- write operations (run by the writer inside one transaction) --------------------------------
def put_meta(tx: Tx, key: str, value: str) -> None:
    found = tx.conn.execute(sa.select(META.c.key).where(META.c.key == key)).first()
    if found is None:
        tx.conn.execute(sa.insert(META), {"key": key, "value": value})
    else:
        tx.conn.execute(sa.update(META).where(META.c.key == key).values(value=value))


def put_cluster(tx: Tx, spec: ClusterSpec) -> None:
    tx.conn.execute(sa.insert(CLUSTER), {"id": 1, "spec": mapping.cluster_to_json(spec)})


def add_tenant(tx: Tx, name: str, display_name: str, now: int) -> None:
    tx.conn.execute(
        sa.insert(TENANTS), {"name": name, "display_name": display_name, "created_s": now}
    )


def tenant_exists(tx: Tx, name: str) -> bool:
    return (
        tx.conn.execute(sa.select(TENANTS.c.name).where(TENANTS.c.name == name)).first() is not None
    )


def add_contract_version(tx: Tx, contract: Contract, change: str, now: int) -> int:
    v = tx.conn.execute(
        sa.select(sa.func.max(CONTRACTS.c.version)).where(CONTRACTS.c.tenant == contract.tenant)
    ).scalar_one_or_none()
    version = (v or 0) + 1
    tx.conn.execute(
        sa.insert(CONTRACTS),
        {
            "tenant": contract.tenant,
            "version": version,
            "change": change,
            "body": mapping.contract_to_json(contract),
            "created_s": now,
        },
    )
    return version


def find_idempotent(tx: Tx, tenant: str, key: str) -> Row | None:
    r = (
        tx.conn.execute(
            sa.select(JOBS).where(JOBS.c.tenant == tenant, JOBS.c.idempotency_key == key)
        )
        .mappings()
        .first()
    )
    return dict(r) if r is not None else None


def insert_job(tx: Tx, row: Row) -> None:
    tx.insert(JOBS, row)


def update_jobs(tx: Tx, rows: list[Row]) -> None:
    """Write the engine's view of jobs (state, placement, times); one executemany."""
    if not rows:
        return
    cols = [c for c in rows[0] if c != "id"]
    stmt = (
        sa.update(JOBS)
        .where(JOBS.c.id == sa.bindparam("b_id"))
        .values({c: sa.bindparam(f"b_{c}") for c in cols})
    )
    tx.conn.execute(stmt, [{f"b_{k}": v for k, v in r.items()} for r in rows])


def write_attempts(tx: Tx, changes: Iterable[tuple[str, Row]]) -> None:
    """Apply attempt changes in order: ``("start", columns)`` records a run (replacing a
    row of the same attempt), ``("end", columns)`` closes the open run it names."""
    for change, row in changes:
        key = (ATTEMPTS.c.job_id == row["job_id"]) & (ATTEMPTS.c.attempt == row["attempt"])
        if change == "start":
            tx.conn.execute(sa.delete(ATTEMPTS).where(key))
            tx.conn.execute(sa.insert(ATTEMPTS), dict(row))
        else:
            values = {k: v for k, v in row.items() if k not in ("job_id", "attempt")}
            tx.conn.execute(
                sa.update(ATTEMPTS).where(key & ATTEMPTS.c.end_s.is_(None)).values(values)
            )


def append_ledger(tx: Tx, records: Iterable[UsageRecord]) -> None:
    rows = [mapping.record_columns(r) for r in records]
    if rows:
        tx.conn.execute(sa.insert(LEDGER), rows)


def add_key(tx: Tx, row: Mapping[str, Any]) -> None:
    tx.conn.execute(sa.insert(KEYS), dict(row))


def revoke_key(tx: Tx, key_id: str, now: int) -> None:
    tx.conn.execute(sa.update(KEYS).where(KEYS.c.id == key_id).values(revoked_s=now))
