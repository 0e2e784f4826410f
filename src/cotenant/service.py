"""The live runner: the engine on the wall clock, behind a lock, persisted as it goes.

Threads:
- the **engine thread** runs ``Engine.run`` holding ``lock``; the clock releases the lock
  while it waits, so API calls that need the engine (cancel, why, contracts) get in
  between steps. Steps are at least ``min_step_s`` apart: a burst of submissions makes
  one scheduling cycle, not one each.
- the **writer thread** (``store.writer``) commits every write, batching concurrent ones.
- API threads: submissions never take the engine lock. A submission is committed to the
  store (with its audit entry) and only then handed to the engine through an inbox
  that the engine drains when it wakes. Nothing accepted is lost on a crash, and the
  submit latency does not depend on how long a cycle takes.

After every engine step the decisions it emitted are written in one transaction: the
jobs' new state, placement and times, the new usage-ledger records, and one audit entry
per decision. The store is therefore a consistent prefix of the engine's history, and
``start`` rebuilds the engine from it (``engine/restore.py``), reconciled with what the
backend reports.

Store faults: the engine's writes are *durable* operations of the writer, retried with
back-off until they commit; one is in flight at a time and what the engine decides
meanwhile stays buffered here and goes in the next one, so nothing is dropped and the
store stays a prefix. While the store cannot take writes the engine starts nothing new
(its pending jobs say ``store-unavailable``); running work goes on, and its ends are
recorded when the store is back. Requests that need a write answer 503.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cotenant.api.keys import KeyRing, Principal, Role
from cotenant.api.readmodel import JobBook
from cotenant.api.settings import Settings
from cotenant.audit.chain import canonical_json
from cotenant.backends import BACKENDS, get_backend
from cotenant.backends.base import Backend
from cotenant.bootstrap import (
    CLOCK_META,
    ENERGY_META,
    IssuedKey,
    make_key,
    store_contract,
    store_key,
)
from cotenant.cluster.state import Health, Placement
from cotenant.cluster.topology import Topology
from cotenant.contracts.schema import parse_contract, validate_contracts
from cotenant.engine.clock import WallClock
from cotenant.engine.core import Engine
from cotenant.engine.jobs import JobRun
from cotenant.engine.keepup import KeepUp
from cotenant.engine.restore import ReportedRun, SavedJob, restore_jobs
from cotenant.metering.energy import SiteEnergy, topology_facility_power_w
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.metering.rating import Invoice, rate_month
from cotenant.metering.run import parse_metering_settings
from cotenant.model import dependencies
from cotenant.model.accelerators import CATALOGUE
from cotenant.model.contracts import Contract, Tenant
from cotenant.model.errors import (
    Conflict,
    InvariantBroken,
    NotFound,
    SpecError,
    StoreUnavailable,
    Unprocessable,
)
from cotenant.model.jobs import Constraint, JobKind, JobSpec, JobState
from cotenant.scheduler.decisions import Reason
from cotenant.scheduler.policies import get_policy
from cotenant.store import repo
from cotenant.store.health import is_store_fault, one_line
from cotenant.store.mapping import (
    pending_job_row,
    placement_columns,
    placement_from_row,
    spec_from_row,
)
from cotenant.store.repo import Row, Store
from cotenant.store.usage import StoredUsage
from cotenant.store.writer import Tx

log = logging.getLogger("cotenant.service")
T = TypeVar("T")
FOREVER = 1 << 62
_BOOK = "job-book"  # Tx.pending: the batch stored new jobs (read back once, after commit)
BOOK_RETRY_S = 5.0  # after a failed read-back, read the whole book again at most this often
DURABLE_WAIT_S = 10.0  # how long a request waits for the engine's changes to commit
RUNNING_STATES = ("running", "reclaiming")
TERMINAL = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
# Engine decisions that are audited (submissions and contract changes are audited by the
# API operations themselves, with their full content).
AUDITED = {
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
}


class LiveClock(WallClock):
    """The wall clock, releasing the engine lock while it waits. After waiting it runs
    ``on_wake`` (with the lock held again) so the engine takes new submissions.

    Steps are at least ``min_step_s`` apart, so that a burst of submissions makes one
    cycle; but a reclaim deadline (``next_deadline``) is not held back by that gap: the
    engine steps at the deadline itself, as the contract's grace period ends then (at
    speed 60 the gap alone, 50 ms, was up to 3 s of lateness)."""

    def __init__(
        self,
        start_s: int,
        speed: float,
        lock: threading.Lock,
        on_wake: Callable[[], None],
        min_step_s: float,
        next_deadline: Callable[[], int | None] = lambda: None,
    ) -> None:
        super().__init__(start_s, speed)
        self.lock = lock
        self.on_wake = on_wake
        self.min_step_s = min_step_s
        self.next_deadline = next_deadline
        self._last = 0.0

    def wait_until(self, t: int) -> int:
        self.lock.release()
        try:
            gap = self.min_step_s - (time.monotonic() - self._last)
            if gap > 0:
                deadline = self.next_deadline()
                if deadline is not None and deadline <= t:  # the next event is a deadline
                    due_in = self._wall0 + (deadline - self._sim0) / self.speed - time.time()
                    gap = min(gap, due_in)
                if gap > 0:
                    time.sleep(gap)
            super().wait_until(t)
        finally:
            self.lock.acquire()
        self._last = time.monotonic()
        self.on_wake()
        return self.now()


class RecordingLedger(UsageLedger):
    """The engine's ledger, passing each new record on to be stored."""

    def __init__(self, on_append: Callable[[UsageRecord], None]) -> None:
        super().__init__()
        self._on_append = on_append

    def append(self, record: UsageRecord) -> None:
        super().append(record)
        self._on_append(record)


