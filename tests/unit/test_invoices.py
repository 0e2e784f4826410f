"""Invoices checked against amounts worked out by hand.

Every expected amount below is written out as arithmetic in the test (comments and
plain integer expressions), never obtained from the code under test.
"""

from __future__ import annotations

import calendar
import csv
import io
import json

import pytest

from cotenant.contracts.entitlement import entitled_gpus
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.metering.money import format_usd, micro_to_cents
from cotenant.metering.rating import Invoice, month_bounds, rate_month
from cotenant.model.contracts import (
    Commitment,
    Contract,
    CreditCapBase,
    NoticeTerms,
    PriceKind,
    PriceTerms,
    Ramp,
)
from cotenant.model.errors import SpecError

DAY = 86_400
HOUR = 3_600
FEE_CENTS = 125_000_000_000  # $1.25B a month
H100 = "H100-SXM-80GB"


def utc(y: int, m: int, d: int, h: int = 0) -> int:
    return calendar.timegm((y, m, d, h, 0, 0))


FAR = utc(2030, 1, 1)


# --- builders ---------------------------------------------------------------------


def flat_lease(
    start: int = utc(2026, 1, 1),
    end: int = FAR,
    fee_cents: int = FEE_CENTS,
    notice_at: int | None = None,
    ramp: Ramp = Ramp.LINEAR,
) -> Contract:
    """The Colossus-style lease: all available capacity for a flat monthly fee."""
    return Contract(
        tenant="lessee",
        start_s=start,
        end_s=end,
        commitment=Commitment(all_available=True),
        price=PriceTerms(kind=PriceKind.FLAT, flat_fee_cents_per_month=fee_cents),
        notice=NoticeTerms(period_s=90 * DAY, ramp=ramp, given_at=notice_at),
    )


def rate_deal(
    gpus: int = 16,
    committed_micro: int = 2_000_000,
    overage_micro: int = 3_500_000,
    credit_micro: int = 0,
    cap_percent: int = 100,
    cap_base: CreditCapBase = CreditCapBase.SUBTOTAL,
    start: int = utc(2026, 1, 1),
    end: int = FAR,
    tenant: str = "lab",
    all_available: bool = False,
    notice: NoticeTerms | None = None,
) -> Contract:
    return Contract(
        tenant=tenant,
        start_s=start,
        end_s=end,
        commitment=Commitment(gpus=gpus, all_available=all_available),
        price=PriceTerms(
            kind=PriceKind.RATE,
            committed_rate_micro_per_gpu_hour=committed_micro,
            overage_rate_micro_per_gpu_hour=overage_micro,
            sla_credit_micro_per_gpu_hour=credit_micro,
            sla_credit_cap_percent=cap_percent,
            sla_credit_cap_base=cap_base,
        ),
        notice=notice or NoticeTerms(),
    )


