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
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from cotenant.model.contracts import CreditCapBase, PriceKind, PriceTerms
from cotenant.model.errors import SpecError
from cotenant.model.spec import SpecTable, one_of, problem

SUPPORTED_CURRENCIES = ("USD",)
MAX_AMOUNT = 10**15  # USD: bounds every amount (a fee, a rate, a percentage)

_CENT_PLACES = 2
_MICRO_PLACES = 6


def _amount(places: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        try:
            return _parse_amount(v, "", places)
        except SpecError as e:
            raise problem(e.problem) from None

    return check


def _currency(v: Any) -> str:
    if v not in SUPPORTED_CURRENCIES:
        raise problem(f"unsupported currency {v!r}; supported: {', '.join(SUPPORTED_CURRENCIES)}")
    return str(v)


def _cap_percent(v: Any) -> int:
    cap = _amount(0)(v)
    if cap > 100:
        raise problem(f"must be between 0 and 100, got {cap}")
    return cap


_AMOUNT_SCHEMA = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
    "description": 'USD, a number or a string such as "$1,250,000,000"; exact, never rounded',
}
Cents = Annotated[int, BeforeValidator(_amount(_CENT_PLACES)), WithJsonSchema(_AMOUNT_SCHEMA)]
Micros = Annotated[int, BeforeValidator(_amount(_MICRO_PLACES)), WithJsonSchema(_AMOUNT_SCHEMA)]
_KINDS = tuple(k.value for k in PriceKind)
_CAP_BASES = tuple(b.value for b in CreditCapBase)


class PriceTable(SpecTable):
    """A contract's ``price`` table as written; amounts in cents (fees) or micro-dollars
    (rates). ``terms()`` checks the kind against the amounts and gives the terms."""

    kind: Annotated[
        str | None, BeforeValidator(one_of(_KINDS, "price kind")), WithJsonSchema({"enum": _KINDS})
    ] = None
    currency: Annotated[
        str, BeforeValidator(_currency), WithJsonSchema({"enum": SUPPORTED_CURRENCIES})
    ] = "USD"
    flat_fee_per_month: Cents | None = None
    committed_rate_per_gpu_hour: Micros | None = None
    overage_rate_per_gpu_hour: Micros | None = None
    sla_credit_per_gpu_hour: Micros | None = None
    sla_credit_cap_percent: Annotated[
        int,
        BeforeValidator(_cap_percent),
        WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 100}),
    ] = 100
    sla_credit_cap_base: Annotated[
        str, BeforeValidator(one_of(_CAP_BASES, "cap base")), WithJsonSchema({"enum": _CAP_BASES})
    ] = CreditCapBase.SUBTOTAL.value

    @classmethod
    def unknown_key(cls, key: str) -> str:
        return f"unknown key {key!r}; valid keys: {', '.join(cls.keys())}"

    @classmethod
    def not_a_table(cls, raw: Any) -> str:
        return f"expected a table of price terms, got {type(raw).__name__}"

    def terms(self, field: str) -> PriceTerms:
        """The terms; a kind that does not match the amounts raises ``SpecError``."""
        fee = self.flat_fee_per_month
        if self.kind is None:
            kind = PriceKind.FLAT if fee is not None else PriceKind.RATE
        else:
            kind = PriceKind(self.kind)
        if kind is PriceKind.FLAT:
            if not fee:
                raise SpecError(
                    f"{field}.flat_fee_per_month",
                    "a flat contract needs a monthly fee greater than zero",
                )
            if self.committed_rate_per_gpu_hour is not None:
                raise SpecError(
                    f"{field}.committed_rate_per_gpu_hour",
                    "applies to kind = 'rate' only; a flat contract pays flat_fee_per_month",
                )
        elif fee is not None:
            raise SpecError(
                f"{field}.flat_fee_per_month",
                "applies to kind = 'flat' only; a rate contract pays committed_rate_per_gpu_hour",
            )
        return PriceTerms(
            kind=kind,
            currency=self.currency,
            flat_fee_cents_per_month=fee or 0,
            committed_rate_micro_per_gpu_hour=self.committed_rate_per_gpu_hour or 0,
            overage_rate_micro_per_gpu_hour=self.overage_rate_per_gpu_hour or 0,
            sla_credit_micro_per_gpu_hour=self.sla_credit_per_gpu_hour or 0,
            sla_credit_cap_percent=self.sla_credit_cap_percent,
            sla_credit_cap_base=CreditCapBase(self.sla_credit_cap_base),
        )


def parse_price_terms(mapping: Mapping[str, object], field: str = "price") -> PriceTerms:
    """Read price terms; any problem raises ``SpecError`` naming ``{field}.{key}``."""
    return PriceTable.read(mapping, field).terms(field)


def parse_usd(value: object, field: str, places: int) -> int:
    """A non-negative USD amount, exact, scaled by ``10**places`` (2: cents, 6:
    micro-dollars); read like the price terms, never rounded. ``SpecError`` names ``field``."""
    return _parse_amount(value, field, places)


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
    if d > MAX_AMOUNT:  # (and 1e999999 would overflow the scaling)
        raise SpecError(field, f"must be at most {MAX_AMOUNT:,} USD, got {value!r}")
    return d
