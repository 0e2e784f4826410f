"""Provider tables as written (a scenario's ``[[providers]]``, a tenant's ``providers``
and ``[tenants.overflow]``), read into a :class:`ProviderSet`. A problem raises one
``SpecError`` naming the dotted field, as every spec table does (``model/spec.py``).

The home cluster (the scenario's ``[cluster]`` with the tenants' contracts) is always a
provider: the ``kind = "cluster"`` table without a ``cluster`` of its own names it,
otherwise it is called ``home``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from cotenant.cluster.topology import ClusterSpec
from cotenant.contracts.schema import ContractTable
from cotenant.contracts.terms import parse_usd
from cotenant.federation.providers import (
    CLUSTER,
    HOME,
    POOL,
    ClusterProvider,
    PoolProvider,
    Provider,
    ProviderSet,
    TenantProviders,
)
from cotenant.model.accelerators import CATALOGUE
from cotenant.model.contracts import Contract
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobKind
from cotenant.model.spec import Count, Duration, Flag, SpecTable, Text, Whole, problem

_MICRO = 6


def _usd(v: Any) -> int:
    try:
        return parse_usd(v, "", _MICRO)
    except SpecError as e:
        raise problem(e.problem) from None


def _rate(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise problem(f"must be a finite number >= 0, got {v!r}")
    return float(v)


def _kind(v: Any) -> str:
    if v not in (CLUSTER, POOL):
        raise problem(f"must be 'cluster' or 'pool', got {v!r}")
    return str(v)


def _names(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise problem("must be a list of provider names")
    return list(v)


_USD_SCHEMA = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
Usd = Annotated[int, BeforeValidator(_usd), WithJsonSchema(_USD_SCHEMA)]
Rate = Annotated[float, BeforeValidator(_rate), WithJsonSchema({"type": "number", "minimum": 0})]
Names = Annotated[
    list[str],
    BeforeValidator(_names),
    WithJsonSchema({"type": "array", "items": {"type": "string"}}),
]
_OVERFLOW_KINDS = (JobKind.TRAINING.value, JobKind.EXPERIMENT.value)


class ProviderTable(SpecTable):
    """One ``[[providers]]``: a cluster (``cluster`` and ``contracts``; neither: the home
    cluster) or a pool (the rest of the keys)."""

    model_config = ConfigDict(json_schema_extra={"required": ["name", "kind"]})

    name: Text | None = None
    kind: Annotated[
        str | None, BeforeValidator(_kind), WithJsonSchema({"enum": [CLUSTER, POOL]})
    ] = None
    description: Text | None = None
    # a cluster other than the home one
    cluster: Annotated[Any, WithJsonSchema({"type": "object"})] = None
    contracts: dict[str, ContractTable] | None = None
    # a pool
    accelerator: Text | None = None
    max_gpus: Count | None = None
    gpus_per_node: Count = 8
    on_demand_per_gpu_hour: Usd | None = None
    spot_per_gpu_hour: Usd | None = None
    spot: Flag = False
    spot_interruptions_per_node_day: Rate = 0.0
    provisioning: Duration = Field("0s", validate_default=True)
    data_move_per_tb: Usd = 0
    data_move_time_per_tb: Duration = Field("0s", validate_default=True)


class OverflowTable(SpecTable):
    """A tenant's ``[tenants.overflow]``: its monthly budget for overflow to pools, how
    long each kind of job may wait on a lease first, and its data per GPU."""

    budget_per_month: Usd = 0
    max_wait: dict[str, Duration] = Field(default_factory=dict)
    data_gb_per_gpu: Whole = 0


@dataclass(frozen=True, slots=True)
class TenantProviderInput:
    """What a tenant's table says about providers (``field`` names the tenant's table)."""

    field: str
    name: str
    providers: Sequence[str] | None
    overflow: OverflowTable | None
    job_providers: Sequence[tuple[str, Sequence[str]]] = ()  # (field, names) of its jobs


def read_providers(
    raw: Any,
    tenants: Sequence[TenantProviderInput],
    home_cluster: ClusterSpec,
    home_contracts: Sequence[Contract],
    start_s: int,
    parse_cluster: Callable[[Any, str], ClusterSpec],
) -> ProviderSet:
    """The provider set; ``raw`` is the ``providers`` array of tables (None: only home)."""
    items = [] if raw is None else raw
    if not isinstance(items, list):
        raise SpecError("providers", "must be an array of tables ([[providers]])")
    providers: list[Provider] = []
    home: ClusterProvider | None = None
    for i, item in enumerate(items):
        f = f"providers[{i}]"
        pt = ProviderTable.read(item, f)
        if pt.name is None or not pt.name.strip():
            raise SpecError(f"{f}.name", "a provider needs a non-empty name")
        if pt.kind is None:
            raise SpecError(f"{f}.kind", "give 'cluster' or 'pool'")
        if any(p.name == pt.name for p in providers):
            raise SpecError(f"{f}.name", f"provider {pt.name!r} appears twice")
        if pt.kind == POOL:
            providers.append(_pool(pt, f))
            continue
        _no_pool_keys(pt, f)
        if pt.cluster is None:
            if pt.contracts is not None:
                raise SpecError(
                    f"{f}.contracts", "the home cluster's contracts are the tenants' contracts"
                )
            if home is not None:
                raise SpecError(f"{f}.cluster", f"{home.name!r} is already the home cluster")
            home = ClusterProvider(pt.name, home_cluster, tuple(home_contracts), home=True)
            providers.append(home)
            continue
        spec = parse_cluster(pt.cluster, f"{f}.cluster")
        contracts = tuple(
            table.contract(tenant, f"{f}.contracts.{tenant}", start_s, spec)
            for tenant, table in sorted((pt.contracts or {}).items())
        )
        _fit(contracts, spec, f"{f}.contracts")
        providers.append(ClusterProvider(pt.name, spec, contracts))
    if home is None:
        if any(p.name == HOME for p in providers):
            raise SpecError("providers", f"{HOME!r} names the home cluster; call it otherwise")
        home = ClusterProvider(HOME, home_cluster, tuple(home_contracts), home=True)
        providers.insert(0, home)
    names = [p.name for p in providers]
    known_tenants = {t.name for t in tenants}
    for i, p in enumerate(items):
        for tenant in (p.get("contracts") or {}) if isinstance(p, Mapping) else ():
            if tenant not in known_tenants:
                raise SpecError(f"providers[{i}].contracts.{tenant}", f"{tenant!r} is not a tenant")
    out = {t.name: _tenant(t, names, home.name) for t in tenants}
    return ProviderSet(tuple(providers), out)


def _fit(contracts: Sequence[Contract], spec: ClusterSpec, f: str) -> None:
    """A cluster's contracts fit it together, and one tenant at most is all-available (as
    the home cluster's, ``contracts.schema.validate_contracts``)."""
    fixed, every = 0, [c.tenant for c in contracts if c.commitment.all_available]
    for c in contracts:
        cm = c.commitment
        fixed += cm.reserve_gpus if cm.all_available else cm.gpus
        if fixed > spec.total_gpus:
            raise SpecError(
                f"{f}.{c.tenant}.commitment.gpus",
                f"commitments add up to {fixed} GPUs, more than the cluster's {spec.total_gpus}",
            )
    if len(every) > 1:
        raise SpecError(
            f"{f}.{every[1]}.commitment.all_available",
            "only one tenant may have all available capacity",
        )


