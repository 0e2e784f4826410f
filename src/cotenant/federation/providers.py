"""Providers: where a tenant's work may run (docs/design/0014-providers.md).

A provider is either a *cluster* (a topology cotenant schedules, with its contracts: the
lease, or a second lease) or an elastic *pool* (a cloud account: one accelerator kind up
to a maximum number of GPUs, priced per GPU-hour on demand or on spot, with a delay to
provision and a cost and time to move a job's data in). Each tenant names the providers
it may use, in order of preference, and its overflow terms: the monthly budget for work
sent to a pool because the lease was full, and how long each kind of job may wait on a
lease before it overflows.

Plain frozen data, as ``model/``: money in micro-dollars, time in integer seconds. The
live server and the twin read the same objects; nothing here knows whether time is
simulated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cotenant.cluster.topology import ClusterSpec, NodeGroup
from cotenant.model.contracts import Contract
from cotenant.model.jobs import JobKind

CLUSTER = "cluster"
POOL = "pool"
HOME = "home"  # the scenario's own [cluster] when no provider table names it
BYTES_PER_TB = 10**12
GB_PER_TB = 1000


@dataclass(frozen=True, slots=True)
class ClusterProvider:
    """A cluster cotenant schedules. ``home``: the scenario's (or server's) own cluster,
    whose contracts are the tenants' ``contract`` tables."""

    name: str
    cluster: ClusterSpec
    contracts: tuple[Contract, ...] = ()
    home: bool = False

    @property
    def kind(self) -> str:
        return CLUSTER


@dataclass(frozen=True, slots=True)
class PoolProvider:
    """An elastic pool: ``max_gpus`` of one kind, rented by the GPU-hour.

    Jobs that checkpoint run on spot when ``spot`` is set (cheaper; a spot instance is
    taken back at ``spot_interruptions_per_node_day`` per node, and the job resumes from
    its checkpoint on demand); the rest on demand. Billing runs while GPUs are held;
    provisioning and moving data in delay the start and are not billed by the hour (the
    data move is billed per TB)."""

    name: str
    accelerator: str
    max_gpus: int
    on_demand_micro_per_gpu_hour: int
    spot_micro_per_gpu_hour: int = 0
    provisioning_s: int = 0
    spot: bool = False
    spot_interruptions_per_node_day: float = 0.0
    data_move_micro_per_tb: int = 0
    data_move_s_per_tb: int = 0
    gpus_per_node: int = 8
    nodes_per_rack: int = 8
    racks_per_block: int = 8

    @property
    def kind(self) -> str:
        return POOL

    def cluster(self) -> ClusterSpec:
        """The pool as a topology the engine can place gangs on (nodes of
        ``gpus_per_node``; a cloud's placement groups stand in for racks and blocks)."""
        nodes = self.max_gpus // self.gpus_per_node
        group = NodeGroup(
            self.accelerator, nodes, self.nodes_per_rack, self.racks_per_block, self.gpus_per_node
        )
        return ClusterSpec(self.name, (group,))

    def data_tb(self, gpus: int, data_gb_per_gpu: int) -> float:
        return gpus * data_gb_per_gpu / GB_PER_TB

    def move_in_s(self, gpus: int, data_gb_per_gpu: int) -> int:
        """Provisioning plus moving the job's data in (they overlap nothing: first the
        instances, then the copy)."""
        gb = gpus * data_gb_per_gpu
        return self.provisioning_s + (gb * self.data_move_s_per_tb + GB_PER_TB - 1) // GB_PER_TB

    def move_in_micro(self, gpus: int, data_gb_per_gpu: int) -> int:
        gb = gpus * data_gb_per_gpu
        return (gb * self.data_move_micro_per_tb + GB_PER_TB - 1) // GB_PER_TB


Provider = ClusterProvider | PoolProvider


@dataclass(frozen=True, slots=True)
class TenantProviders:
    """Where one tenant may run and on what overflow terms. ``providers`` in order of
    preference; ``max_wait_s`` by job kind (a kind not named never overflows);
    ``budget_micro_per_month`` bounds what overflow to pools may cost in a calendar
    month (work moved off a lease under notice is not overflow: it is bounded by the
    pools' size, see the design note)."""

    tenant: str
    providers: tuple[str, ...]
    budget_micro_per_month: int = 0
    max_wait_s: Mapping[JobKind, int] = field(default_factory=dict)
    data_gb_per_gpu: int = 0

    def max_wait_for(self, kind: JobKind, own: int | None) -> int | None:
        return own if own is not None else self.max_wait_s.get(kind)


@dataclass(frozen=True, slots=True)
class ProviderSet:
    """All providers of a scenario or a server, and each tenant's terms."""

    providers: tuple[Provider, ...]
    tenants: Mapping[str, TenantProviders]

    def names(self) -> list[str]:
        return [p.name for p in self.providers]

    def get(self, name: str) -> Provider:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(name)

    def pools(self) -> list[PoolProvider]:
        return [p for p in self.providers if isinstance(p, PoolProvider)]

    def clusters(self) -> list[ClusterProvider]:
        return [p for p in self.providers if isinstance(p, ClusterProvider)]

    def home(self) -> ClusterProvider | None:
        for p in self.clusters():
            if p.home:
                return p
        return None

    def terms(self, tenant: str) -> TenantProviders:
        """A tenant's terms; one not named uses the home cluster only, never overflows."""
        t = self.tenants.get(tenant)
        if t is not None:
            return t
        home = self.home()
        return TenantProviders(tenant, (home.name,) if home is not None else ())

    def without_pools(self) -> ProviderSet:
        """The same providers with the pools taken out (the baseline a report compares)."""
        keep = tuple(p for p in self.providers if not isinstance(p, PoolProvider))
        names = {p.name for p in keep}
        tenants = {
            n: TenantProviders(
                t.tenant,
                tuple(x for x in t.providers if x in names),
                t.budget_micro_per_month,
                t.max_wait_s,
                t.data_gb_per_gpu,
            )
            for n, t in self.tenants.items()
        }
        return ProviderSet(keep, tenants)
