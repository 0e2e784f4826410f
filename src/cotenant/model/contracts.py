"""Tenants and the contracts that give them capacity. Plain frozen data; the rules that
read it live in ``cotenant.contracts.entitlement`` and nowhere else.

Times are integer Unix seconds; money is integer: totals in cents, rates in
micro-dollars per GPU-hour so that a rate such as $2.345/GPU-h stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class Ramp(StrEnum):
    LINEAR = "linear"  # entitlement falls linearly from notice to notice + period
    STEP = "step"  # entitlement holds until notice + period, then drops to zero


class IsolationLevel(StrEnum):
    NODE = "node"
    RACK = "rack"


class PriceKind(StrEnum):
    FLAT = "flat"  # a fixed fee per calendar month
    RATE = "rate"  # committed GPU-hours at a rate (use it or not) plus overage


class CreditCapBase(StrEnum):
    """What the SLA credit cap is a share of. Contracts in the field use both."""

    SUBTOTAL = "subtotal"  # the month's charges before credits (committed + overage)
    COMMITTED = "committed"  # the committed charge only (flat fee or committed capacity)


@dataclass(frozen=True, slots=True)
class Commitment:
    """What the contract commits: a number of GPUs, or all that is available.

    ``all_available`` means everything not committed to other tenants, minus
    ``reserve_gpus`` that the owner keeps back. ``accelerator`` restricts the
    commitment to one kind (None: any kind).
    """

    gpus: int = 0
    all_available: bool = False
    reserve_gpus: int = 0
    accelerator: str | None = None


@dataclass(frozen=True, slots=True)
class PriceTerms:
    kind: PriceKind = PriceKind.RATE
    currency: str = "USD"
    flat_fee_cents_per_month: int = 0
    committed_rate_micro_per_gpu_hour: int = 0
    overage_rate_micro_per_gpu_hour: int = 0
    sla_credit_micro_per_gpu_hour: int = 0
    sla_credit_cap_percent: int = 100  # of the cap base below
    sla_credit_cap_base: CreditCapBase = CreditCapBase.SUBTOTAL


@dataclass(frozen=True, slots=True)
class NoticeTerms:
    period_s: int = 90 * 86_400
    ramp: Ramp = Ramp.LINEAR
    given_at: int | None = None  # set when either side gives notice


@dataclass(frozen=True, slots=True)
class LendingTerms:
    """Whether this tenant's idle committed capacity may be lent out, and on what terms.

    ``reclaim_grace_s`` is the time a borrower of this tenant's capacity gets to
    checkpoint before it is preempted; it is also the bound within which this
    tenant's demand inside its entitlement must be served.
    """

    lend_idle: bool = True
    limit_gpus: int | None = None  # None: no limit
    reclaim_grace_s: int = 300


@dataclass(frozen=True, slots=True)
class IsolationTerms:
    rivals: tuple[str, ...] = ()
    level: IsolationLevel = IsolationLevel.NODE


@dataclass(frozen=True, slots=True)
class Contract:
    tenant: str
    start_s: int
    end_s: int
    commitment: Commitment = field(default_factory=Commitment)
    price: PriceTerms = field(default_factory=PriceTerms)
    notice: NoticeTerms = field(default_factory=NoticeTerms)
    lending: LendingTerms = field(default_factory=LendingTerms)
    isolation: IsolationTerms = field(default_factory=IsolationTerms)
    priority: int = 0  # among the owner's own tenants; higher is served first
    spares_backed: bool = False  # failures come out of the owner's spare pool first

    def with_notice(self, at_s: int) -> Contract:
        return replace(self, notice=replace(self.notice, given_at=at_s))


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    display_name: str = ""
    contract: Contract | None = None  # a tenant without a contract may only borrow
