"""Deal economics: what the lease earns, what the power costs, and how well it is used.

Definitions, over the energy report's horizon ``[start_s, end_s)`` (design doc 0005):

* revenue (per tenant): the sum of its invoice totals (credits included).
* power cost: the energy report's facility cost, per tenant, plus ``"unallocated"``
  (idle GPUs and their nodes, borne by the owner).
* fixed cost: ``fixed_cost_micro_per_gpu_hour * installed GPU-hours``: the owner's
  capex amortisation and non-power opex, an input (0 when not given).
* margin: revenue - power cost - fixed cost.
* implied price: revenue / GPU-hours actually used (own + borrowed); what the
  tenant really pays per GPU-hour it ran. A flat lease that is half used costs its
  lessee twice the nominal rate.
* lessee utilization: used GPU-hours / entitled GPU-hours (what it pays for).
* cluster utilization: GPU-hours used by all tenants / installed GPU-hours.
* owner's break-even utilization ``u*``: the share of installed GPU-hours the owner
  must sell, at the realised price ``p`` per used GPU-hour, for revenue to cover
  costs. With ``c`` the fixed cost per installed GPU-hour, ``e_idle`` and ``e_busy``
  the power cost of an idle and a busy GPU-hour (installed-GPU-weighted over kinds,
  node overhead and PUE included), revenue ``p*u*H`` equals cost
  ``H*(c + e_idle + u*(e_busy - e_idle))`` at ``u* = (c + e_idle) / (p - (e_busy - e_idle))``.
  None when nothing was used (no price) or when ``p <= e_busy - e_idle`` (every GPU-hour
  sold loses money); above 1 means no utilization breaks even at that price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from cotenant.metering.energy import EnergyReport, SiteEnergy, gpu_hour_power_cost_micro
from cotenant.metering.money import (
    MICRO_PER_CENT,
    SECONDS_PER_HOUR,
    format_rate,
    format_usd,
    gpu_seconds_cost_micro,
    micro_to_cents,
    price_per_gpu_hour_micro,
)
from cotenant.metering.rating import Invoice, month_bounds
from cotenant.model.accelerators import CATALOGUE, AcceleratorKind
from cotenant.model.errors import SpecError


@dataclass(frozen=True, slots=True)
class TenantEconomics:
    tenant: str
    revenue_cents: int
    power_cost_cents: int
    used_gpu_seconds: int
    entitled_gpu_seconds: int
    implied_price_micro_per_gpu_hour: int | None  # None: nothing used
    utilization: Fraction | None  # used / entitled; None: nothing entitled

    def to_json_dict(self) -> dict[str, object]:
        price = self.implied_price_micro_per_gpu_hour
        return {
            "tenant": self.tenant,
            "revenue_cents": self.revenue_cents,
            "revenue": format_usd(self.revenue_cents),
            "power_cost_cents": self.power_cost_cents,
            "used_gpu_hours": _hours(self.used_gpu_seconds),
            "entitled_gpu_hours": _hours(self.entitled_gpu_seconds),
            "implied_price_micro_per_gpu_hour": price,
            "implied_price": None if price is None else format_rate(price),
            "utilization": _ratio(self.utilization),
        }


@dataclass(frozen=True, slots=True)
class DealEconomics:
    start_s: int
    end_s: int
    tenants: tuple[TenantEconomics, ...]
    revenue_cents: int
    power_cost_cents: int  # all facility power, unallocated included
    fixed_cost_cents: int
    margin_cents: int
    installed_gpu_seconds: int
    used_gpu_seconds: int
    cluster_utilization: Fraction | None
    implied_price_micro_per_gpu_hour: int | None
    break_even_utilization: Fraction | None

    def to_json_dict(self) -> dict[str, object]:
        price = self.implied_price_micro_per_gpu_hour
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "tenants": [t.to_json_dict() for t in self.tenants],
            "revenue_cents": self.revenue_cents,
            "power_cost_cents": self.power_cost_cents,
            "fixed_cost_cents": self.fixed_cost_cents,
            "margin_cents": self.margin_cents,
            "margin": format_usd(self.margin_cents),
            "installed_gpu_hours": _hours(self.installed_gpu_seconds),
            "used_gpu_hours": _hours(self.used_gpu_seconds),
            "cluster_utilization": _ratio(self.cluster_utilization),
            "implied_price_micro_per_gpu_hour": price,
            "implied_price": None if price is None else format_rate(price),
            "break_even_utilization": _ratio(self.break_even_utilization),
        }


def deal_economics(
    invoices: Iterable[Invoice],
    energy: EnergyReport,
    site: SiteEnergy,
    cluster_gpus_by_kind: Mapping[str, int],
    catalogue: Mapping[str, AcceleratorKind] = CATALOGUE,
    fixed_cost_micro_per_gpu_hour: int = 0,
) -> DealEconomics:
    """The economics of the deals invoiced in ``invoices``; see the module docstring.

    Every invoice's month must lie inside the energy report's horizon.
    """
    if fixed_cost_micro_per_gpu_hour < 0:
        raise SpecError("fixed_cost_micro_per_gpu_hour", "must be >= 0")
    revenue: dict[str, int] = {}
    used: dict[str, int] = {}
    entitled: dict[str, int] = {}
    for i, inv in enumerate(invoices):
        m0, m1 = month_bounds(inv.month)
        if m0 < energy.start_s or m1 > energy.end_s:
            raise SpecError(
                f"invoices[{i}].month",
                f"{inv.month} is outside the energy horizon [{energy.start_s}, {energy.end_s})",
            )
        revenue[inv.tenant] = revenue.get(inv.tenant, 0) + inv.total_cents
        used[inv.tenant] = used.get(inv.tenant, 0) + inv.used_gpu_seconds
        entitled[inv.tenant] = entitled.get(inv.tenant, 0) + inv.entitled_gpu_seconds
    return economics_from_totals(
        revenue,
        used,
        entitled,
        energy,
        site,
        cluster_gpus_by_kind,
        catalogue,
        fixed_cost_micro_per_gpu_hour,
    )


def economics_from_totals(
    revenue: Mapping[str, int],
    used: Mapping[str, int],
    entitled: Mapping[str, int],
    energy: EnergyReport,
    site: SiteEnergy,
    cluster_gpus_by_kind: Mapping[str, int],
    catalogue: Mapping[str, AcceleratorKind] = CATALOGUE,
    fixed_cost_micro_per_gpu_hour: int = 0,
) -> DealEconomics:
    """``deal_economics`` from per-tenant totals over the energy report's horizon: revenue
    in cents, used and entitled GPU-seconds (keys of ``revenue``; the others default to 0).
    For a run that covers part of a month, pass the revenue accrued over the run."""
    if fixed_cost_micro_per_gpu_hour < 0:
        raise SpecError("fixed_cost_micro_per_gpu_hour", "must be >= 0")
    used = {t: used.get(t, 0) for t in revenue}
    entitled = {t: entitled.get(t, 0) for t in revenue}
    tenants = tuple(
        TenantEconomics(
            tenant=t,
            revenue_cents=revenue[t],
            power_cost_cents=energy.per_tenant[t].cost_cents if t in energy.per_tenant else 0,
            used_gpu_seconds=used[t],
            entitled_gpu_seconds=entitled[t],
            implied_price_micro_per_gpu_hour=price_per_gpu_hour_micro(revenue[t], used[t]),
            utilization=Fraction(used[t], entitled[t]) if entitled[t] else None,
        )
        for t in sorted(revenue)
    )

    horizon_s = energy.end_s - energy.start_s
    gpus = {k: n for k, n in sorted(cluster_gpus_by_kind.items()) if n > 0}
    for k in gpus:
        if k not in catalogue:
            valid = ", ".join(sorted(catalogue))
            raise SpecError(f"cluster_gpus_by_kind[{k!r}]", f"unknown kind; valid: {valid}")
    installed = sum(gpus.values()) * horizon_s
    total_revenue = sum(revenue.values())
    total_used = sum(used.values())
    fixed_cents = micro_to_cents(gpu_seconds_cost_micro(installed, fixed_cost_micro_per_gpu_hour))
    power_cents = energy.total.cost_cents

    break_even = _break_even(
        total_revenue, total_used, gpus, site, catalogue, fixed_cost_micro_per_gpu_hour
    )

    return DealEconomics(
        start_s=energy.start_s,
        end_s=energy.end_s,
        tenants=tenants,
        revenue_cents=total_revenue,
        power_cost_cents=power_cents,
        fixed_cost_cents=fixed_cents,
        margin_cents=total_revenue - power_cents - fixed_cents,
        installed_gpu_seconds=installed,
        used_gpu_seconds=total_used,
        cluster_utilization=Fraction(total_used, installed) if installed else None,
        implied_price_micro_per_gpu_hour=price_per_gpu_hour_micro(total_revenue, total_used),
        break_even_utilization=break_even,
    )


def _break_even(
    revenue_cents: int,
    used_gpu_s: int,
    gpus: Mapping[str, int],
    site: SiteEnergy,
    catalogue: Mapping[str, AcceleratorKind],
    fixed_cost_micro_per_gpu_hour: int,
) -> Fraction | None:
    """The utilisation at which the owner breaks even at the implied price: the fixed
    cost and idle power of every GPU, against the margin of each GPU-hour sold (price less
    the extra power of a busy GPU); ``None`` without use or a positive margin."""
    if used_gpu_s <= 0 or not gpus:
        return None
    price = Fraction(revenue_cents * MICRO_PER_CENT * SECONDS_PER_HOUR, used_gpu_s)
    n = sum(gpus.values())

    def mean_power_cost(busy: bool) -> Fraction:
        return (
            sum(
                (
                    gpu_hour_power_cost_micro(catalogue[k], site, busy=busy) * g
                    for k, g in gpus.items()
                ),
                start=Fraction(0),
            )
            / n
        )

    e_idle, e_busy = mean_power_cost(False), mean_power_cost(True)
    margin_per_sold = price - (e_busy - e_idle)
    if margin_per_sold <= 0:
        return None
    return (fixed_cost_micro_per_gpu_hour + e_idle) / margin_per_sold


def _hours(gpu_seconds: int) -> float:
    return gpu_seconds / SECONDS_PER_HOUR


def _ratio(x: Fraction | None) -> float | None:
    return None if x is None else float(x)
