"""Price terms from a TOML-like table, in exact integer units.

    [tenants.price]
    kind = "flat"                       # "flat" | "rate"; inferred if absent
    currency = "USD"                    # only USD is supported
    flat_fee_per_month = "1250000000"   # USD per calendar month, at most 2 decimals
    committed_rate_per_gpu_hour = "2.345"   # USD, at most 6 decimals (micro-dollars)
    overage_rate_per_gpu_hour = 3.5
    sla_credit_per_gpu_hour = 10
    sla_credit_cap_percent = 25         # whole percent of the cap base, 0..100
    sla_credit_cap_base = "subtotal"    # "subtotal" (all charges) | "committed" (fee only)

Amounts may be numbers or strings (``"$1,250,000,000"`` and ``"1_250_000_000"`` are
read too). They are converted with ``Decimal`` and never rounded: an amount finer
than a cent (fees) or a micro-dollar (rates) is an error. A float is read by its
shortest decimal form (``1.25e9`` is 1250000000, ``0.1`` is 0.1).

If ``kind`` is absent it is ``flat`` when ``flat_fee_per_month`` is given and
``rate`` otherwise. A flat contract needs a fee > 0 and takes no committed rate; a
rate contract takes no flat fee. Both may have an overage rate for borrowed GPUs
and SLA credit terms.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from decimal import Decimal

from cotenant.model.contracts import CreditCapBase, PriceKind, PriceTerms
from cotenant.model.errors import SpecError

SUPPORTED_CURRENCIES = ("USD",)

_FEE_KEY = "flat_fee_per_month"
_RATE_KEYS = (
    "committed_rate_per_gpu_hour",
    "overage_rate_per_gpu_hour",
    "sla_credit_per_gpu_hour",
)
_CAP_KEY = "sla_credit_cap_percent"
_CAP_BASE_KEY = "sla_credit_cap_base"
VALID_KEYS = ("kind", "currency", _FEE_KEY, *_RATE_KEYS, _CAP_KEY, _CAP_BASE_KEY)

_CENT_PLACES = 2
_MICRO_PLACES = 6


def parse_price_terms(mapping: Mapping[str, object], field: str = "price") -> PriceTerms:
    """Read price terms; any problem raises ``SpecError`` naming ``{field}.{key}``."""
    if not isinstance(mapping, Mapping):
        raise SpecError(field, f"expected a table of price terms, got {type(mapping).__name__}")
    for key in mapping:
        if key not in VALID_KEYS:
            raise SpecError(
                f"{field}.{key}", f"unknown key {key!r}; valid keys: {', '.join(VALID_KEYS)}"
            )

    currency = mapping.get("currency", "USD")
    if currency not in SUPPORTED_CURRENCIES:
        raise SpecError(
            f"{field}.currency",
            f"unsupported currency {currency!r}; supported: {', '.join(SUPPORTED_CURRENCIES)}",
        )

    kind = _parse_kind(mapping, field)

    fee_cents = 0
    if _FEE_KEY in mapping:
        fee_cents = _parse_amount(mapping[_FEE_KEY], f"{field}.{_FEE_KEY}", _CENT_PLACES)
    rates = {
        key: _parse_amount(mapping[key], f"{field}.{key}", _MICRO_PLACES) if key in mapping else 0
        for key in _RATE_KEYS
    }
    cap = 100
    if _CAP_KEY in mapping:
        cap = _parse_amount(mapping[_CAP_KEY], f"{field}.{_CAP_KEY}", 0)
        if cap > 100:
            raise SpecError(f"{field}.{_CAP_KEY}", f"must be between 0 and 100, got {cap}")
    cap_base = _parse_cap_base(mapping.get(_CAP_BASE_KEY, CreditCapBase.SUBTOTAL.value), field)

    if kind is PriceKind.FLAT:
        if fee_cents <= 0:
            raise SpecError(
                f"{field}.{_FEE_KEY}", "a flat contract needs a monthly fee greater than zero"
            )
        if "committed_rate_per_gpu_hour" in mapping:
            raise SpecError(
                f"{field}.committed_rate_per_gpu_hour",
                "applies to kind = 'rate' only; a flat contract pays flat_fee_per_month",
            )
    elif _FEE_KEY in mapping:
        raise SpecError(
            f"{field}.{_FEE_KEY}",
            "applies to kind = 'flat' only; a rate contract pays committed_rate_per_gpu_hour",
        )

    return PriceTerms(
        kind=kind,
        currency=str(currency),
        flat_fee_cents_per_month=fee_cents,
        committed_rate_micro_per_gpu_hour=rates["committed_rate_per_gpu_hour"],
        overage_rate_micro_per_gpu_hour=rates["overage_rate_per_gpu_hour"],
        sla_credit_micro_per_gpu_hour=rates["sla_credit_per_gpu_hour"],
        sla_credit_cap_percent=cap,
        sla_credit_cap_base=cap_base,
    )


def parse_usd(value: object, field: str, places: int) -> int:
    """A non-negative USD amount, exact, scaled by ``10**places`` (2: cents, 6:
    micro-dollars); read like the price terms, never rounded. ``SpecError`` names ``field``."""
    return _parse_amount(value, field, places)


def _parse_cap_base(raw: object, field: str) -> CreditCapBase:
    valid = [b.value for b in CreditCapBase]
    if not isinstance(raw, str) or raw not in valid:
        raise SpecError(
            f"{field}.{_CAP_BASE_KEY}", f"unknown cap base {raw!r}; valid: {', '.join(valid)}"
        )
    return CreditCapBase(raw)


def _parse_kind(mapping: Mapping[str, object], field: str) -> PriceKind:
    raw = mapping.get("kind")
    if raw is None:
        return PriceKind.FLAT if _FEE_KEY in mapping else PriceKind.RATE
    valid = [k.value for k in PriceKind]
    if not isinstance(raw, str) or raw not in valid:
        raise SpecError(f"{field}.kind", f"unknown price kind {raw!r}; valid: {', '.join(valid)}")
    return PriceKind(raw)


def _parse_amount(value: object, field: str, places: int) -> int:
    """A non-negative decimal amount scaled by 10**places; exact or an error."""
    d = _to_decimal(value, field)
    if d < 0:
        raise SpecError(field, f"must not be negative, got {value!r}")
    with decimal.localcontext() as ctx:
        ctx.prec = max(28, len(d.as_tuple().digits) + places + 2)
        scaled = d.scaleb(places)
        if scaled != scaled.to_integral_value():
            if places == 0:
                raise SpecError(field, f"must be a whole number, got {value!r} (no decimal places)")
            what = "cents" if places == _CENT_PLACES else "micro-dollars"
            raise SpecError(
                field,
                f"{value!r} has more than {places} decimal places; amounts are exact in {what}",
            )
        return int(scaled)


def _to_decimal(value: object, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise SpecError(field, f"expected a number or a numeric string, got {value!r}")
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        text = text[1:] if text.startswith("$") else text
    else:
        text = str(value)
    try:
        d = Decimal(text)
    except decimal.InvalidOperation:
        raise SpecError(field, f"cannot read {value!r} as an amount in USD") from None
    if not d.is_finite():
        raise SpecError(field, f"must be a finite amount, got {value!r}")
    return d
