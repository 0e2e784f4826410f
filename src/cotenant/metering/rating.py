"""Rating: one invoice per tenant per calendar month (UTC), from a contract and the ledger.

Rules (design doc 0005):

* FLAT: ``fee * ramp_integral(month) / seconds_in_month``. ``ramp_integral`` is zero
  outside the term and follows a linear notice ramp down, so one formula prorates a
  term that starts or ends inside the month and a notice given inside it. Exact
  (``Fraction``), rounded once.
* RATE: committed GPU-hours (the exact integral over the month of ``entitled_gpus``,
  the whole-GPU entitlement the scheduler enforces, see ``entitled_gpu_seconds``)
  times the committed rate, use it or not; plus borrowed GPU-hours in the ledger
  inside the month times the overage rate.
* Either kind: borrowed GPU-hours are billed at the overage rate when it is non-zero.
* SLA credit: shortfall GPU-hours (entitled demand not served; computed by the
  engine) times the credit rate, capped at ``sla_credit_cap_percent`` of the
  month's charges (``sla_credit_cap_base = "subtotal"``, the default) or of the
  committed charge alone (``"committed"``: the flat fee or the committed-capacity
  line, overage excluded); a negative line.

Each line is rounded once, half up, by ``money.micro_to_cents``; subtotal, credits
and total are sums of lines. ``credits_cents`` is the sum of credit lines (<= 0) and
``total_cents = subtotal_cents + credits_cents``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

from cotenant.contracts.entitlement import (
    base_commitment,
    effective_end,
    entitled_gpus,
    in_term,
    ramp_integral,
)
from cotenant.metering.ledger import UsageSource
from cotenant.metering.money import (
    MICRO_PER_CENT,
    SECONDS_PER_HOUR,
    format_decimal,
    format_rate,
    format_usd,
    gpu_seconds_cost_micro,
    micro_to_cents,
)
from cotenant.model.contracts import Contract, CreditCapBase, PriceKind, PriceTerms, Ramp
from cotenant.model.errors import InvariantBroken, SpecError

_MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_bounds(month: str) -> tuple[int, int]:
    """``"2026-10"`` -> (start, end) Unix seconds of that UTC calendar month, half-open."""
    m = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if m is None:
        raise SpecError("month", f"expected a month as 'YYYY-MM', got {month!r}")
    year, mon = int(m.group(1)), int(m.group(2))
    if not 1 <= mon <= 12 or year < 1970:
        raise SpecError("month", f"no such month {month!r} (year >= 1970, month 01..12)")
    start = calendar.timegm((year, mon, 1, 0, 0, 0))
    nxt = (year + 1, 1) if mon == 12 else (year, mon + 1)
    end = calendar.timegm((nxt[0], nxt[1], 1, 0, 0, 0))
    return start, end


def entitled_gpu_seconds(
    contract: Contract, t0: int, t1: int, capacity: int, others: Iterable[Contract]
) -> int:
    """Exact ``sum(entitled_gpus(contract, t, ...) for t in range(t0, t1))``: GPU-seconds owed.

    The entitlement is a step function of integer seconds. Between breakpoints (term
    start and end, notice, and the other contracts' starts and ends, which change an
    ``all_available`` base) it is either ``base`` or, on a linear ramp,
    ``floor(base * (g + P - t) / P)``; the floored sum is computed in closed form
    (``_floor_sum``), so a 90-day ramp of 100,000 GPUs costs O(log) per segment. Both
    ends of every segment are checked against ``entitled_gpus`` itself, so a change to
    the rules there cannot silently diverge from what is billed here.
    """
    all_contracts = list(others)
    lo = max(t0, contract.start_s)
    hi = min(t1, effective_end(contract))
    if hi <= lo:
        return 0
    given = contract.notice.given_at
    points = {lo, hi}
    if given is not None:
        points.add(given)
    for o in all_contracts:
        points.update((o.start_s, effective_end(o)))
    cuts = sorted(p for p in points if lo <= p <= hi)

    period = contract.notice.period_s
    linear = given is not None and contract.notice.ramp is Ramp.LINEAR and period > 0
    total = 0
    for a, b in pairwise(cuts):
        if not in_term(contract, a):
            continue
        base = base_commitment(contract, capacity, all_contracts, a)
        if linear and given is not None and a >= given:
            end = given + period
            # t = a .. b-1  <=>  remaining r = end - t = end-b+1 .. end-a
            seg = _floor_sum(b - a, period, base, base * (end - b + 1))
            ends = ((a, base * (end - a) // period), (b - 1, base * (end - b + 1) // period))
        else:
            seg = base * (b - a)
            ends = ((a, base), (b - 1, base))
        for t, owed in ends:
            if owed != entitled_gpus(contract, t, capacity, all_contracts):
                raise InvariantBroken(
                    f"rating's entitlement integral disagrees with entitled_gpus at t={t} "
                    f"for tenant {contract.tenant!r}; update metering.rating"
                )
        total += seg
    return total


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*i + b) / m) for i in range(n))`` for n, a, b >= 0 and m > 0, in
    O(log m) (the Euclid-like reduction of AtCoder Library's ``floor_sum``)."""
    total = 0
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b = divmod(y_max, m)
        m, a = a, m


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    description: str
    quantity: str
    unit_price: str
    amount_cents: int

    def to_json_dict(self) -> dict[str, object]:
        return {
            "description": self.description,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "amount_cents": self.amount_cents,
            "amount": format_usd(self.amount_cents),
        }


