"""Operator calls at live scale: usage, invoice, audit export and verify, invariants.

Seeds a store (a fresh SQLite file by default, or ``--db URL``) with the colossus-lease
scenario and ``--jobs`` jobs (most ended, some running with open usage intervals, some
pending), their usage-ledger records and audit entries (submitted, placed, ended: about
2.5 per job), all through the real store code (``repo.insert_job``, ``append_ledger``,
``Tx.audit``), then times each call against today's implementation, kept here as the
baseline, in the same run, and prints the ratio:

- usage (all tenants, all time) and an invoice: the Python ledger (every record loaded,
  ``Service.ledger_now``) against the SQL aggregate (``Service.usage_now``); the results
  must be equal.
- audit export: the old endpoint (entries parsed, one line per streamed chunk, each a
  thread-pool hop) against the streamed pages of stored text, both through Starlette's
  ``StreamingResponse`` as the server sends them; entries/s.
- audit verify: the old full verify (payloads parsed) against the stored-text verify,
  full and incremental (after a checkpoint, with 0 and 1,000 new entries).
- invariants (the service started on the seeded store, engine and store compared).

    python3 bench/bench_ops.py [--jobs 50000] [--repeat 3] [--db URL] [--no-invariants]

Targets (issue 19): usage and invoice < 200 ms at 50,000 jobs, export >= 50,000
entries/s (100,000 in < 2 s), incremental verify < 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from starlette.responses import StreamingResponse

from cotenant.audit.chain import AuditEntry, to_jsonl, verify
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.metering.rating import rate_month
from cotenant.model.jobs import JobSpec
from cotenant.server.bootstrap import bootstrap
from cotenant.server.service import Service
from cotenant.server.settings import Settings
from cotenant.store import repo
from cotenant.store.mapping import pending_job_row
from cotenant.store.repo import Store
from cotenant.store.tables import AUDIT

T = TypeVar("T")
SCENARIO = "colossus-lease"
MONTH = "2026-10"
START = "2026-10-27T00:00:00Z"  # the service clock's start: jobs ran over the 26 days before
NODE_GPUS = 8


# -- seeding -----------------------------------------------------------------------------------


def run_record(spec: JobSpec, nodes: list[int], borrowed: bool, a: int, b: int) -> UsageRecord:
    """One run of a seeded job, [a, b)."""
    return UsageRecord(
        spec.id, spec.tenant, spec.gpus, "H100-SXM-80GB", tuple(nodes[:8]), a, b, borrowed,
        spec.kind.value,
    )  # fmt: skip


def seed(store: Store, n_jobs: int, now: int, rng: random.Random, n_nodes: int) -> dict[str, int]:
    """Jobs, ledger and audit entries through the store's own write operations, in
    transactions of 2,000 jobs. Running jobs get whole nodes, none shared."""
    tenants = ("owner-lab", "lessee-lab")
    next_node = 0
    counts = {"jobs": 0, "running": 0, "ledger": 0}
    batch = 2000
    for first in range(0, n_jobs, batch):
        rows: list[dict[str, Any]] = []
        records: list[UsageRecord] = []
        audit: list[tuple[int, str, dict[str, Any]]] = []
        for i in range(first, min(n_jobs, first + batch)):
            tenant = tenants[0] if rng.random() < 0.25 else tenants[1]
            gpus = rng.choice((1, 2, 4, 8, 8, 16, 32, 64))
            duration = int(rng.lognormvariate(8.6, 1.0)) + 60
            submit = now - rng.randrange(25 * 86_400)
            spec = JobSpec(f"job-{i:06d}", tenant, gpus, duration, submit, name=f"exp-{i}")
            row = pending_job_row(spec, f"key-{i}", "f" * 64, "bench-key", submit)
            audit.append(
                (
                    submit,
                    "job-submitted",
                    {"job": spec.id, "tenant": tenant, "gpus": gpus, "by": "bench-key"},
                )
            )
            r = rng.random()
            state = "pending" if r < 0.07 else "running" if r < 0.15 else "completed"
            whole = max(1, gpus // NODE_GPUS)
            if state == "running" and next_node + whole > n_nodes:
                state = "completed"
            if state == "running":  # long enough to still run when the service starts
                submit = now - 20_000 - rng.randrange(5 * 86_400)
                spec = JobSpec(spec.id, tenant, gpus, 10 * 86_400, submit, name=spec.name)
                row = pending_job_row(spec, f"key-{i}", "f" * 64, "bench-key", submit)
            borrowed = tenant == "lessee-lab" and rng.random() < 0.3
            if state != "pending":
                start = submit + rng.randrange(3600)
                nodes = list(range(next_node, next_node + whole))
                placed = {
                    "job": spec.id,
                    "tenant": tenant,
                    "nodes": nodes[:8],
                    "gpus": gpus,
                    "borrowed": borrowed,
                    "wait_s": start - submit,
                }
                audit.append((start, "place", placed))
                pieces = rng.choice((1, 1, 1, 2, 3))
                t = start
                for _ in range(pieces - 1):  # preempted and resumed
                    end = t + rng.randrange(60, 7200)
                    records.append(run_record(spec, nodes, borrowed, t, end))
                    t = end + rng.randrange(0, 600)
                if state == "running":
                    next_node += whole
                    counts["running"] += 1
                    row.update(
                        state="running",
                        nodes=json.dumps(nodes),
                        node_gpus=json.dumps([min(gpus, NODE_GPUS)] * whole),
                        borrowed=borrowed,
                        start_s=t,
                        first_start_s=start,
                        usage_since_s=min(t, now - 1),
                        attempt=pieces,
                    )
                else:
                    end = t + duration
                    records.append(run_record(spec, nodes, borrowed, t, end))
                    audit.append((end, "end", {"job": spec.id, "state": "completed"}))
                    row.update(state="completed", first_start_s=start, end_s=end, attempt=pieces)
            rows.append(row)

        def op(
            tx: repo.Tx,
            rows: list[dict[str, Any]] = rows,
            records: list[UsageRecord] = records,
            audit: list[tuple[int, str, dict[str, Any]]] = audit,
        ) -> None:
            for row in rows:
                repo.insert_job(tx, row)
            repo.append_ledger(tx, records)
            for t, kind, payload in audit:
                tx.audit(t, kind, payload)

        store.writer.call(op, timeout=600)
        counts["jobs"] += len(rows)
        counts["ledger"] += len(records)
    counts["audit"] = store.audit_head().seq
    return counts


# -- today's implementations (the baseline) ----------------------------------------------------
def old_audit_entries(store: Store) -> Iterator[AuditEntry]:
    """``Store.audit_entries`` before: pages of whole rows, every payload parsed."""
    last = 0
    while True:
        with store.engine.connect() as conn:
            rows = list(
                conn.execute(
                    sa.select(AUDIT).where(AUDIT.c.seq > last).order_by(AUDIT.c.seq).limit(5000)
                ).mappings()
            )
        for r in rows:
            yield AuditEntry(
                r["seq"], r["time"], r["kind"], json.loads(r["payload"]), r["prev_hash"], r["hash"]
            )
        if len(rows) < 5000:
            return
        last = rows[-1]["seq"]


def old_usage(svc: Service, now: int) -> dict[str, tuple[int, int]]:
    ledger = svc.ledger_now(None, now=now)
    return {
        t: (ledger.gpu_seconds(t, borrowed=False), ledger.gpu_seconds(t, borrowed=True))
        for t in sorted(svc.tenant_names)
    }


def new_usage(svc: Service, now: int) -> dict[str, tuple[int, int]]:
    usage = svc.usage_now(None, now=now)
    return {
        t: (usage.gpu_seconds(t, borrowed=False), usage.gpu_seconds(t, borrowed=True))
        for t in sorted(svc.tenant_names)
    }


def stream_size(response: StreamingResponse) -> int:
    """Drain a StreamingResponse's body as Starlette would send it; bytes."""

    async def drain() -> int:
        n = 0
        async for chunk in response.body_iterator:
            n += len(chunk)
        return n

    return asyncio.run(drain())


