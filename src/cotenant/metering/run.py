"""Metering of a run: invoices, energy, power against the site cap, and deal economics.

``metering_report(engine, scenario, settings, probe)`` turns a finished run into the
report's ``metering`` section (design doc 0005, "Metering a run"):

* **Invoices** for every UTC calendar month the run overlaps, for every contracted
  tenant whose term overlaps the month (``rating.rate_month``). An invoice is for the
  whole calendar month of the contract, whatever the run's length: the flat fee (or the
  committed GPU-hours) is owed for the month, prorated only by the term and the notice
  ramp. Usage (overage) and SLA credits come from the run, the only usage there is.
* **SLA credits** are for the GPU-seconds owed and not served: the engine's failure
  shortfall (entitled demand the failures left unserved beyond the spare pool) plus
  the guarantee violations (demand inside the entitlement started later than the
  grace period allows: the lateness times the job's GPUs). ``UsageProbe`` splits both
  by month; the engine counts a violation when the late job starts.
* **Energy** (MWh, litres, t CO2e, power cost) per tenant, per job and per month over
  the run; idle GPUs belong to ``"unallocated"`` (the owner).
* **Power** (``power.py``): peak facility power (an exact sweep over the ledger) against
  the site cap, facility power at the report's sample times, and the work held for
  power over the whole run (``UsageProbe.power``).
* **Economics** over the run: revenue *accrued* over the run (the month's fixed charge
  prorated to the part of the month the run covers, plus overage and credits), power
  cost, implied price per used GPU-hour, the tenant's utilization of its entitlement,
  and the owner's break-even utilization (``economics.py``).

``parse_metering_settings`` reads the scenario's ``[energy]`` table.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import numpy as np
from pydantic import BeforeValidator, Field, WithJsonSchema

from cotenant.contracts.entitlement import effective_end, ramp_integral
from cotenant.contracts.terms import parse_usd
from cotenant.metering.economics import economics_from_totals
from cotenant.metering.energy import (
    OWNER_UNALLOCATED,
    EnergyReport,
    EnergyUse,
    SiteEnergy,
    energy_report,
)
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.metering.money import (
    MICRO_PER_CENT,
    format_usd,
    gpu_seconds_cost_micro,
    micro_to_cents,
)
from cotenant.metering.power import PowerHolds, power_section, power_series_w
from cotenant.metering.rating import (
    Invoice,
    InvoiceLine,
    entitled_gpu_seconds,
    month_bounds,
    rate_month,
)
from cotenant.model.accelerators import CATALOGUE
from cotenant.model.contracts import Contract, PriceKind
from cotenant.model.errors import SpecError
from cotenant.model.spec import SpecTable, problem

if TYPE_CHECKING:
    from cotenant.cluster.topology import Topology
    from cotenant.engine.core import Engine

_MICRO_PLACES = 6


class RunSpan(Protocol):
    """What metering needs of a run's scenario: the metered horizon."""

    @property
    def start_s(self) -> int: ...

    @property
    def end_s(self) -> int: ...


# -- settings ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MeteringSettings:
    site: SiteEnergy = field(default_factory=SiteEnergy)
    fixed_cost_micro_per_gpu_hour: int = 0  # owner's capex amortisation and non-power opex


_USD_KEYS = ("power_price_per_kwh", "fixed_cost_per_gpu_hour")