def _pool(pt: ProviderTable, f: str) -> PoolProvider:
    if pt.cluster is not None or pt.contracts is not None:
        raise SpecError(f"{f}.cluster", "a pool has no cluster or contracts of its own")
    for key in ("accelerator", "max_gpus", "on_demand_per_gpu_hour"):
        if getattr(pt, key) is None:
            raise SpecError(f"{f}.{key}", "a pool needs it")
    assert pt.accelerator is not None and pt.max_gpus is not None
    assert pt.on_demand_per_gpu_hour is not None
    if pt.accelerator not in CATALOGUE:
        raise SpecError(
            f"{f}.accelerator",
            f"unknown accelerator {pt.accelerator!r}; valid: {', '.join(sorted(CATALOGUE))}",
        )
    if pt.max_gpus < pt.gpus_per_node or pt.max_gpus % pt.gpus_per_node:
        raise SpecError(
            f"{f}.max_gpus",
            f"must be a whole number of {pt.gpus_per_node}-GPU nodes, got {pt.max_gpus}",
        )
    spot = pt.spot_per_gpu_hour if pt.spot_per_gpu_hour is not None else 0
    if pt.spot and pt.spot_per_gpu_hour is None:
        raise SpecError(f"{f}.spot_per_gpu_hour", "spot = true needs a spot price")
    if spot > pt.on_demand_per_gpu_hour:
        raise SpecError(f"{f}.spot_per_gpu_hour", "spot must not cost more than on demand")
    assert pt.name is not None
    return PoolProvider(
        pt.name,
        pt.accelerator,
        pt.max_gpus,
        pt.on_demand_per_gpu_hour,
        spot,
        pt.provisioning,
        pt.spot,
        pt.spot_interruptions_per_node_day,
        pt.data_move_per_tb,
        pt.data_move_time_per_tb,
        pt.gpus_per_node,
    )


