"""The colossus-lease run reports the lessee's monthly bill, energy per tenant and peak
facility power against the 150 MW cap.

Three days from 2026-10-01 on the full 100,000-GPU cluster, with the scenario's own
contracts, failure settings, energy figures and workload generators, the small experiments
thinned tenfold (the full stream of 19,000 takes minutes to schedule; none of the
figures checked here depends on how many small jobs there are).

Invoices are per calendar month of the contract, whatever the run's length: October's
flat fee is owed in full ($1.25B, the term covers the whole month). Economics use the
revenue accrued over the run: 3/31 of it.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cotenant.metering.money import micro_to_cents
from cotenant.model.time import parse_time
from cotenant.twin.report import Report
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import Scenario, load_scenario

FEE_CENTS = 125_000_000_000  # $1.25B
DAYS = 3
OCT_16 = parse_time("2026-10-16T00:00:00Z", "notice")


def _scenario(notice_at: int | None = None) -> Scenario:
    sc = load_scenario("colossus-lease")
    workloads = tuple(replace(w, experiments=w.experiments // 10) for w in sc.workloads)
    tenants = sc.tenants
    if notice_at is not None:
        tenants = tuple(
            replace(t, contract=t.contract.with_notice(notice_at))
            if t.name == "lessee-lab" and t.contract is not None
            else t
            for t in tenants
        )
    return replace(sc, duration_s=DAYS * 86_400, workloads=workloads, tenants=tenants)


@pytest.fixture(scope="module")
def run() -> Report:
    _, report = simulate(_scenario())
    return report


def _invoice(report: Report, tenant: str, month: str = "2026-10") -> dict[str, Any]:
    (inv,) = [
        i
        for i in report.extra["metering"]["invoices"]
        if i["tenant"] == tenant and i["month"] == month
    ]
    return inv


def test_the_lessee_owes_the_whole_october_fee(run: Report) -> None:
    m = run.extra["metering"]
    assert m["months"] == ["2026-10"]
    inv = _invoice(run, "lessee-lab")
    assert inv["total_cents"] == FEE_CENTS
    assert inv["total"] == "$1,250,000,000.00"
    assert inv["price_kind"] == "flat"
    # Accrued over the 3 days of 31: 125,000,000,000 * 3 / 31 = 12,096,774,193.55 cents.
    assert inv["accrued_over_run_cents"] == 12_096_774_194
    # It used only what the run shows, inside what it is entitled to in October.
    usage = inv["usage"]
    assert 0 < usage["own_gpu_seconds"] <= usage["entitled_gpu_seconds"]
    assert usage["entitled_gpu_seconds"] == 78_000 * 31 * 86_400  # 100,000 - 20,000 - 2,000


def test_energy_per_tenant_is_positive(run: Report) -> None:
    per_tenant = run.extra["metering"]["energy"]["per_tenant"]
    assert set(per_tenant) == {"lessee-lab", "owner-lab", "unallocated"}
    for name in ("lessee-lab", "owner-lab"):
        e = per_tenant[name]
        assert e["facility_mwh"] > 0
        assert e["water_l"] > 0
        assert e["co2e_t"] > 0
        assert e["cost_cents"] > 0
        # PUE 1.2 over IT energy; water at 1.8 L per IT kWh; 0.4 kg per facility kWh.
        assert e["facility_mwh"] == pytest.approx(1.2 * e["it_mwh"])
        assert e["water_l"] == pytest.approx(1.8 * 1000 * e["it_mwh"])
        assert e["co2e_t"] == pytest.approx(0.4 * e["facility_mwh"])
    # At most 100,000 GPUs at 700 W, 12,500 nodes at 2 kW, PUE 1.2: 114 MW for 72 h.
    assert run.extra["metering"]["energy"]["total"]["facility_mwh"] <= 114 * DAYS * 24


def test_peak_facility_power_is_under_the_150_mw_cap(run: Report) -> None:
    p = run.extra["metering"]["power"]
    assert p["cap_mw"] == 150
    assert 0 < p["peak_facility_mw"] <= 150
    assert not p["over_cap"]
    assert len(p["facility_mw"]) == len(run.series["times"])
    assert 0 < max(p["facility_mw"]) <= p["peak_facility_mw"] + 1e-9


def test_economics(run: Report) -> None:
    ec = run.extra["metering"]["economics"]
    (lessee,) = [t for t in ec["tenants"] if t["tenant"] == "lessee-lab"]
    assert lessee["revenue_cents"] == 12_096_774_194
    used_h = lessee["used_gpu_hours"]
    assert 0 < lessee["utilization"] <= 1
    assert lessee["utilization"] == pytest.approx(used_h / (78_000 * 24 * DAYS))
    implied = lessee["implied_price_micro_per_gpu_hour"]
    assert abs(implied - lessee["revenue_cents"] * 10_000 / used_h) <= 0.5  # micro-dollars
    assert ec["power_cost_cents"] > 0
    assert 0 < ec["break_even_utilization"] < 1
    assert ec["margin_cents"] == (
        ec["revenue_cents"] - ec["power_cost_cents"] - ec["fixed_cost_cents"]
    )


def test_the_text_report_shows_bill_energy_and_power(run: Report) -> None:
    console = Console(file=io.StringIO(), width=160)
    run.render(console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "bill lessee-lab 2026-10: $1,250,000,000.00" in text
    assert "energy lessee-lab:" in text and "t CO2e" in text and "L water" in text
    assert "cap 150.0 MW" in text


def test_invoice_command_reads_the_saved_report(run: Report, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(run.to_json_dict(with_series=True)))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "cotenant.cli.main", "invoice"),
            *("--tenant", "lessee-lab", "--month", "2026-10", "--report", str(path), "--csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == [
        "tenant",
        "month",
        "description",
        "quantity",
        "unit",
        "unit_price",
        "price_unit",
        "amount_cents",
        "amount",
    ]
    assert float(rows[1][3]) == 1  # numbers, not text, in the numeric columns
    assert rows[1][4:7] == ["month", "1250000000.00", "USD/month"]
    assert rows[-1][2:] == ["Total", "", "", "", "", str(FEE_CENTS), f"{FEE_CENTS / 100:.2f}"]


def test_notice_mid_october_prorates_the_bill_by_the_ramp() -> None:
    # Notice on Oct 16 with a 90-day linear ramp: October owes
    # (15 + integral over 16 days of (90 - t)/90) / 31 = (15 + 16 - 16^2/180) / 31
    # = 1331/1395 of the fee.
    _, report = simulate(_scenario(notice_at=OCT_16))
    inv = _invoice(report, "lessee-lab")
    expected = micro_to_cents(FEE_CENTS * 10_000 * Fraction(1331, 1395))
    assert expected == 119_265_232_975
    assert inv["total_cents"] == expected
    assert "prorated" in inv["lines"][0]["description"]