def use(
    tenant: str, gpus: int, start: int, end: int, borrowed: bool = False, job: str = "j"
) -> UsageRecord:
    return UsageRecord(
        job_id=job,
        tenant=tenant,
        gpus=gpus,
        accelerator=H100,
        nodes=tuple(range((gpus + 7) // 8)),
        start_s=start,
        end_s=end,
        borrowed=borrowed,
        kind="training",
    )


def bill(
    contract: Contract,
    month: str,
    ledger: UsageLedger | None = None,
    capacity: int = 100_000,
    others: tuple[Contract, ...] = (),
    shortfall: int = 0,
) -> Invoice:
    return rate_month(
        contract, month, ledger or UsageLedger(), capacity, (contract, *others), shortfall
    )


# --- flat fee ---------------------------------------------------------------------


def test_full_month_at_the_flat_fee() -> None:
    inv = bill(flat_lease(), "2026-10")
    # whole month in term, no notice: the fee, exactly
    assert inv.total_cents == 125_000_000_000
    assert inv.subtotal_cents == 125_000_000_000
    assert inv.credits_cents == 0
    assert [ln.amount_cents for ln in inv.lines] == [125_000_000_000]
    assert inv.lines[0].quantity == "1.0 month"
    assert inv.lines[0].unit_price == "$1,250,000,000.00/month"
    # entitled: 100,000 GPUs * 31 days * 24 h
    assert inv.entitled_gpu_seconds == 100_000 * 31 * DAY


def test_contract_starting_mid_month_is_prorated() -> None:
    inv = bill(flat_lease(start=utc(2026, 11, 16)), "2026-11")
    # November has 30 days; the term covers Nov 16..30 = 15 days: 15/30 of the fee
    assert inv.total_cents == 125_000_000_000 * 15 // 30 == 62_500_000_000


@pytest.mark.parametrize(
    ("month", "expected_cents"),
    [
        # Notice at Oct 16 00:00, 90-day linear ramp: owed share 1 - x/90 at x days after notice.
        # October: 15 full days, then x = 0..16: integral = 16 - 16**2/(2*90) = 16 - 64/45 days.
        #   share = (15 + 16 - 64/45) / 31 = (31*45 - 64) / (45*31) = 1331/1395
        #   125e9 * 1331 / 1395 = 119_265_232_974.91... -> 119_265_232_975 (half up)
        pytest.param("2026-10", 119_265_232_975, id="notice-month"),
        # November: x = 16..46: integral = 30 - (46**2 - 16**2)/180 = 30 - 1860/180 = 59/3 days
        #   share = (59/3)/30 = 59/90; 125e9 * 59 / 90 = 81_944_444_444.44... -> 81_944_444_444
        pytest.param("2026-11", 81_944_444_444, id="inside-ramp"),
        # December: x = 46..77: integral = 31 - (77**2 - 46**2)/180 = 31 - 3813/180 days
        #   = (5580 - 3813)/180 = 1767/180; share = 1767/(180*31) = 1767/5580
        #   125e9 * 1767 / 5580 = 39_583_333_333.33... -> 39_583_333_333
        pytest.param("2026-12", 39_583_333_333, id="late-ramp"),
        # January: notice ends Jan 14 (x = 77..90): triangle 13**2/(2*90) = 169/180 days
        #   share = 169/(180*31) = 169/5580; 125e9 * 169 / 5580 = 3_785_842_293.90... -> ..294
        pytest.param("2027-01", 3_785_842_294, id="last-month"),
        pytest.param("2027-02", 0, id="after-the-end"),
    ],
)
def test_notice_mid_month_follows_the_linear_ramp(month: str, expected_cents: int) -> None:
    lease = flat_lease(notice_at=utc(2026, 10, 16))
    assert bill(lease, month).total_cents == expected_cents


def test_hand_computed_ramp_amounts_are_consistent() -> None:
    # The check on the hand arithmetic above, in exact integers: fee * num / den, half up.
    def half_up(num: int, den: int) -> int:
        return (2 * num + den) // (2 * den)

    assert half_up(125_000_000_000 * 1331, 1395) == 119_265_232_975
    assert half_up(125_000_000_000 * 59, 90) == 81_944_444_444
    assert half_up(125_000_000_000 * 1767, 5580) == 39_583_333_333
    assert half_up(125_000_000_000 * 169, 5580) == 3_785_842_294


def test_step_notice_keeps_the_full_fee_until_the_end() -> None:
    lease = flat_lease(notice_at=utc(2026, 10, 16), ramp=Ramp.STEP)
    assert bill(lease, "2026-12").total_cents == 125_000_000_000
    # ends Jan 14 00:00: 13 of 31 days; 125e9 * 13 / 31 = 52_419_354_838.70... -> ..839
    assert bill(lease, "2027-01").total_cents == 52_419_354_839


# --- committed rate and overage ----------------------------------------------------


def test_committed_rate_plus_overage_on_borrowed_gpus() -> None:
    nov1, dec1 = utc(2026, 11, 1), utc(2026, 12, 1)
    ledger = UsageLedger(
        [
            use("lab", 8, nov1, nov1 + 100 * HOUR, job="own"),  # inside commitment: not extra
            use("lab", 4, nov1 + 5 * HOUR, nov1 + 15 * HOUR, borrowed=True, job="b1"),
            use("lab", 8, dec1 - 2 * HOUR, dec1 + 2 * HOUR, borrowed=True, job="b2"),
            use("lab", 8, nov1 - 3 * HOUR, nov1, borrowed=True, job="october"),
            use("rival", 64, nov1, dec1, borrowed=True, job="theirs"),
        ]
    )
    inv = bill(rate_deal(gpus=16), "2026-11", ledger)
    # committed: 16 GPUs * 30 days * 24 h = 11,520 GPU-h * $2.00 = $23,040.00
    committed = 16 * 30 * 24 * 200  # cents
    assert committed == 2_304_000
    # borrowed inside November: 4 GPUs * 10 h + 8 GPUs * 2 h (b2 clipped at Dec 1) = 56 GPU-h
    # overage: 56 GPU-h * $3.50 = $196.00
    overage = 56 * 350
    assert overage == 19_600
    assert [ln.amount_cents for ln in inv.lines] == [committed, overage]
    assert inv.total_cents == 2_323_600
    assert inv.lines[0].quantity == "11,520.0 GPU-h"
    assert inv.lines[0].unit_price == "$2.00/GPU-h"
    assert inv.lines[1].quantity == "56.0 GPU-h"
    assert inv.lines[1].unit_price == "$3.50/GPU-h"
    assert inv.own_gpu_seconds == 8 * 100 * HOUR
    assert inv.borrowed_gpu_seconds == 56 * HOUR


def test_all_available_rate_deal_loses_what_a_rival_takes() -> None:
    rival = rate_deal(gpus=30, tenant="rival", start=utc(2026, 11, 16))
    lab = rate_deal(gpus=0, all_available=True)
    inv = bill(lab, "2026-11", capacity=100, others=(rival,))
    # Nov 1-15: 100 GPUs; Nov 16-30: 100 - 30 = 70 GPUs
    # (15*100 + 15*70) GPU-days * 24 = 61,200 GPU-h * $2.00 = $122,400.00
    assert inv.entitled_gpu_seconds == (15 * 100 + 15 * 70) * DAY
    assert inv.total_cents == 61_200 * 200 == 12_240_000


def test_linear_ramp_bills_the_whole_gpu_entitlement() -> None:
    m0, m1 = month_bounds("2026-11")
    deal = rate_deal(
        gpus=7,
        committed_micro=3_600_000,  # $3.60/GPU-h = 0.1 cent per GPU-second
        notice=NoticeTerms(period_s=1000, ramp=Ramp.LINEAR, given_at=m0 + 100),
    )
    inv = bill(deal, "2026-11")
    # 7 GPUs for 100 s before notice = 700 GPU-s; then floor(7 * r / 1000) for r = 1000..1
    # = sum_{r=1}^{999} floor(7r/1000) + 7 = (7-1)(1000-1)/2 + 7 = 2997 + 7 = 3004 GPU-s
    # (gcd(7, 1000) = 1). Not 7 * 500 = 3500: the scheduler owes whole GPUs only.
    assert inv.entitled_gpu_seconds == 700 + 3004
    assert inv.entitled_gpu_seconds == sum(
        entitled_gpus(deal, t, 100_000, [deal]) for t in range(m0, m0 + 1200)
    )
    # 3704 GPU-s * 0.1 cent = 370.4 cents -> 370
    assert inv.total_cents == 370
    assert m1 > m0 + 1100


# --- SLA credits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shortfall_h", "credit_cents", "capped"),
    [
        # charges: 8 GPUs * 720 h * $2.00 = $11,520.00 = 1,152,000 cents; cap 10% = 115,200
        # 200 GPU-h * $10 = $2,000 = 200,000 cents > cap: credit = -115,200
        pytest.param(200, -115_200, True, id="hits-cap"),
        # 50 GPU-h * $10 = $500 = 50,000 cents < cap
        pytest.param(50, -50_000, False, id="under-cap"),
    ],
)
def test_sla_shortfall_credit(shortfall_h: int, credit_cents: int, capped: bool) -> None:
    deal = rate_deal(gpus=8, credit_micro=10_000_000, cap_percent=10)
    inv = bill(deal, "2026-11", shortfall=shortfall_h * HOUR)
    assert inv.subtotal_cents == 8 * 720 * 200 == 1_152_000
    assert inv.credits_cents == credit_cents
    assert inv.total_cents == 1_152_000 + credit_cents
    credit_line = inv.lines[-1]
    assert credit_line.amount_cents == credit_cents < 0
    assert ("capped at 10%" in credit_line.description) is capped
    assert credit_line.unit_price == "-$10.00/GPU-h"


@pytest.mark.parametrize(
    ("base", "credit_cents", "of"),
    [
        # November, 8 GPUs committed at $2.00/GPU-h: 8 * 720 h * 200 cents = 1,152,000 cents.
        # Borrowed: 8 GPUs for 100 h at $3.50/GPU-h = 800 GPU-h * 350 = 280,000 cents.
        # Subtotal 1,432,000 cents. Shortfall 200 GPU-h at $10 = 200,000 cents.
        # subtotal base, cap 10%: 143,200 < 200,000: credit -143,200
        pytest.param(CreditCapBase.SUBTOTAL, -143_200, "of charges", id="subtotal"),
        # committed base, cap 10%: 115,200 (overage excluded): credit -115,200
        pytest.param(CreditCapBase.COMMITTED, -115_200, "of the committed charge", id="committed"),
    ],
)
def test_sla_credit_cap_base(base: CreditCapBase, credit_cents: int, of: str) -> None:
    deal = rate_deal(gpus=8, credit_micro=10_000_000, cap_percent=10, cap_base=base)
    t0 = utc(2026, 11, 2)
    ledger = UsageLedger([use("lab", 8, t0, t0 + 100 * HOUR, borrowed=True)])
    inv = bill(deal, "2026-11", ledger, shortfall=200 * HOUR)
    assert inv.subtotal_cents == 1_152_000 + 280_000 == 1_432_000
    assert inv.credits_cents == credit_cents
    assert inv.total_cents == 1_432_000 + credit_cents
    assert f"capped at 10% {of}" in inv.lines[-1].description


def test_flat_lease_credit_capped_at_the_fee_share() -> None:
    # $1.25B flat; overage $3.00/GPU-h on 1,000 borrowed GPU-h = $3,000 = 300,000 cents.
    # Credit $10/GPU-h, cap 1% of the committed charge: 1% of 125,000,000,000 cents =
    # 1,250,000,000 cents; a shortfall of 200,000,000 GPU-h would be $2B: capped.
    lease = Contract(
        tenant="lessee",
        start_s=utc(2026, 1, 1),
        end_s=FAR,
        commitment=Commitment(all_available=True),
        price=PriceTerms(
            kind=PriceKind.FLAT,
            flat_fee_cents_per_month=FEE_CENTS,
            overage_rate_micro_per_gpu_hour=3_000_000,
            sla_credit_micro_per_gpu_hour=10_000_000,
            sla_credit_cap_percent=1,
            sla_credit_cap_base=CreditCapBase.COMMITTED,
        ),
    )
    t0 = utc(2026, 10, 2)
    ledger = UsageLedger([use("lessee", 8, t0, t0 + 125 * HOUR, borrowed=True)])
    inv = bill(lease, "2026-10", ledger, shortfall=200_000_000 * HOUR)
    assert inv.subtotal_cents == 125_000_000_000 + 300_000
    assert inv.credits_cents == -1_250_000_000


def test_late_service_and_shortfall_share_one_capped_credit() -> None:
    # 8 GPUs at $2.00 in November: 1,152,000 cents; credit $10/GPU-h, cap 10%: 115,200.
    deal = rate_deal(gpus=8, credit_micro=10_000_000, cap_percent=10)
    # 3 GPU-h late + 2 GPU-h shortfall = 5 GPU-h * 1,000 cents = 5,000 cents, under the cap
    inv = rate_month(deal, "2026-11", UsageLedger(), 100_000, (deal,), 2 * HOUR, 3 * HOUR)
    assert inv.credits_cents == -5_000
    assert inv.lines[-1].description == "SLA credit (shortfall + late GPU-hours)"
    assert inv.lines[-1].quantity == "5.0 GPU-h"
    assert (inv.shortfall_gpu_seconds, inv.violation_gpu_seconds) == (2 * HOUR, 3 * HOUR)
    late_only = rate_month(deal, "2026-11", UsageLedger(), 100_000, (deal,), 0, 30 * HOUR)
    assert late_only.credits_cents == -30_000
    assert late_only.lines[-1].description == "SLA credit (late GPU-hours)"
    # 200 GPU-h late: 200,000 cents > cap: 115,200
    capped = rate_month(deal, "2026-11", UsageLedger(), 100_000, (deal,), 0, 200 * HOUR)
    assert capped.credits_cents == -115_200


def test_no_credit_without_a_credit_rate() -> None:
    inv = bill(rate_deal(gpus=8, credit_micro=0), "2026-11", shortfall=100 * HOUR)
    assert inv.credits_cents == 0
    assert len(inv.lines) == 1


# --- rounding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deal", "month", "expected_cents"),
    [
        # 1 GPU for exactly one hour at $2.345 = 234.5 cents: half up -> 235 (half-even: 234)
        pytest.param(
            rate_deal(
                gpus=1, committed_micro=2_345_000, start=utc(2026, 10, 5), end=utc(2026, 10, 5, 1)
            ),
            "2026-10",
            235,
            id="half-cent-up",
        ),
        # $100.00 flat, term from Nov 21: 10/30 of 10,000 cents = 3,333.33... -> 3,333
        pytest.param(
            flat_lease(start=utc(2026, 11, 21), fee_cents=10_000), "2026-11", 3_333, id="third"
        ),
        # $100.00 flat, term from Nov 11: 20/30 of 10,000 cents = 6,666.66... -> 6,667
        pytest.param(
            flat_lease(start=utc(2026, 11, 11), fee_cents=10_000), "2026-11", 6_667, id="two-thirds"
        ),
    ],
)
def test_a_fractional_cent_is_rounded_once(deal: Contract, month: str, expected_cents: int) -> None:
    assert bill(deal, month).total_cents == expected_cents