def _no_pool_keys(pt: ProviderTable, f: str) -> None:
    for key in ("accelerator", "max_gpus", "on_demand_per_gpu_hour", "spot_per_gpu_hour"):
        if getattr(pt, key) is not None:
            raise SpecError(f"{f}.{key}", "only a pool has it (kind = 'pool')")


def _tenant(t: TenantProviderInput, names: list[str], home: str) -> TenantProviders:
    allowed = tuple(t.providers) if t.providers is not None else (home,)
    for k, name in enumerate(allowed):
        if name not in names:
            raise SpecError(
                f"{t.field}.providers[{k}]",
                f"unknown provider {name!r}; defined: {', '.join(names)}",
            )
        if name in allowed[:k]:
            raise SpecError(f"{t.field}.providers[{k}]", f"{name!r} appears twice")
    for f, wanted in t.job_providers:
        _only_allowed(t.name, allowed, wanted, f)
    ov = t.overflow or OverflowTable()
    waits: dict[JobKind, int] = {}
    for kind, secs in sorted(ov.max_wait.items()):
        if kind not in _OVERFLOW_KINDS:
            raise SpecError(
                f"{t.field}.overflow.max_wait.{kind}",
                f"unknown job kind; valid: {', '.join(_OVERFLOW_KINDS)}",
            )
        waits[JobKind(kind)] = secs
    return TenantProviders(t.name, allowed, ov.budget_per_month, waits, ov.data_gb_per_gpu)


def check_job_providers(ps: ProviderSet, tenant: str, wanted: Sequence[str]) -> None:
    """A job may name only providers its tenant may use (``SpecError`` on ``providers``)."""
    _only_allowed(tenant, ps.terms(tenant).providers, wanted, "providers")


def _only_allowed(tenant: str, allowed: Sequence[str], wanted: Sequence[str], f: str) -> None:
    for k, name in enumerate(wanted):
        if name not in allowed:
            raise SpecError(
                f"{f}[{k}]",
                f"provider {name!r} is not one tenant {tenant!r} may use "
                f"(its providers: {', '.join(allowed)})",
            )


def read_pool(raw: Any, field: str) -> PoolProvider:
    """One pool table as the live server's settings write it (``[[pools]]``: a provider
    table without ``kind``); ``SpecError`` naming ``field.<key>``."""
    if not isinstance(raw, Mapping):
        raise SpecError(field, "must be a table")
    if "kind" in raw:
        raise SpecError(f"{field}.kind", "a pool table has no kind: every one is a pool")
    pt = ProviderTable.read({**raw, "kind": POOL}, field)
    if pt.name is None or not pt.name.strip():
        raise SpecError(f"{field}.name", "a pool needs a non-empty name")
    return _pool(pt, field)


def read_tenant_terms(
    tenant: str, raw: Any, field: str, names: Sequence[str], home: str
) -> TenantProviders:
    """A tenant's providers and overflow terms as the live server's settings write them
    (``[overflow.<tenant>]``: ``providers`` and the keys of ``[tenants.overflow]``)."""
    if not isinstance(raw, Mapping):
        raise SpecError(field, "must be a table")
    rest = {k: v for k, v in raw.items() if k != "providers"}
    wanted = raw.get("providers")
    if wanted is not None and (
        not isinstance(wanted, list) or not all(isinstance(x, str) and x for x in wanted)
    ):
        raise SpecError(f"{field}.providers", "must be a list of provider names")
    overflow = OverflowTable.read(rest, field)
    return _tenant(TenantProviderInput(field, tenant, wanted, overflow), list(names), home)
