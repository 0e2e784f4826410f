"""The built-in studies: each a grid over one question's axis, the metrics that answer
it, and the sentences that answer it first in the report.

- ``notice``: the leaving tenant (the one that takes all available capacity, or
  ``--tenant``) gives notice at several dates in the run, or not at all (the baseline):
  the owner's revenue and utilisation, how much of the capacity given up the others'
  demand refills and how fast, and what the tenant pays and gets.
- ``spares``: the spare pool (``run.spare_gpus``) at 0, half, the file's, and twice it:
  goodput, SLA shortfall, and what the lessee gets.
- ``price``: the lessee's fee (or committed rate) at 50-150% of the file's: the owner's
  margin and the break-even price, and the lessee's cost per useful GPU-hour.
- ``power``: the site's power cap at 100%, 80%, 70% and 60% of the file's: where the cap
  starts to hold work back and what it costs in waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from cotenant.model.contracts import Contract
from cotenant.model.errors import SpecError
from cotenant.twin.scenario import Scenario
from cotenant.whatif.summary import Summary, days, fmt_diff, fmt_interval
from cotenant.whatif.variants import Assignment, BaseScenario, parse_value

STUDIES = ("notice", "spares", "price", "power")


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    axes: list[list[Assignment]]
    metrics: list[str]
    answer: Callable[[Summary], list[str]] = field(compare=False)


def make_study(name: str, base: BaseScenario, sc: Scenario, tenant: str | None) -> Study:
    """The study ``name`` for this scenario (``sc``: parsed, with the study's days)."""
    if name not in STUDIES:
        raise SpecError("--study", f"unknown study {name!r}; valid: {', '.join(STUDIES)}")
    lessee = _lessee(sc, tenant)
    if name == "notice":
        return _notice(sc, lessee)
    if name == "spares":
        return _spares(base, sc, lessee)
    if name == "price":
        return _price(base, sc, lessee)
    return _power(base, sc, lessee)


def _lessee(sc: Scenario, tenant: str | None) -> Contract:
    contracts = sc.contracts()
    if tenant is not None:
        for c in contracts:
            if c.tenant == tenant:
                return c
        names = ", ".join(c.tenant for c in contracts) or "none"
        raise SpecError("--tenant", f"no tenant {tenant!r} with a contract; have: {names}")
    for c in contracts:
        if c.commitment.all_available:
            return c
    paying = [
        c for c in contracts if c.price.kind.value == "flat" or c.price.flat_fee_cents_per_month
    ]
    if paying:
        return paying[-1]
    if not contracts:
        raise SpecError("scenario", "a built-in study needs a tenant with a contract")
    return contracts[-1]


def _date(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).date().isoformat()


def _hour(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%MZ")


# notice ----------------------------------------------------------------------------


def _notice(sc: Scenario, lessee: Contract) -> Study:
    t = lessee.tenant
    key = f"run.notice.{t}"
    day = 86_400
    if sc.duration_s >= 3 * day:  # whole days, a third of the run apart
        span_days = sc.duration_s // day
        starts = sorted({sc.start_s + (span_days * k // 3) * day for k in range(3)})
        texts = [_date(x) for x in starts]
    else:  # a short run: whole hours
        span_h = sc.duration_s // 3600
        starts = sorted({sc.start_s + (span_h * k // 3) * 3600 for k in range(3)})
        texts = [_hour(x) for x in starts]
    axis = [Assignment(key, "none", "none")]
    axis += [Assignment(key, parse_value(x), x) for x in texts]
    metrics = [
        "revenue_usd",
        "utilisation",
        f"{t}.refill_share",
        f"{t}.refill_h",
        "idle_gpu_h",
        f"{t}.fees_usd",
        f"{t}.used_gpu_h",
        f"{t}.usd_per_useful_gpu_h",
    ]

    def answer(s: Summary) -> list[str]:
        lines = [
            f"If {t} gives notice ({lessee.notice.period_s // day} days, "
            f"{lessee.notice.ramp.value} ramp) on each date, over {days(s.days)} from "
            f"{_date(sc.start_s)} (mean ± 95% CI over {len(s.seeds)} seeds):"
        ]
        for label in s.labels:
            what = "no notice" if label == "none" else f"notice {label}"
            parts = [
                _val(s, "revenue_usd", label, "owner revenue"),
                _val(s, "utilisation", label, "utilisation"),
            ]
            if s.cell(f"{t}.refill_share", label) is not None:
                parts.append(_val(s, f"{t}.refill_share", label, "refilled"))
                parts.append(_val(s, f"{t}.refill_h", label, "refill time"))
            parts.append(_val(s, f"{t}.fees_usd", label, f"{t} pays"))
            lines.append(f"  {what}: " + "; ".join(p for p in parts if p))
        return lines

    return Study(
        "notice",
        f"What if {t} gives notice on these dates: the owner's revenue and utilisation, "
        "how fast the freed capacity refills, and the lessee's cost to move?",
        [axis],
        metrics,
        answer,
    )


# spares ----------------------------------------------------------------------------


def _spares(base: BaseScenario, sc: Scenario, lessee: Contract) -> Study:
    pool = next((c for c in sc.contracts() if c.commitment.all_available), None)
    if pool is None:
        raise SpecError(
            "--study spares",
            "the spare pool is the reserve of a tenant with all_available capacity; "
            "this scenario has none",
        )
    node = max(g.node_gpus for g in sc.cluster.groups)
    now = pool.commitment.reserve_gpus
    if now == 0:
        now = max(node, (sc.cluster.total_gpus // 50) // node * node)  # 2% of the cluster
    values = [pool.commitment.reserve_gpus]
    for v in (0, now // 2 // node * node, now, 2 * now):
        if v not in values and v <= sc.cluster.total_gpus:
            values.append(v)
    axis = [Assignment("run.spare_gpus", v, str(v)) for v in values]
    t = pool.tenant
    metrics = ["goodput", "sla_shortfall_gpu_h", f"{t}.goodput", f"{t}.used_gpu_h", "utilisation"]

    def answer(s: Summary) -> list[str]:
        lines = [f"Goodput against the spare pool (GPUs held back from {t}; 95% CI):"]
        for label in s.labels:
            parts = [
                _val(s, "goodput", label, "goodput"),
                _val(s, "sla_shortfall_gpu_h", label, "SLA shortfall GPU-h"),
                _val(s, f"{t}.used_gpu_h", label, f"{t} used GPU-h"),
            ]
            lines.append(f"  {int(label):,} spare GPUs: " + "; ".join(p for p in parts if p))
        if "goodput" not in s.cells:
            lines.append("  (failures are off in this scenario: goodput is not computed)")
        return lines

    return Study(
        "spares",
        "How much goodput does each size of spare pool buy?",
        [axis],
        metrics,
        answer,
    )


# price -----------------------------------------------------------------------------


def _price(base: BaseScenario, sc: Scenario, lessee: Contract) -> Study:
    t = lessee.tenant
    p = lessee.price
    if p.kind.value == "flat":
        field_name, now = "flat_fee_per_month", Decimal(p.flat_fee_cents_per_month) / 100
        unit = "/month"
    else:
        field_name, now = (
            "committed_rate_per_gpu_hour",
            Decimal(p.committed_rate_micro_per_gpu_hour) / 10**6,
        )
        unit = "/GPU-h"
        if now == 0:
            now = Decimal("2.00")
    key = f"tenants.{t}.contract.price.{field_name}"
    values: list[Decimal] = []
    for f in ("1", "0.5", "0.75", "1.25", "1.5"):
        v = (now * Decimal(f)).quantize(Decimal("0.01"))
        if v > 0 and v not in values:
            values.append(v)
    axis = [Assignment(key, str(v), str(v)) for v in values]  # a quoted amount: exact
    metrics = [
        "margin_usd",
        "revenue_usd",
        "break_even_utilisation",
        f"{t}.usd_per_useful_gpu_h",
        f"{t}.fees_usd",
    ]

    def answer(s: Summary) -> list[str]:
        lines = [f"The owner's margin and {t}'s cost per useful GPU-hour by price (95% CI):"]
        xs, ys = [], []
        for label in s.labels:
            price = Decimal(label.strip('"'))
            parts = [
                _val(s, "margin_usd", label, "owner margin"),
                _val(s, "break_even_utilisation", label, "break-even utilisation"),
                _val(s, f"{t}.usd_per_useful_gpu_h", label, f"{t} pays per useful GPU-h"),
            ]
            lines.append(f"  ${price:,}{unit}: " + "; ".join(p for p in parts if p))
            c = s.cell("margin_usd", label)
            if c is not None:
                xs.append(float(price))
                ys.append(c.mean)
        if len(xs) >= 2 and len(set(xs)) >= 2:
            slope, icept = np.polyfit(xs, ys, 1)
            if slope > 0:
                lines.insert(
                    1,
                    f"  The owner breaks even at about ${-icept / slope:,.2f}{unit} "
                    f"(a line through the mean margins; the file's price is ${now:,}{unit}).",
                )
        return lines

    return Study(
        "price",
        f"At what price does the owner break even, and what does {t} pay per useful GPU-hour?",
        [axis],
        metrics,
        answer,
    )


# power -----------------------------------------------------------------------------


def _power(base: BaseScenario, sc: Scenario, lessee: Contract) -> Study:
    energy = sc.sections.get("energy") or {}
    cap = energy.get("power_cap_mw")
    if cap is None:
        raise SpecError(
            "--study power",
            "the scenario sets no energy.power_cap_mw; give caps with "
            "--vary energy.power_cap_mw=V1,V2,...",
        )
    values: list[float] = []
    for f in (1.0, 0.8, 0.7, 0.6):
        v = round(float(cap) * f, 1)
        if v not in values:
            values.append(v)
    axis = [Assignment("energy.power_cap_mw", v, f"{v:g}") for v in values]
    tenants = [x.name for x in sc.tenants]
    metrics = [
        "held_for_power_gpu_h",
        "jobs_held_for_power",
        "peak_power_share",
        "utilisation",
        *(f"{x}.queue_p50_h" for x in tenants),
        "margin_usd",
    ]

    def answer(s: Summary) -> list[str]:
        lines = ["Where the power cap binds and what it costs in waiting (95% CI):"]
        binds = None
        for label in s.labels:
            held = s.cell("held_for_power_gpu_h", label)
            if binds is None and held is not None and held.mean > 0:
                binds = label
            parts = [
                _val(s, "held_for_power_gpu_h", label, "held GPU-h"),
                _val(s, "utilisation", label, "utilisation"),
                *(_val(s, f"{x}.queue_p50_h", label, f"{x} queue p50") for x in tenants),
            ]
            lines.append(f"  cap {label} MW: " + "; ".join(p for p in parts if p))
        lines.insert(
            1,
            f"  The cap first holds work back at {binds} MW."
            if binds is not None
            else "  No cap tried holds any work back.",
        )
        return lines

    return Study(
        "power",
        "Which power cap starts to bind, and what does it cost in waiting?",
        [axis],
        metrics,
        answer,
    )


def _val(s: Summary, m: str, label: str, name: str) -> str:
    c = s.cell(m, label)
    if c is None:
        return ""
    text = f"{name} {fmt_interval(m, c)}"
    d = s.diff(m, label)
    if d is not None:
        text += f" ({fmt_diff(m, d)} vs {s.baseline}{', within noise' if d.within_noise else ''})"
    return text


__all__ = ["STUDIES", "Study", "make_study"]
