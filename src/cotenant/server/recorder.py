"""The store recorder: what the engine decides, written to the store as it goes.

After every engine step the decisions it emitted are written in one transaction: the
jobs' new state, placement and times, the new usage-ledger records, the runs' attempts,
and one audit entry per decision. The store is therefore a consistent prefix of the
engine's history (``server/restore.py`` rebuilds the engine from it).

Store faults: the engine's writes are *durable* operations of the writer, retried with
back-off until they commit; one is in flight at a time and what the engine decides
meanwhile stays buffered here and goes in the next one, so nothing is dropped and the
store stays a prefix.

The recorder also keeps the job book (``server/readmodel.py``) in step with the store,
commit by commit, on the writer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

from cotenant.cluster.state import Placement
from cotenant.engine.clock import WallClock
from cotenant.engine.core import Engine
from cotenant.engine.jobs import JobRun
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.model.errors import StoreUnavailable
from cotenant.model.jobs import JobState
from cotenant.server.readmodel import JobBook
from cotenant.store import repo
from cotenant.store.health import is_store_fault, one_line
from cotenant.store.mapping import placement_columns
from cotenant.store.repo import Row, Store
from cotenant.store.tables import JOBS
from cotenant.store.writer import Tx

log = logging.getLogger("cotenant.server.service")
T = TypeVar("T")
JOB_COLUMNS = frozenset(JOBS.c.keys())  # what a row needs to go to the book as written
BOOK_RETRY_S = 5.0  # after a failed read-back, read the whole book again at most this often
DURABLE_WAIT_S = 10.0  # how long a request waits for the engine's changes to commit
TERMINAL = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
# Engine decisions that are audited (submissions and contract changes are audited by the
# API operations themselves, with their full content).
AUDITED = {
    "hold",
    "release",
    "dependency-never-met",
    "place",
    "reclaim",
    "preempt",
    "reject",
    "cancel",
    "end",
    "retag",
    "node-health",
    "interrupt",
    "route",
}


class RecordingLedger(UsageLedger):
    """The engine's ledger, passing each new record on to be stored."""

    def __init__(self, on_append: Callable[[UsageRecord], None]) -> None:
        super().__init__()
        self._on_append = on_append

    def append(self, record: UsageRecord) -> None:
        super().append(record)
        self._on_append(record)


