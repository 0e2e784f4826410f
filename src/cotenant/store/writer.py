"""One writer thread with group commit.

Every write goes through here, so the database never sees two writers from this
process (SQLite allows one at a time anyway) and the audit chain is appended in
one order. Concurrent requests are batched into one transaction: N submissions
cost one commit. Each operation is a function of a ``Tx``; its result (or error)
reaches the caller through a Future once the transaction has committed, and its
``after_commit`` callbacks run then, in order (e.g. handing a job to the engine
only once it is durable).

Requests go before the engine: an operation submitted as *durable* (the engine's
changes after a step, often hundreds of rows) is committed in a batch of its own, and
requests waiting at the same time (submissions, contract changes) are committed first,
in their own batch, so that a submission waits for its own commit and not behind the
engine's (bench_live: 660 ms at p99 with the engine's writes in the same batch). The
engine's write is passed over by at most ``OVERTAKE_MAX`` request batches, so a steady
stream of requests cannot hold the engine's changes back for long. Each kind keeps its
order; nothing a request waits on is committed after it (the engine's changes a
request needs, e.g. a cancel's, are waited for on their own future).

If an operation raises, the batch is rolled back and its operations are retried
one by one, so one bad request does not fail its neighbours. A batch is first tried
*optimistically* (``Tx.optimistic``): an operation may skip a read that a unique
constraint makes redundant (an idempotency key seen before); if the constraint fires,
the retry one by one is not optimistic and does the read.

When the store itself fails (``health.is_store_fault``: connection lost, disk full,
read-only file), the writer is *down* until a transaction commits again:

- *durable* operations (the engine's decisions, ``submit(op, durable=True)``) are kept
  and retried, in order, with exponential back-off until they commit; their futures
  resolve only then. Nothing the engine decided is dropped.
- other operations (requests) fail at once with ``StoreUnavailable`` (HTTP 503 with
  ``Retry-After``), without touching the database until the back-off is over.
- with nothing to retry, a no-op write probes the store when the back-off is over.
- a commit whose outcome is unknown (the connection died during COMMIT) is settled by
  reading the audit head back: it is updated in the same transaction, so it tells
  whether the transaction committed. A committed one is not written twice.
- one log line when the episode starts, one a minute while it lasts, one when it ends
  (once the store has worked for a few seconds: a flapping store is one episode).

``COTENANT_STORE_FAULTS=<path>`` (for the fault-injection tests): while that file
exists, every write fails as a lost connection would; if the file says ``lost-commit``,
transactions commit but their acknowledgement is lost (the error comes after COMMIT).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from cotenant.audit.chain import AuditEntry, Chain, Head, canonical_json
from cotenant.model.errors import StoreUnavailable
from cotenant.store.health import Backoff, Episode, is_store_fault, one_line
from cotenant.store.tables import AUDIT, META

log = logging.getLogger(__name__)
T = TypeVar("T")
AUDIT_HEAD = "audit_head"
FAULTS_ENV = "COTENANT_STORE_FAULTS"
STOP_GRACE_S = 5.0  # on stop, how long durable writes are still retried
OVERTAKE_MAX = 4  # request batches that may go before a waiting durable (engine) write


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
        """Write buffered rows now (an operation that reads what it wrote calls this).
        Rows without their table's autoincrement key learn it: the insert returns the
        keys, in the rows' order, and each is set in its row (so what was written can be
        used after the commit without reading it back)."""
        for table, rows in self._inserts.items():
            if not rows:
                continue
            key = table.autoincrement_column
            if key is None or all(key.name in r for r in rows):
                self.conn.execute(sa.insert(table), rows)
                continue
            stmt = sa.insert(table).returning(key, sort_by_parameter_order=True)
            for row, value in zip(rows, self.conn.execute(stmt, rows).scalars(), strict=True):
                row[key.name] = value
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


@dataclass(slots=True)
class _Op:
    fn: Callable[[Tx], Any]
    fut: Future[Any]
    durable: bool = False


@dataclass(slots=True)
class _Unsettled:
    """A transaction that failed during COMMIT: it may have committed. Settled by reading
    the audit head back (``expected``: the head it wrote)."""

    expected: Head
    results: list[tuple[_Op, Any]]
    after: list[Callable[[], None]] = field(default_factory=list)


class Writer:
    def __init__(
        self,
        engine: sa.Engine,
        max_batch: int = 512,
        *,
        backoff: Backoff | None = None,
        faults_file: str | None = None,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._ready = threading.Condition()  # guards the two queues and the stop flag
        self._requests: deque[_Op] = deque()
        self._durable: deque[_Op] = deque()  # the engine's writes
        self._stop_asked = False
        self._overtaken = 0  # request batches committed while a durable write waited
        with engine.begin() as conn:
            if conn.execute(sa.select(META.c.key).where(META.c.key == AUDIT_HEAD)).first() is None:
                conn.execute(sa.insert(META), {"key": AUDIT_HEAD, "value": str(Head(0, "0" * 64))})
            self.chain = Chain(read_head(conn))
        self._thread: threading.Thread | None = None
        self.commits = 0
        self.ops = 0
        self.health = Episode("store writes", log)
        self.backoff = backoff or Backoff(base_s=0.05, cap_s=2.0)
        self.faults_file = faults_file if faults_file is not None else os.environ.get(FAULTS_ENV)
        self.last_commit_wall = time.time()
        self.listeners: list[Callable[[bool], None]] = []  # called with "down" on a change
        self._retry: list[_Op] = []  # durable operations waiting for the store
        self._unsettled: _Unsettled | None = None
        self._retry_settled = False  # settling resolved some queued futures

    # -- caller side ------------------------------------------------------------------------
    @property
    def down(self) -> bool:
        """The last attempt to write failed; no transaction has committed since."""
        return self.health.down

    @property
    def write_failures(self) -> int:
        return self.health.total_failures

    def seconds_since_commit(self) -> float:
        return max(0.0, time.time() - self.last_commit_wall)

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.backoff.wait_s()))

    def unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(
            f"the store cannot take writes now ({self.health.last_error or 'unavailable'}); "
            "nothing was changed, try again",
            self.retry_after_s(),
        )

    def submit(self, op: Callable[[Tx], T], durable: bool = False) -> Future[T]:
        """Queue ``op``; its future gives the result once its transaction committed.
        A durable operation is retried until it commits; any other fails with
        ``StoreUnavailable`` while the store is down."""
        fut: Future[T] = Future()
        item = _Op(op, fut, durable)
        if self._thread is None:
            # Not started (bootstrap, start-up, tests): run inline, once.
            self._commit_inline(item)
        elif not durable and self.down and self.backoff.wait_s() > 0:
            self._refuse(item)  # back off: not even a connection attempt
        else:
            with self._ready:
                (self._durable if durable else self._requests).append(item)
                self._ready.notify()
        return fut

    def call(self, op: Callable[[Tx], T], timeout: float = 60.0) -> T:
        return self.submit(op).result(timeout)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cotenant-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            with self._ready:
                self._stop_asked = True
                self._ready.notify()
            self._thread.join(timeout=STOP_GRACE_S + 30)
            self._thread = None

    def probe(self) -> None:
        """One write that changes nothing; raises if the store cannot take writes."""
        self._check_injected()
        with self.engine.begin() as conn:
            conn.execute(sa.update(META).where(META.c.key == AUDIT_HEAD).values(value=META.c.value))

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch, stopping = self._take()
            self.health.tick()
            if self.down and self.backoff.wait_s() > 0:
                for item in batch:  # not due yet: keep durable work, refuse requests
                    if item.durable:
                        self._retry.append(item)
                    else:
                        self._refuse(item)
            else:
                if self._retry:
                    batch, self._retry = self._retry + batch, []
                if self._unsettled is None or self._settle():
                    if self._retry_settled:  # (only after a commit of unknown outcome)
                        batch = [item for item in batch if not item.fut.done()]
                        self._retry_settled = False
                    if batch:
                        self._commit(batch)
                    elif self.down:
                        self._probe()
                else:
                    self._defer(batch)
            if stopping:
                self._drain_on_stop()
                return

    def _take(self) -> tuple[list[_Op], bool]:
        """The next batch (waiting at most until the next retry is due) and whether the
        writer is asked to stop (then everything still queued)."""
        waits = [self.backoff.wait_s()] if self.down else []
        if (tick := self.health.next_tick_s()) is not None:
            waits.append(tick)
        timeout = min(waits) if waits else None
        with self._ready:
            if not (self._requests or self._durable or self._stop_asked) and timeout != 0:
                self._ready.wait(timeout)
            if self._stop_asked:
                batch = [*self._requests, *self._durable]
                self._requests.clear()
                self._durable.clear()
                self._stop_asked = False
                return batch, True
            return self._next_batch(), False

    def _next_batch(self) -> list[_Op]:
        """Requests first, in a batch of their own, unless a durable write has already
        been passed over ``OVERTAKE_MAX`` times; then the durable writes (lock held)."""
        requests, durable = self._requests, self._durable
        if requests and (not durable or self._overtaken < OVERTAKE_MAX):
            if durable:
                self._overtaken += 1
            return [requests.popleft() for _ in range(min(len(requests), self.max_batch))]
        self._overtaken = 0
        return [durable.popleft() for _ in range(min(len(durable), self.max_batch))]

    def _drain_on_stop(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        while self._retry and time.monotonic() < deadline:
            time.sleep(min(self.backoff.wait_s(), max(0.0, deadline - time.monotonic())))
            batch, self._retry = self._retry, []
            if self._settle():
                batch = [item for item in batch if not item.fut.done()]
                self._retry_settled = False
                if batch:
                    self._commit(batch)
            else:
                self._defer(batch)
        self.health.tick(force=True)
        if self._retry:
            log.warning(
                "stopping with %d engine writes not committed (store unavailable); "
                "the next start reconciles the store with the backend",
                len(self._retry),
            )
            for item in self._retry:
                item.fut.set_exception(self.unavailable())
            self._retry = []

    def _injected(self) -> str | None:
        """The injected fault now: None, "down" or "lost-commit"."""
        if self.faults_file is None:
            return None
        try:
            with open(self.faults_file) as f:
                mode = f.read().strip()
        except FileNotFoundError:
            return None
        return mode if mode == "lost-commit" else "down"

    def _check_injected(self, after_commit: bool = False) -> None:
        mode = self._injected()
        if mode is not None and (mode == "lost-commit") == after_commit:
            raise sa.exc.OperationalError(
                "COMMIT", None, ConnectionError(f"injected store fault ({FAULTS_ENV}: {mode})")
            )

    def _refuse(self, item: _Op) -> None:
        self.health.refuse()
        item.fut.set_exception(self.unavailable())

    def _defer(self, batch: list[_Op]) -> None:
        """The store failed before ``batch`` was tried: durable work waits, requests fail."""
        for item in batch:
            if item.durable:
                self._retry.append(item)
            else:
                self._refuse(item)

    def _failed(self, e: BaseException) -> None:
        was_down = self.down
        delay = self.backoff.failed()
        if not was_down:
            self._notify(True)  # (before readiness says so: the engine holds first)
        self.health.failed(e, delay)

    def _succeeded(self) -> None:
        self.last_commit_wall = time.time()
        self.backoff.reset()
        if self.down:
            self.health.ok()
            self._notify(False)

    def _notify(self, down: bool) -> None:
        for fn in self.listeners:
            try:
                fn(down)
            except Exception:  # pragma: no cover - a listener's bug must not stop writes
                log.exception("store state listener failed")

    def _probe(self) -> None:
        try:
            self.probe()
        except Exception as e:
            if not is_store_fault(e):
                raise
            self._failed(e)
        else:
            self._succeeded()

    def _settle(self) -> bool:
        """Settle a transaction whose COMMIT failed: if the audit head it wrote is in the
        store, it committed (its durable operations are done, its after-commit callbacks
        run now). False if the store cannot be read."""
        u = self._unsettled
        if u is None:
            return True
        try:
            self._check_injected()
            with self.engine.connect() as conn:
                head = read_head(conn)
        except Exception as e:
            if not is_store_fault(e):
                raise
            self._failed(e)
            return False
        self._unsettled = None
        if head != u.expected:
            return True
        self._retry_settled = True
        self.chain.head = head
        log.warning("a transaction whose commit failed had committed (audit head %s)", head)
        self._succeeded()
        self._run_after(u.after)
        for item, result in u.results:
            if not item.fut.done():
                item.fut.set_result(result)
        return True

    def _commit_inline(self, item: _Op) -> None:
        head = self.chain.head
        try:
            self._check_injected()
            with self.engine.begin() as conn:
                tx = Tx(conn, self.chain)
                result = item.fn(tx)
                after = tx.finish()
        except Exception as e:
            self.chain.head = head
            item.fut.set_exception(StoreUnavailable(one_line(e)) if is_store_fault(e) else e)
            return
        self.commits += 1
        self.ops += 1
        self.last_commit_wall = time.time()
        self._run_after(after)
        item.fut.set_result(result)

    def _commit(self, batch: list[_Op], optimistic: bool = True) -> None:
        head = self.chain.head
        results: list[tuple[_Op, Any]] = []
        tx: Tx | None = None
        try:
            self._check_injected()
            with self.engine.begin() as conn:
                tx = Tx(conn, self.chain, optimistic)
                for item in batch:
                    results.append((item, item.fn(tx)))
                after = tx.finish()
            self._check_injected(after_commit=True)
        except Exception as e:
            wrote = self.chain.head
            self.chain.head = head
            if is_store_fault(e):
                if tx is not None and wrote != head and len(results) == len(batch):
                    self._unsettled = _Unsettled(wrote, results, tx._after)
                self._failed(e)
                self._defer(batch)
                return
            if optimistic:
                for i, single in enumerate(batch):
                    self._commit([single], optimistic=False)
                    if self.down:  # the store failed meanwhile: the rest waits or fails
                        self._defer(batch[i + 1 :])
                        return
                return
            batch[0].fut.set_exception(e)
            return
        self.commits += 1
        self.ops += len(batch)
        self._succeeded()
        self._run_after(after)
        for item, res in results:
            item.fut.set_result(res)

    @staticmethod
    def _run_after(after: list[Callable[[], None]]) -> None:
        for fn in after:
            try:
                fn()
            except Exception:  # pragma: no cover - a bug in a callback must not stop writes
                log.exception("after-commit callback failed")
