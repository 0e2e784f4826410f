"""SQLAlchemy 2 models: the service's durable state. The migrations in ``migrations/``
create exactly these tables; ``tests/integration/test_store_migrations.py`` checks
that they agree.

JSON values are stored as text (canonical JSON) so SQLite and PostgreSQL hold the
same bytes, and the audit hash can be recomputed from what is stored.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Small key/value facts: the service clock's anchor, the audit head."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ClusterRow(Base):
    __tablename__ = "cluster"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    spec: Mapped[str] = mapped_column(Text)  # JSON: name, groups, node_names


class TenantRow(Base):
    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_s: Mapped[int] = mapped_column(BigInteger)


class ContractRow(Base):
    """Every version of every contract; the highest version of a tenant is in force."""

    __tablename__ = "contracts"
    __table_args__ = (UniqueConstraint("tenant", "version", name="uq_contracts_tenant_version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(16))  # create | amend | notice
    body: Mapped[str] = mapped_column(Text)  # JSON of the Contract
    created_s: Mapped[int] = mapped_column(BigInteger)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_tenant_state_seq", "tenant", "state", "seq"),
        Index("ix_jobs_state_seq", "state", "seq"),
        Index("ix_jobs_tenant_seq", "tenant", "seq"),
    )
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    gpus: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[int] = mapped_column(BigInteger)
    submit_s: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    constraint: Mapped[str] = mapped_column(String(16))
    checkpoint_interval_s: Mapped[int] = mapped_column(BigInteger)
    priority: Mapped[int] = mapped_column(Integer)
    estimate_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    accelerator: Mapped[str | None] = mapped_column(String(64), nullable=True)
    command: Mapped[str] = mapped_column(Text)  # JSON list of strings
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the request
    submitted_by: Mapped[str] = mapped_column(String(40))  # API key id
    # what the engine did with it, written after each engine step
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64), default="")
    reason_detail: Mapped[str] = mapped_column(String(500), default="")
    nodes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON node indices
    node_gpus: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, same length
    borrowed: Mapped[bool] = mapped_column(Boolean, default=False)
    start_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # current run
    first_start_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    usage_since_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    end_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    work_saved_s: Mapped[int] = mapped_column(BigInteger, default=0)
    preemptions: Mapped[int] = mapped_column(Integer, default=0)
    updated_s: Mapped[int] = mapped_column(BigInteger)
    # JSON list of {"kind", "jobs"}: the jobs it waits for (model/dependencies.py)
    after: Mapped[str] = mapped_column(Text, server_default="[]")
    pipeline: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    # JSON list of the providers (the live server's clusters) it accepts; [] for any
    providers: Mapped[str] = mapped_column(Text, server_default="[]")
    # the pool it was sent to (server/overflow.py); null: the lease (the server's engine)
    route: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PipelineRow(Base):
    """A named group of stages submitted in one call; each stage is a job row (its
    ``pipeline`` column names the pipeline). Its state is read from its stages."""

    __tablename__ = "pipelines"
    __table_args__ = (Index("ix_pipelines_tenant_seq", "tenant", "seq"),)
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    # JSON list of {"name", "job"}, each stage after those it depends on
    stages: Mapped[str] = mapped_column(Text)
    submit_s: Mapped[int] = mapped_column(BigInteger)
    submitted_by: Mapped[str] = mapped_column(String(40))
    cancelled_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AttemptRow(Base):
    """One run of a job: where, from when to when, and how it ended (``outcome`` null
    while it runs). Written in the same transaction as the job's row."""

    __tablename__ = "job_attempts"
    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    nodes: Mapped[str] = mapped_column(Text)  # JSON node indices
    node_gpus: Mapped[str] = mapped_column(Text)  # JSON, same length
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # completed | failed | lost | not-started | preempted | node-failure | cancelled | migrated
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str] = mapped_column(String(200), default="")


class LedgerRow(Base):
    """The usage ledger, append-only: one allocation interval per row."""

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_tenant_start", "tenant", "start_s"),
        # covers usage aggregated in SQL (store/usage.py): read in GROUP BY order
        Index("ix_ledger_usage", "tenant", "borrowed", "start_s", "end_s", "gpus"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40))
    tenant: Mapped[str] = mapped_column(String(64))
    gpus: Mapped[int] = mapped_column(Integer)
    accelerator: Mapped[str] = mapped_column(String(64))
    nodes: Mapped[str] = mapped_column(Text)  # JSON node indices
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int] = mapped_column(BigInteger)
    borrowed: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(16))


class RouteRow(Base):
    """Every routing decision of the live server between the lease and its pools
    (server/overflow.py), written in the transaction of the step that made it. The
    overflow budget spent in a month is the sum of ``cost_micro`` of its overflow rows."""

    __tablename__ = "job_routes"
    __table_args__ = (Index("ix_job_routes_tenant_month", "tenant", "month"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(500))
    t: Mapped[int] = mapped_column(BigInteger)
    month: Mapped[str] = mapped_column(String(7))  # UTC YYYY-MM of t
    arrives_s: Mapped[int] = mapped_column(BigInteger)  # queued there (after provisioning)
    cost_micro: Mapped[int] = mapped_column(BigInteger)  # reserved on a pool
    overflow: Mapped[bool] = mapped_column(Boolean)  # counts against the monthly budget
    data_gb: Mapped[int] = mapped_column(BigInteger)  # moved into a pool


class PoolLedgerRow(Base):
    """A pool's usage ledger, append-only, apart from the lease's (a pool is rated on its
    own terms; the lease's usage and invoices read ``ledger`` as before)."""

    __tablename__ = "pool_ledger"
    __table_args__ = (Index("ix_pool_ledger_tenant_start", "tenant", "start_s"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(40))
    tenant: Mapped[str] = mapped_column(String(64))
    gpus: Mapped[int] = mapped_column(Integer)
    accelerator: Mapped[str] = mapped_column(String(64))
    nodes: Mapped[str] = mapped_column(Text)  # JSON node indices (the server's node space)
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))


class AuditRow(Base):
    """The hash-chained audit log (see cotenant.audit.chain). Triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ApiKeyRow(Base):
    """API keys, stored as the SHA-256 of the token (the token is shown once)."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # public key id
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_s: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(40))
    revoked_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


META = _table(Meta)
CLUSTER = _table(ClusterRow)
TENANTS = _table(TenantRow)
CONTRACTS = _table(ContractRow)
JOBS = _table(JobRow)
LEDGER = _table(LedgerRow)
ATTEMPTS = _table(AttemptRow)
AUDIT = _table(AuditRow)
KEYS = _table(ApiKeyRow)
PIPELINES = _table(PipelineRow)
ROUTES = _table(RouteRow)
POOL_LEDGER = _table(PoolLedgerRow)
