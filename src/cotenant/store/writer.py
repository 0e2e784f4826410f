"""One writer thread with group commit.

Every write goes through here, so the database never sees two writers from this
process (SQLite allows one at a time anyway) and the audit chain is appended in
one order. Concurrent requests are batched into one transaction: N submissions
cost one commit. Each operation is a function of a ``Tx``; its result (or error)
reaches the caller through a Future once the transaction has committed, and its
``after_commit`` callbacks run then, in order (e.g. handing a job to the engine
only once it is durable).

If an operation raises, the batch is rolled back and its operations are retried
one by one, so one bad request does not fail its neighbours. A batch is first tried
*optimistically* (``Tx.optimistic``): an operation may skip a read that a unique
constraint makes redundant (an idempotency key seen before); if the constraint fires,
the retry one by one is not optimistic and does the read.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

import sqlalchemy as sa

from cotenant.audit import AuditEntry, Chain, Head, canonical_json
from cotenant.store.tables import AUDIT, META

log = logging.getLogger(__name__)
T = TypeVar("T")
AUDIT_HEAD = "audit_head"


class Tx:
    """What an operation sees: the connection, the audit chain, and row buffers that are
    written with one executemany per table at the end of the batch."""

    def __init__(self, conn: sa.Connection, chain: Chain, optimistic: bool = False) -> None:
        self.conn = conn
        self.chain = chain
        self.optimistic = optimistic
        self.pending: dict[Any, Any] = {}  # per-batch scratch (e.g. idempotency keys)
        self._inserts: dict[sa.Table, list[dict[str, Any]]] = {}
        self._audit: list[AuditEntry] = []
        self._after: list[Callable[[], None]] = []

    def insert(self, table: sa.Table, row: dict[str, Any]) -> None:
        self._inserts.setdefault(table, []).append(row)

    def flush_inserts(self) -> None:
        """Write buffered rows now (an operation that reads what it wrote calls this)."""
        for table, rows in self._inserts.items():
            if rows:
                self.conn.execute(sa.insert(table), rows)
        self._inserts.clear()

    def audit(self, time: int, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        entry = self.chain.next(time, kind, payload)
        self._audit.append(entry)
        return entry

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)

    def finish(self) -> list[Callable[[], None]]:
        self.flush_inserts()
        if self._audit:
            self.conn.execute(
                sa.insert(AUDIT),
                [
                    {
                        "seq": e.seq,
                        "time": e.time,
                        "kind": e.kind,
                        "payload": canonical_json(dict(e.payload)),
                        "prev_hash": e.prev_hash,
                        "hash": e.hash,
                    }
                    for e in self._audit
                ],
            )
            self.conn.execute(
                sa.update(META).where(META.c.key == AUDIT_HEAD).values(value=str(self.chain.head))
            )
        return self._after


def read_head(conn: sa.Connection) -> Head:
    value = conn.execute(
        sa.select(META.c.value).where(META.c.key == AUDIT_HEAD)
    ).scalar_one_or_none()
    return Head.parse(value) if value is not None else Head(0, "0" * 64)


class Writer:
    def __init__(self, engine: sa.Engine, max_batch: int = 512) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._q: queue.Queue[tuple[Callable[[Tx], Any], Future[Any]] | None] = queue.Queue()
        with engine.begin() as conn:
            if conn.execute(sa.select(META.c.key).where(META.c.key == AUDIT_HEAD)).first() is None:
                conn.execute(sa.insert(META), {"key": AUDIT_HEAD, "value": str(Head(0, "0" * 64))})
            self.chain = Chain(read_head(conn))
        self._thread: threading.Thread | None = None
        self.commits = 0
        self.ops = 0

    # -- caller side ------------------------------------------------------------------------
    def submit(self, op: Callable[[Tx], T]) -> Future[T]:
        fut: Future[T] = Future()
        if self._thread is None:
            # Not started (bootstrap, tests): run inline.
            self._commit([(op, fut)])
        else:
            self._q.put((op, fut))
        return fut

    def call(self, op: Callable[[Tx], T], timeout: float = 60.0) -> T:
        return self.submit(op).result(timeout)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cotenant-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._commit(batch)
                    return
                batch.append(nxt)
            self._commit(batch)

    def _commit(
        self, batch: list[tuple[Callable[[Tx], Any], Future[Any]]], optimistic: bool = True
    ) -> None:
        head = self.chain.head
        results: list[tuple[Future[Any], Any]] = []
        try:
            with self.engine.begin() as conn:
                tx = Tx(conn, self.chain, optimistic)
                for op, fut in batch:
                    results.append((fut, op(tx)))
                after = tx.finish()
        except Exception as e:
            self.chain.head = head
            if optimistic:
                for single in batch:
                    self._commit([single], optimistic=False)
                return
            if isinstance(e, sa.exc.SQLAlchemyError) and not isinstance(e, sa.exc.IntegrityError):
                log.exception("store write failed")
            batch[0][1].set_exception(e)
            return
        self.commits += 1
        self.ops += len(batch)
        for fn in after:
            try:
                fn()
            except Exception:  # pragma: no cover - a bug in a callback must not stop writes
                log.exception("after-commit callback failed")
        for fut, res in results:
            fut.set_result(res)
