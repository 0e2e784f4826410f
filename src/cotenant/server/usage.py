"""Usage and invoices: the stored ledger plus the open intervals of running jobs, rated
by month."""

from __future__ import annotations

from collections.abc import Callable

from cotenant.cluster.topology import Topology
from cotenant.metering.ledger import UsageLedger, UsageRecord
from cotenant.metering.rating import Invoice, rate_month
from cotenant.model.contracts import Contract
from cotenant.model.errors import NotFound
from cotenant.server.jobs import RUNNING_STATES
from cotenant.store.mapping import placement_from_row
from cotenant.store.repo import Store
from cotenant.store.usage import StoredUsage


class UsageService:
    """The reports router's operations."""

    def __init__(
        self,
        store: Store,
        topo: Topology,
        tenant_names: set[str],
        contracts: dict[str, Contract],
        now: Callable[[], int],
    ) -> None:
        self.store = store
        self.topo = topo
        self.tenant_names = tenant_names  # (the tenant service's set and dict, shared)
        self.contracts = contracts
        self.now = now

    def ledger_now(self, tenant: str | None, now: int | None = None) -> UsageLedger:
        """Stored records plus the open intervals of running jobs, closed at ``now`` (the
        clock's by default), in memory (every record; ``usage_now`` sums them in SQL)."""
        now = self.now() if now is None else now
        records = self.store.ledger(tenant)
        for r in self.store.jobs(tenant, RUNNING_STATES, limit=1 << 30):
            p = placement_from_row(r)
            since = r["usage_since_s"]
            if p is None or since is None or since >= now:
                continue
            records.append(
                UsageRecord(
                    r["id"],
                    r["tenant"],
                    r["gpus"],
                    self.topo.kind_of_node(p.nodes[0]),
                    p.nodes,
                    since,
                    now,
                    bool(r["borrowed"]),
                    r["kind"],
                )
            )
        return UsageLedger(records)

    def usage_now(self, tenant: str | None, now: int | None = None) -> StoredUsage:
        """The same usage as ``ledger_now``, aggregated by the database (GROUP BY over the
        ledger plus the open intervals of running jobs): one query per window asked."""
        return StoredUsage(self.store.engine, tenant, self.now() if now is None else now)

    def invoice(self, tenant: str, month: str) -> Invoice:
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        contract = self.contracts.get(tenant)
        if contract is None:
            raise NotFound(f"tenant {tenant!r} has no contract to rate")
        cap = self.topo.capacity_of(contract.commitment.accelerator)
        return rate_month(contract, month, self.usage_now(tenant), cap, self.contracts.values())