@dataclass(frozen=True, slots=True)
class Status:
    """The engine's totals after its last step; read without the lock."""

    t: int = 0
    allocated: Mapping[str, int] = field(default_factory=dict)
    owned: Mapping[str, int] = field(default_factory=dict)
    borrowed: Mapping[str, int] = field(default_factory=dict)
    entitled: Mapping[str, int] = field(default_factory=dict)
    pending: int = 0
    running: int = 0
    pending_by_tenant: Mapping[str, int] = field(default_factory=dict)  # queued in the engine
    running_by_tenant: Mapping[str, int] = field(default_factory=dict)  # running, reclaiming
    free_gpus: int = 0
    healthy_nodes: int = 0
    decisions: int = 0  # places, reclaims, preempts, rejects, ends, ...: not waits
    waits: int = 0  # "still waiting" verdicts, counted apart
    cycles: int = 0
    decisions_per_s: float = 0.0
    next_due_s: int = FOREVER  # the engine's next event after this step
    # The engine's own guarantee check: jobs inside an entitlement that started later than
    # the grace period allows, and by how many seconds in all, per tenant.
    violation_jobs: Mapping[str, int] = field(default_factory=dict)
    violation_s: Mapping[str, int] = field(default_factory=dict)
    power_w: float = 0.0  # facility power now (the cap's model)
    power_cap_w: float | None = None


def new_job_id() -> str:
    """Sortable by submission time: milliseconds, then randomness."""
    return f"job-{time.time_ns() // 1_000_000:012x}-{secrets.token_hex(5)}"


