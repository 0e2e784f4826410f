"""The report's ``federation`` section: per provider GPU-hours, cost, overflowed and
migrated jobs and the wait they saved; overflow against the budget; the migration under
notice; every job's fate across providers; and, beside it, the same run without the
pools (docs/design/0014-providers.md)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from rich.console import Console

from cotenant.federation.core import Federation
from cotenant.federation.metering import DataMove, PoolBill, rate_pool
from cotenant.federation.providers import PoolProvider
from cotenant.metering.money import format_usd, micro_to_cents
from cotenant.metering.run import metered_ledger
from cotenant.tablefit import Col, print_fitted

H = 3600.0
EXAMPLES = 2  # decision details kept per reason


def federation_section(fed: Federation, start_s: int, end_s: int) -> dict[str, Any]:
    bills: dict[str, PoolBill] = {}
    providers: dict[str, dict[str, Any]] = {}
    first_start = _first_starts(fed)
    for p in fed.providers.providers:
        eng = fed.engines[p.name]
        recs = metered_ledger(eng, end_s).records()
        by_tenant: dict[str, int] = defaultdict(int)
        for r in recs:
            by_tenant[r.tenant] += (min(r.end_s, end_s) - max(r.start_s, start_s)) * r.gpus
        entry: dict[str, Any] = {
            "kind": p.kind,
            "gpus": eng.topo.total_gpus,
            "gpu_h": sum(by_tenant.values()) / H,
            "by_tenant_gpu_h": {t: v / H for t, v in sorted(by_tenant.items())},
            "overflowed_jobs": 0,
            "migrated_jobs": 0,
            "wait_saved_h": 0.0,
        }
        if isinstance(p, PoolProvider):
            spot = {j: u for (pool, j), u in fed.book.spot_until.items() if pool == p.name}
            data = [
                DataMove(m.job_id, m.tenant, m.t, m.data_gb)
                for m in fed.book.moves
                if m.target == p.name
            ]
            bill = rate_pool(p, recs, spot, data, start_s, end_s)
            bills[p.name] = bill
            entry["cost_cents"] = bill.total_cents()
            entry["invoices"] = bill.invoices()
            entry["spot_interruptions"] = fed.book.spot_interruptions.get(p.name, 0)
        providers[p.name] = entry
    overflow = _overflow(fed, bills, providers, first_start, end_s)
    migration = _migration(fed, bills, providers)
    return {
        "providers": providers,
        "overflow": overflow,
        "migration": migration,
        "waiting": _waiting(fed, first_start, end_s),
        "jobs": fed.job_book(),
        "routes": _routes(fed),
        "series": _series(fed),
    }


def _first_starts(fed: Federation) -> dict[str, int]:
    out: dict[str, int] = {}
    for job, where in fed.book.visited.items():
        starts = [
            s
            for name in dict.fromkeys(where)
            if (s := fed.engines[name].jobs[job].first_start_s) is not None
        ]
        if starts:
            out[job] = min(starts)
    return out


def _job_cost_cents(bills: Mapping[str, PoolBill], job: str) -> Fraction:
    return sum((b.job_micro.get(job, Fraction(0)) for b in bills.values()), Fraction(0))


def _overflow(
    fed: Federation,
    bills: Mapping[str, PoolBill],
    providers: dict[str, dict[str, Any]],
    first_start: Mapping[str, int],
    end_s: int,
) -> dict[str, Any]:
    """Per tenant: overflowed jobs, their GPU-hours and cost against the budget, and the
    wait they saved: the lease wait expected when each was sent, less its actual wait."""
    out: dict[str, dict[str, Any]] = {}
    reserved: dict[str, int] = defaultdict(int)
    for (tenant, _month), micro in fed.book.reserved.items():
        reserved[tenant] += micro
    for job, r in sorted(fed.book.overflowed.items()):
        spec = fed.book.specs[job]
        t = out.setdefault(
            r.tenant,
            {"jobs": 0, "gpu_h": 0.0, "cost_micro": Fraction(0), "wait_saved_h": 0.0},
        )
        target = r.provider or ""
        t["jobs"] += 1
        providers[target]["overflowed_jobs"] += 1
        t["gpu_h"] += bills[target].job_gpu_s.get(job, 0) / H if target in bills else 0.0
        t["cost_micro"] += _job_cost_cents(bills, job)
        expected = r.expected_wait_s if r.expected_wait_s is not None else end_s - spec.submit_s
        actual = first_start.get(job, end_s) - spec.submit_s
        saved = max(0, expected - actual) / H
        t["wait_saved_h"] += saved
        providers[target]["wait_saved_h"] += saved
    for tenant, t in out.items():
        terms = fed.providers.terms(tenant)
        t["cost_cents"] = micro_to_cents(t.pop("cost_micro"))
        t["cost"] = format_usd(t["cost_cents"])
        t["reserved_cents"] = micro_to_cents(reserved[tenant])
        t["budget_per_month_cents"] = micro_to_cents(terms.budget_micro_per_month)
    return out


def _migration(
    fed: Federation, bills: Mapping[str, PoolBill], providers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Per tenant: jobs moved off a lease under notice, the GPUs they held, the work lost
    (0 when each moved at its checkpoint), the data moved and the cost on the targets."""
    out: dict[str, dict[str, Any]] = {}
    for m in fed.book.moves:
        if not m.migration:
            continue
        t = out.setdefault(
            m.tenant,
            {
                "jobs": 0,
                "gpus": 0,
                "lost_gpu_h": 0.0,
                "data_tb": 0.0,
                "routes": Counter[str](),
                "cost_micro": Fraction(0),
            },
        )
        t["jobs"] += 1
        t["gpus"] += m.gpus
        t["lost_gpu_h"] += m.lost_s * m.gpus / H
        t["data_tb"] += m.data_gb / 1000
        t["routes"][f"{m.source} -> {m.target}"] += 1
        t["cost_micro"] += _job_cost_cents(bills, m.job_id)
        providers[m.target]["migrated_jobs"] += 1
    for t in out.values():
        t["routes"] = dict(sorted(t["routes"].items()))
        t["cost_cents"] = micro_to_cents(t.pop("cost_micro"))
        t["cost"] = format_usd(t["cost_cents"])
    return out