class Recorder:
    """Buffers the engine's decisions (an engine sink, lock held) and writes them in one
    durable transaction per flush; counts the writes queued or committing (``writing``);
    keeps the job book in step with what was committed."""

    def __init__(self, store: Store, engine: Engine, clock: WallClock, book: JobBook) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock
        # Every stored job as ready JSON, refreshed after each commit that wrote jobs:
        # what the hot reads are served from (server/readmodel.py, api/fastread.py).
        self.book = book
        self._dirty: set[str] = set()
        self._audit_buf: list[tuple[int, str, dict[str, Any]]] = []
        self._ledger_buf: list[UsageRecord] = []
        self._attempt_buf: list[tuple[str, Row]] = []
        self._ended_why: dict[str, tuple[str, str]] = {}  # how a job's last run ended
        self.usage_since: dict[str, int] = {}  # running jobs: since when usage is open
        self._inflight: Future[None] | None = None  # the engine's write being committed
        self._writes = 0  # writes queued or committing: readers let them go first
        self._writes_lock = threading.Lock()
        self._book_tried = 0.0  # when the book was last read whole after a failure
        engine.ledger = RecordingLedger(self._ledger_buf.append)
        # With pools (server/overflow.py): the engine a job is on, why it waits, the
        # pools' engines by id (name, offset of their nodes in the server's node space),
        # their usage records and the routing decisions not yet written.
        self.engine_of: Callable[[str], Engine] = lambda job_id: engine
        self.why: Callable[[str], tuple[str, str]] = engine.why
        self._pools: dict[int, tuple[str, int]] = {}
        self._pool_ledger_buf: list[tuple[str, UsageRecord]] = []
        self._route_buf: list[dict[str, Any]] = []

    def add_pool(self, name: str, engine: Engine, offset: int) -> None:
        """A pool's engine: its usage goes to the pool ledger, its nodes after ``offset``."""
        self._pools[id(engine)] = (name, offset)

        def append(r: UsageRecord) -> None:
            nodes = tuple(n + offset for n in r.nodes)
            self._pool_ledger_buf.append((name, replace(r, nodes=nodes)))

        engine.ledger = RecordingLedger(append)

    # -- the engine's decisions -------------------------------------------------------------
    def on_decision(self, ev: dict[str, Any], source: Engine | None = None) -> None:
        """An engine sink (lock held): buffer what the decision changes in the store. A
        decision of ``source`` about a job that has left it for a pool is not the job's."""
        kind = ev.get("event", "")
        job = ev.get("job")
        t = int(ev.get("t", self.clock.now()))
        if isinstance(job, str) and source is not None and self.engine_of(job) is not source:
            self._left(kind, job, t, source)
            return
        if kind == "route":
            self._route_buf.append(ev)
        if isinstance(job, str):
            self._dirty.add(job)
            if kind in ("place", "retag"):
                self.usage_since[job] = t
            elif kind in ("end", "preempt", "cancel", "reject", "interrupt"):
                self.usage_since.pop(job, None)
            self._note_attempt(kind, job, t, ev)
        if kind in AUDITED:
            payload = {k: v for k, v in ev.items() if k not in ("t", "event")}
            self._audit_buf.append((t, kind, payload))

    def _left(self, kind: str, job: str, t: int, source: Engine) -> None:
        """``source`` cancelled a job that moved to a pool (lock held): a run it had there
        (a migration at its checkpoint) ends as migrated."""
        run = source.jobs.get(job)
        if kind != "cancel" or run is None or run.attempt < 1:
            return
        self.usage_since.pop(job, None)
        to = self._pools.get(id(self.engine_of(job)), ("another provider", 0))[0]
        end = {"end_s": t, "outcome": "migrated", "exit_code": None, "detail": f"moved to {to}"}
        self._attempt_buf.append(("end", {"job_id": job, "attempt": run.attempt, **end}))

    def _note_attempt(self, kind: str, job: str, t: int, ev: Mapping[str, Any]) -> None:
        """A run starting or ending becomes a change to the job's attempts (lock held)."""
        engine = self.engine_of(job)
        run = engine.jobs.get(job)
        if run is None:
            return
        key = {"job_id": job, "attempt": run.attempt}
        if kind == "place" and run.placement is not None:
            cols = placement_columns(self.global_placement(engine, run.placement))
            start = {"nodes": cols["nodes"], "node_gpus": cols["node_gpus"], "start_s": t}
            end = {"end_s": None, "outcome": None, "exit_code": None, "detail": ""}
            self._attempt_buf.append(("start", {**key, **start, **end}))
            return
        if kind == "end":
            code = int(ev.get("exit_code", 0))
            outcome, detail = attempt_outcome(code)
            self._ended_why[job] = (outcome, detail or ("" if code == 0 else exit_text(code)))
        elif kind == "preempt":
            code, outcome, detail = None, "preempted", "reclaimed by its owner"
        elif kind == "interrupt":
            cause = str(ev.get("cause", ""))
            # (a run the backend handed back unstarted is queued again, not failed)
            outcome = "not-started" if cause.startswith("not started: ") else "node-failure"
            code, detail = None, cause[:200]
        elif kind == "cancel":
            code, outcome, detail = None, "cancelled", ""
            self._ended_why[job] = ("cancelled", "by request")
        else:
            return
        self._attempt_buf.append(
            ("end", {**key, "end_s": t, "outcome": outcome, "exit_code": code, "detail": detail})
        )

    def _buffered(self) -> bool:
        return bool(
            self._dirty
            or self._audit_buf
            or self._ledger_buf
            or self._attempt_buf
            or self._pool_ledger_buf
            or self._route_buf
        )

    def flush(self) -> Future[None] | None:
        """Write what the engine decided since the last flush (lock held): one durable
        transaction, retried until it commits. While one is in flight, new changes stay
        buffered (the future returned is the one in flight; its end wakes the engine,
        which flushes them)."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            return inflight
        if not self._buffered():
            return None
        now = self.clock.now()
        rows = [
            self.job_columns(eng.jobs[j], now)
            for j in sorted(self._dirty)
            if j in (eng := self.engine_of(j)).jobs
        ]
        audit, ledger = self._audit_buf[:], self._ledger_buf[:]
        attempts = self._attempt_buf[:]
        pool_ledger, routes = self._pool_ledger_buf[:], [_route_row(e) for e in self._route_buf]
        self._dirty.clear()
        self._audit_buf.clear()
        self._ledger_buf.clear()
        self._attempt_buf.clear()
        self._pool_ledger_buf.clear()
        self._route_buf.clear()

        def op(tx: Tx) -> None:
            repo.update_jobs(tx, rows)
            repo.write_attempts(tx, attempts)
            repo.append_ledger(tx, ledger)
            repo.append_pool_ledger(tx, pool_ledger)
            repo.append_routes(tx, routes)
            tx.after_commit(lambda: self._update_book(rows, attempts))
            for t, kind, payload in audit:
                tx.audit(t, kind, payload)

        fut = self.write(op, durable=True)
        self._inflight = fut
        fut.add_done_callback(self._flushed)
        return fut

    def _flushed(self, fut: Future[None]) -> None:
        exc = fut.exception()
        if exc is not None and not isinstance(exc, StoreUnavailable):
            log.error("engine changes not written: %r", exc)
        if self._buffered():
            self.clock.wake()  # the engine thread flushes what came meanwhile

    def flush_all(self, timeout: float = DURABLE_WAIT_S) -> None:
        """Until everything the engine decided so far is committed (lock held)."""
        deadline = time.monotonic() + timeout
        while (fut := self.flush()) is not None:
            try:
                fut.result(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise self.store.writer.unavailable() from None

    def job_columns(self, run: JobRun, now: int) -> Row:
        """The stored columns of a job the engine holds, as of now."""
        live = run.state in (JobState.RUNNING, JobState.RECLAIMING)
        reason, detail = run.reason, run.reason_detail
        if run.state is JobState.PENDING:  # its own reason, or its tenant's wait
            reason, detail = self.why(run.id)
        elif run.state in TERMINAL and run.id in self._ended_why:  # how it ended, not
            reason, detail = self._ended_why[run.id]  # the reason it was placed with
        engine = self.engine_of(run.id)
        pool = self._pools.get(id(engine)) if self._pools else None
        return {
            "id": run.id,
            "state": run.state.value,
            "reason": reason[:64],
            "reason_detail": detail[:500],
            **placement_columns(self.global_placement(engine, run.placement) if live else None),
            "borrowed": bool(run.borrowed and live),
            "start_s": run.start_s if live else None,
            "first_start_s": run.first_start_s,
            "usage_since_s": self.usage_since.get(run.id) if live else None,
            "end_s": run.end_s,
            "attempt": run.attempt,
            "work_saved_s": run.work_saved_s,
            "preemptions": run.preemptions,
            "updated_s": now,
            "route": None if pool is None else pool[0],
        }

    def global_placement(self, engine: Engine, p: Placement | None) -> Placement | None:
        """A placement in the server's node space (a pool's nodes follow the lease's)."""
        pool = self._pools.get(id(engine)) if self._pools else None
        if p is None or pool is None:
            return p
        return Placement(tuple(n + pool[1] for n in p.nodes), p.gpus)

    # -- writes, counted ----------------------------------------------------------------------
    def write(self, op: Callable[[Tx], T], durable: bool = False) -> Future[T]:
        """``writer.submit``, counted while queued or committing (``writing``)."""
        with self._writes_lock:
            self._writes += 1
        fut = self.store.writer.submit(op, durable=durable)
        fut.add_done_callback(self._written)
        return fut

    def _written(self, _fut: Future[Any]) -> None:
        with self._writes_lock:
            self._writes -= 1

    @property
    def writing(self) -> bool:
        """A submission or the engine's changes are being written: the hot reads, which
        need no write, let the writer have the interpreter first (api/fastread.py)."""
        return self._writes > 0 and not self.store.writer.down  # (down: retried later)

    # -- the job book ---------------------------------------------------------------------------
    def load_book(self) -> None:
        """Read every stored job into the book."""
        rows = self.store.jobs(limit=1 << 62)
        self.book.load(rows, self.store.attempts(r["id"] for r in rows))

    def add_to_book(self, rows: list[Row]) -> None:
        """(Writer thread, after a commit that stored new jobs.) Put them in the book as
        written: the rows learnt their ``seq`` from the insert (reading them back was an
        eighth of the writer's time, on every submission's path). Were a row short of a
        column (one the store fills in), every job stored after the newest the book has
        is read back instead (one writer: commit order is seq order)."""
        book = self.book
        try:
            if book.ready and rows and all(r.keys() >= JOB_COLUMNS for r in rows):
                book.add(rows)
            elif book.ready:
                book.add(self.store.jobs(after_seq=book.last_seq, limit=1 << 62))
            else:
                self._reload_book()
        except Exception as e:
            self._book_failed(e)

    def _update_book(self, rows: list[Row], attempts: list[tuple[str, Row]]) -> None:
        """(Writer thread, after the engine's changes committed.) The same changes to
        the book; jobs it cannot apply them to are read back whole."""
        book = self.book
        try:
            if book.ready:
                missing = book.update(rows, attempts)
                if missing:
                    book.refresh(self.store.jobs_by_id(missing), self.store.attempts(missing))
            else:
                self._reload_book()
        except Exception as e:
            self._book_failed(e)

    def _reload_book(self) -> None:
        """Read the whole book again after a read-back failed (at most every few s)."""
        if time.monotonic() - self._book_tried < BOOK_RETRY_S:
            return
        self._book_tried = time.monotonic()
        self.load_book()
        log.warning("job book read again: the hot reads are served from memory again")

    def _book_failed(self, e: Exception) -> None:
        """A read-back failed: the book is behind the store. Until it is read again
        whole, every read goes to the store (which answers 503 while it is down)."""
        self.book.ready = False
        self._book_tried = time.monotonic()
        if is_store_fault(e):
            log.warning("job book not read back (%s): reads go to the store", one_line(e))
        else:
            log.exception("job book not read back: reads go to the store")


