"""The tenant book (engine/tenants.py): contracts, rivals, entitlements re-read only when
they can change, and the tenants' order by contract priority."""

from __future__ import annotations

from builders import DAY, T0, cluster, contract
from cotenant.engine.tenants import TenantBook


def book(*contracts_: object) -> TenantBook:
    b = TenantBook(cluster(nodes=16))  # 128 GPUs
    for c in contracts_:
        b.set_contract(c)  # type: ignore[arg-type]
    return b


def test_entitlements_are_read_at_a_contract_boundary_or_a_change_in_gpus_down() -> None:
    b = book(contract("A", 64, start=T0), contract("B", 32, start=T0 + DAY))
    assert b.read(T0, 0)
    assert b.entitled == {"A": 64, "B": 0}
    assert not b.read(T0 + 10, 0)  # nothing changed
    assert b.read(T0 + DAY, 0)  # B's term starts
    assert b.entitled == {"A": 64, "B": 32}
    assert not b.read(T0 + DAY + 1, 0)
    b.set_contract(contract("B", 16, start=T0 + DAY))
    assert b.read(T0 + DAY + 2, 0) and b.entitled["B"] == 16  # an amended contract


def test_gpus_down_beyond_the_spare_pool_leave_a_deficit() -> None:
    b = book(contract("A", 64), contract("B", 32))
    b.read(T0, 0)
    assert b.read(T0, 32)  # 32 spare: all covered
    assert b.deficit == {"A": 0, "B": 0}
    assert b.read(T0, 56)  # 24 beyond the spares, split in proportion
    assert b.deficit == {"A": 16, "B": 8}
    assert b.entitled == {"A": 48, "B": 24}


def test_rivals_follow_the_contracts() -> None:
    b = book(contract("A", 8, rivals=("B",)))
    assert "A" in b.rivals
    b.set_contract(contract("A", 8))
    assert "A" not in b.rivals


def test_tenants_are_ordered_by_contract_priority_then_name_uncontracted_last() -> None:
    b = book(contract("low", 8, priority=0), contract("high", 8, priority=5), contract("also", 8))
    assert b.tenant_order(["walk-in", "low", "high", "also"]) == ["high", "also", "low", "walk-in"]
    b.set_contract(contract("walk-in", 8, priority=9))
    assert b.tenant_order(["walk-in", "low", "high", "also"])[0] == "walk-in"
