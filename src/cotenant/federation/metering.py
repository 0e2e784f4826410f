"""Metering across providers: a pool's usage rated on its own terms (on demand or spot per
GPU-hour, data moved in per TB), one invoice per tenant per UTC month, and each job's
cost, so overflow and migration can be told apart (docs/design/0014-providers.md).

Exact until the single rounding per invoice line (``metering/money.py``); a quantity is
split between months by clipping its interval, as the lease's ledger is."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from cotenant.federation.providers import GB_PER_TB, PoolProvider
from cotenant.metering.ledger import UsageRecord
from cotenant.metering.money import (
    MICRO_PER_USD,
    format_usd,
    gpu_seconds_cost_micro,
    micro_to_cents,
)
from cotenant.metering.rating import InvoiceLine, month_bounds
from cotenant.metering.run import month_of, months_between


@dataclass(frozen=True, slots=True)
class DataMove:
    """Data moved into a pool for one job at ``t``."""

    job_id: str
    tenant: str
    t: int
    gb: int


@dataclass
class PoolMonth:
    """One tenant's use of one pool in one month."""

    on_demand_gpu_s: int = 0
    spot_gpu_s: int = 0
    data_gb: int = 0


@dataclass
class PoolBill:
    """A pool's usage, rated: per (tenant, month), and each job's exact cost."""

    pool: PoolProvider
    months: dict[tuple[str, str], PoolMonth] = field(default_factory=dict)
    job_micro: dict[str, Fraction] = field(default_factory=lambda: defaultdict(Fraction))
    job_gpu_s: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def invoice_lines(self, tenant: str, month: str) -> list[InvoiceLine]:
        m = self.months.get((tenant, month), PoolMonth())
        p = self.pool
        lines = []
        for what, gpu_s, rate in (
            ("on demand", m.on_demand_gpu_s, p.on_demand_micro_per_gpu_hour),
            ("spot", m.spot_gpu_s, p.spot_micro_per_gpu_hour),
        ):
            if gpu_s:
                lines.append(
                    InvoiceLine(
                        f"{p.name} {p.accelerator} {what}",
                        f"{gpu_s / 3600:,.2f} GPU-h",
                        f"{_usd_rate(rate)}/GPU-h",
                        micro_to_cents(gpu_seconds_cost_micro(gpu_s, rate)),
                    )
                )
        if m.data_gb:
            micro = Fraction(m.data_gb * p.data_move_micro_per_tb, GB_PER_TB)
            lines.append(
                InvoiceLine(
                    f"{p.name} data moved in",
                    f"{m.data_gb / GB_PER_TB:,.3f} TB",
                    f"{_usd_rate(p.data_move_micro_per_tb)}/TB",
                    micro_to_cents(micro),
                )
            )
        return lines

    def invoices(self) -> list[dict[str, object]]:
        out = []
        for tenant, month in sorted(self.months):
            lines = self.invoice_lines(tenant, month)
            total = sum(x.amount_cents for x in lines)
            out.append(
                {
                    "provider": self.pool.name,
                    "tenant": tenant,
                    "month": month,
                    "lines": [x.to_json_dict() for x in lines],
                    "total_cents": total,
                    "total": format_usd(total),
                }
            )
        return out

    def total_cents(self, tenant: str | None = None) -> int:
        return sum(
            int(inv["total_cents"])  # type: ignore[call-overload]
            for inv in self.invoices()
            if tenant is None or inv["tenant"] == tenant
        )


def rate_pool(
    pool: PoolProvider,
    records: Iterable[UsageRecord],
    spot_until: Mapping[str, int],
    data: Sequence[DataMove],
    start_s: int,
    end_s: int,
) -> PoolBill:
    """Rate a pool's ledger over ``[start_s, end_s)``. A record is spot while its job ran
    on spot (``spot_until``: job -> until when; a record starting before is spot)."""
    bill = PoolBill(pool)
    months = months_between(start_s, end_s)
    for rec in records:
        until = spot_until.get(rec.job_id)
        spot = until is not None and rec.start_s < until
        rate = pool.spot_micro_per_gpu_hour if spot else pool.on_demand_micro_per_gpu_hour
        for month in months:
            m0, m1 = month_bounds(month)
            t0, t1 = max(rec.start_s, m0, start_s), min(rec.end_s, m1, end_s)
            if t1 <= t0:
                continue
            gpu_s = (t1 - t0) * rec.gpus
            pm = bill.months.setdefault((rec.tenant, month), PoolMonth())
            if spot:
                pm.spot_gpu_s += gpu_s
            else:
                pm.on_demand_gpu_s += gpu_s
            bill.job_micro[rec.job_id] += gpu_seconds_cost_micro(gpu_s, rate)
            bill.job_gpu_s[rec.job_id] += gpu_s
    for mv in data:
        if not start_s <= mv.t < end_s or not mv.gb:
            continue
        pm = bill.months.setdefault((mv.tenant, month_of(mv.t)), PoolMonth())
        pm.data_gb += mv.gb
        bill.job_micro[mv.job_id] += Fraction(mv.gb * pool.data_move_micro_per_tb, GB_PER_TB)
    return bill


def _usd_rate(micro: int) -> str:
    whole, frac = divmod(micro, MICRO_PER_USD)
    text = f"{frac:06d}".rstrip("0")
    return f"${whole:,}.{text.ljust(2, '0')}"