@pytest.mark.parametrize(
    ("micro", "cents"),
    [(5_000, 1), (4_999, 0), (15_000, 2), (25_000, 3), (-5_000, -1), (-4_999, 0), (0, 0)],
    ids=["half", "below-half", "1.5", "2.5-not-even", "neg-half", "neg-below", "zero"],
)
def test_micro_to_cents_rounds_half_away_from_zero(micro: int, cents: int) -> None:
    assert micro_to_cents(micro) == cents


def test_format_usd() -> None:
    assert format_usd(125_000_000_000) == "$1,250,000,000.00"
    assert format_usd(-115_200) == "-$1,152.00"
    assert format_usd(5) == "$0.05"


# --- months and outputs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "days"),
    [("2026-10", 31), ("2026-11", 30), ("2028-02", 29), ("2026-12", 31)],
)
def test_month_bounds(month: str, days: int) -> None:
    start, end = month_bounds(month)
    assert end - start == days * DAY


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-10", "2026/10", "", "2026-00"])
def test_bad_month_names_the_field(bad: str) -> None:
    with pytest.raises(SpecError) as err:
        month_bounds(bad)
    assert err.value.field == "month"


def test_negative_shortfall_is_refused() -> None:
    with pytest.raises(SpecError) as err:
        bill(rate_deal(), "2026-11", shortfall=-1)
    assert err.value.field == "shortfall_gpu_seconds"