@dataclass(frozen=True, slots=True)
class Invoice:
    """One tenant's invoice for one calendar month. Usage figures are exact GPU-seconds."""

    tenant: str
    month: str
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal_cents: int  # sum of charge lines
    credits_cents: int  # sum of credit lines, zero or negative
    total_cents: int  # subtotal_cents + credits_cents
    own_gpu_seconds: int = 0  # used inside the tenant's own commitment
    borrowed_gpu_seconds: int = 0  # used beyond it (overage)
    entitled_gpu_seconds: int = 0  # owed by the contract over the month
    # Owed, asked for and not served, in two kinds (design doc 0005, "Violation and
    # shortfall"): a shortfall is room failures took beyond the spare pool; a violation
    # is the scheduler's fault (room existed; a job inside it waited beyond the grace).
    shortfall_gpu_seconds: int = 0
    violation_gpu_seconds: int = 0

    @property
    def used_gpu_seconds(self) -> int:
        return self.own_gpu_seconds + self.borrowed_gpu_seconds

    def to_json_dict(self) -> dict[str, object]:
        usage = {
            name: getattr(self, f"{name}_gpu_seconds")
            for name in ("own", "borrowed", "entitled", "shortfall", "violation")
        }
        return {
            "tenant": self.tenant,
            "month": self.month,
            "currency": self.currency,
            "lines": [line.to_json_dict() for line in self.lines],
            "subtotal_cents": self.subtotal_cents,
            "credits_cents": self.credits_cents,
            "total_cents": self.total_cents,
            "total": format_usd(self.total_cents),
            "usage": {
                **{f"{k}_gpu_seconds": v for k, v in usage.items()},
                **{f"{k}_gpu_hours": v / SECONDS_PER_HOUR for k, v in usage.items()},
            },
        }

    def to_csv_rows(self) -> list[list[str]]:
        """A header row, one row per line, then Subtotal, Credits and Total rows. Numeric
        columns hold plain numbers (no separators, no currency signs); the units are in
        columns of their own: ``quantity`` in ``unit``, ``unit_price`` in USD per
        ``price_unit``, ``amount`` in USD (exactly ``amount_cents`` / 100)."""
        rows = [
            [
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
        ]
        for line in self.lines:
            qty, unit = _split_quantity(line.quantity)
            price, per = _split_price(line.unit_price)
            rows.append(
                [
                    self.tenant,
                    self.month,
                    line.description,
                    qty,
                    unit,
                    price,
                    f"{self.currency}/{per}" if per else "",
                    str(line.amount_cents),
                    _cents_number(line.amount_cents),
                ]
            )
        for label, cents in self._totals():
            row = [self.tenant, self.month, label, "", "", "", "", str(cents)]
            rows.append([*row, _cents_number(cents)])
        return rows

    def render_text(self) -> str:
        """A plain aligned text table."""
        header = ("Description", "Quantity", "Unit price", "Amount")
        body = [
            (ln.description, ln.quantity, ln.unit_price, format_usd(ln.amount_cents))
            for ln in self.lines
        ]
        totals = [("", "", label, format_usd(cents)) for label, cents in self._totals()]
        widths = [max(len(r[i]) for r in (header, *body, *totals)) for i in range(4)]

        def fmt(row: tuple[str, str, str, str]) -> str:
            cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
            cells += [row[2].rjust(widths[2]), row[3].rjust(widths[3])]
            return "  ".join(cells).rstrip()

        rule = "-" * (sum(widths) + 6)
        out = [f"Invoice: {self.tenant}, {self.month} ({self.currency})", rule, fmt(header), rule]
        out += [fmt(r) for r in body]
        out += [rule, *(fmt(r) for r in totals), ""]
        out.append(
            f"Usage: own {_hours(self.own_gpu_seconds)} GPU-h, "
            f"borrowed {_hours(self.borrowed_gpu_seconds)} GPU-h, "
            f"entitled {_hours(self.entitled_gpu_seconds)} GPU-h, "
            f"shortfall {_hours(self.shortfall_gpu_seconds)} GPU-h, "
            f"late (guarantee violations) {_hours(self.violation_gpu_seconds)} GPU-h"
        )
        return "\n".join(out) + "\n"

    def _totals(self) -> list[tuple[str, int]]:
        return [
            ("Subtotal", self.subtotal_cents),
            ("Credits", self.credits_cents),
            ("Total", self.total_cents),
        ]


def rate_month(
    contract: Contract,
    month: str,
    ledger: UsageSource,
    capacity: int,
    other_contracts: Iterable[Contract],
    shortfall_gpu_seconds: int = 0,
    violation_gpu_seconds: int = 0,
) -> Invoice:
    """Rate ``contract`` for one UTC calendar month.

    ``capacity`` is the installed capacity of the contract's accelerator kind, as
    passed to ``entitled_gpus`` (failures do not lower the entitlement; the GPU-seconds
    owed and not served arrive as ``shortfall_gpu_seconds`` and earn SLA credits), and so
    does the lateness of jobs the scheduler started beyond the grace period
    (``violation_gpu_seconds``: GPUs times seconds late). One credit line covers both.
    """
    for name, value in (
        ("shortfall_gpu_seconds", shortfall_gpu_seconds),
        ("violation_gpu_seconds", violation_gpu_seconds),
    ):
        if isinstance(value, bool) or value < 0:
            raise SpecError(name, f"must be >= 0, got {value!r}")
    m0, m1 = month_bounds(month)
    price = contract.price
    others = list(other_contracts)
    tenant = contract.tenant
    own = ledger.gpu_seconds(tenant=tenant, start_s=m0, end_s=m1, borrowed=False)
    borrowed = ledger.gpu_seconds(tenant=tenant, start_s=m0, end_s=m1, borrowed=True)
    entitled = entitled_gpu_seconds(contract, m0, m1, capacity, others)

    charges = _charge_lines(contract, m0, m1, entitled, borrowed)
    subtotal = sum(line.amount_cents for line in charges)
    credits = _credit_lines(
        price, charges[0].amount_cents, subtotal, shortfall_gpu_seconds, violation_gpu_seconds
    )
    credit_total = sum(line.amount_cents for line in credits)

    return Invoice(
        tenant=tenant,
        month=month,
        currency=price.currency,
        lines=(*charges, *credits),
        subtotal_cents=subtotal,
        credits_cents=credit_total,
        total_cents=subtotal + credit_total,
        own_gpu_seconds=own,
        borrowed_gpu_seconds=borrowed,
        entitled_gpu_seconds=entitled,
        shortfall_gpu_seconds=shortfall_gpu_seconds,
        violation_gpu_seconds=violation_gpu_seconds,
    )


def _charge_lines(
    contract: Contract, m0: int, m1: int, entitled: int, borrowed: int
) -> list[InvoiceLine]:
    """The month's charges: the fixed charge (the flat fee prorated by the term and the
    notice ramp, or the entitled GPU-hours at the committed rate), then any overage."""
    price = contract.price
    charges: list[InvoiceLine] = []
    if price.kind is PriceKind.FLAT:
        share = ramp_integral(contract, m0, m1) / (m1 - m0)
        fee_micro = price.flat_fee_cents_per_month * MICRO_PER_CENT * share
        desc = "Flat monthly fee" if share == 1 else "Flat monthly fee, prorated (term, notice)"
        charges.append(
            InvoiceLine(
                desc,
                f"{format_decimal(share, 6)} month",
                f"{format_usd(price.flat_fee_cents_per_month)}/month",
                micro_to_cents(fee_micro),
            )
        )
    else:
        rate = price.committed_rate_micro_per_gpu_hour
        charges.append(
            InvoiceLine(
                "Committed capacity (entitled GPU-hours, use it or not)",
                f"{_hours(entitled)} GPU-h",
                format_rate(rate),
                micro_to_cents(gpu_seconds_cost_micro(entitled, rate)),
            )
        )
    over = price.overage_rate_micro_per_gpu_hour
    if borrowed > 0 and (over > 0 or price.kind is PriceKind.RATE):
        charges.append(
            InvoiceLine(
                "Overage (borrowed GPU-hours)",
                f"{_hours(borrowed)} GPU-h",
                format_rate(over),
                micro_to_cents(gpu_seconds_cost_micro(borrowed, over)),
            )
        )
    return charges


def _credit_lines(
    price: PriceTerms,
    committed_cents: int,
    subtotal_cents: int,
    shortfall_gpu_seconds: int,
    violation_gpu_seconds: int,
) -> list[InvoiceLine]:
    """The SLA credit for the GPU-seconds owed and not served (shortfall plus lateness),
    capped at a percentage of the charges (or of the committed charge alone)."""
    credit_rate = price.sla_credit_micro_per_gpu_hour
    owed = shortfall_gpu_seconds + violation_gpu_seconds
    if owed <= 0 or credit_rate <= 0:
        return []
    raw = gpu_seconds_cost_micro(owed, credit_rate)
    cap_percent = price.sla_credit_cap_percent
    committed_only = price.sla_credit_cap_base is CreditCapBase.COMMITTED
    base = committed_cents if committed_only else subtotal_cents
    cap = Fraction(base * MICRO_PER_CENT * cap_percent, 100)
    kinds = [
        name
        for name, v in (("shortfall", shortfall_gpu_seconds), ("late", violation_gpu_seconds))
        if v > 0
    ]
    desc = f"SLA credit ({' + '.join(kinds)} GPU-hours)"
    if raw > cap:
        of = "the committed charge" if committed_only else "charges"
        desc = f"SLA credit ({' + '.join(kinds)} GPU-hours, capped at {cap_percent}% of {of})"
    return [
        InvoiceLine(
            desc, f"{_hours(owed)} GPU-h", format_rate(-credit_rate), -micro_to_cents(min(raw, cap))
        )
    ]


def _split_quantity(text: str) -> tuple[str, str]:
    """``"1,234.5 GPU-h"`` -> ``("1234.5", "GPU-h")`` (the line's display quantity)."""
    number, _, unit = text.partition(" ")
    return number.replace(",", ""), unit


def _split_price(text: str) -> tuple[str, str]:
    """``"$1,000,000.00/month"`` -> ``("1000000.00", "month")``; ``"-$1.5/GPU-h"`` ->
    ``("-1.5", "GPU-h")``."""
    amount, _, per = text.partition("/")
    return amount.replace("$", "").replace(",", ""), per


def _cents_number(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole}.{rest:02d}"


def _hours(gpu_seconds: int) -> str:
    return format_decimal(Fraction(gpu_seconds, SECONDS_PER_HOUR), 3)
