"""Accounting: integrals between events and the sampled series for plots."""

from __future__ import annotations

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
