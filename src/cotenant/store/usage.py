"""Usage aggregated in SQL: GPU-seconds per tenant, own and borrowed, over a window.

The same figure as ``UsageLedger.gpu_seconds`` over ``Service.ledger_now`` (the stored
ledger plus the open interval of every running job, closed at ``now``), computed by the
database in one statement (a ``UNION ALL`` of the two, grouped), so an operator call
costs one scan of the ledger in SQL rather than one Python object per record.
``tests/integration/test_store_usage.py`` checks the two agree on SQLite and PostgreSQL.

Clipping to ``[t0, t1)`` is exact integer arithmetic, written with ``CASE`` (SQLite's
``max(a, b)`` is PostgreSQL's ``GREATEST``; ``CASE`` is both).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cotenant.store.tables import JOBS, LEDGER

RUNNING_STATES = ("running", "reclaiming")
Window = tuple[int | None, int | None]


def _int(value: int) -> sa.ColumnElement[int]:
    return sa.cast(sa.literal(value, sa.BigInteger()), sa.BigInteger())


def _overlap(
    lo: sa.ColumnElement[Any], hi: sa.ColumnElement[Any], t0: int | None, t1: int | None
) -> sa.ColumnElement[int]:
    """Seconds of ``[lo, hi)`` inside ``[t0, t1)`` (None: unbounded), never negative."""
    if t0 is not None:
        lo = sa.case((lo > _int(t0), lo), else_=_int(t0))
    if t1 is not None:
        hi = sa.case((hi < _int(t1), hi), else_=_int(t1))
    return sa.case((hi > lo, hi - lo), else_=0)


def usage_statement(tenant: str | None, t0: int | None, t1: int | None, now: int) -> sa.Select[Any]:
    """``(tenant, borrowed, gpu_seconds)`` rows: the ledger's closed intervals plus the
    open ones of running jobs (``[usage_since_s, now)``, as ``Service.ledger_now``), on
    the lease (jobs sent to a pool are metered apart).

    Each side is grouped before the union: the ledger's side then reads the covering
    index ``ix_ledger_usage`` in (tenant, borrowed) order, without a sort."""
    closed_gs = LEDGER.c.gpus * _overlap(LEDGER.c.start_s, LEDGER.c.end_s, t0, t1)
    closed = sa.select(LEDGER.c.tenant, LEDGER.c.borrowed, sa.func.sum(closed_gs).label("gs"))
    if tenant is not None:
        closed = closed.where(LEDGER.c.tenant == tenant)
    if t1 is not None:
        closed = closed.where(LEDGER.c.start_s < _int(t1))
    if t0 is not None:
        closed = closed.where(LEDGER.c.end_s > _int(t0))
    open_gs = JOBS.c.gpus * _overlap(JOBS.c.usage_since_s, _int(now), t0, t1)
    open_ = sa.select(JOBS.c.tenant, JOBS.c.borrowed, sa.func.sum(open_gs).label("gs")).where(
        JOBS.c.state.in_(RUNNING_STATES),
        JOBS.c.usage_since_s.is_not(None),
        JOBS.c.usage_since_s < _int(now),
        JOBS.c.nodes.is_not(None),
        JOBS.c.node_gpus.is_not(None),
        JOBS.c.route.is_(None),  # (a job on a pool is metered on the pool's terms)
    )
    if tenant is not None:
        open_ = open_.where(JOBS.c.tenant == tenant)
    both = sa.union_all(
        closed.group_by(LEDGER.c.tenant, LEDGER.c.borrowed),
        open_.group_by(JOBS.c.tenant, JOBS.c.borrowed),
    ).subquery()
    return sa.select(both.c.tenant, both.c.borrowed, sa.func.sum(both.c.gs).label("gs")).group_by(
        both.c.tenant, both.c.borrowed
    )


def usage_totals(
    engine: sa.Engine, tenant: str | None, t0: int | None, t1: int | None, now: int
) -> dict[tuple[str, bool], int]:
    """GPU-seconds per (tenant, borrowed) inside ``[t0, t1)``, one statement (one snapshot)."""
    with engine.connect() as conn:
        rows = conn.execute(usage_statement(tenant, t0, t1, now)).all()
    out: dict[tuple[str, bool], int] = {}
    for t, borrowed, gs in rows:
        key = (str(t), bool(borrowed))
        out[key] = out.get(key, 0) + int(gs or 0)
    return out


class StoredUsage:
    """A ``UsageSource`` (``metering.ledger``) answered by the database: the usage of
    ``tenant`` (None: all) as of ``now``. One query per distinct window, remembered."""

    def __init__(self, engine: sa.Engine, tenant: str | None, now: int) -> None:
        self.engine = engine
        self.tenant = tenant
        self.now = now
        self._totals: dict[Window, dict[tuple[str, bool], int]] = {}

    def totals(self, start_s: int | None, end_s: int | None) -> dict[tuple[str, bool], int]:
        window = (start_s, end_s)
        found = self._totals.get(window)
        if found is None:
            found = usage_totals(self.engine, self.tenant, start_s, end_s, self.now)
            self._totals[window] = found
        return found

    def gpu_seconds(
        self,
        tenant: str | None = None,
        start_s: int | None = None,
        end_s: int | None = None,
        borrowed: bool | None = None,
    ) -> int:
        return sum(
            gs
            for (t, b), gs in self.totals(start_s, end_s).items()
            if (tenant is None or t == tenant) and (borrowed is None or b == borrowed)
        )
