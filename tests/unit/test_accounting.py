"""Accounting: integrals between events and the sampled series for plots."""

from __future__ import annotations

import pytest

from cotenant.engine.accounting import Accounting


def test_series_columns_stay_aligned_when_a_tenant_appears_late() -> None:
    acct = Accounting(start_s=0, capacity=16, sample_step_s=10)
    acct.advance(25, {"A": 8}, {"A": 8}, {}, {"A": 8}, {}, 16)  # samples at 0, 10, 20
    acct.advance(35, {"A": 8, "B": 4}, {"A": 8}, {"B": 4}, {"A": 8}, {}, 16)  # sample at 30
    s = acct.series
    assert s.times == [0, 10, 20, 30]
    assert s.allocated["A"] == [8, 8, 8, 8]
    assert s.allocated["B"] == [0, 0, 0, 4]
    assert s.borrowed["B"] == [0, 0, 0, 4]
    assert all(len(col) == len(s.times) for col in (*s.allocated.values(), *s.entitled.values()))


def test_integrals_count_only_tenants_holding_gpus() -> None:
    acct = Accounting(start_s=0, capacity=16, sample_step_s=3600)
    acct.advance(10, {"A": 8, "B": 0}, {"A": 6}, {"A": 2}, {"A": 6, "B": 4}, {"B": 4}, 16)
    a, b = acct.tenants["A"], acct.tenants["B"]
    assert (a.used_gpu_s, a.own_gpu_s, a.borrowed_gpu_s) == (80, 60, 20)
    assert (b.used_gpu_s, b.entitled_gpu_s) == (0, 40)
    # 2 GPUs borrowed, 6 not covered by any entitlement: nothing came from B's idle 4.
    assert b.lent_gpu_s == 0
    assert acct.allocated_gpu_s == 80 and acct.capacity_gpu_s == 160


# (t, allocated, owned, borrowed, entitled, lenders idle)
Step = tuple[int, dict[str, int], dict[str, int], dict[str, int], dict[str, int], dict[str, int]]
LEND = {"A": 4, "B": 12}  # entitlements: 16 of 16 GPUs, so every borrowed GPU is lent


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(
            [
                (10, {"A": 8}, {"A": 4}, {"A": 4}, LEND, {"B": 12}),
                (20, {"A": 8, "B": 4}, {"A": 4, "B": 4}, {"A": 4}, LEND, {"B": 8}),
                (35, {"A": 2, "B": 4}, {"A": 2, "B": 4}, {"A": 0}, LEND, {"B": 8}),
                (50, {"A": 0, "B": 4}, {"A": 0, "B": 4}, {"A": 0}, LEND, {"B": 8}),
            ],
            id="borrowing-then-returning",
        ),
        pytest.param(
            [
                (5, {"A": 6, "C": 3}, {"A": 4}, {"A": 2, "C": 3}, LEND, {"B": 12}),
                (9, {"A": 6, "C": 3}, {"A": 4}, {"A": 2, "C": 3}, {"A": 4}, {}),
                (30, {"C": 3}, {}, {"C": 3}, {"A": 4}, {}),
            ],
            id="entitlements-replaced",
        ),
    ],
)
def test_rereading_only_changed_tenants_integrates_as_a_full_read(steps: list[Step]) -> None:
    """The engine tells the accounting which tenants' GPUs changed; integrating with that
    gives what reading every mapping at every event gives."""
    full = Accounting(start_s=0, capacity=16, sample_step_s=10)
    told = Accounting(start_s=0, capacity=16, sample_step_s=10)
    before: dict[str, tuple[int, int, int]] = {}
    for t, alloc, own, bor, ent, idle in steps:
        full.advance(t, alloc, own, bor, ent, idle, 16)
        now = {n: (alloc.get(n, 0), own.get(n, 0), bor.get(n, 0)) for n in {*alloc, *own, *bor}}
        changed = {n for n in {*now, *before} if now.get(n) != before.get(n)}
        told.advance(t, alloc, own, bor, ent, idle, 16, changed)
        assert not changed  # read and cleared
        before = now
    assert dict(told.tenants) == dict(full.tenants)
    assert (told.allocated_gpu_s, told.capacity_gpu_s) == (
        full.allocated_gpu_s,
        full.capacity_gpu_s,
    )
    assert any(tt.lent_gpu_s > 0 for tt in full.tenants.values())
