"""The store: reads on pooled connections (any thread), writes as operations on a ``Tx``
that the single writer (``writer.py``) commits.

Nothing outside ``store/`` touches SQLAlchemy; callers get domain objects, plain
dicts of columns, or ``AuditEntry``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from cotenant.audit.chain import GENESIS_HEAD, AuditEntry, Head, StoredEntry, Verdict, verify_stored
from cotenant.cluster.topology import ClusterSpec
from cotenant.metering.ledger import UsageRecord
from cotenant.model.contracts import Contract
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobState
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
    PIPELINES,
    POOL_LEDGER,
    ROUTES,
    TENANTS,
)
from cotenant.store.wal import WAL_INTERVAL_S, WAL_LIMIT_BYTES, WalCheckpointer, sqlite_file
from cotenant.store.writer import Tx, Writer, read_head

log = logging.getLogger(__name__)
LIVE_STATES = ("pending", "running", "reclaiming")
AUDIT_VERIFIED = "audit_verified"  # meta: the head of the chain as far as it last verified
AUDIT_PAGE = 5000  # audit entries per read (each page its own short read transaction)
AUDIT_PAGE_QUERY = (
    sa.select(*(AUDIT.c[name] for name in StoredEntry._fields))
    .where(AUDIT.c.seq > sa.bindparam("after"), AUDIT.c.seq <= sa.bindparam("upto"))
    .order_by(AUDIT.c.seq)
    .limit(sa.bindparam("n"))
)

Row = dict[str, Any]


class Store:
    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        wal_limit_bytes: int = WAL_LIMIT_BYTES,
        wal_interval_s: float = WAL_INTERVAL_S,
    ) -> None:
        """Open (and migrate) the store; ``read_only`` neither migrates nor writes. An
        SQLite file opened for writing gets a ``WalCheckpointer`` (``store/wal.py``)."""
        self.url = url
        self.engine = make_engine(url)
        self._writer: Writer | None = None
        self.wal: WalCheckpointer | None = None
        if not read_only:
            migrate(self.engine)
            self._writer = Writer(self.engine)
            path = sqlite_file(self.engine)
            if path is not None:
                self.wal = WalCheckpointer(self.engine, path, wal_limit_bytes, wal_interval_s)
                self.wal.start()

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise SpecError("db", "this store was opened read-only")
        return self._writer

    def close(self) -> None:
        if self.wal is not None:
            self.wal.stop()
        if self._writer is not None:
            self._writer.stop()
        self.engine.dispose()

    # -- reads ------------------------------------------------------------------------------
    def _all(self, stmt: sa.Executable) -> list[Row]:
        with self.engine.connect() as conn:
            result = conn.execute(stmt)
            keys = list(result.keys())
            return [dict(zip(keys, r, strict=True)) for r in result]  # (cheaper than mappings)

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

    def jobs_by_id(self, job_ids: Iterable[str]) -> list[Row]:
        """The jobs with these ids (any order; unknown ids are left out)."""
        ids = sorted(set(job_ids))
        out: list[Row] = []
        for i in range(0, len(ids), 500):
            out += self._all(sa.select(JOBS).where(JOBS.c.id.in_(ids[i : i + 500])))
        return out

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

    def job_tenant_state(self, job_id: str) -> tuple[str, JobState] | None:
        """(tenant, state) of a stored job, None if there is none: what a dependency on a
        job the engine no longer holds (it ended before a restart) is decided by."""
        stmt = sa.select(JOBS.c.tenant, JOBS.c.state).where(JOBS.c.id == job_id)
        with self.engine.connect() as conn:
            r = conn.execute(stmt).first()
        return None if r is None else (str(r[0]), JobState(r[1]))

    def pipeline(self, pipeline_id: str) -> Row | None:
        return self._one(sa.select(PIPELINES).where(PIPELINES.c.id == pipeline_id))

    def pipelines(
        self, tenant: str | None = None, after_seq: int = 0, limit: int = 100
    ) -> list[Row]:
        """Pipelines in submission order."""
        stmt = sa.select(PIPELINES).where(PIPELINES.c.seq > after_seq)
        if tenant is not None:
            stmt = stmt.where(PIPELINES.c.tenant == tenant)
        return self._all(stmt.order_by(PIPELINES.c.seq).limit(limit))

    def live_jobs(self) -> list[Row]:
        """Jobs the engine must know after a restart, in submission order."""
        return self._all(sa.select(JOBS).where(JOBS.c.state.in_(LIVE_STATES)).order_by(JOBS.c.seq))

    def running_placements(self) -> list[Row]:
        """``id``, ``nodes`` and ``node_gpus`` of every running or reclaiming job (only
        those columns: the invariants check reads thousands with the engine held)."""
        stmt = sa.select(JOBS.c.id, JOBS.c.nodes, JOBS.c.node_gpus).where(
            JOBS.c.state.in_(("running", "reclaiming"))
        )
        with self.engine.connect() as conn:
            return [{"id": i, "nodes": n, "node_gpus": g} for i, n, g in conn.execute(stmt).all()]

    def ledger(self, tenant: str | None = None) -> list[UsageRecord]:
        stmt = sa.select(LEDGER).order_by(LEDGER.c.id)
        if tenant is not None:
            stmt = stmt.where(LEDGER.c.tenant == tenant)
        return [mapping.record_from_row(r) for r in self._all(stmt)]

    def routes(self, tenant: str | None = None, month: str | None = None) -> list[Row]:
        """The routing decisions between the lease and its pools (of a tenant, in a
        month), oldest first."""
        stmt = sa.select(ROUTES)
        if tenant is not None:
            stmt = stmt.where(ROUTES.c.tenant == tenant)
        if month is not None:
            stmt = stmt.where(ROUTES.c.month == month)
        return self._all(stmt.order_by(ROUTES.c.id))

    def pool_ledger(self, provider: str | None = None, tenant: str | None = None) -> list[Row]:
        """A pool's usage records (rows with ``provider``), oldest first."""
        stmt = sa.select(POOL_LEDGER).order_by(POOL_LEDGER.c.id)
        if provider is not None:
            stmt = stmt.where(POOL_LEDGER.c.provider == provider)
        if tenant is not None:
            stmt = stmt.where(POOL_LEDGER.c.tenant == tenant)
        return self._all(stmt)

    def audit_pages(
        self, after_seq: int = 0, upto_seq: int | None = None, limit: int | None = None
    ) -> Iterator[list[StoredEntry]]:
        """Entries after ``after_seq`` (up to ``upto_seq``, at most ``limit``) in seq order,
        as stored, a page at a time. Each page is one keyset query on its own connection,
        so a long export or verify never holds a read transaction (nor pins SQLite's WAL)
        for longer than one page takes, and memory stays one page whatever the log's size."""
        last = after_seq
        left = limit
        upto = (1 << 63) - 1 if upto_seq is None else upto_seq
        # Run on the driver's cursor: at 100,000 entries SQLAlchemy's row objects would
        # cost as much as the query (each row becomes a StoredEntry at once anyway).
        compiled = AUDIT_PAGE_QUERY.compile(dialect=self.engine.dialect)
        sql = str(compiled)
        while left is None or left > 0:
            n = AUDIT_PAGE if left is None else min(AUDIT_PAGE, left)
            params = compiled.construct_params({"after": last, "upto": upto, "n": n})
            args: Any = (
                [params[k] for k in compiled.positiontup or ()] if compiled.positional else params
            )
            with self.engine.connect() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(sql, args)
                    page = list(map(StoredEntry._make, cursor.fetchall()))
                finally:
                    cursor.close()
            if page:
                yield page
            if len(page) < n:
                return
            last = page[-1].seq
            if left is not None:
                left -= len(page)

    def audit_entries(self, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        """Entries in seq order, payloads parsed, streamed in pages."""
        for page in self.audit_pages(after_seq, limit=limit):
            for e in page:
                payload = json.loads(e.payload)
                yield AuditEntry(e.seq, e.time, e.kind, payload, e.prev_hash, e.hash)

    def audit_jsonl(
        self, after_seq: int = 0, upto_seq: int | None = None, limit: int | None = None
    ) -> Iterator[str]:
        """The export: JSON lines (``audit.to_jsonl``), one chunk of text per page, written
        from the stored text without parsing a payload."""
        for page in self.audit_pages(after_seq, upto_seq, limit):
            yield "".join([e.to_jsonl() for e in page])

    def audit_checkpoint(self) -> Head | None:
        """Where the chain last verified (``verify_audit``), if it has."""
        raw = self.meta(AUDIT_VERIFIED)
        try:
            return None if raw is None else Head.parse(raw)
        except ValueError:
            return None

    def _audit_hash(self, seq: int) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(AUDIT.c.hash).where(AUDIT.c.seq == seq)).scalar()
        return None if found is None else str(found)

    def verify_audit(self, *, full: bool = False, head: Head | None = None) -> Verdict:
        """Verify the stored chain against ``head`` (default: the recorded head).

        Incremental by default: from the checkpoint the last good verify left (its seq and
        hash, in the meta table), if the entry there still has that hash; entries before
        it were verified then and are not read again. ``full`` reads the whole chain (an
        entry edited before the checkpoint is found only so). A good verdict moves the
        checkpoint forward (not on a read-only store). Without ``head`` the chain is read
        up to the recorded head, so entries appended meanwhile are not counted against it.
        """
        recorded = self.audit_head()
        expected = recorded if head is None else head
        upto = recorded.seq if head is None else None
        start = GENESIS_HEAD
        checkpoint = None if full else self.audit_checkpoint()
        if (
            checkpoint is not None
            and 0 < checkpoint.seq <= expected.seq
            and self._audit_hash(checkpoint.seq) == checkpoint.hash
        ):
            start = checkpoint
        entries = (e for page in self.audit_pages(start.seq, upto) for e in page)
        verdict = verify_stored(entries, expected, start)
        if verdict.ok and self._writer is not None and verdict.head.seq > start.seq:
            good = verdict.head
            try:
                self._writer.call(lambda tx: advance_audit_checkpoint(tx, good))
            except Exception:  # the verdict stands; the next verify starts further back
                log.warning("could not record the audit checkpoint %s", good, exc_info=True)
        return verdict

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


