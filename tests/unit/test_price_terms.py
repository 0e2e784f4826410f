"""Price terms: exact conversion, and every malformed value names its exact field."""

from __future__ import annotations

import pytest

from cotenant.contracts.terms import parse_price_terms
from cotenant.model.contracts import CreditCapBase, PriceKind, PriceTerms
from cotenant.model.errors import SpecError


def flat(**extra: object) -> dict[str, object]:
    return {"kind": "flat", "flat_fee_per_month": "1250000000", **extra}


def rate(**extra: object) -> dict[str, object]:
    return {"kind": "rate", "committed_rate_per_gpu_hour": "2.345", **extra}


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        pytest.param(
            flat(),
            PriceTerms(kind=PriceKind.FLAT, flat_fee_cents_per_month=125_000_000_000),
            id="flat-string",
        ),
        pytest.param(
            {"kind": "flat", "flat_fee_per_month": 1.25e9},
            PriceTerms(kind=PriceKind.FLAT, flat_fee_cents_per_month=125_000_000_000),
            id="flat-float",
        ),
        pytest.param(
            {"flat_fee_per_month": "$1,250,000,000.00"},
            PriceTerms(kind=PriceKind.FLAT, flat_fee_cents_per_month=125_000_000_000),
            id="flat-inferred-dollar-string",
        ),
        pytest.param(
            rate(
                overage_rate_per_gpu_hour=3.5,
                sla_credit_per_gpu_hour=0.1,
                sla_credit_cap_percent=25,
                currency="USD",
            ),
            PriceTerms(
                kind=PriceKind.RATE,
                committed_rate_micro_per_gpu_hour=2_345_000,
                overage_rate_micro_per_gpu_hour=3_500_000,
                sla_credit_micro_per_gpu_hour=100_000,
                sla_credit_cap_percent=25,
            ),
            id="rate-all-terms",
        ),
        pytest.param(
            {"committed_rate_per_gpu_hour": "0.000001"},
            PriceTerms(kind=PriceKind.RATE, committed_rate_micro_per_gpu_hour=1),
            id="rate-inferred-one-micro",
        ),
        pytest.param({}, PriceTerms(kind=PriceKind.RATE), id="empty-is-free-rate"),
        pytest.param(
            rate(sla_credit_cap_base="committed"),
            PriceTerms(
                kind=PriceKind.RATE,
                committed_rate_micro_per_gpu_hour=2_345_000,
                sla_credit_cap_base=CreditCapBase.COMMITTED,
            ),
            id="cap-base-committed",
        ),
    ],
)
def test_parses_exactly(mapping: dict[str, object], expected: PriceTerms) -> None:
    assert parse_price_terms(mapping) == expected


@pytest.mark.parametrize(
    ("mapping", "field", "says"),
    [
        pytest.param(
            rate(overage_rate_per_gpu_hour="-1"),
            "tenants[1].price.overage_rate_per_gpu_hour",
            "negative",
            id="negative-overage",
        ),
        pytest.param(
            {"kind": "rate", "committed_rate_per_gpu_hour": -2},
            "tenants[1].price.committed_rate_per_gpu_hour",
            "negative",
            id="negative-committed",
        ),
        pytest.param(
            {"kind": "flat", "flat_fee_per_month": -5},
            "tenants[1].price.flat_fee_per_month",
            "negative",
            id="negative-fee",
        ),
        pytest.param(
            rate(sla_credit_per_gpu_hour=-0.5),
            "tenants[1].price.sla_credit_per_gpu_hour",
            "negative",
            id="negative-credit",
        ),
        pytest.param(flat(currency="EUR"), "tenants[1].price.currency", "USD", id="eur"),
        pytest.param(
            rate(sla_credit_cap_percent=-1),
            "tenants[1].price.sla_credit_cap_percent",
            "negative",
            id="cap-below-zero",
        ),
        pytest.param(
            rate(sla_credit_cap_percent=150),
            "tenants[1].price.sla_credit_cap_percent",
            "between 0 and 100",
            id="cap-above-100",
        ),
        pytest.param(
            rate(sla_credit_cap_percent=12.5),
            "tenants[1].price.sla_credit_cap_percent",
            "whole number",
            id="cap-fractional",
        ),
        pytest.param(
            rate(sla_credit_cap_base="total"),
            "tenants[1].price.sla_credit_cap_base",
            "valid: subtotal, committed",
            id="cap-base-unknown",
        ),
        pytest.param(
            rate(flat_fee=1), "tenants[1].price.flat_fee", "flat_fee_per_month", id="unknown-key"
        ),
        pytest.param(
            {"kind": "rate", "committed_rate_per_gpu_hour": "2.3456789"},
            "tenants[1].price.committed_rate_per_gpu_hour",
            "6 decimal places",
            id="seven-decimals",
        ),
        pytest.param(
            {"kind": "flat", "flat_fee_per_month": "100.005"},
            "tenants[1].price.flat_fee_per_month",
            "2 decimal places",
            id="fee-below-a-cent",
        ),
        pytest.param({"kind": "monthly"}, "tenants[1].price.kind", "flat, rate", id="unknown-kind"),
        pytest.param(
            {"kind": "flat"},
            "tenants[1].price.flat_fee_per_month",
            "greater than zero",
            id="no-fee",
        ),
        pytest.param(
            {"kind": "flat", "flat_fee_per_month": 0},
            "tenants[1].price.flat_fee_per_month",
            "greater than zero",
            id="zero-fee",
        ),
        pytest.param(
            {"kind": "rate", "flat_fee_per_month": 10},
            "tenants[1].price.flat_fee_per_month",
            "kind = 'flat' only",
            id="fee-on-rate",
        ),
        pytest.param(
            flat(committed_rate_per_gpu_hour=2),
            "tenants[1].price.committed_rate_per_gpu_hour",
            "kind = 'rate' only",
            id="committed-on-flat",
        ),
        pytest.param(
            rate(overage_rate_per_gpu_hour=True),
            "tenants[1].price.overage_rate_per_gpu_hour",
            "number",
            id="bool",
        ),
        pytest.param(
            rate(overage_rate_per_gpu_hour="three"),
            "tenants[1].price.overage_rate_per_gpu_hour",
            "cannot read",
            id="not-a-number",
        ),
        pytest.param(
            rate(overage_rate_per_gpu_hour=float("nan")),
            "tenants[1].price.overage_rate_per_gpu_hour",
            "finite",
            id="nan",
        ),
    ],
)
def test_malformed_terms_name_the_field(mapping: dict[str, object], field: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_price_terms(mapping, field="tenants[1].price")
    assert err.value.field == field
    assert says in err.value.problem


def test_default_field_is_price() -> None:
    with pytest.raises(SpecError) as err:
        parse_price_terms(flat(currency="EUR"))
    assert err.value.field == "price.currency"
    assert "supported: USD" in err.value.problem


def test_unknown_key_lists_the_valid_keys() -> None:
    with pytest.raises(SpecError) as err:
        parse_price_terms(rate(overage=1))
    for key in ("kind", "currency", "flat_fee_per_month", "overage_rate_per_gpu_hour"):
        assert key in err.value.problem