def _route_row(ev: Mapping[str, Any]) -> Row:
    """A ``route`` decision as its ``job_routes`` row."""
    from cotenant.server.overflow import Routed

    t = int(ev["t"])
    rec = Routed(
        str(ev["job"]),
        str(ev["tenant"]),
        str(ev["provider"]),
        str(ev["reason"]),
        str(ev["detail"]),
        t,
        int(ev.get("arrives_s", t)),
        int(ev.get("cost_micro", 0)),
        bool(ev.get("overflow", False)),
        int(ev.get("data_gb", 0)),
    )
    return rec.row()


def exit_text(code: int) -> str:
    """``exit code 3``, or ``killed by SIGKILL`` for 128 + 9 (the shell's convention)."""
    import signal

    if 128 < code < 128 + 65:
        try:
            return f"killed by {signal.Signals(code - 128).name} (exit code {code})"
        except ValueError:
            pass
    return f"exit code {code}"


def attempt_outcome(exit_code: int) -> tuple[str, str]:
    """(outcome, detail) of a run that ended with ``exit_code`` (the backends' codes:
    the command's status, 128 + a signal, -1 lost, -2 never started)."""
    from cotenant.backends.local import EXIT_LOST, EXIT_NOT_STARTED

    if exit_code == 0:
        return "completed", ""
    if exit_code == EXIT_LOST:
        return "lost", "the run vanished and left no exit status"
    if exit_code == EXIT_NOT_STARTED:
        return "not-started", "the run could not be launched (see its err log)"
    return "failed", ""