# -- timing ------------------------------------------------------------------------------------
def best(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    times = []
    out: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def row(name: str, before: float | None, after: float, extra: str = "") -> None:
    ratio = f"{before / after:8.1f}x" if before is not None and after > 0 else " " * 9
    b = f"{before * 1000:10.1f}" if before is not None else " " * 10
    print(f"{name:<34} {b} {after * 1000:10.1f} {ratio}  {extra}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", default=None, help="a database URL (default: a temp SQLite file)")
    ap.add_argument(
        "--postgres", action="store_true", help="on a throwaway PostgreSQL (tests/harness)"
    )
    ap.add_argument("--no-invariants", action="store_true", help="skip starting the service")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_ops_"))
        url = args.db or f"sqlite:///{Path(tmp) / 'ops.db'}"
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from harness.postgres import LocalPostgres

            url = stack.enter_context(LocalPostgres()).create_database("bench_ops")
        run(url, args)
    return 0


def run(url: str, args: argparse.Namespace) -> None:
    store = Store(url)
    settings = Settings(db=url, scenario=SCENARIO, speed=1, start=START)
    bootstrap(store, settings)
    svc = Service(store, settings)
    now = svc.clock.now()
    t0 = time.perf_counter()
    counts = seed(store, args.jobs, now, random.Random(19), svc.topo.n_nodes)
    seeded = time.perf_counter() - t0
    print(
        f"store {store.engine.dialect.name}  seeded in {seeded:.1f} s: {counts['jobs']:,} jobs "
        f"({counts['running']:,} running), {counts['ledger']:,} ledger records, "
        f"{counts['audit']:,} audit entries"
    )
    print(f"{'call':<34} {'before ms':>10} {'after ms':>10} {'ratio':>9}")

    # usage and invoice
    b, old_u = best(lambda: old_usage(svc, now), args.repeat)
    a, new_u = best(lambda: new_usage(svc, now), args.repeat)
    assert old_u == new_u, (old_u, new_u)
    row("usage (all tenants)", b, a, "equal" if old_u == new_u else "DIFFERENT")
    tenant = "lessee-lab"
    contract = svc.contracts[tenant]
    cap = svc.topo.capacity_of(contract.commitment.accelerator)
    others = list(svc.contracts.values())

    def old_invoice() -> Any:
        ledger: UsageLedger = svc.ledger_now(tenant, now=now)
        return rate_month(contract, MONTH, ledger, cap, others)

    b, old_i = best(old_invoice, args.repeat)
    a, _ = best(lambda: svc.invoice(tenant, MONTH), args.repeat)
    same = old_i == rate_month(contract, MONTH, svc.usage_now(tenant, now=now), cap, others)
    assert same
    row(f"invoice ({tenant} {MONTH})", b, a, "equal" if same else "DIFFERENT")

    # audit export, as the endpoint streams it
    head = store.audit_head()

    def old_export() -> int:
        lines = (to_jsonl(e) for e in old_audit_entries(store))
        return stream_size(StreamingResponse(lines, media_type="application/x-ndjson"))

    def new_export() -> int:
        chunks = store.audit_jsonl(0, head.seq)
        return stream_size(StreamingResponse(chunks, media_type="application/x-ndjson"))

    b, old_n = best(old_export, 1)
    a, new_n = best(new_export, args.repeat)
    assert old_n == new_n, (old_n, new_n)
    rate = head.seq / a
    row(
        "audit export (endpoint stream)",
        b,
        a,
        f"{head.seq:,} entries, {new_n / 1e6:.1f} MB: {head.seq / b:,.0f} -> {rate:,.0f}/s, "
        f"100k in {100_000 / rate:.2f} s",
    )

    # audit verify
    b, old_v = best(lambda: verify(old_audit_entries(store), store.audit_head()), 1)
    a, full_v = best(lambda: store.verify_audit(full=True), args.repeat)
    assert old_v.ok and full_v.ok and old_v.head == full_v.head
    row("audit verify, full", b, a, f"{full_v.entries:,} entries")
    a, inc_v = best(lambda: store.verify_audit(), args.repeat)
    assert inc_v.ok and inc_v.entries == 0
    row("audit verify, incremental (0 new)", b, a, f"after seq {inc_v.after_seq:,}")
    incs = []
    for k in range(args.repeat):
        store.writer.call(
            lambda tx, k=k: [tx.audit(now, "place", {"job": f"new-{k}-{i}"}) for i in range(1000)]
        )
        t1 = time.perf_counter()
        v = store.verify_audit()
        incs.append(time.perf_counter() - t1)
        assert v.ok and v.entries == 1000, v
    row("audit verify, incremental (1k new)", b, min(incs), "")

    if not args.no_invariants:
        t1 = time.perf_counter()
        svc.start()
        started = time.perf_counter() - t1
        try:
            a, problems = best(svc.invariants, args.repeat)
            row("invariants", None, a, f"{len(problems)} problems; service start {started:.1f} s")
        finally:
            svc.stop()
    store.close()


if __name__ == "__main__":
    sys.exit(main())
