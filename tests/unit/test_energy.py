"""Energy, water, carbon and deal economics for a small ledger, worked out by hand.

Cluster: 16 H100 (700 W busy, 90 W idle, 8 per node), so 2 nodes. Site: PUE 1.2,
WUE 1.8 L/kWh, 0.4 kg CO2e/kWh, 2000 W overhead per node (250 W per GPU), $0.08/kWh.
"""

from __future__ import annotations

import calendar
from fractions import Fraction

import numpy as np
import pytest

from cotenant.metering.economics import deal_economics
from cotenant.metering.energy import (
    OWNER_UNALLOCATED,
    EnergyReport,
    SiteEnergy,
    energy_report,
    facility_power_w,
    it_power_watts,
)
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.metering.rating import rate_month
from cotenant.model.accelerators import CATALOGUE
from cotenant.model.contracts import Commitment, Contract, PriceKind, PriceTerms
from cotenant.model.errors import SpecError

H = 3_600
H100 = "H100-SXM-80GB"
SITE = SiteEnergy()  # the documented defaults are the figures above


def rec(job: str, tenant: str, gpus: int, start: int, end: int) -> UsageRecord:
    return UsageRecord(job, tenant, gpus, H100, (0,), start, end, False, "training")


def small_report(horizon: tuple[int, int] = (0, 10 * H)) -> EnergyReport:
    ledger = UsageLedger(
        [
            rec("a1", "a", 8, 0, 10 * H),  # 8 GPUs for 10 h
            rec("b1", "b", 4, 0, 5 * H),  # 4 GPUs for 5 h
            rec("b2", "b", 4, 20 * H, 30 * H),  # outside a 10 h horizon
        ]
    )
    return energy_report(ledger, SITE, CATALOGUE, {H100: 16}, horizon)


def test_defaults_are_the_documented_assumptions() -> None:
    assert (SITE.pue, SITE.wue_l_per_kwh, SITE.carbon_kg_per_kwh) == (1.2, 1.8, 0.4)
    assert SITE.node_overhead_watts == 2000
    assert SITE.power_price_micro_per_kwh == 80_000


@pytest.mark.parametrize(
    ("who", "it_kwh", "facility_kwh", "water_l", "co2_kg", "cost_cents"),
    [
        # a: 8 GPUs * 10 h * (700 + 2000/8) W = 80 GPU-h * 950 W = 76 kWh IT
        #    facility 76 * 1.2 = 91.2; water 76 * 1.8 = 136.8 L; CO2 91.2 * 0.4 = 36.48 kg
        #    cost 91.2 * $0.08 = $7.296 = 729.6 cents -> 730
        pytest.param("a", 76.0, 91.2, 136.8, 36.48, 730, id="tenant-a"),
        # b: 4 * 5 h = 20 GPU-h * 950 W = 19 kWh; 22.8; 34.2 L; 9.12 kg; 182.4 cents -> 182
        pytest.param("b", 19.0, 22.8, 34.2, 9.12, 182, id="tenant-b"),
        # unallocated: 16 * 10 - 80 - 20 = 60 idle GPU-h * (90 + 250) W = 20.4 kWh
        #    facility 24.48; water 36.72 L; CO2 9.792 kg; cost 195.84 cents -> 196
        pytest.param(OWNER_UNALLOCATED, 20.4, 24.48, 36.72, 9.792, 196, id="unallocated"),
    ],
)
def test_per_tenant_energy_by_hand(
    who: str, it_kwh: float, facility_kwh: float, water_l: float, co2_kg: float, cost_cents: int
) -> None:
    use = small_report().per_tenant[who]
    assert use.it_kwh == pytest.approx(it_kwh)
    assert use.facility_kwh == pytest.approx(facility_kwh)
    assert use.water_l == pytest.approx(water_l)
    assert use.co2e_kg == pytest.approx(co2_kg)
    assert use.cost_cents == cost_cents


def test_totals_peak_and_jobs() -> None:
    report = small_report()
    # 76 + 19 + 20.4 = 115.4 kWh IT; 138.48 facility; cost 729.6 + 182.4 + 195.84 = 1107.84
    assert report.total.it_kwh == pytest.approx(115.4)
    assert report.total.facility_kwh == pytest.approx(138.48)
    assert report.total.cost_cents == 1108
    assert report.total.gpu_seconds == 16 * 10 * H
    # b2 lies outside the horizon
    assert set(report.per_job) == {"a1", "b1"}
    assert report.per_job["b1"].it_kwh == pytest.approx(19.0)
    # peak in the first 5 h: all 16 idle with nodes on = 16 * 340 = 5440 W,
    # plus 12 busy GPUs * (700 - 90) = 7320 W -> 12,760 W IT, * 1.2 = 15,312 W
    assert report.peak_it_w == pytest.approx(12_760)
    assert report.peak_facility_w == pytest.approx(15_312)
    assert report.over_power_cap is False


def test_records_are_clipped_to_the_horizon() -> None:
    report = small_report(horizon=(0, 2 * H))
    # a: 8 * 2 h * 950 W = 15.2 kWh; b: 4 * 2 h * 950 W = 7.6 kWh
    assert report.per_tenant["a"].it_kwh == pytest.approx(15.2)
    assert report.per_tenant["b"].it_kwh == pytest.approx(7.6)
    # idle: 16 * 2 - 16 - 8 = 8 GPU-h * 340 W = 2.72 kWh
    assert report.per_tenant[OWNER_UNALLOCATED].it_kwh == pytest.approx(2.72)


