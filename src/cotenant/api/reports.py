"""/v1/cluster, /v1/usage, /v1/invoices: what is allocated, used and owed.

A tenant key sees only its own tenant: its allocation and the cluster's aggregate free
capacity, its own usage, its own invoices (tenant-admin). Operator and auditor see all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from cotenant.api.auth import READERS, Caller, Svc, require, tenant_visible
from cotenant.api.errors import ERROR_RESPONSES
from cotenant.api.schemas import (
    MAX_TIME,
    ClusterView,
    InvoiceLineOut,
    InvoiceOut,
    OverflowOut,
    PoolInvoiceOut,
    PoolUsageOut,
    ProviderUsageOut,
    ProviderView,
    TenantAllocation,
    TenantName,
    TenantUsage,
    UsageOut,
)
from cotenant.federation.metering import PoolBill
from cotenant.metering.money import format_usd
from cotenant.metering.rating import month_bounds
from cotenant.model.errors import NotFound, SpecError
from cotenant.server.keys import Principal, Role
from cotenant.server.service import Service

router = APIRouter(prefix="/v1", tags=["cluster and usage"], responses=ERROR_RESPONSES)
Time = Annotated[int | None, Query(ge=0, le=MAX_TIME)]


@router.get("/cluster", response_model=ClusterView, summary="Cluster status")
def cluster(p: Caller, svc: Svc) -> ClusterView:
    return cluster_view(svc, p)


def cluster_view(svc: Service, p: Principal) -> ClusterView:
    """The cluster as ``p`` may see it, from the status the engine published after its
    last step: no lock, no database."""
    st = svc.status
    names = [p.tenant] if p.tenant is not None else sorted(svc.tenant_names)

    def alloc(t: str) -> TenantAllocation:
        return TenantAllocation(
            tenant=t,
            allocated_gpus=st.allocated.get(t, 0),
            owned_gpus=st.owned.get(t, 0),
            borrowed_gpus=st.borrowed.get(t, 0),
            entitled_gpus=st.entitled.get(t, 0),
            pending_jobs=st.pending_by_tenant.get(t, 0),
            running_jobs=st.running_by_tenant.get(t, 0),
        )

    topo = svc.topo
    return ClusterView(
        time_s=st.t,  # the engine's time as of its last step, not the wall clock
        name=topo.spec.name,
        total_gpus=topo.total_gpus,
        free_gpus=st.free_gpus,
        nodes=topo.n_nodes,
        healthy_nodes=st.healthy_nodes,
        accelerators={k: topo.capacity_of(k) for k in topo.kinds},
        queue_depth=None if p.role.tenant_scoped else st.pending,
        tenants=[alloc(t) for t in names],
        providers=[
            ProviderView(
                name=name, total_gpus=gpus, free_gpus=free, nodes=nodes, healthy_nodes=healthy
            )
            for name, gpus, free, nodes, healthy in st.providers
        ],
    )


@router.get("/usage", response_model=UsageOut, summary="GPU-seconds used, from the usage ledger")
def usage(
    p: Caller,
    svc: Svc,
    tenant: TenantName | None = None,
    start_s: Time = None,
    end_s: Time = None,
) -> UsageOut:
    if start_s is not None and end_s is not None and end_s < start_s:
        raise SpecError("end_s", f"ends before it starts ({end_s} < {start_s})")
    if p.role.tenant_scoped:
        if tenant is not None:
            tenant_visible(p, tenant)
        tenant = p.tenant
    elif tenant is not None and tenant not in svc.tenant_names:
        raise NotFound(f"no tenant {tenant!r}")
    usage = svc.usage_now(tenant)
    per_provider = svc.usage_by_provider(tenant, start_s, end_s, usage.now)
    names = [tenant] if tenant is not None else sorted(svc.tenant_names)
    bills = svc.pool_bills(tenant, start_s, end_s, usage.now)
    out = []
    for t in names:
        own = usage.gpu_seconds(t, start_s, end_s, borrowed=False)
        borrowed = usage.gpu_seconds(t, start_s, end_s, borrowed=True)
        out.append(
            TenantUsage(
                tenant=t,
                gpu_seconds=own + borrowed,
                own_gpu_seconds=own,
                borrowed_gpu_seconds=borrowed,
                gpu_hours=(own + borrowed) / 3600,
                providers=[
                    ProviderUsageOut.of(name, o, b)
                    for name, (o, b) in per_provider.get(t, {}).items()
                ],
                pools=[_pool_usage(bill, t) for bill in bills if _may_show(svc, bill, t)],
            )
        )
    return UsageOut(start_s=start_s, end_s=end_s, tenants=out)


@router.get(
    "/invoices/{tenant}/{month}",
    response_model=InvoiceOut,
    summary="A tenant's invoice for a UTC calendar month (operator, auditor, its tenant-admin)",
)
def invoice(
    tenant: Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")],
    month: Annotated[str, Path(pattern=r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$")],
    p: Caller,
    svc: Svc,
) -> InvoiceOut:
    require(p, *READERS, Role.TENANT_ADMIN)
    tenant_visible(p, tenant)
    now = svc.clock.now()  # (one instant for the invoice and its split)
    out = InvoiceOut.model_validate(svc.invoice(tenant, month, now).to_json_dict())
    t0, t1 = month_bounds(month)
    per = svc.usage_by_provider(tenant, t0, t1, now).get(tenant, {})
    out.providers = [ProviderUsageOut.of(name, o, b) for name, (o, b) in per.items()]
    for bill in svc.pool_bills(tenant, t0, t1, now):
        inv = bill.invoice_lines(tenant, month)
        total = sum(x.amount_cents for x in inv)
        lines = [InvoiceLineOut.model_validate(x.to_json_dict()) for x in inv]
        out.pools.append(
            PoolInvoiceOut(
                provider=bill.pool.name, lines=lines, total_cents=total, total=format_usd(total)
            )
        )
    if svc.pool_usage is not None:
        budget, reserved = svc.pool_usage.overflow(tenant, month)
        out.overflow = OverflowOut(
            budget_cents=budget // 10_000,
            reserved_cents=-(-reserved // 10_000),
            left_cents=(budget - reserved) // 10_000,
        )
    return out


def _may_show(svc: Service, bill: PoolBill, tenant: str) -> bool:
    """A pool belongs in a tenant's usage when its terms let it run there, or it has (its
    terms may have changed since): not as a zero row for every tenant."""
    providers = svc.providers
    allowed = providers is not None and bill.pool.name in providers.terms(tenant).providers
    return allowed or any(t == tenant for t, _ in bill.months)


def _pool_usage(bill: PoolBill, tenant: str) -> PoolUsageOut:
    """A tenant's use of one pool over the bill's window."""
    months = [m for (t, _), m in bill.months.items() if t == tenant]
    gpu_s = sum(m.on_demand_gpu_s + m.spot_gpu_s for m in months)
    gb = sum(m.data_gb for m in months)
    cents = bill.total_cents(tenant)
    return PoolUsageOut(
        provider=bill.pool.name,
        gpu_seconds=gpu_s,
        gpu_hours=gpu_s / 3600,
        data_tb=gb / 1000,
        cost_cents=cents,
        cost=format_usd(cents),
    )
