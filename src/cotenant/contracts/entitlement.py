"""What a tenant is entitled to at time t: the only place that knows these rules.

Rules, in order:
1. Outside the contract term, or with no contract, the entitlement is zero.
2. A fixed commitment gives ``commitment.gpus``. An ``all_available`` commitment
   gives the capacity of its kind minus every other tenant's fixed commitment in
   force at t (before their own ramps: capacity a rival is winding down is not
   handed to the all-available tenant mid-notice) minus the owner's reserve.
3. Once notice is given at g, the entitlement ramps to zero at g + period:
   linearly (floor of base * remaining / period) or as one step at the end.
4. Entitlements are whole GPUs and never exceed capacity in sum (validated when
   contracts are loaded; ``all_available`` takes only what is left).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction

from cotenant.model.contracts import Contract, Ramp


def in_term(contract: Contract, t: int) -> bool:
    return contract.start_s <= t < effective_end(contract)


def effective_end(contract: Contract) -> int:
    """The contract ends at its term end or at the end of the notice period, whichever is first."""
    given = contract.notice.given_at
    if given is None:
        return contract.end_s
    return min(contract.end_s, given + contract.notice.period_s)


def ramp_fraction(contract: Contract, t: int) -> Fraction:
    """Share (0..1) of the base commitment still owed at t; exact."""
    if not in_term(contract, t):
        return Fraction(0)
    given = contract.notice.given_at
    if given is None or t < given:
        return Fraction(1)
    if contract.notice.ramp is Ramp.STEP or contract.notice.period_s == 0:
        return Fraction(1)  # in_term already cut it off at given + period
    remaining = given + contract.notice.period_s - t
    return Fraction(remaining, contract.notice.period_s)


def ramp_integral(contract: Contract, t0: int, t1: int) -> Fraction:
    """Exact integral of ``ramp_fraction`` over [t0, t1), in seconds. Used to prorate fees."""
    if t1 <= t0:
        return Fraction(0)
    lo = max(t0, contract.start_s)
    hi = min(t1, effective_end(contract))
    if hi <= lo:
        return Fraction(0)
    given = contract.notice.given_at
    if given is None or contract.notice.ramp is Ramp.STEP or contract.notice.period_s == 0:
        return Fraction(hi - lo)
    total = Fraction(0)
    flat_hi = min(hi, given)
    if flat_hi > lo:
        total += flat_hi - lo
    r_lo = max(lo, given)
    if hi > r_lo:
        end = given + contract.notice.period_s
        # integral of (end - t)/P dt from r_lo to hi
        p = contract.notice.period_s
        total += Fraction((end - r_lo) ** 2 - (end - hi) ** 2, 2 * p)
    return total


def base_commitment(contract: Contract, capacity: int, others: Iterable[Contract], t: int) -> int:
    """The commitment before any notice ramp, in GPUs."""
    c = contract.commitment
    if not c.all_available:
        return c.gpus
    taken = sum(
        o.commitment.gpus
        for o in others
        if o.tenant != contract.tenant
        and not o.commitment.all_available
        and _same_pool(o, contract)
        and in_term(o, t)
    )
    return max(0, capacity - taken - c.reserve_gpus)


def entitled_gpus(
    contract: Contract | None, t: int, capacity: int, others: Iterable[Contract]
) -> int:
    """GPUs the contract's tenant is owed at time t."""
    if contract is None or not in_term(contract, t):
        return 0
    base = base_commitment(contract, capacity, others, t)
    if not _in_linear_ramp(contract, t):
        return base  # the ramp fraction is exactly 1
    return int(base * ramp_fraction(contract, t))


def _in_linear_ramp(contract: Contract, t: int) -> bool:
    n = contract.notice
    return (
        n.given_at is not None
        and n.ramp is Ramp.LINEAR
        and n.period_s > 0
        and n.given_at <= t < n.given_at + n.period_s
    )


def entitlements(
    contracts: Iterable[Contract], t: int, capacity_by_kind: Mapping[str | None, int]
) -> dict[str, int]:
    """Entitlement of every contracted tenant at t. ``capacity_by_kind[None]`` is the total."""
    all_contracts = list(contracts)
    out: dict[str, int] = {}
    for c in all_contracts:
        cap = capacity_by_kind.get(c.commitment.accelerator, 0)
        out[c.tenant] = entitled_gpus(c, t, cap, all_contracts)
    return out


def next_change(contracts: Iterable[Contract], t: int) -> int | None:
    """The next time after t at which some entitlement may change by a step (term start,
    end, or notice end). Linear ramps change continuously; the engine re-reads them each cycle."""
    candidates: list[int] = []
    for c in contracts:
        for x in (c.start_s, effective_end(c)):
            if x > t:
                candidates.append(x)
    return min(candidates) if candidates else None


def stable_until(contracts: Iterable[Contract], t: int) -> int | None:
    """A time until which (exclusive) every entitlement stays what it is at t; None if they
    never change again. During a linear ramp that is t + 1: re-read every second."""
    candidates: list[int] = []
    for c in contracts:
        if in_term(c, t) and _in_linear_ramp(c, t):
            return t + 1
        given = c.notice.given_at
        for x in (c.start_s, effective_end(c), given if given is not None else t):
            if x > t:
                candidates.append(x)
    return min(candidates) if candidates else None


def _same_pool(a: Contract, b: Contract) -> bool:
    ka, kb = a.commitment.accelerator, b.commitment.accelerator
    return ka is None or kb is None or ka == kb


def deliverable(
    entitled: Mapping[str, int],
    contracts: Mapping[str, Contract],
    down_gpus: int,
    capacity: int,
) -> tuple[dict[str, int], dict[str, int]]:
    """What can be delivered when ``down_gpus`` are out of service, and the deficit per tenant.

    Failures come out of the spare pool first: capacity no entitlement covers. What the
    spares do not cover is taken from tenants whose commitment is not backed by spares,
    in proportion to their entitlement; only beyond that from spares-backed tenants
    (again in proportion). The deficit is recorded as SLA shortfall where it leaves
    entitled demand unserved.
    """
    spare = max(0, capacity - sum(entitled.values()))
    uncovered = max(0, down_gpus - spare)
    deficit = dict.fromkeys(entitled, 0)
    if uncovered:
        for backed in (False, True):
            group = {
                t: e
                for t, e in entitled.items()
                if e > 0 and (t in contracts and contracts[t].spares_backed) == backed
            }
            total = sum(group.values())
            if not total:
                continue
            take = min(uncovered, total)
            # Largest-remainder split so the parts add up exactly.
            shares = {t: take * e // total for t, e in group.items()}
            rest = take - sum(shares.values())
            for t in sorted(group, key=lambda x: (-(take * group[x] % total), x))[:rest]:
                shares[t] += 1
            for t, v in shares.items():
                deficit[t] += v
            uncovered -= take
            if not uncovered:
                break
    return {t: e - deficit[t] for t, e in entitled.items()}, deficit
