"""Read queries for the web console: a page of jobs filtered and sorted in SQL, one job's
audit trail, a page of the audit log newest first. Reads only; the writer is not used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cotenant.audit.chain import AuditEntry
from cotenant.store.repo import Row, Store
from cotenant.store.tables import AUDIT, JOBS

JOB_SORTS = ("submitted", "started", "ended", "gpus", "name", "state", "tenant", "wait")
JOB_LIST_COLUMNS = (
    "seq",
    "id",
    "tenant",
    "name",
    "gpus",
    "kind",
    "state",
    "reason",
    "submit_s",
    "first_start_s",
    "start_s",
    "end_s",
    "attempt",
    "preemptions",
)


@dataclass(frozen=True, slots=True)
class JobQuery:
    tenant: str | None = None
    states: tuple[str, ...] = ()
    name: str = ""  # substring of the name or the id
    sort: str = "submitted"
    desc: bool = True
    offset: int = 0
    limit: int = 50


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def job_page(store: Store, q: JobQuery, now: int) -> tuple[list[Row], int]:
    """(rows of ``JOB_LIST_COLUMNS`` plus ``wait_s``, total matching)."""
    cond: list[sa.ColumnElement[bool]] = []
    if q.tenant is not None:
        cond.append(JOBS.c.tenant == q.tenant)
    if q.states:
        cond.append(JOBS.c.state.in_(q.states))
    if q.name:
        pat = f"%{_escape_like(q.name)}%"
        cond.append(sa.or_(JOBS.c.name.like(pat, escape="\\"), JOBS.c.id.like(pat, escape="\\")))
    wait = (sa.func.coalesce(JOBS.c.first_start_s, JOBS.c.end_s, now) - JOBS.c.submit_s).label(
        "wait_s"
    )
    order_col: Any = {
        "submitted": JOBS.c.seq,
        "started": JOBS.c.first_start_s,
        "ended": JOBS.c.end_s,
        "gpus": JOBS.c.gpus,
        "name": JOBS.c.name,
        "state": JOBS.c.state,
        "tenant": JOBS.c.tenant,
        "wait": wait,
    }[q.sort if q.sort in JOB_SORTS else "submitted"]
    order = order_col.desc() if q.desc else order_col.asc()
    tie = JOBS.c.seq.desc() if q.desc else JOBS.c.seq.asc()
    cols = [JOBS.c[c] for c in JOB_LIST_COLUMNS]
    stmt = sa.select(*cols, wait).where(*cond).order_by(order.nulls_last(), tie)
    rows = _all(store, stmt.offset(q.offset).limit(q.limit))
    total_stmt = sa.select(sa.func.count()).select_from(JOBS).where(*cond)
    with store.engine.connect() as conn:
        total = int(conn.execute(total_stmt).scalar_one())
    return rows, total


def stored_job_ids(store: Store, ids: Iterable[str]) -> set[str]:
    """Which of these job ids the store holds."""
    stmt = sa.select(JOBS.c.id).where(JOBS.c.id.in_(list(ids)))
    return {r["id"] for r in _all(store, stmt)}


def job_trail(
    store: Store, job_id: str, since_s: int, until_s: int | None = None, limit: int = 200
) -> list[AuditEntry]:
    """The audit entries that name this job, oldest first (submission, placements, ends).
    Only entries written between ``since_s`` and ``until_s`` (service time, an hour's
    margin either side) are searched: the seq range is found by bisection on the primary
    key, so a job's page does not scan the whole log."""
    lo = seq_at_time(store, since_s - 3600)
    hi = None if until_s is None else seq_at_time(store, until_s + 3600)
    needle = '%"job":' + json.dumps(job_id) + "%"
    stmt = sa.select(AUDIT).where(AUDIT.c.seq >= lo, AUDIT.c.payload.like(needle))
    if hi is not None:
        stmt = stmt.where(AUDIT.c.seq <= hi)
    return [_entry(r) for r in _all(store, stmt.order_by(AUDIT.c.seq).limit(limit))]


def seq_at_time(store: Store, t: int) -> int:
    """The first audit seq whose time is >= t (one past the head when none is); audit
    times grow with seq, so a bisection over seq finds it in a few key lookups."""
    with store.engine.connect() as conn:
        lo, hi = conn.execute(sa.select(sa.func.min(AUDIT.c.seq), sa.func.max(AUDIT.c.seq))).one()
        if lo is None:
            return 0
        hi += 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = conn.execute(
                sa.select(AUDIT.c.seq, AUDIT.c.time)
                .where(AUDIT.c.seq >= mid)
                .order_by(AUDIT.c.seq)
                .limit(1)
            ).first()
            if row is None or row.time >= t:
                hi = mid
            else:
                lo = int(row.seq) + 1
        return int(lo)


def audit_page(
    store: Store, before_seq: int | None, limit: int, kinds: Iterable[str] = ()
) -> list[AuditEntry]:
    """Newest first, entries with seq < ``before_seq`` (all when None)."""
    stmt = sa.select(AUDIT)
    if before_seq is not None:
        stmt = stmt.where(AUDIT.c.seq < before_seq)
    k = list(kinds)
    if k:
        stmt = stmt.where(AUDIT.c.kind.in_(k))
    return [_entry(r) for r in _all(store, stmt.order_by(AUDIT.c.seq.desc()).limit(limit))]


def _all(store: Store, stmt: sa.Executable) -> list[Row]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def _entry(r: Row) -> AuditEntry:
    return AuditEntry(
        r["seq"], r["time"], r["kind"], json.loads(r["payload"]), r["prev_hash"], r["hash"]
    )