class Service:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        spec = store.cluster_spec()
        if spec is None:
            raise SpecError("db", "the store holds no cluster; start with --demo or --scenario")
        self.topo = Topology(spec)
        self.lock = threading.Lock()
        self.inbox: deque[JobSpec] = deque()
        self._deadlines: list[int] = []  # reclaim deadlines not yet reached (a heap)
        self.clock = LiveClock(
            self._anchor_clock(),
            settings.speed,
            self.lock,
            self._step_begins,
            settings.min_step_s,
            lambda: self._deadlines[0] if self._deadlines else None,
        )
        self.contracts: dict[str, Contract] = store.contracts()
        self.tenant_names: set[str] = {r["name"] for r in store.tenants()}
        self.engine = Engine(
            self.topo,
            self.contracts.values(),
            get_policy(settings.policy),
            self._backend(),
            self.clock,
            tenants=sorted(self.tenant_names),
        )
        # The site's energy figures (the seeding scenario's [energy]): its power cap binds
        # the live scheduler exactly as it binds the twin.
        raw_energy = store.meta(ENERGY_META)
        self.engine.deps.lookup = store.job_tenant_state  # jobs ended before a restart
        self.engine.deps.on_never_met = dependencies.OnNeverMet(settings.dependency_never_met)
        self.engine.site = parse_metering_settings(
            json.loads(raw_energy) if raw_energy else None
        ).site
        self.keys = KeyRing(store.active_keys())
        self.status = Status(t=self.clock.now())
        self.keepup = KeepUp()
        self._step_began = time.monotonic()
        self._lag_at_start = 0.0
        self._inbox_since: float | None = None
        self.stepping = False  # the engine is in a step: readers let it finish first
        self._writes = 0  # writes queued or committing: readers let them go first too
        self._writes_lock = threading.Lock()
        self.error: str | None = None
        self.submitted = 0
        # Engine jobs that an in-process owner runs without storing them (the demo's
        # service replicas, owned by its autoscaler): the invariant check counts their
        # GPUs but does not look for them in the store.
        self.unstored_job: Callable[[str], bool] = lambda job_id: False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._admin = threading.Lock()  # serialises contract and tenant changes
        self._dirty: set[str] = set()
        self._audit_buf: list[tuple[int, str, dict[str, Any]]] = []
        self._ledger_buf: list[UsageRecord] = []
        self._inflight: Future[None] | None = None  # the engine's write being committed
        self._attempt_buf: list[tuple[str, Row]] = []
        self._ended_why: dict[str, tuple[str, str]] = {}  # how a job's last run ended
        self._usage_since: dict[str, int] = {}
        self._rates: deque[tuple[float, int]] = deque(maxlen=120)
        self.engine.ledger = RecordingLedger(self._ledger_buf.append)
        # Every stored job as ready JSON, refreshed after each commit that wrote jobs:
        # what the hot reads are served from (api/readmodel.py, api/fastread.py).
        self.book = JobBook(self.topo.node_names)
        self._book_tried = 0.0  # when the book was last read whole after a failure

    # -- lifecycle --------------------------------------------------------------------------
    def _backend(self) -> Backend:
        """The backend the settings name. Real ones run real work, so in real time."""
        s = self.settings
        if s.backend == "sim" or s.backend not in BACKENDS:
            return get_backend(s.backend)  # (an unknown name fails, listing the valid ones)
        if s.speed != 1:
            raise SpecError(
                "speed", f"the {s.backend} backend runs real work: speed must be 1, got {s.speed:g}"
            )
        return get_backend(s.backend, topo=self.topo, state_dir=s.state_dir)

    def _anchor_clock(self) -> int:
        """Service time keeps running while the service is down: now = sim0 + elapsed x speed
        under the previous anchor; then re-anchor at the (possibly new) speed."""
        raw = self.store.meta(CLOCK_META)
        if raw is None:
            raise SpecError("db", "the store has no clock anchor; it was not bootstrapped")
        a = json.loads(raw)
        wall = time.time()
        now = int(a["sim0"] + (wall - a["wall0"]) * a["speed"])
        anchor = canonical_json({"sim0": now, "wall0": wall, "speed": self.settings.speed})
        self.store.writer.call(lambda tx: repo.put_meta(tx, CLOCK_META, anchor))
        return now

    def start(self) -> None:
        """Rebuild the engine from the store, reconciled with what the backend reports
        (each correction audited), then run it."""
        saved = [_saved_job(r) for r in self.store.live_jobs()]
        runs, fixes = restore_jobs(self.engine, saved, self._reported_runs())
        for run in runs:
            if run.state in (JobState.RUNNING, JobState.RECLAIMING):
                since = self.engine.open_usage().get(run.id)
                if since is not None:
                    self._usage_since[run.id] = since[0]
        now = self.clock.now()
        running = sum(1 for r in runs if r.state is not JobState.PENDING)
        payload = {
            "pending": len(runs) - running,
            "running": running,
            "speed": self.settings.speed,
        }
        rows = [self._job_columns(self.engine.jobs[f.job], now) for f in fixes]

        def op(tx: Tx) -> None:
            repo.update_jobs(tx, rows)
            for f in fixes:
                tx.audit(now, "restore-corrected", f.payload())
            tx.audit(now, "service-started", payload)

        self.store.writer.call(op)
        for f in fixes:
            log.warning("restore: job %s %s: %s", f.job, f.action, f.why)
        rows = self.store.jobs(limit=1 << 62)
        self.book.load(rows, self.store.attempts(r["id"] for r in rows))
        self.engine.sinks.append(self._on_decision)
        self.store.writer.listeners.append(self._on_store_state)
        self.store.writer.start()
        self._thread = threading.Thread(target=self._loop, name="cotenant-engine", daemon=True)
        self._thread.start()

    def _reported_runs(self) -> dict[str, ReportedRun] | None:
        """What a backend with memory reports it runs (None: the digital twin)."""
        runs = getattr(self.engine.backend, "runs", None)
        if runs is None:
            return None
        index = {n: i for i, n in enumerate(self.topo.node_names)}
        out: dict[str, ReportedRun] = {}
        for r in runs():
            gpus = getattr(r, "gpus", None)
            if gpus is None:
                gpus = tuple(len(ids) for ids in r.gpu_ids)
            if any(n not in index for n in r.nodes) or 0 in gpus:
                continue  # not holding GPUs here (stopped, being released)
            pairs = sorted(zip((index[n] for n in r.nodes), gpus, strict=True))
            placement = Placement(tuple(n for n, _ in pairs), tuple(g for _, g in pairs))
            out[r.job_id] = ReportedRun(r.job_id, r.attempt, placement)
        return out

    def _on_store_state(self, down: bool) -> None:
        """The writer's state changed (writer thread): hold or release the engine."""
        self.engine.hold = (
            (
                Reason.STORE_UNAVAILABLE.value,
                "the store cannot record decisions now; nothing new starts until it can "
                "(running work goes on)",
            )
            if down
            else None
        )
        self.clock.wake()

    def stop(self) -> None:
        self._stopping = True
        self.clock.wake()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.store.writer.stop()
        close = getattr(self.engine.backend, "close", None)
        if close is not None:
            close()  # the local backend lets go of its state directory; its runs go on

    def _loop(self) -> None:
        self.lock.acquire()
        try:
            self.engine.run(FOREVER, progress=self._after_step, stop=lambda: self._stopping)
        except Exception as e:  # the service stays up to answer reads and report the failure
            log.exception("engine stopped")
            self.error = f"engine stopped: {e!r}"
        finally:
            self.stepping = False
            self._flush()
            self.lock.release()

    def _drain_inbox(self) -> None:
        """Hand committed submissions to the engine (lock held)."""
        self._inbox_since = None
        while self.inbox:
            self.engine.submit(self.inbox.popleft())

    def _step_begins(self) -> None:
        """The clock woke the engine (lock held): note how late, then take submissions."""
        self.stepping = True
        self._step_began = time.monotonic()
        now = self.clock.now_exact()
        due: float | None = self.engine.next_event_time()
        first = self._inbox_since
        if first is not None:
            due = first if due is None else min(due, first)
        self._lag_at_start = 0.0 if due is None else max(0.0, now - due) / self.settings.speed
        self._drain_inbox()

    def _after_step(self, t: int) -> None:
        while self._deadlines and self._deadlines[0] <= t:
            heapq.heappop(self._deadlines)  # (this step handled every event due by t)
        self.keepup.stepped(self._lag_at_start, time.monotonic() - self._step_began)
        self._flush()
        self._refresh_status(t)
        self.stepping = False

    def lag_s(self) -> float:
        """Wall seconds the engine is behind its clock now: clock time minus the time of the
        oldest event due and not yet handled (a submission waiting in the inbox, a deadline,
        a job's end); 0 when nothing is due. Read without the lock: a stalled engine shows
        a lag that grows."""
        now = self.clock.now_exact()
        due: float = self.status.next_due_s
        first = self._inbox_since
        if first is not None:
            due = min(due, first)
        return max(0.0, now - due) / self.settings.speed

    # -- persistence of decisions -------------------------------------------------------------
    def _on_decision(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event", "")
        job = ev.get("job")
        t = int(ev.get("t", self.clock.now()))
        if isinstance(job, str):
            self._dirty.add(job)
            if kind in ("place", "retag"):
                self._usage_since[job] = t
            elif kind in ("end", "preempt", "cancel", "reject", "interrupt"):
                self._usage_since.pop(job, None)
            self._note_attempt(kind, job, t, ev)
        if kind == "reclaim":
            heapq.heappush(self._deadlines, int(ev["deadline"]))
        if kind in AUDITED:
            self.keepup.decisions[kind] += 1
            payload = {k: v for k, v in ev.items() if k not in ("t", "event")}
            self._audit_buf.append((t, kind, payload))

    def _note_attempt(self, kind: str, job: str, t: int, ev: Mapping[str, Any]) -> None:
        """A run starting or ending becomes a change to the job's attempts (lock held)."""
        run = self.engine.jobs.get(job)
        if run is None:
            return
        key = {"job_id": job, "attempt": run.attempt}
        if kind == "place" and run.placement is not None:
            cols = placement_columns(run.placement)
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
            code, outcome, detail = None, "node-failure", str(ev.get("cause", ""))[:200]
        elif kind == "cancel":
            code, outcome, detail = None, "cancelled", ""
            self._ended_why[job] = ("cancelled", "by request")
        else:
            return
        self._attempt_buf.append(
            ("end", {**key, "end_s": t, "outcome": outcome, "exit_code": code, "detail": detail})
        )

    def _flush(self) -> Future[None] | None:
        """Write what the engine decided since the last flush (lock held): one durable
        transaction, retried until it commits. While one is in flight, new changes stay
        buffered (the future returned is the one in flight; its end wakes the engine,
        which flushes them)."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            return inflight
        if not (self._dirty or self._audit_buf or self._ledger_buf or self._attempt_buf):
            return None
        now = self.clock.now()
        rows = [
            self._job_columns(self.engine.jobs[j], now)
            for j in sorted(self._dirty)
            if j in self.engine.jobs
        ]
        audit, ledger = self._audit_buf[:], self._ledger_buf[:]
        attempts = self._attempt_buf[:]
        self._dirty.clear()
        self._audit_buf.clear()
        self._ledger_buf.clear()
        self._attempt_buf.clear()

        def op(tx: Tx) -> None:
            repo.update_jobs(tx, rows)
            repo.write_attempts(tx, attempts)
            repo.append_ledger(tx, ledger)
            tx.after_commit(lambda: self._update_book(rows, attempts))
            for t, kind, payload in audit:
                tx.audit(t, kind, payload)

        fut = self._write(op, durable=True)
        self._inflight = fut
        fut.add_done_callback(self._flushed)
        return fut

    def _flushed(self, fut: Future[None]) -> None:
        exc = fut.exception()
        if exc is not None and not isinstance(exc, StoreUnavailable):
            log.error("engine changes not written: %r", exc)
        if self._dirty or self._audit_buf or self._ledger_buf or self._attempt_buf:
            self.clock.wake()  # the engine thread flushes what came meanwhile

    def _flush_all(self, timeout: float = DURABLE_WAIT_S) -> None:
        """Until everything the engine decided so far is committed (lock held)."""
        deadline = time.monotonic() + timeout
        while (fut := self._flush()) is not None:
            try:
                fut.result(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise self.store.writer.unavailable() from None

    def _job_columns(self, run: JobRun, now: int) -> Row:
        live = run.state in (JobState.RUNNING, JobState.RECLAIMING)
        reason, detail = run.reason, run.reason_detail
        if run.state is JobState.PENDING:  # its own reason, or its tenant's wait
            reason, detail = self.engine.why(run.id)
        elif run.state in TERMINAL and run.id in self._ended_why:  # how it ended, not
            reason, detail = self._ended_why[run.id]  # the reason it was placed with
        return {
            "id": run.id,
            "state": run.state.value,
            "reason": reason[:64],
            "reason_detail": detail[:500],
            **placement_columns(run.placement if live else None),
            "borrowed": bool(run.borrowed and live),
            "start_s": run.start_s if live else None,
            "first_start_s": run.first_start_s,
            "usage_since_s": self._usage_since.get(run.id) if live else None,
            "end_s": run.end_s,
            "attempt": run.attempt,
            "work_saved_s": run.work_saved_s,
            "preemptions": run.preemptions,
            "updated_s": now,
        }

    def _refresh_status(self, t: int) -> None:
        e = self.engine
        usable = e.state.usable()
        wall = time.monotonic()
        decided = sum(self.keepup.decisions.values())
        self._rates.append((wall, decided))
        while len(self._rates) > 2 and wall - self._rates[0][0] > 60:
            self._rates.popleft()
        w0, d0 = self._rates[0]
        rate = (decided - d0) / (wall - w0) if wall > w0 else 0.0
        nxt = e.next_event_time()
        site = e.site or SiteEnergy()
        self.status = Status(
            t=t,
            allocated={k: v for k, v in e.allocated.items() if v},
            owned={k: v for k, v in e.owned.items() if v},
            borrowed={k: v for k, v in e.borrowed.items() if v},
            entitled=dict(e.entitled),
            pending=e.pending_count(),
            running=len(e.running()),
            pending_by_tenant=e.pending_jobs_by_tenant(),
            running_by_tenant=e.running_jobs_by_tenant(),
            free_gpus=int(e.state.free[usable].sum()),
            healthy_nodes=int(usable.sum()),
            decisions=decided,
            waits=e.waits,
            cycles=e.cycles,
            decisions_per_s=rate,
            next_due_s=FOREVER if nxt is None else nxt,
            violation_jobs={k: v.violation_jobs for k, v in e.acct.tenants.items()},
            violation_s={k: v.violation_s for k, v in e.acct.tenants.items()},
            power_w=topology_facility_power_w(site, e.topo, e.state),
            power_cap_w=None if site.power_cap_mw is None else site.power_cap_mw * 1e6,
        )

    def _engine_call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the engine under the lock, then wait until what it decided is
        stored. Refused (503) while the store cannot take writes: nothing is decided that
        cannot be recorded."""
        writer = self.store.writer
        if writer.down:
            raise writer.unavailable()
        with self.lock:
            self._drain_inbox()
            out = fn()
            fut = self._flush()
        if fut is not None:
            try:
                fut.result(DURABLE_WAIT_S)
            except TimeoutError:
                raise writer.unavailable() from None
            with self.lock:
                self._flush_all()  # and what the engine decided meanwhile
        return out

    # -- jobs -------------------------------------------------------------------------------
    def submit_job(
        self, by: Principal, tenant: str, fields: Mapping[str, Any], idempotency_key: str | None
    ) -> Future[tuple[Row, bool]]:
        """Commit a submission, then queue it for the engine. The future gives the stored row
        and whether it is new (False: an earlier submission with the same idempotency key)."""
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        fields = dependencies.without_empty(fields)  # (the fingerprint of a plain job as before)
        self._check_fits(fields)
        if self.settings.backend != "sim" and not fields.get("command"):
            raise Unprocessable(
                "command",
                f"the {self.settings.backend} backend runs real processes: give the job a "
                "command (cotenant jobs submit ... -- COMMAND ARGS)",
            )
        fingerprint = hashlib.sha256(
            canonical_json({"tenant": tenant, **fields}).encode()
        ).hexdigest()
        now = self.clock.now()
        spec = JobSpec(
            id=new_job_id(),
            tenant=tenant,
            gpus=fields["gpus"],
            duration_s=fields["duration_s"],
            submit_s=now,
            kind=JobKind(fields.get("kind", JobKind.EXPERIMENT)),
            constraint=Constraint(fields.get("constraint", Constraint.AUTO)),
            checkpoint_interval_s=fields.get("checkpoint_interval_s", 0),
            priority=fields.get("priority", 0),
            estimate_s=fields.get("estimate_s"),
            accelerator=fields.get("accelerator"),
            name=fields.get("name", ""),
            command=tuple(fields.get("command", ())),
            after=dependencies.from_fields(fields),
        )
        dependencies.check_refs(spec.id, tenant, spec.after, self._tenant_of_job)

        def op(tx: Tx) -> tuple[Row, bool]:
            k = (tenant, idempotency_key)
            if idempotency_key is not None:
                prev = tx.pending.get(k)
                if prev is None and not tx.optimistic:  # else the unique constraint checks
                    prev = repo.find_idempotent(tx, tenant, idempotency_key)
                if prev is not None:
                    if prev["fingerprint"] != fingerprint:
                        raise Conflict(
                            f"idempotency key {idempotency_key!r} was used for a different "
                            f"submission (job {prev['id']})"
                        )
                    return prev, False
            row = pending_job_row(spec, idempotency_key, fingerprint, by.key_id, now)
            repo.insert_job(tx, row)
            tx.audit(
                now,
                "job-submitted",
                {"job": spec.id, "tenant": tenant, "gpus": spec.gpus, "by": by.key_id},
            )
            if idempotency_key is not None:
                tx.pending[k] = row
            if _BOOK not in tx.pending:  # one read-back for the batch's new jobs
                tx.pending[_BOOK] = True
                tx.after_commit(self._add_to_book)
            tx.after_commit(lambda: self._enqueue(spec))
            return row, True

        return self._write(op)

    def _tenant_of_job(self, job_id: str) -> str | None:
        found = self.store.job_tenant_state(job_id)
        return None if found is None else found[0]

    def _write(self, op: Callable[[Tx], T], durable: bool = False) -> Future[T]:
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

    def _add_to_book(self) -> None:
        """(Writer thread, after a commit that stored new jobs.) Read them back into the
        book: every job stored after the newest it has (one writer: commit order is seq
        order)."""
        book = self.book
        try:
            if book.ready:
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
        rows = self.store.jobs(limit=1 << 62)
        self.book.load(rows, self.store.attempts(r["id"] for r in rows))
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

    def _check_fits(self, fields: Mapping[str, Any]) -> None:
        acc = fields.get("accelerator")
        if acc is not None:
            if acc not in CATALOGUE:
                raise SpecError(
                    "accelerator", f"unknown kind {acc!r}; valid: {', '.join(sorted(CATALOGUE))}"
                )
            if acc not in self.topo.kinds:
                raise SpecError(
                    "accelerator",
                    f"this cluster has no {acc}; it has {', '.join(self.topo.kinds)}",
                )
        cap = self.topo.capacity_of(acc)
        if fields["gpus"] > cap:
            raise SpecError("gpus", f"{fields['gpus']} GPUs is more than the cluster's {cap}")

    def _enqueue(self, spec: JobSpec) -> None:
        self.submitted += 1
        self.inbox.append(spec)
        if self._inbox_since is None:  # the oldest submission the engine has not taken
            self._inbox_since = self.clock.now_exact()
        self.clock.wake()

    def job(self, job_id: str) -> Row:
        row = self.store.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return row

    def cancel_job(self, job_id: str) -> Row:
        row = self.job(job_id)
        if JobState(row["state"]) in TERMINAL:
            raise Conflict(f"job {job_id!r} is already {row['state']}")

        def cancel() -> None:
            if job_id not in self.engine.jobs:
                raise Conflict(f"job {job_id!r} is not live in the engine")
            self.engine.cancel(job_id)

        self._engine_call(cancel)
        return self.job(job_id)

    def log_file(self, row: Row, attempt: int | None, stream: str) -> tuple[Path, int, bool]:
        """(path, attempt, whether that run is over) of a job's stdout or stderr. The
        files live in the state directory, so they outlive the server that started the run."""
        from cotenant.backends.local import safe_name

        if self.settings.backend == "sim":
            raise NotFound("the sim backend runs no processes: its jobs have no logs")
        last = int(row["attempt"])
        if last < 1:
            raise NotFound(f"job {row['id']!r} has not started yet: no logs")
        n = last if attempt is None else attempt
        if not 1 <= n <= last:
            raise NotFound(f"job {row['id']!r} has no attempt {n} (it has 1 to {last})")
        over = n < last or row["state"] not in RUNNING_STATES
        job_dir = Path(self.settings.state_dir) / "jobs" / safe_name(row["id"])
        return job_dir / f"attempt-{n}.{stream}", n, over

    def live_row(self, row: Row) -> Row:
        """A stored job with a pending job's reason as the engine sees it now: the one
        source of ``why`` and of the job's ``reason``, so they agree by construction. A
        read: without the engine's lock (each field read is atomic under the interpreter
        lock, and the engine sets a job's reason as of its last cycle)."""
        if row["state"] != JobState.PENDING.value:
            return row
        run = self.engine.jobs.get(row["id"])
        if run is None or run.state is not JobState.PENDING:
            if row["reason"]:
                return row
            detail = "accepted; the engine has not considered it yet"
            return {**row, "reason": "queued", "reason_detail": detail}
        reason, detail = self.engine.why(row["id"])
        return {**row, "reason": reason, "reason_detail": detail}

    def why(self, job_id: str) -> Row:
        """The job as stored, with its live reason (``live_row``)."""
        return self.live_row(self.job(job_id))

    # -- tenants and contracts ----------------------------------------------------------------
    def create_tenant(
        self, by: Principal, name: str, display_name: str, contract_raw: Mapping[str, Any] | None
    ) -> Contract | None:
        with self._admin:
            if name in self.tenant_names:
                raise Conflict(f"tenant {name!r} already exists")
            now = self.clock.now()
            contract = None
            if contract_raw is not None:
                contract = self._parse_contract(name, contract_raw, now)

            def op(tx: Tx) -> None:
                repo.add_tenant(tx, name, display_name, now)
                tx.audit(
                    now,
                    "tenant-created",
                    {"tenant": name, "display_name": display_name, "by": by.key_id},
                )
                if contract is not None:
                    store_contract(tx, by.key_id, contract, "create", now)

            self.store.writer.call(op)
            self.tenant_names.add(name)
            if contract is not None:
                self._apply_contract(contract)
            return contract

    def set_contract(self, by: Principal, tenant: str, raw: Mapping[str, Any]) -> Contract:
        with self._admin:
            if tenant not in self.tenant_names:
                raise NotFound(f"no tenant {tenant!r}")
            now = self.clock.now()
            contract = self._parse_contract(tenant, raw, now)
            change = "amend" if tenant in self.contracts else "create"
            self.store.writer.call(lambda tx: store_contract(tx, by.key_id, contract, change, now))
            self._apply_contract(contract)
            return contract

    def give_notice(self, by: Principal, tenant: str, at_s: int | None) -> Contract:
        with self._admin:
            if tenant not in self.tenant_names:
                raise NotFound(f"no tenant {tenant!r}")
            c = self.contracts.get(tenant)
            if c is None:
                raise NotFound(f"tenant {tenant!r} has no contract")
            if c.notice.given_at is not None:
                raise Conflict(f"notice was already given for {tenant!r} at {c.notice.given_at}")
            now = self.clock.now()
            at = now if at_s is None else at_s
            if at < now:
                raise SpecError("at_s", f"notice cannot be backdated (now is {now}, got {at})")
            new = c.with_notice(at)
            self.store.writer.call(lambda tx: store_contract(tx, by.key_id, new, "notice", now))
            self._apply_contract(new)
            return new

    def _parse_contract(self, tenant: str, raw: Mapping[str, Any], now: int) -> Contract:
        contract = parse_contract(tenant, raw, "contract", now, self.topo.spec)
        # The tenant being changed goes last, so a sum that overflows is blamed on it.
        names = [*sorted(self.tenant_names - {tenant}), tenant]
        merged = {**self.contracts, tenant: contract}
        tenants = [Tenant(n, n, merged.get(n)) for n in names]
        try:
            validate_contracts(tenants, self.topo.spec)
        except SpecError as e:
            prefix = f"tenants[{len(names) - 1}]."
            fld = e.field[len(prefix) :] if e.field.startswith(prefix) else "contract"
            raise SpecError(fld, e.problem) from None
        return contract

    def _apply_contract(self, contract: Contract) -> None:
        self.contracts[contract.tenant] = contract
        self._engine_call(lambda: self.engine.set_contract(contract))

    # -- keys -------------------------------------------------------------------------------
    def issue_key(self, by: Principal, role: Role, tenant: str | None, name: str) -> IssuedKey:
        if role.tenant_scoped and tenant is None:
            raise SpecError("tenant", f"a {role.value} key needs a tenant")
        if not role.tenant_scoped and tenant is not None:
            raise SpecError("tenant", f"a {role.value} key belongs to no tenant")
        if tenant is not None and tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        key, digest = make_key(role, tenant, name)
        now = self.clock.now()
        self.store.writer.call(lambda tx: store_key(tx, key, digest, by.key_id, now))
        self.keys.add(digest, Principal(key.key_id, role, tenant, name))
        return key

    def revoke_key(self, by: Principal, key_id: str) -> Row:
        row = self.store.key(key_id)
        if row is None:
            raise NotFound(f"no key {key_id!r}")
        if row["revoked_s"] is not None:
            raise Conflict(f"key {key_id!r} is already revoked")
        now = self.clock.now()

        def op(tx: Tx) -> None:
            repo.revoke_key(tx, key_id, now)
            tx.audit(now, "key-revoked", {"key_id": key_id, "by": by.key_id})

        self.store.writer.call(op)
        self.keys.remove(key_id)
        return {**row, "revoked_s": now}

    # -- usage, invoices, cluster ---------------------------------------------------------------
    def ledger_now(self, tenant: str | None, now: int | None = None) -> UsageLedger:
        """Stored records plus the open intervals of running jobs, closed at ``now`` (the
        clock's by default), in memory (every record; ``usage_now`` sums them in SQL)."""
        now = self.clock.now() if now is None else now
        records = self.store.ledger(tenant)
        for r in self.store.jobs(tenant, RUNNING_STATES, limit=1 << 30):
            p = placement_from_row(r)
            since = r["usage_since_s"]
            if p is None or since is None or since >= now:
                continue
            records.append(
                UsageRecord(
                    r["id"],
                    r["tenant"],
                    r["gpus"],
                    self.topo.kind_of_node(p.nodes[0]),
                    p.nodes,
                    since,
                    now,
                    bool(r["borrowed"]),
                    r["kind"],
                )
            )
        return UsageLedger(records)

    def usage_now(self, tenant: str | None, now: int | None = None) -> StoredUsage:
        """The same usage as ``ledger_now``, aggregated by the database (GROUP BY over the
        ledger plus the open intervals of running jobs): one query per window asked."""
        return StoredUsage(self.store.engine, tenant, self.clock.now() if now is None else now)

    def invoice(self, tenant: str, month: str) -> Invoice:
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        contract = self.contracts.get(tenant)
        if contract is None:
            raise NotFound(f"tenant {tenant!r} has no contract to rate")
        cap = self.topo.capacity_of(contract.commitment.accelerator)
        return rate_month(contract, month, self.usage_now(tenant), cap, self.contracts.values())

    def invariants(self) -> list[str]:
        """Problems with the allocation: GPUs given twice, engine and store disagreeing.
        Holds the engine lock throughout, so both are read at the same step."""
        problems: list[str] = []
        writer = self.store.writer
        if writer.down:
            raise writer.unavailable()
        with self.lock:
            self._drain_inbox()
            self._flush_all()  # every step's changes committed: the store is at this step
            try:
                self.engine.state.check_invariants()
            except InvariantBroken as e:
                problems.append(f"engine: {e}")
            engine_running: dict[str, Placement] = {}
            held: dict[int, int] = {}
            for run in self.engine.running():
                if run.placement is None:
                    continue
                if not self.unstored_job(run.spec.id):
                    engine_running[run.spec.id] = run.placement
                    continue
                for n, g in zip(run.placement.nodes, run.placement.gpus, strict=True):
                    held[n] = held.get(n, 0) + g
            stored = self.store.running_placements()
        for r in stored:
            mine = engine_running.get(r["id"])
            if mine is not None and (r["nodes"], r["node_gpus"]) == (
                _int_list_json(mine.nodes),
                _int_list_json(mine.gpus),
            ):
                p: Placement | None = mine  # the same text as the engine's: no need to parse it
            else:
                p = placement_from_row(r)
            if p is None:
                problems.append(f"store: running job {r['id']} has no placement")
                continue
            for n, g in zip(p.nodes, p.gpus, strict=True):
                held[n] = held.get(n, 0) + g
            if mine != p:
                problems.append(f"store and engine disagree on job {r['id']}")
        for n, g in sorted(held.items()):
            cap = int(self.topo.node_gpus[n])
            if g > cap:
                problems.append(f"node {n} has {g} GPUs allocated but only {cap}")
        if len(stored) != len(engine_running):
            problems.append(f"store has {len(stored)} running jobs, engine {len(engine_running)}")
        return problems

    def healthy(self) -> bool:
        return self.error is None and self._thread is not None and self._thread.is_alive()

    def readiness_problems(self) -> list[str]:
        """Why the service cannot make progress now (empty: it can)."""
        problems: list[str] = []
        if not self.healthy():
            problems.append(self.error or "the engine is not running")
        writer = self.store.writer
        if writer.down:
            problems.append(
                f"the store cannot take writes ({writer.health.last_error}) for "
                f"{writer.health.down_for_s():.0f} s"
            )
        return problems

    def node_health(self) -> dict[str, int]:
        h = self.engine.state.health
        return {x.name.lower(): int((h == int(x)).sum()) for x in Health}


def _int_list_json(values: tuple[int, ...]) -> str:
    """``canonical_json(list(values))`` for integers (what ``placement_columns`` stores)."""
    return "[" + ",".join(map(str, values)) + "]"


# -- helpers shared with bootstrap ----------------------------------------------------------------
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


def _saved_job(row: Row) -> SavedJob:
    return SavedJob(
        spec=spec_from_row(row),
        state=JobState(row["state"]),
        placement=placement_from_row(row),
        borrowed=bool(row["borrowed"]),
        start_s=row["start_s"],
        first_start_s=row["first_start_s"],
        usage_since_s=row["usage_since_s"],
        attempt=row["attempt"],
        work_saved_s=row["work_saved_s"],
        preemptions=row["preemptions"],
        reason=row["reason"],
    )