def advance_audit_checkpoint(tx: Tx, head: Head) -> None:
    """Record ``head`` as verified, unless a later one is recorded already."""
    raw = tx.conn.execute(
        sa.select(META.c.value).where(META.c.key == AUDIT_VERIFIED)
    ).scalar_one_or_none()
    try:
        if raw is not None and Head.parse(raw).seq >= head.seq:
            return
    except ValueError:
        pass
    put_meta(tx, AUDIT_VERIFIED, str(head))


def put_cluster(tx: Tx, spec: ClusterSpec) -> None:
    tx.conn.execute(sa.insert(CLUSTER), {"id": 1, "spec": mapping.cluster_to_json(spec)})


def add_tenant(tx: Tx, name: str, display_name: str, now: int) -> None:
    tx.conn.execute(
        sa.insert(TENANTS), {"name": name, "display_name": display_name, "created_s": now}
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


def insert_pipeline(tx: Tx, row: Row) -> None:
    tx.insert(PIPELINES, row)


def pipeline_cancelled(tx: Tx, pipeline_id: str, now: int) -> None:
    tx.conn.execute(
        sa.update(PIPELINES).where(PIPELINES.c.id == pipeline_id).values(cancelled_s=now)
    )


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


def append_routes(tx: Tx, rows: Iterable[Mapping[str, Any]]) -> None:
    out = [dict(r) for r in rows]
    if out:
        tx.conn.execute(sa.insert(ROUTES), out)


def append_pool_ledger(tx: Tx, records: Iterable[tuple[str, UsageRecord]]) -> None:
    rows = []
    for provider, r in records:
        cols = mapping.record_columns(r)
        del cols["borrowed"]
        rows.append({"provider": provider, **cols})
    if rows:
        tx.conn.execute(sa.insert(POOL_LEDGER), rows)


def add_key(tx: Tx, row: Mapping[str, Any]) -> None:
    tx.conn.execute(sa.insert(KEYS), dict(row))


def revoke_key(tx: Tx, key_id: str, now: int) -> None:
    tx.conn.execute(sa.update(KEYS).where(KEYS.c.id == key_id).values(revoked_s=now))
