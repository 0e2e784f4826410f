"""Federation: several providers (clusters, elastic pools) under one tenant, and the
routing between them (docs/design/0014-providers.md)."""

from cotenant.federation.core import Federation, Move
from cotenant.federation.policy import ClusterView, JobAsk, PoolView, Route, RouteReason
from cotenant.federation.providers import (
    ClusterProvider,
    PoolProvider,
    Provider,
    ProviderSet,
    TenantProviders,
)

__all__ = [
    "ClusterProvider",
    "ClusterView",
    "Federation",
    "JobAsk",
    "Move",
    "PoolProvider",
    "PoolView",
    "Provider",
    "ProviderSet",
    "Route",
    "RouteReason",
    "TenantProviders",
]
