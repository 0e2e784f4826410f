"""Usage and invoices: the stored ledger plus the open intervals of running jobs, rated
by month; where the cluster is several providers (Slurm clusters), usage per provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology
from cotenant.federation.metering import DataMove, PoolBill, rate_pool
from cotenant.federation.providers import ProviderSet
from cotenant.metering.ledger import UsageLedger, UsageRecord, overlap_s
from cotenant.metering.rating import Invoice, rate_month
from cotenant.model.contracts import Contract
from cotenant.model.errors import NotFound
from cotenant.server.jobs import RUNNING_STATES
from cotenant.store.mapping import placement_from_row, record_from_row
from cotenant.store.repo import Row, Store
from cotenant.store.usage import StoredUsage

# tenant -> provider -> (own, borrowed) GPU-seconds
ProviderUsage = dict[str, dict[str, tuple[int, int]]]


def open_intervals(
    store: Store, tenant: str | None, now: int
) -> Iterator[tuple[Row, Placement, int]]:
    """The running jobs' usage not yet in a ledger: (row, placement, since) for each that
    has held its GPUs since before ``now``."""
    for r in store.jobs(tenant, RUNNING_STATES, limit=1 << 30):
        p = placement_from_row(r)
        since = r["usage_since_s"]
        if p is not None and since is not None and since < now:
            yield r, p, since


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
        for r, p, since in open_intervals(self.store, tenant, now):
            if r.get("route"):  # (a pool's: on the pool's terms, ``PoolUsage``)
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

    def invoice(self, tenant: str, month: str, now: int | None = None) -> Invoice:
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        contract = self.contracts.get(tenant)
        if contract is None:
            raise NotFound(f"tenant {tenant!r} has no contract to rate")
        cap = self.topo.capacity_of(contract.commitment.accelerator)
        usage = self.usage_now(tenant, now)
        return rate_month(contract, month, usage, cap, self.contracts.values())

    def by_provider(
        self,
        tenant: str | None,
        start_s: int | None = None,
        end_s: int | None = None,
        now: int | None = None,
    ) -> ProviderUsage:
        """Own and borrowed GPU-seconds inside ``[start_s, end_s)`` per tenant and provider
        (every provider, in topology order, for every tenant asked), where the cluster is
        several providers; empty where it is one. Each record counts on the provider of
        its nodes (a run never spans two); the sums over providers are ``usage_now``'s at the
        same ``now``."""
        if self.topo.n_providers < 2:
            return {}
        names = [tenant] if tenant is not None else sorted(self.tenant_names)
        zero = dict.fromkeys(self.topo.provider_names, (0, 0))
        out: ProviderUsage = {t: dict(zero) for t in names}
        for r in self.ledger_now(tenant, now).records():
            gs = r.gpus * overlap_s(r.start_s, r.end_s, start_s, end_s)
            per = out.setdefault(r.tenant, dict(zero))
            name = self.topo.provider_names[int(self.topo.providers.of_node[r.nodes[0]])]
            own, borrowed = per[name]
            per[name] = (own, borrowed + gs) if r.borrowed else (own + gs, borrowed)
        return out


class PoolUsage:
    """The pools' usage and bills (server/overflow.py), each on its pool's own terms
    (``federation.metering.rate_pool``): its ledger (``pool_ledger``) plus the open
    intervals of its running jobs, and the data moved in for each job routed there; and
    each tenant's overflow budget, reserved by the stored routing decisions."""

    def __init__(self, store: Store, providers: ProviderSet) -> None:
        self.store = store
        self.providers = providers

    def bills(
        self, tenant: str | None, start_s: int | None, end_s: int | None, now: int
    ) -> list[PoolBill]:
        """Each pool's bill over ``[start_s, end_s)`` (None: from its first use; to now)."""
        records: dict[str, list[UsageRecord]] = {p.name: [] for p in self.providers.pools()}
        for row in self.store.pool_ledger(None, tenant):
            if row["provider"] in records:
                records[row["provider"]].append(record_from_row(row))
        for r, p, since in open_intervals(self.store, tenant, now):
            if r.get("route") not in records:
                continue
            acc = self.providers.get(r["route"]).accelerator  # type: ignore[union-attr]
            rec = UsageRecord(r["id"], r["tenant"], r["gpus"], acc, p.nodes, since, now)
            records[r["route"]].append(rec)
        moves: dict[str, list[DataMove]] = {name: [] for name in records}
        for row in self.store.routes(tenant):
            if row["provider"] in moves and row["data_gb"]:
                mv = DataMove(row["job_id"], row["tenant"], int(row["t"]), int(row["data_gb"]))
                moves[row["provider"]].append(mv)
        out = []
        for pool in self.providers.pools():
            recs, mvs = records[pool.name], moves[pool.name]
            t0 = start_s
            if t0 is None:
                t0 = min([r.start_s for r in recs] + [m.t for m in mvs], default=now)
            t1 = now + 1 if end_s is None else end_s
            out.append(rate_pool(pool, recs, {}, mvs, t0, t1))
        return out

    def overflow(self, tenant: str, month: str) -> tuple[int, int]:
        """(budget, reserved) in micro-dollars for the tenant's overflow in ``month``."""
        budget = self.providers.terms(tenant).budget_micro_per_month
        reserved = sum(
            int(r["cost_micro"]) for r in self.store.routes(tenant, month) if r["overflow"]
        )
        return budget, reserved