def _waiting(fed: Federation, first_start: Mapping[str, int], end_s: int) -> dict[str, Any]:
    """Per tenant, the time its jobs waited from submission to their first start anywhere
    (a job never started waited to the end of the run), in job-hours and GPU-hours."""
    out: dict[str, dict[str, float]] = {}
    for job, spec in fed.book.specs.items():
        if spec.submit_s >= end_s:
            continue
        w = max(0, first_start.get(job, end_s) - spec.submit_s)
        t = out.setdefault(spec.tenant, {"job_h": 0.0, "gpu_h": 0.0, "jobs": 0})
        t["job_h"] += w / H
        t["gpu_h"] += w * spec.gpus / H
        t["jobs"] += 1
    return dict(sorted(out.items()))


def _routes(fed: Federation) -> dict[str, Any]:
    counts = Counter(r.reason.value for r in fed.routes)
    examples: dict[str, list[str]] = defaultdict(list)
    for r in fed.routes:
        if len(examples[r.reason.value]) < EXAMPLES:
            examples[r.reason.value].append(f"{r.job_id}: {r.detail}")
    return {"counts": dict(sorted(counts.items())), "examples": dict(sorted(examples.items()))}


def _series(fed: Federation) -> dict[str, Any]:
    """GPUs allocated on each provider at the engines' sample times."""
    out: dict[str, Any] = {}
    for name, eng in fed.engines.items():
        s = eng.acct.series
        n = len(s.times)
        total = [sum(v[i] for v in s.allocated.values() if i < len(v)) for i in range(n)]
        out[name] = {"times": list(s.times), "allocated": total}
    return out


def add_lease_costs(section: dict[str, Any], home: str, metering: Mapping[str, Any]) -> None:
    """What the tenants pay the home cluster over the run (its fees accrued over the run)."""
    econ = metering.get("economics", {})
    entry = section["providers"][home]
    fees = {t["tenant"]: int(t.get("revenue_cents", 0)) for t in econ.get("tenants", [])}
    entry["cost_cents"] = sum(fees.values())
    entry["cost_by_tenant_cents"] = dict(sorted(fees.items()))
    entry["cost_is"] = "lease fees accrued over the run"


def economics_rows(fed: Mapping[str, Any]) -> list[str]:
    """Per tenant: where its work ran (GPU-hours per provider) and what it paid each (the
    lease's fees accrued over the run, each pool's bill), and so per GPU-hour overall."""
    tenants = sorted({t for p in fed["providers"].values() for t in p["by_tenant_gpu_h"]})
    out = []
    for t in tenants:
        parts, gpu_h, cents = [], 0.0, 0
        for name, p in fed["providers"].items():
            h = p["by_tenant_gpu_h"].get(t, 0.0)
            if p["kind"] == "pool":
                c = sum(int(i["total_cents"]) for i in p.get("invoices", []) if i["tenant"] == t)
            else:
                c = int(p.get("cost_by_tenant_cents", {}).get(t, 0))
            if h or c:
                parts.append(f"{name} {h:,.0f} GPU-h ({format_usd(c)})")
            gpu_h += h
            cents += c
        per = f"{format_usd(round(cents / gpu_h))}/GPU-h" if gpu_h else "-"
        out.append(f"where {t}'s work ran: {', '.join(parts)}; {per} overall")
    return out