def _number(v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise problem(f"expected a number, got {v!r}")
    return v


def _micro_usd(v: Any) -> int:
    try:
        return parse_usd(v, "", _MICRO_PLACES)
    except SpecError as e:
        raise problem(e.problem) from None


Number = Annotated[int | float, BeforeValidator(_number), WithJsonSchema({"type": "number"})]
MicroUsd = Annotated[
    int,
    BeforeValidator(_micro_usd),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]


class EnergyTable(SpecTable):
    """The scenario's ``[energy]`` table; an absent key keeps ``SiteEnergy``'s default."""

    pue: Number | None = None
    wue_l_per_kwh: Number | None = None
    carbon_kg_per_kwh: Number | None = None
    node_overhead_watts: Number | None = None
    power_cap_mw: Number | None = None
    power_price_per_kwh: MicroUsd | None = Field(None, description="USD, exact to the micro-dollar")
    fixed_cost_per_gpu_hour: MicroUsd | None = Field(
        None, description="the owner's capex amortisation and non-power opex, USD"
    )


ENERGY_KEYS = tuple(EnergyTable.keys())


def parse_metering_settings(
    raw: Mapping[str, Any] | None, field: str = "energy"
) -> MeteringSettings:
    """The scenario's ``[energy]`` table; absent keys keep ``SiteEnergy``'s documented
    defaults. USD amounts (``power_price_per_kwh``, ``fixed_cost_per_gpu_hour``) are exact
    to the micro-dollar, like price terms. A bad or unknown key raises ``SpecError``
    naming ``energy.<key>``."""
    if raw is None:
        return MeteringSettings()
    table = EnergyTable.read(raw, field)
    given = table.model_dump(exclude_none=True)
    numbers = {k: v for k, v in given.items() if k not in _USD_KEYS}
    if table.power_price_per_kwh is not None:
        numbers["power_price_micro_per_kwh"] = table.power_price_per_kwh
    try:
        site = SiteEnergy(**numbers).validate(field)
    except SpecError as e:
        if e.field == f"{field}.power_price_micro_per_kwh":
            raise SpecError(f"{field}.power_price_per_kwh", e.problem) from None
        raise
    return MeteringSettings(site, table.fixed_cost_per_gpu_hour or 0)


# -- observing a run ---------------------------------------------------------------------
def month_of(t: int) -> str:
    g = time.gmtime(t)
    return f"{g.tm_year:04d}-{g.tm_mon:02d}"


def months_between(start_s: int, end_s: int) -> list[str]:
    """Calendar months (UTC) that ``[start_s, end_s)`` overlaps, in order."""
    out: list[str] = []
    t = start_s
    while t < end_s:
        m = month_of(t)
        out.append(m)
        t = month_bounds(m)[1]
    return out


def split_by_month(amount: int, t0: int, t1: int) -> dict[str, int]:
    """``amount`` accrued at a constant rate over ``[t0, t1)``, split by calendar month in
    proportion to time: exact when ``amount`` is the rate times ``t1 - t0``; otherwise
    floored, the last month taking the remainder, so the parts always sum to ``amount``."""
    if t1 <= t0:
        raise SpecError("t1", f"must be after t0 ({t1} <= {t0})")
    parts: dict[str, int] = {}
    given = 0
    a = t0
    while a < t1:
        month = month_of(a)
        b = min(t1, month_bounds(month)[1])
        share = amount - given if b == t1 else amount * (b - t0) // (t1 - t0) - given
        parts[month] = share
        given += share
        a = b
    return parts


class UsageProbe:
    """Watches a run to split, by calendar month, each tenant's GPU-seconds owed and not
    served: the failure shortfall (integrated by the engine between steps; the probe
    reads the running total after every step and splits each step's share at month
    boundaries, exactly, since the rate is constant within a step) and the guarantee
    violations (lateness times GPUs, read when the late job starts).

    Attach before the run: ``engine.sinks`` gets ``on_event``; pass ``progress(...)`` to
    ``Engine.run``. Without per-step observations a step's shortfall is split in
    proportion to time, which is exact only if the rate was constant.

    It also counts the work held for power over the run (``power``, a ``PowerHolds``,
    which watches every cycle's decisions)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.power = PowerHolds(engine)
        self.last_s = engine.acct.last_s
        self.shortfall: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.late: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._seen_shortfall = {t: tt.shortfall_gpu_s for t, tt in engine.acct.tenants.items()}
        self._seen_violation = {t: tt.violation_s for t, tt in engine.acct.tenants.items()}
        engine.sinks.append(self.on_event)

    def progress(self, then: Callable[[int], None] | None = None) -> Callable[[int], None]:
        """A ``progress`` callback for ``Engine.run`` that observes, then calls ``then``."""

        def tick(t: int) -> None:
            self.observe(t)
            if then is not None:
                then(t)

        return tick

    def observe(self, t: int) -> None:
        t = min(t, self.engine.acct.last_s)
        if t <= self.last_s:
            return
        for tenant, tt in sorted(self.engine.acct.tenants.items()):
            delta = tt.shortfall_gpu_s - self._seen_shortfall.get(tenant, 0)
            if delta:
                self._seen_shortfall[tenant] = tt.shortfall_gpu_s
                for month, part in split_by_month(delta, self.last_s, t).items():
                    self.shortfall[tenant][month] += part
        self.last_s = t

    def on_event(self, e: Mapping[str, Any]) -> None:
        if e.get("event") != "place":
            return
        tenant = str(e["tenant"])
        now = self.engine.acct.tenants[tenant].violation_s
        late = now - self._seen_violation.get(tenant, 0)
        if late > 0:
            self._seen_violation[tenant] = now
            self.late[tenant][month_of(int(e["t"]))] += late * int(e["gpus"])

    def owed_not_served(self, tenant: str, month: str) -> tuple[int, int]:
        """GPU-seconds owed to ``tenant`` in ``month`` and not served (the credit basis):
        (failure shortfall, guarantee violations)."""
        return self.shortfall[tenant].get(month, 0), self.late[tenant].get(month, 0)


def metered_ledger(engine: Engine, until_s: int) -> UsageLedger:
    """The engine's ledger plus every still-open allocation interval closed at
    ``until_s``: all GPU-seconds allocated up to then. The engine's ledger is untouched."""
    records = list(engine.ledger.records())
    for job_id, (start, borrowed) in sorted(engine.open_usage().items()):
        run = engine.jobs[job_id]
        if run.placement is None or until_s <= start:
            continue
        records.append(
            UsageRecord(
                job_id,
                run.tenant,
                run.spec.gpus,
                engine.topo.kind_of_node(run.placement.nodes[0]),
                run.placement.nodes,
                start,
                until_s,
                borrowed,
                run.spec.kind.value,
            )
        )
    return UsageLedger(records)


# -- the report section ------------------------------------------------------------------
def fixed_charge_micro(
    contract: Contract, t0: int, t1: int, month: str, capacity: int, contracts: list[Contract]
) -> Fraction:
    """The part of ``month``'s fixed charge (flat fee, or committed GPU-hours at the
    committed rate) that falls in ``[t0, t1)``; exact, as ``rating.rate_month`` computes it."""
    m0, m1 = month_bounds(month)
    a, b = max(t0, m0), min(t1, m1)
    if b <= a:
        return Fraction(0)
    price = contract.price
    if price.kind is PriceKind.FLAT:
        share = ramp_integral(contract, a, b) / (m1 - m0)
        return price.flat_fee_cents_per_month * MICRO_PER_CENT * share
    owed = entitled_gpu_seconds(contract, a, b, capacity, contracts)
    return gpu_seconds_cost_micro(owed, price.committed_rate_micro_per_gpu_hour)


def accrued_cents(
    invoice: Invoice, contract: Contract, t0: int, t1: int, capacity: int, contracts: list[Contract]
) -> int:
    """What ``invoice`` earns over ``[t0, t1)``: the month's fixed charge prorated to the
    window, plus every usage line and credit (all usage is inside the run)."""
    m = invoice.month
    m0, m1 = month_bounds(m)
    whole = micro_to_cents(fixed_charge_micro(contract, m0, m1, m, capacity, contracts))
    part = micro_to_cents(fixed_charge_micro(contract, t0, t1, m, capacity, contracts))
    return part + invoice.subtotal_cents - whole + invoice.credits_cents


def metering_report(
    engine: Engine,
    scenario: RunSpan,
    settings: MeteringSettings | None = None,
    probe: UsageProbe | None = None,
    contracts: Iterable[Contract] | None = None,
) -> dict[str, Any]:
    """The report's ``metering`` section for a finished run of ``scenario`` (its start and
    end are the metered horizon). ``contracts`` replaces the engine's for billing (a
    replay bills its commitments only until the replay ends)."""
    settings = settings or MeteringSettings()
    site = settings.site
    h0, h1 = scenario.start_s, scenario.end_s
    if probe is not None:
        probe.observe(h1)
    ledger = metered_ledger(engine, h1)
    topo = engine.topo
    installed = {
        name: (int(topo.node_gpus[topo.node_kind == k].sum()), int((topo.node_kind == k).sum()))
        for k, name in enumerate(topo.kinds)
    }
    gpus_by_kind = {k: g for k, (g, _) in installed.items()}
    contracts = sorted(
        engine.contracts.values() if contracts is None else contracts, key=lambda c: c.tenant
    )
    months = months_between(h0, h1)

    invoices, accrued = _invoices(topo, contracts, months, ledger, probe, (h0, h1))
    energy = energy_report(ledger, site, CATALOGUE, gpus_by_kind, (h0, h1))
    used = {c.tenant: ledger.gpu_seconds(c.tenant, h0, h1) for c in contracts}
    entitled = {
        c.tenant: entitled_gpu_seconds(
            c, h0, h1, topo.capacity_of(c.commitment.accelerator), contracts
        )
        for c in contracts
    }
    econ = economics_from_totals(
        accrued,
        used,
        entitled,
        energy,
        site,
        gpus_by_kind,
        CATALOGUE,
        settings.fixed_cost_micro_per_gpu_hour,
    )

    holds = None
    if probe is not None:
        probe.power.finish(h1)
        holds = probe.power
    return {
        "start_s": h0,
        "end_s": h1,
        "months": months,
        "billing": "invoices cover whole calendar months of the contract, whatever the run's "
        "length; usage and credits come from the run; economics use revenue accrued over "
        "the run",
        "invoices": invoices,
        "energy": _energy_section(energy, ledger, site, gpus_by_kind, months, (h0, h1)),
        "power": power_section(engine, ledger, site, installed, energy, holds),
        "economics": econ.to_json_dict(),
    }


def _invoices(
    topo: Topology,
    contracts: list[Contract],
    months: list[str],
    ledger: UsageLedger,
    probe: UsageProbe | None,
    horizon: tuple[int, int],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every contract's invoice for every month its term overlaps, and each tenant's
    revenue accrued over the run (``horizon``)."""
    h0, h1 = horizon
    invoices: list[dict[str, Any]] = []
    accrued: dict[str, int] = {}
    for c in contracts:
        capacity = topo.capacity_of(c.commitment.accelerator)
        accrued.setdefault(c.tenant, 0)
        for m in months:
            m0, m1 = month_bounds(m)
            if c.start_s >= m1 or effective_end(c) <= m0:
                continue
            short, late = probe.owed_not_served(c.tenant, m) if probe is not None else (0, 0)
            inv = rate_month(c, m, ledger, capacity, contracts, short, late)
            run_part = accrued_cents(inv, c, h0, h1, capacity, contracts)
            accrued[c.tenant] += run_part
            invoices.append(
                {
                    **inv.to_json_dict(),
                    "price_kind": c.price.kind.value,
                    "accrued_over_run_cents": run_part,
                    "accrued_over_run": format_usd(run_part),
                }
            )
    return invoices, accrued


def _energy_section(
    energy: EnergyReport,
    ledger: UsageLedger,
    site: SiteEnergy,
    gpus_by_kind: Mapping[str, int],
    months: list[str],
    horizon: tuple[int, int],
) -> dict[str, Any]:
    """The report's energy: the site's figures, per tenant, in total, per calendar month
    (each month's part of the run) and per job."""
    h0, h1 = horizon
    by_month = {
        m: {
            t: _energy_json(u)
            for t, u in energy_report(
                ledger,
                site,
                CATALOGUE,
                gpus_by_kind,
                (max(h0, month_bounds(m)[0]), min(h1, month_bounds(m)[1])),
            ).per_tenant.items()
        }
        for m in months
    }
    return {
        "site": {f.name: getattr(site, f.name) for f in fields(site)},
        "per_tenant": {t: _energy_json(u) for t, u in energy.per_tenant.items()},
        "total": _energy_json(energy.total),
        "by_month": by_month,
        "per_job": {j: _energy_json(u, brief=True) for j, u in energy.per_job.items()},
    }


def _energy_json(u: EnergyUse, brief: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "facility_mwh": u.facility_kwh / 1000,
        "water_l": u.water_l,
        "co2e_t": u.co2e_kg / 1000,
    }
    if not brief:
        out |= {
            "gpu_hours": u.gpu_seconds / 3600,
            "it_mwh": u.it_kwh / 1000,
            "cost_cents": u.cost_cents,
            "cost": format_usd(u.cost_cents),
        }
    return out


# -- reading a saved report --------------------------------------------------------------
def invoice_from_json(d: Mapping[str, Any]) -> Invoice:
    """An ``Invoice`` back from ``Invoice.to_json_dict()`` (e.g. from a saved report)."""
    usage = d.get("usage", {})
    return Invoice(
        tenant=str(d["tenant"]),
        month=str(d["month"]),
        currency=str(d["currency"]),
        lines=tuple(
            InvoiceLine(
                str(ln["description"]),
                str(ln["quantity"]),
                str(ln["unit_price"]),
                int(ln["amount_cents"]),
            )
            for ln in d["lines"]
        ),
        subtotal_cents=int(d["subtotal_cents"]),
        credits_cents=int(d["credits_cents"]),
        total_cents=int(d["total_cents"]),
        own_gpu_seconds=int(usage.get("own_gpu_seconds", 0)),
        borrowed_gpu_seconds=int(usage.get("borrowed_gpu_seconds", 0)),
        entitled_gpu_seconds=int(usage.get("entitled_gpu_seconds", 0)),
        shortfall_gpu_seconds=int(usage.get("shortfall_gpu_seconds", 0)),
        violation_gpu_seconds=int(usage.get("violation_gpu_seconds", 0)),
    )


def find_invoice(metering: Mapping[str, Any], tenant: str, month: str) -> Invoice:
    """The invoice of ``tenant`` for ``month`` in a metering section; ``SpecError`` naming
    ``--tenant`` or ``--month`` (with the valid values) when there is none."""
    month_bounds(month)  # a malformed month names the field
    invs = list(metering.get("invoices", []))
    tenants = sorted({str(i["tenant"]) for i in invs})
    if tenant not in tenants:
        raise SpecError(
            "--tenant",
            f"no invoice for tenant {tenant!r}; tenants with a contract: {', '.join(tenants)}",
        )
    months = [str(i["month"]) for i in invs if i["tenant"] == tenant]
    for i in invs:
        if i["tenant"] == tenant and i["month"] == month:
            return invoice_from_json(i)
    raise SpecError(
        "--month",
        f"the run does not cover {month} for {tenant!r}; months covered: {', '.join(months)}",
    )


# -- text --------------------------------------------------------------------------------
_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float], top: float, width: int = 72) -> str:
    """Values as block characters, full height at ``top``, averaged down to ``width``."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0 or top <= 0:
        return ""
    chunks = np.array_split(v, min(width, v.size))
    levels = [min(8, max(0, math.ceil(float(c.max()) / top * 8))) for c in chunks]
    return "".join(_BARS[i] for i in levels)


def metering_text(m: Mapping[str, Any]) -> list[str]:
    """A compact text section: bills, energy per tenant, power against the cap, economics."""
    days = (int(m["end_s"]) - int(m["start_s"])) / 86_400
    out = [f"Metering ({days:g} days; invoices are for whole calendar months of the contract)"]
    for inv in m["invoices"]:
        credit = f", credits {format_usd(inv['credits_cents'])}" if inv["credits_cents"] else ""
        out.append(
            f"  bill {inv['tenant']} {inv['month']}: {inv['total']} "
            f"({inv['price_kind']}{credit}; accrued over the run {inv['accrued_over_run']})"
        )
    e = m["energy"]
    for name, u in sorted(e["per_tenant"].items(), key=lambda kv: kv[0] == OWNER_UNALLOCATED):
        out.append(
            f"  energy {name}: {u['facility_mwh']:,.1f} MWh, {u['water_l']:,.0f} L water, "
            f"{u['co2e_t']:,.1f} t CO2e, power {u['cost']}"
        )
    p = m["power"]
    cap = p["cap_mw"]
    cap_text = "no cap" if cap is None else f"cap {_mw(cap)} ({p['peak_share_of_cap']:.0%})"
    over = " OVER THE CAP" if p["over_cap"] else ""
    held = p.get("held_for_power")
    during = (
        ""
        if held is None
        else f"{held['jobs']:,} jobs held for power during the run "
        f"({held['held_gpu_h']:,.1f} GPU-h waited), "
    )
    out.append(
        f"  power: peak facility {_mw(p['peak_facility_mw'])}, {cap_text}{over}; "
        f"{during}{p['jobs_held_for_power_at_end']} held at the end"
    )
    top = float(cap) if cap is not None else max(p["facility_mw"], default=0.0)
    line = sparkline(p["facility_mw"], top)
    if line:
        out.append(f"  power over time (full height {_mw(top)}): {line}")
    ec = m["economics"]
    parts = [
        f"revenue over the run {format_usd(ec['revenue_cents'])}",
        f"power {format_usd(ec['power_cost_cents'])}",
        f"margin {ec['margin']}",
    ]
    be = ec["break_even_utilization"]
    if be is not None:
        parts.append(f"owner break-even utilization {be:.1%}")
    out.append("  economics: " + ", ".join(parts))
    for t in ec["tenants"]:
        util = "n/a" if t["utilization"] is None else f"{t['utilization']:.1%}"
        out.append(
            f"    {t['tenant']}: pays {t['implied_price'] or 'n/a'} used, "
            f"uses {util} of its entitlement"
        )
    return out


def _mw(mw: float) -> str:
    if mw >= 10:
        return f"{mw:,.1f} MW"
    if mw >= 0.1:
        return f"{mw:.3f} MW"
    return f"{mw * 1000:,.1f} kW"


__all__ = [
    "ENERGY_KEYS",
    "MeteringSettings",
    "UsageProbe",
    "accrued_cents",
    "find_invoice",
    "invoice_from_json",
    "metered_ledger",
    "metering_report",
    "metering_text",
    "months_between",
    "parse_metering_settings",
    "power_series_w",
    "split_by_month",
]
