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
``start`` rebuilds the engine from it (``engine/restore.py``).
"""

from __future__ import annotations

import hashlib
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
from typing import Any

from cotenant.api.keys import KeyRing, Principal, Role
from cotenant.api.settings import Settings
from cotenant.audit import canonical_json
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
from cotenant.cluster.state import Health
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import WallClock
from cotenant.engine.core import Engine
from cotenant.engine.jobs import JobRun
from cotenant.engine.restore import SavedJob, restore_jobs
from cotenant.metering.energy import SiteEnergy, topology_facility_power_w
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.metering.rating import Invoice, rate_month
from cotenant.metering.run import parse_metering_settings
from cotenant.model.accelerators import CATALOGUE
from cotenant.model.contracts import Contract, Tenant
from cotenant.model.errors import Conflict, InvariantBroken, NotFound, SpecError, Unprocessable
from cotenant.model.jobs import Constraint, JobKind, JobSpec, JobState
from cotenant.scenario import parse_contract, validate_contracts
from cotenant.scheduler.policies import get_policy
from cotenant.store import repo
from cotenant.store.mapping import (
    pending_job_row,
    placement_columns,
    placement_from_row,
    spec_from_row,
)
from cotenant.store.repo import Row, Store
from cotenant.store.writer import Tx

log = logging.getLogger("cotenant.service")
FOREVER = 1 << 62
RUNNING_STATES = ("running", "reclaiming")
TERMINAL = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
# Engine decisions that are audited (submissions and contract changes are audited by the
# API operations themselves, with their full content).
AUDITED = {
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
    ``on_wake`` (with the lock held again) so the engine takes new submissions."""

    def __init__(
        self,
        start_s: int,
        speed: float,
        lock: threading.Lock,
        on_wake: Callable[[], None],
        min_step_s: float,
    ) -> None:
        super().__init__(start_s, speed)
        self.lock = lock
        self.on_wake = on_wake
        self.min_step_s = min_step_s
        self._last = 0.0

    def wait_until(self, t: int) -> int:
        self.lock.release()
        try:
            gap = self.min_step_s - (time.monotonic() - self._last)
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
    free_gpus: int = 0
    healthy_nodes: int = 0
    decisions: int = 0
    cycles: int = 0
    decisions_per_s: float = 0.0
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
        self.clock = LiveClock(
            self._anchor_clock(), settings.speed, self.lock, self._drain_inbox, settings.min_step_s
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
        self.engine.site = parse_metering_settings(
            json.loads(raw_energy) if raw_energy else None
        ).site
        self.keys = KeyRing(store.active_keys())
        self.status = Status()
        self.error: str | None = None
        self.submitted = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._admin = threading.Lock()  # serialises contract and tenant changes
        self._dirty: set[str] = set()
        self._audit_buf: list[tuple[int, str, dict[str, Any]]] = []
        self._ledger_buf: list[UsageRecord] = []
        self._attempt_buf: list[tuple[str, Row]] = []
        self._ended_why: dict[str, tuple[str, str]] = {}  # how a job's last run ended
        self._usage_since: dict[str, int] = {}
        self._rates: deque[tuple[float, int]] = deque(maxlen=120)
        self.engine.ledger = RecordingLedger(self._ledger_buf.append)

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
        saved = [_saved_job(r) for r in self.store.live_jobs()]
        for s in saved:
            if s.state in (JobState.RUNNING, JobState.RECLAIMING) and s.usage_since_s is not None:
                self._usage_since[s.spec.id] = s.usage_since_s
        restore_jobs(self.engine, saved)
        self.engine.sinks.append(self._on_decision)
        self.store.writer.start()
        now = self.clock.now()
        running = sum(1 for s in saved if s.state is not JobState.PENDING)
        payload = {
            "pending": len(saved) - running,
            "running": running,
            "speed": self.settings.speed,
        }
        self.store.writer.call(lambda tx: tx.audit(now, "service-started", payload))
        self._thread = threading.Thread(target=self._loop, name="cotenant-engine", daemon=True)
        self._thread.start()

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
            self._flush()
            self.lock.release()

    def _drain_inbox(self) -> None:
        """Hand committed submissions to the engine (lock held)."""
        while self.inbox:
            self.engine.submit(self.inbox.popleft())

    def _after_step(self, t: int) -> None:
        self._flush()
        self._refresh_status(t)

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
        if kind in AUDITED:
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
        """Write what the engine decided since the last flush (lock held); one transaction."""
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
            for t, kind, payload in audit:
                tx.audit(t, kind, payload)

        return self.store.writer.submit(op)

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
        self._rates.append((wall, e.decisions_made))
        while len(self._rates) > 2 and wall - self._rates[0][0] > 60:
            self._rates.popleft()
        w0, d0 = self._rates[0]
        rate = (e.decisions_made - d0) / (wall - w0) if wall > w0 else 0.0
        site = e.site or SiteEnergy()
        self.status = Status(
            t=t,
            allocated={k: v for k, v in e.allocated.items() if v},
            owned={k: v for k, v in e.owned.items() if v},
            borrowed={k: v for k, v in e.borrowed.items() if v},
            entitled=dict(e.entitled),
            pending=e.pending_count(),
            running=len(e.running()),
            free_gpus=int(e.state.free[usable].sum()),
            healthy_nodes=int(usable.sum()),
            decisions=e.decisions_made,
            cycles=e.cycles,
            decisions_per_s=rate,
            power_w=topology_facility_power_w(site, e.topo, e.state),
            power_cap_w=None if site.power_cap_mw is None else site.power_cap_mw * 1e6,
        )

    def _engine_call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the engine under the lock, then wait until what it decided is stored."""
        with self.lock:
            self._drain_inbox()
            out = fn()
            fut = self._flush()
        if fut is not None:
            fut.result(60)
        return out

    # -- jobs -------------------------------------------------------------------------------
    def submit_job(
        self, by: Principal, tenant: str, fields: Mapping[str, Any], idempotency_key: str | None
    ) -> Future[tuple[Row, bool]]:
        """Commit a submission, then queue it for the engine. The future gives the stored row
        and whether it is new (False: an earlier submission with the same idempotency key)."""
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
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
        )

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
            tx.after_commit(lambda: self._enqueue(spec))
            return row, True

        return self.store.writer.submit(op)

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

    def why(self, job_id: str) -> Row:
        """The job's stored row, first brought up to the engine's present view of it: the
        reason ``why`` gives is the ``reason`` the job shows, by construction."""
        self.job(job_id)  # 404 before taking the lock
        with self.lock:
            self._drain_inbox()
            if job_id in self.engine.jobs:
                self._dirty.add(job_id)
            fut = self._flush()
        if fut is not None:
            fut.result(60)
        return self.job(job_id)

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
    def ledger_now(self, tenant: str | None) -> UsageLedger:
        """Stored records plus the open intervals of running jobs, closed at now."""
        now = self.clock.now()
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

    def invoice(self, tenant: str, month: str) -> Invoice:
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        contract = self.contracts.get(tenant)
        if contract is None:
            raise NotFound(f"tenant {tenant!r} has no contract to rate")
        cap = self.topo.capacity_of(contract.commitment.accelerator)
        return rate_month(contract, month, self.ledger_now(tenant), cap, self.contracts.values())

    def invariants(self) -> list[str]:
        """Problems with the allocation: GPUs given twice, engine and store disagreeing.
        Holds the engine lock throughout, so both are read at the same step."""
        problems: list[str] = []
        with self.lock:
            self._drain_inbox()
            fut = self._flush()
            if fut is not None:
                fut.result(60)
            try:
                self.engine.state.check_invariants()
            except InvariantBroken as e:
                problems.append(f"engine: {e}")
            engine_running = {r.spec.id: r.placement for r in self.engine.running()}
            stored = self.store.jobs(None, RUNNING_STATES, limit=1 << 30)
        held: dict[int, int] = {}
        for r in stored:
            p = placement_from_row(r)
            if p is None:
                problems.append(f"store: running job {r['id']} has no placement")
                continue
            for n, g in zip(p.nodes, p.gpus, strict=True):
                held[n] = held.get(n, 0) + g
            if engine_running.get(r["id"]) != p:
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

    def node_health(self) -> dict[str, int]:
        h = self.engine.state.health
        return {x.name.lower(): int((h == int(x)).sum()) for x in Health}


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
