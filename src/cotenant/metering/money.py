"""Money: the ONE place where an exact amount becomes a whole number of cents.

Units (see ``cotenant.model.contracts``): totals are integer cents; rates are
integer micro-dollars per GPU-hour (1 cent = 10,000 micro-dollars), so a rate such
as $2.345/GPU-h is exact. Everything upstream of an invoice line is exact
(``int`` or ``fractions.Fraction``); rounding happens here and nowhere else.

The rounding rule: **round half up, on cents, once per invoice line**. "Half up"
means half away from zero (``decimal.ROUND_HALF_UP``): 234.5 cents -> 235 and
-234.5 cents -> -235, so a credit rounds exactly like the charge of the same size.
We chose it over banker's rounding (half to even) because it is what a person
checking an invoice by hand expects and what most invoicing rules state; the
difference is at most one cent per line. Subtotals and totals are sums of rounded
lines, so a printed invoice always adds up.
"""

from __future__ import annotations

from fractions import Fraction

MICRO_PER_CENT = 10_000
MICRO_PER_USD = 1_000_000
CENTS_PER_USD = 100
SECONDS_PER_HOUR = 3_600


def round_half_up(x: int | Fraction) -> int:
    """Round an exact number to the nearest integer, halves away from zero."""
    if isinstance(x, int):
        return x
    magnitude = abs(x)
    whole = (magnitude.numerator * 2 + magnitude.denominator) // (2 * magnitude.denominator)
    return whole if x >= 0 else -whole


def micro_to_cents(micro: int | Fraction) -> int:
    """Micro-dollars (exact) to whole cents, rounding half up (away from zero)."""
    return round_half_up(Fraction(micro) / MICRO_PER_CENT)


def gpu_seconds_cost_micro(gpu_seconds: int, rate_micro_per_gpu_hour: int) -> Fraction:
    """The exact cost of ``gpu_seconds`` at a rate per GPU-hour, in micro-dollars."""
    return Fraction(gpu_seconds * rate_micro_per_gpu_hour, SECONDS_PER_HOUR)


def price_per_gpu_hour_micro(amount_cents: int, gpu_seconds: int) -> int | None:
    """An amount spread over GPU-seconds, as micro-dollars per GPU-hour (half up).

    None when there are no GPU-seconds to spread it over.
    """
    if gpu_seconds <= 0:
        return None
    return round_half_up(Fraction(amount_cents * MICRO_PER_CENT * SECONDS_PER_HOUR, gpu_seconds))


def format_usd(cents: int) -> str:
    """``125000000000`` -> ``"$1,250,000,000.00"``; negative amounts as ``"-$1.50"``."""
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), CENTS_PER_USD)
    return f"{sign}${dollars:,}.{rest:02d}"


def format_rate(micro: int, unit: str = "GPU-h") -> str:
    """A rate in micro-dollars, exact: ``2345000`` -> ``"$2.345/GPU-h"``, ``2000000`` ->
    ``"$2.00/GPU-h"`` (at least two decimals, at most six, never rounded)."""
    sign = "-" if micro < 0 else ""
    dollars, rest = divmod(abs(micro), MICRO_PER_USD)
    frac = f"{rest:06d}".rstrip("0")
    frac = frac.ljust(2, "0")
    return f"{sign}${dollars:,}.{frac}/{unit}"


def format_decimal(x: int | Fraction, places: int, min_places: int = 1) -> str:
    """An exact non-money quantity for display (e.g. GPU-hours): rounded half up to
    ``places`` decimals, trailing zeros dropped down to ``min_places``, with thousands
    separators. Display only: amounts are always computed from the exact value."""
    scaled = round_half_up(Fraction(x) * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, rest = divmod(abs(scaled), 10**places)
    frac = f"{rest:0{places}d}".rstrip("0").ljust(min_places, "0") if places else ""
    return f"{sign}{whole:,}" + (f".{frac}" if frac else "")
