"""Metering a run: the [energy] table, splitting by month, accrued revenue, invoices
for every month a run overlaps, and reading invoices back from a saved report."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from builders import DAY, T0, contract
from cotenant.faults.injector import install, parse_failure_settings
from cotenant.metering.ledger import UsageLedger
from cotenant.metering.money import micro_to_cents
from cotenant.metering.rating import month_bounds, rate_month
from cotenant.metering.run import (
    MeteringSettings,
    UsageProbe,
    accrued_cents,
    find_invoice,
    invoice_from_json,
    metered_ledger,
    metering_report,
    months_between,
    parse_metering_settings,
    split_by_month,
)
from cotenant.model.contracts import PriceKind, PriceTerms
from cotenant.model.errors import SpecError
from cotenant.model.time import parse_time
from cotenant.twin.runtime import build_sim_engine, workload_of
from cotenant.twin.scenario import parse_scenario

NOV_1 = parse_time("2026-11-01", "t")


# -- [energy] ------------------------------------------------------------------------------
def test_no_energy_table_keeps_the_documented_defaults() -> None:
    s = parse_metering_settings(None)
    assert (s.site.pue, s.site.power_cap_mw, s.fixed_cost_micro_per_gpu_hour) == (1.2, None, 0)


def test_energy_table_is_read_exactly() -> None:
    s = parse_metering_settings(
        {
            "pue": 1.1,
            "power_cap_mw": 150,
            "power_price_per_kwh": "0.0725",
            "fixed_cost_per_gpu_hour": 1.5,
            "node_overhead_watts": 1800,
        }
    )
    assert s.site.pue == 1.1 and s.site.power_cap_mw == 150
    assert s.site.power_price_micro_per_kwh == 72_500
    assert s.site.node_overhead_watts == 1800
    assert s.fixed_cost_micro_per_gpu_hour == 1_500_000


@pytest.mark.parametrize(
    ("table", "field", "problem"),
    [
        ({"pue": 0.9}, "energy.pue", ">= 1"),
        ({"pue": "high"}, "energy.pue", "expected a number"),
        ({"power_cap_mw": 0}, "energy.power_cap_mw", "must be > 0"),
        ({"power_cap_mw": -5}, "energy.power_cap_mw", ">= 0"),
        ({"wue_l_per_kwh": -1.0}, "energy.wue_l_per_kwh", ">= 0"),
        ({"node_overhead_watts": 1999.5}, "energy.node_overhead_watts", "whole number"),
        ({"power_price_per_kwh": -0.1}, "energy.power_price_per_kwh", "must not be negative"),
        ({"power_price_per_kwh": "0.0000001"}, "energy.power_price_per_kwh", "decimal places"),
        ({"fixed_cost_per_gpu_hour": "x"}, "energy.fixed_cost_per_gpu_hour", "cannot read"),
        ({"pue_target": 1.1}, "energy.pue_target", "unknown key"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_energy_table_names_the_field(table: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_metering_settings(table)
    assert err.value.field == field
    assert problem in err.value.problem


def test_bad_energy_table_fails_the_command_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "e"\nduration = "1h"\n[cluster]\npreset = "small-16"\n[energy]\npue = 0.8\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", "simulate", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "energy.pue" in lines[0], done.stderr


# -- months ----------------------------------------------------------------------------------
def test_months_between() -> None:
    assert months_between(T0, T0 + 3 * DAY) == ["2026-10"]
    assert months_between(T0 + 29 * DAY, NOV_1 + DAY) == ["2026-10", "2026-11"]
    assert months_between(T0, NOV_1) == ["2026-10"]  # half-open
    assert months_between(T0, T0) == []


@pytest.mark.parametrize(
    ("amount", "t0", "t1", "parts"),
    [
        (7 * 3 * DAY, NOV_1 - DAY, NOV_1 + 2 * DAY, {"2026-10": 7 * DAY, "2026-11": 14 * DAY}),
        (100, T0, T0 + 10, {"2026-10": 100}),
        (10, NOV_1 - 1, NOV_1 + 2, {"2026-10": 3, "2026-11": 7}),  # floored; sums to 10
    ],
    ids=["exact-rate", "one-month", "remainder-last"],
)
def test_split_by_month(amount: int, t0: int, t1: int, parts: dict[str, int]) -> None:
    assert split_by_month(amount, t0, t1) == parts
    assert sum(parts.values()) == amount


# -- accrued revenue -----------------------------------------------------------------------
FLAT = PriceTerms(kind=PriceKind.FLAT, flat_fee_cents_per_month=3_100_000_00)
RATE = PriceTerms(committed_rate_micro_per_gpu_hour=2_000_000, overage_rate_micro_per_gpu_hour=0)


def test_flat_fee_accrues_in_proportion_to_the_window() -> None:
    c = replace(contract("lessee", all_available=True), price=FLAT)
    inv = rate_month(c, "2026-10", UsageLedger(), 64, [c])
    assert inv.total_cents == 3_100_000_00
    # 3 of 31 days: $3.1M * 3/31 = $300,000.
    assert accrued_cents(inv, c, T0, T0 + 3 * DAY, 64, [c]) == 300_000_00


def test_committed_rate_accrues_with_the_entitlement() -> None:
    c = replace(contract("owner", 16), price=RATE)
    inv = rate_month(c, "2026-10", UsageLedger(), 64, [c])
    assert inv.total_cents == micro_to_cents(16 * 31 * 24 * 2_000_000)
    # 16 GPUs * 48 h * $2 = $1,536.
    assert accrued_cents(inv, c, T0, T0 + 2 * DAY, 64, [c]) == 1_536_00


# -- a run across a month end --------------------------------------------------------------
SCENARIO = """
name = "month-end"
start = "2026-10-30T00:00:00Z"
duration = "4d"
seed = 3
[cluster]
groups = [{ accelerator = "H100-SXM-80GB", nodes = 8, nodes_per_rack = 4 }]
[[tenants]]
name = "owner"
[tenants.contract]
commitment = { gpus = 24 }
spares_backed = true
price = { committed_rate_per_gpu_hour = "2.00", overage_rate_per_gpu_hour = "3.00", \
sla_credit_per_gpu_hour = "5.00", sla_credit_cap_percent = 50 }
[tenants.workload]
pretraining_runs = 0
rl_runs = 0
experiments = 80
experiment_gpus = [1, 16]
experiment_median_hours = 3.0
[[tenants]]
name = "lessee"
[tenants.contract]
commitment = { all_available = true }
price = { flat_fee_per_month = "100000", overage_rate_per_gpu_hour = "4.00", \
sla_credit_per_gpu_hour = "10", sla_credit_cap_percent = 25 }
[tenants.workload]
pretraining_runs = 0
rl_runs = 0
experiments = 80
experiment_gpus = [1, 16]
experiment_median_hours = 3.0
[failures]
enabled = true
scale = 3000.0
"""


@pytest.fixture(scope="module")
def month_end() -> tuple[Any, UsageProbe, dict[str, Any]]:
    sc = parse_scenario(tomllib.loads(SCENARIO))
    eng = build_sim_engine(sc)
    failures = parse_failure_settings(sc.sections["failures"])
    install(eng, failures.model, sc.seed + failures.seed_offset, sc.start_s, sc.end_s)
    for spec in workload_of(sc):
        eng.submit(spec)
    probe = UsageProbe(eng)
    eng.run(sc.end_s, progress=probe.progress())
    return eng, probe, metering_report(eng, sc, MeteringSettings(), probe)


def test_every_month_of_the_run_is_invoiced(month_end: tuple[Any, UsageProbe, Any]) -> None:
    eng, _, m = month_end
    assert m["months"] == ["2026-10", "2026-11"]
    keys = [(i["tenant"], i["month"]) for i in m["invoices"]]
    assert keys == [(t, mo) for t in ("lessee", "owner") for mo in ("2026-10", "2026-11")]
    # Usage on the invoices adds up to what the engine allocated.
    for t in ("lessee", "owner"):
        own = sum(i["usage"]["own_gpu_seconds"] for i in m["invoices"] if i["tenant"] == t)
        lent = sum(i["usage"]["borrowed_gpu_seconds"] for i in m["invoices"] if i["tenant"] == t)
        assert own == eng.acct.tenants[t].own_gpu_s
        assert lent == eng.acct.tenants[t].borrowed_gpu_s


def test_lessee_starting_oct_30_pays_two_days_of_october(
    month_end: tuple[Any, UsageProbe, Any],
) -> None:
    _, _, m = month_end
    oct_, nov = (i for i in m["invoices"] if i["tenant"] == "lessee")
    fee = oct_["lines"][0]
    assert fee["amount_cents"] == micro_to_cents(Fraction(100_000_00 * 10_000 * 2, 31))
    assert nov["lines"][0]["amount_cents"] == 100_000_00  # the whole of November is owed


def test_shortfall_is_split_by_month_and_credited(
    month_end: tuple[Any, UsageProbe, Any],
) -> None:
    eng, probe, m = month_end
    for t in ("lessee", "owner"):
        tt = eng.acct.tenants[t]
        assert tt.shortfall_gpu_s > 0  # failures at 3000x leave entitled demand unserved
        assert sum(probe.shortfall[t].values()) == tt.shortfall_gpu_s
        assert (sum(probe.late[t].values()) > 0) == (tt.violation_s > 0)
        for inv in (i for i in m["invoices"] if i["tenant"] == t):
            short, late = probe.owed_not_served(t, inv["month"])
            assert inv["usage"]["shortfall_gpu_seconds"] == short
            assert inv["usage"]["violation_gpu_seconds"] == late
            credit = [ln for ln in inv["lines"] if ln["description"].startswith("SLA credit")]
            assert len(credit) == (1 if short + late else 0)
            assert inv["credits_cents"] <= 0
            assert inv["total_cents"] == inv["subtotal_cents"] + inv["credits_cents"]


def test_metered_ledger_closes_open_intervals(month_end: tuple[Any, UsageProbe, Any]) -> None:
    eng, _, _ = month_end
    end = eng.acct.last_s
    ledger = metered_ledger(eng, end)
    assert ledger.gpu_seconds() == sum(tt.used_gpu_s for tt in eng.acct.tenants.values())
    assert len(ledger) >= len(eng.ledger)


# -- reading invoices back ---------------------------------------------------------------
def test_invoice_round_trips_through_json(month_end: tuple[Any, UsageProbe, Any]) -> None:
    eng, probe, m = month_end
    c = eng.contracts["lessee"]
    ledger = metered_ledger(eng, eng.acct.last_s)
    short, late = probe.owed_not_served("lessee", "2026-11")
    inv = rate_month(c, "2026-11", ledger, 64, eng.contracts.values(), short, late)
    assert invoice_from_json(inv.to_json_dict()) == inv
    assert find_invoice(m, "lessee", "2026-11") == inv


@pytest.mark.parametrize(
    ("tenant", "month", "field"),
    [("nobody", "2026-10", "--tenant"), ("lessee", "2026-12", "--month"), ("lessee", "x", "month")],
    ids=["unknown-tenant", "month-not-covered", "bad-month"],
)
def test_find_invoice_names_the_option(
    month_end: tuple[Any, UsageProbe, Any], tenant: str, month: str, field: str
) -> None:
    _, _, m = month_end
    with pytest.raises(SpecError) as err:
        find_invoice(m, tenant, month)
    assert err.value.field == field


def test_month_bounds_of_the_run() -> None:
    assert month_bounds("2026-11")[0] == NOV_1
