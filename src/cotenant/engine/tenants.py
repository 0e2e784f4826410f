"""The tenant book: the contracts, who are rivals, and what each tenant is entitled to
now: in full, and what can be delivered of it with the GPUs that are down taken out
(the deficit is the difference). Re-read only when a contract changes, its term or
notice reaches a boundary, or the number of GPUs down changes.
"""

from __future__ import annotations

from typing import Any

from cotenant.cluster.topology import Topology
from cotenant.contracts.entitlement import deliverable, entitlements, stable_until
from cotenant.model.contracts import Contract
from cotenant.scheduler.snapshot import rival_map


class TenantBook:
    def __init__(self, topo: Topology) -> None:
        self.total_gpus = topo.total_gpus
        self.contracts: dict[str, Contract] = {}
        self.rivals: dict[str, Any] = {}
        self.entitled: dict[str, int] = {}  # deliverable now
        self.deficit: dict[str, int] = {}  # entitled in full but not deliverable now
        self.any_deficit = False  # whether any tenant's deficit is above 0
        self._capacity = topo.capacity_by_kind()
        # Entitlements at [_from, _until) and the GPUs down `entitled` was derived for.
        self._full: dict[str, int] = {}
        self._from, self._until = 0, -1
        self._delivered_for_down: int | None = None
        self._order: list[str] = []  # tenants by contract priority (see tenant_order)
        self._order_for = -1

    def set_contract(self, contract: Contract) -> None:
        """Add or amend a contract; entitlements are re-read at the next ``read``."""
        self.contracts[contract.tenant] = contract
        self._until = -1  # re-read entitlements at the next cycle
        self._order_for = -1  # and the tenants' order
        self.rivals = rival_map(self.contracts)

    def read(self, now: int, down_gpus: int) -> bool:
        """Bring ``entitled`` and ``deficit`` up to ``now``; True if they were derived
        anew (every tenant's ownership must then be checked again)."""
        if not (self._from <= now < self._until):
            self._full = entitlements(self.contracts.values(), now, self._capacity)
            until = stable_until(self.contracts.values(), now)
            self._from, self._until = now, (until if until is not None else 1 << 62)
            self._delivered_for_down = None
        if down_gpus == self._delivered_for_down:
            return False
        self.entitled, self.deficit = deliverable(
            self._full, self.contracts, down_gpus, self.total_gpus
        )
        self._delivered_for_down = down_gpus
        self.any_deficit = any(d > 0 for d in self.deficit.values())
        return True

    def tenant_order(self, seen: list[str]) -> list[str]:
        """The tenants ``seen`` (every tenant that ever queued), in contract-priority
        order, then by name; recomputed when one is added or a contract changes."""
        if len(seen) != self._order_for:
            self._order = sorted(seen, key=self.rank)
            self._order_for = len(seen)
        return self._order

    def rank(self, t: str) -> tuple[int, str]:
        return (-(self.contracts[t].priority if t in self.contracts else -(1 << 30)), t)
