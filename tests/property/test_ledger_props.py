"""Ledger invariants: exact clipping, append-only validation, and billing equal to enforcement."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cotenant.contracts.entitlement import entitled_gpus
from cotenant.metering.ledger import UsageLedger, UsageRecord, clip
from cotenant.metering.rating import entitled_gpu_seconds
from cotenant.model.contracts import Commitment, Contract, NoticeTerms, Ramp
from cotenant.model.errors import SpecError

TENANTS = ("alpha", "beta", "gamma")


@st.composite
def records(draw: st.DrawFn) -> UsageRecord:
    start = draw(st.integers(-1_000_000, 1_000_000))
    return UsageRecord(
        job_id=draw(st.sampled_from(("j1", "j2", "j3"))),
        tenant=draw(st.sampled_from(TENANTS)),
        gpus=draw(st.integers(1, 4096)),
        accelerator="H100-SXM-80GB",
        nodes=(0,),
        start_s=start,
        end_s=start + draw(st.integers(0, 200_000)),
        borrowed=draw(st.booleans()),
        kind=draw(st.sampled_from(("training", "experiment", "service"))),
    )


cuts = st.lists(st.integers(-1_500_000, 1_500_000), max_size=12, unique=True).map(sorted)


def windows(points: list[int]) -> list[tuple[int | None, int | None]]:
    """A partition of the whole time axis: (-inf, p1), [p1, p2), ..., [pk, +inf)."""
    bounds: list[int | None] = [None, *points, None]
    return list(pairwise(bounds))


@given(st.lists(records(), max_size=30), cuts)
def test_any_partition_of_time_sums_to_the_total(rs: list[UsageRecord], points: list[int]) -> None:
    ledger = UsageLedger(rs)
    total = sum(r.gpu_seconds for r in rs)
    assert ledger.gpu_seconds() == total
    parts = windows(points)
    assert sum(ledger.gpu_seconds(start_s=a, end_s=b) for a, b in parts) == total
    clipped = [clip(r, a, b) for r in rs for a, b in parts]
    assert sum(c.gpu_seconds for c in clipped if c is not None) == total
    for tenant in TENANTS:
        own = ledger.gpu_seconds(tenant=tenant, borrowed=False)
        lent = ledger.gpu_seconds(tenant=tenant, borrowed=True)
        assert own + lent == ledger.gpu_seconds(tenant=tenant)
        by_window = sum(ledger.gpu_seconds(tenant, a, b, borrowed=True) for a, b in parts)
        assert by_window == lent


@given(records(), st.integers(-1_500_000, 1_500_000), st.integers(0, 500_000))
def test_clip_stays_inside_the_window(r: UsageRecord, t0: int, width: int) -> None:
    c = clip(r, t0, t0 + width)
    if c is None:
        assert min(r.end_s, t0 + width) <= max(r.start_s, t0)
    else:
        assert t0 <= c.start_s < c.end_s <= t0 + width
        assert r.start_s <= c.start_s and c.end_s <= r.end_s
        assert (c.job_id, c.tenant, c.gpus, c.borrowed) == (r.job_id, r.tenant, r.gpus, r.borrowed)


@given(
    st.lists(records(), max_size=5),
    records(),
    st.one_of(
        st.builds(lambda g: ("gpus", g), st.integers(-10, 0)),
        st.builds(lambda d: ("end_s", d), st.integers(-100_000, -1)),
    ),
)
def test_bad_records_are_refused_and_not_kept(
    good: list[UsageRecord], base: UsageRecord, bad: tuple[str, int]
) -> None:
    ledger = UsageLedger(good)
    before = ledger.records()
    name, value = bad
    if name == "gpus":
        broken = replace(base, gpus=value)
    else:
        broken = replace(base, end_s=base.start_s + value)
    with pytest.raises(SpecError) as err:
        ledger.append(broken)
    assert err.value.field.endswith(f".{name}")
    assert ledger.records() == before
    assert ledger.gpu_seconds() == sum(r.gpu_seconds for r in good)


def test_ledger_has_no_update_or_delete() -> None:
    ledger = UsageLedger()
    for name in ("update", "delete", "remove", "pop", "clear", "__setitem__", "__delitem__"):
        assert not hasattr(ledger, name)
    assert isinstance(ledger.records(), tuple)


@given(
    base=st.integers(0, 300),
    period=st.integers(1, 400),
    given_at=st.integers(0, 600),
    start=st.integers(0, 200),
    length=st.integers(0, 900),
    t0=st.integers(0, 900),
    width=st.integers(0, 900),
    ramp=st.sampled_from(list(Ramp)),
)
def test_billed_entitlement_equals_enforced_entitlement(
    base: int,
    period: int,
    given_at: int,
    start: int,
    length: int,
    t0: int,
    width: int,
    ramp: Ramp,
) -> None:
    """The closed-form integral in rating equals summing entitled_gpus second by second."""
    contract = Contract(
        tenant="lab",
        start_s=start,
        end_s=start + length,
        commitment=Commitment(gpus=base),
        notice=NoticeTerms(period_s=period, ramp=ramp, given_at=given_at),
    )
    rival = Contract(tenant="rival", start_s=300, end_s=700, commitment=Commitment(gpus=50))
    greedy = Contract(
        tenant="greedy",
        start_s=start,
        end_s=start + length,
        commitment=Commitment(all_available=True, reserve_gpus=7),
        notice=NoticeTerms(period_s=period, ramp=ramp, given_at=given_at),
    )
    every = [contract, rival, greedy]
    for c in (contract, greedy):
        brute = sum(entitled_gpus(c, t, 400, every) for t in range(t0, t0 + width))
        assert entitled_gpu_seconds(c, t0, t0 + width, 400, every) == brute