def test_invoice_outputs_agree() -> None:
    deal = rate_deal(gpus=8, credit_micro=10_000_000, cap_percent=10)
    inv = bill(deal, "2026-11", shortfall=200 * HOUR)
    data = inv.to_json_dict()
    json.dumps(data)  # serialisable
    assert data["total_cents"] == 1_152_000 - 115_200
    lines = data["lines"]
    assert isinstance(lines, list)
    assert sum(line["amount_cents"] for line in lines) == data["total_cents"]

    rows = inv.to_csv_rows()
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    assert rows[0][0] == "tenant"
    total = 1_152_000 - 115_200
    assert rows[-1][2:] == ["Total", "", "", "", "", str(total), "10368.00"]
    header, body = rows[0], rows[1:-3]
    for row in body:  # numbers in the numeric columns, units in their own
        cells = dict(zip(header, row, strict=True))
        for col in ("quantity", "unit_price", "amount_cents", "amount"):
            float(cells[col])
        assert cells["unit"] == "GPU-h" and cells["price_unit"] == "USD/GPU-h"
        assert float(cells["amount"]) * 100 == int(cells["amount_cents"])

    text = inv.render_text()
    assert "$11,520.00" in text and "-$1,152.00" in text and "$10,368.00" in text
    widths = {len(line) for line in text.splitlines()[1:4]}
    assert len(widths) == 1  # rule, header and rule line up