# -- text --------------------------------------------------------------------------------
def provider_rows(fed: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per provider: kind, GPUs, GPU-hours, cost, overflowed and migrated jobs, and
    the wait the overflowed jobs were expected to save."""
    rows = []
    for name, p in fed["providers"].items():
        cost = p.get("cost_cents")
        rows.append(
            {
                "provider": name,
                "kind": p["kind"],
                "GPUs": f"{p['gpus']:,}",
                "GPU-hours": f"{p['gpu_h']:,.0f}",
                "cost": "-" if cost is None else format_usd(cost),
                "overflowed jobs": f"{p['overflowed_jobs']:,}",
                "migrated jobs": f"{p['migrated_jobs']:,}",
                "expected wait saved (job-h)": f"{p['wait_saved_h']:,.0f}",
            }
        )
    return rows


def render_federation(console: Console, fed: Mapping[str, Any]) -> None:
    rows = provider_rows(fed)
    cols = [Col(k, number=k not in ("provider", "kind"), whole=True) for k in rows[0]]
    print_fitted(console, "Providers", cols, [list(r.values()) for r in rows])
    for line in federation_lines(fed):
        console.print(line, highlight=False, markup=False)


def federation_lines(fed: Mapping[str, Any]) -> list[str]:
    out = economics_rows(fed)
    for tenant, o in fed["overflow"].items():
        out.append(
            f"overflow {tenant}: {o['jobs']:,} jobs, {o['gpu_h']:,.0f} GPU-h, cost {o['cost']} "
            f"(reserved {format_usd(o['reserved_cents'])}, budget "
            f"{format_usd(o['budget_per_month_cents'])}/month); expected wait saved "
            f"{o['wait_saved_h']:,.0f} job-h"
        )
    for tenant, m in fed["migration"].items():
        routes = ", ".join(f"{k} {v:,}" for k, v in m["routes"].items())
        out.append(
            f"migration under notice {tenant}: {m['jobs']:,} jobs ({m['gpus']:,} GPUs; {routes}) "
            f"at their checkpoints, {m['lost_gpu_h']:,.1f} GPU-h lost, {m['data_tb']:,.1f} TB "
            f"moved; cost on the targets {m['cost']}"
        )
    lost = sum(b.get("lost", 0) for b in fed["jobs"].values())
    books = ", ".join(
        f"{t}: {b['completed']:,} done, {b['running']:,} running, {b['pending']:,} pending "
        f"of {b['submitted']:,}"
        for t, b in fed["jobs"].items()
    )
    out.append(f"jobs across providers ({lost:,} lost): {books}")
    base = fed.get("baseline")
    if base is not None:
        out.extend(baseline_lines(fed, base))
    counts = fed["routes"]["counts"]
    out.append(
        f"{sum(counts.values()):,} routing decisions: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    )
    for reason in ("overflowed", "migrated", "over-budget"):
        for ex in fed["routes"]["examples"].get(reason, [])[:1]:
            out.append(f"  e.g. {ex}")
    return out


def baseline_lines(fed: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """What the pools saved in waiting, per tenant, against the run without them, and what
    they cost."""
    out = []
    pool_cost = sum(
        int(p.get("cost_cents", 0)) for p in fed["providers"].values() if p["kind"] == "pool"
    )
    for tenant, w in fed["waiting"].items():
        b = base["waiting"].get(tenant)
        if b is None:
            continue
        saved_gpu_h = b["gpu_h"] - w["gpu_h"]
        out.append(
            f"without the pools {tenant} waited {b['job_h']:,.0f} job-h "
            f"({b['gpu_h']:,.0f} GPU-h); with them {w['job_h']:,.0f} job-h "
            f"({w['gpu_h']:,.0f} GPU-h): saved {b['job_h'] - w['job_h']:,.0f} job-h "
            f"({saved_gpu_h:,.0f} GPU-h of waiting)"
        )
    blost = sum(b.get("lost", 0) for b in base["jobs"].values())
    unfinished = sum(b["pending"] + b["running"] for b in base["jobs"].values())
    done = sum(b["completed"] for b in base["jobs"].values())
    fdone = sum(b["completed"] for b in fed["jobs"].values())
    out.append(
        f"the pools cost {format_usd(pool_cost)}; jobs done {fdone:,} with them, {done:,} "
        f"without ({unfinished:,} unfinished without, {blost:,} lost)"
    )
    return out


def pool_invoice_text(fed: Mapping[str, Any]) -> list[str]:
    """Each pool's invoices (per tenant and month), as text."""
    out: list[str] = []
    for p in fed["providers"].values():
        for inv in p.get("invoices", []):
            out.append("")
            out.append(f"INVOICE {inv['provider']} -> {inv['tenant']} {inv['month']}")
            for x in inv["lines"]:
                out.append(
                    f"  {x['description']:<40} {x['quantity']:>18} x {x['unit_price']:<14} "
                    f"{x['amount']:>16}"
                )
            out.append(f"  {'Total':<76} {inv['total']:>16}")
    return out