def test_power_cap_is_flagged() -> None:
    capped = SiteEnergy(power_cap_mw=0.015)  # 15,000 W < 15,312 W peak
    ledger = UsageLedger([rec("a1", "a", 8, 0, 10 * H), rec("b1", "b", 4, 0, 5 * H)])
    report = energy_report(ledger, capped, CATALOGUE, {H100: 16}, (0, 10 * H))
    assert report.over_power_cap is True


def test_it_power_is_vectorised() -> None:
    h100 = CATALOGUE[H100]
    # 8 busy on one node: 8 * 700 + 2000 = 7600 W; 8 idle: 8 * 90 + 2000 = 2720 W
    assert it_power_watts(8, 0, 1, h100, SITE) == 7600.0
    watts = it_power_watts(np.array([8, 0, 4]), np.array([0, 8, 4]), np.ones(3), h100, SITE)
    assert watts.tolist() == [7600.0, 2720.0, 4 * 700 + 4 * 90 + 2000]
    assert facility_power_w(7600.0, SITE) == pytest.approx(9120.0)
    assert facility_power_w(watts, SITE).tolist() == pytest.approx([9120.0, 3264.0, 6192.0])


@pytest.mark.parametrize(
    ("site", "field"),
    [
        pytest.param(SiteEnergy(pue=-1.0), "site.pue", id="negative-pue"),
        pytest.param(SiteEnergy(pue=0.9), "site.pue", id="pue-below-one"),
        pytest.param(SiteEnergy(wue_l_per_kwh=-0.1), "site.wue_l_per_kwh", id="wue"),
        pytest.param(SiteEnergy(carbon_kg_per_kwh=-1), "site.carbon_kg_per_kwh", id="carbon"),
        pytest.param(SiteEnergy(node_overhead_watts=-5), "site.node_overhead_watts", id="overhead"),
        pytest.param(
            SiteEnergy(power_price_micro_per_kwh=-1), "site.power_price_micro_per_kwh", id="price"
        ),
        pytest.param(SiteEnergy(power_cap_mw=-150.0), "site.power_cap_mw", id="cap"),
    ],
)
def test_bad_site_names_the_field(site: SiteEnergy, field: str) -> None:
    with pytest.raises(SpecError) as err:
        site.validate()
    assert err.value.field == field


def test_more_usage_than_installed_is_refused() -> None:
    ledger = UsageLedger([rec("a1", "a", 8, 0, 10 * H)])
    with pytest.raises(SpecError) as err:
        energy_report(ledger, SITE, CATALOGUE, {H100: 4}, (0, 10 * H))
    assert err.value.field == f"cluster_gpus_by_kind[{H100!r}]"


def test_unknown_accelerator_is_refused() -> None:
    ledger = UsageLedger([UsageRecord("x", "a", 1, "TPU-v9", (0,), 0, 10, False, "service")])
    with pytest.raises(SpecError) as err:
        energy_report(ledger, SITE, CATALOGUE, {}, (0, 10))
    assert err.value.field == "record[0].accelerator"
    assert H100 in err.value.problem


def test_deal_economics_by_hand() -> None:
    nov1 = calendar.timegm((2026, 11, 1, 0, 0, 0))
    dec1 = calendar.timegm((2026, 12, 1, 0, 0, 0))
    lease = Contract(
        tenant="a",
        start_s=nov1,
        end_s=dec1 + 365 * 86_400,
        commitment=Commitment(all_available=True),
        price=PriceTerms(kind=PriceKind.FLAT, flat_fee_cents_per_month=1_000_000),  # $10,000
    )
    ledger = UsageLedger([rec("a1", "a", 8, nov1, nov1 + 360 * H)])  # 8 GPUs * 360 h
    invoice = rate_month(lease, "2026-11", ledger, 16, [lease])
    energy = energy_report(ledger, SITE, CATALOGUE, {H100: 16}, (nov1, dec1))
    econ = deal_economics(
        [invoice], energy, SITE, {H100: 16}, CATALOGUE, fixed_cost_micro_per_gpu_hour=1_000_000
    )
    # installed 16 * 720 = 11,520 GPU-h; used 8 * 360 = 2,880 GPU-h
    (a,) = econ.tenants
    assert a.revenue_cents == 1_000_000
    assert a.utilization == Fraction(2_880, 11_520) == Fraction(1, 4)
    # $10,000 / 2,880 GPU-h = $3.472222... -> 3,472,222 micro-dollars per GPU-h
    assert a.implied_price_micro_per_gpu_hour == 3_472_222
    # power: a 2,880 GPU-h * 950 W = 2,736 kWh IT * 1.2 * $0.08 = $262.656
    #        idle 8,640 GPU-h * 340 W = 2,937.6 kWh * 1.2 * $0.08 = $282.0096
    #        total 26,265.6 + 28,200.96 = 54,466.56 cents -> 54,467
    assert a.power_cost_cents == 26_266
    assert econ.power_cost_cents == 54_467
    # fixed: 11,520 GPU-h * $1.00 = $11,520 = 1,152,000 cents
    assert econ.fixed_cost_cents == 1_152_000
    assert econ.margin_cents == 1_000_000 - 54_467 - 1_152_000
    assert econ.cluster_utilization == Fraction(1, 4)
    # break-even: p = 1e10 / 2880 = 31,250,000/9 micro per used GPU-h
    #   e_busy = 0.950 kWh * 1.2 * 80,000 = 91,200; e_idle = 0.340 * 1.2 * 80,000 = 32,640
    #   u* = (1,000,000 + 32,640) / (31,250,000/9 - (91,200 - 32,640))
    #      = 1,032,640 * 9 / (31,250,000 - 527,040)
    assert econ.break_even_utilization == Fraction(1_032_640 * 9, 31_250_000 - 527_040)
    data = econ.to_json_dict()
    assert data["margin"] == "-$2,064.67"
