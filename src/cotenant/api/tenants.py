"""/v1/tenants: tenants and their contracts (create, amend, give notice: operator only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from cotenant.api.auth import Caller, Svc, require, tenant_visible
from cotenant.api.errors import ERROR_RESPONSES
from cotenant.api.schemas import (
    ContractIn,
    ContractOut,
    ContractVersion,
    NoticeIn,
    TenantCreate,
    TenantOut,
)
from cotenant.model.contracts import Contract
from cotenant.model.errors import NotFound
from cotenant.server.keys import Role
from cotenant.server.service import Service
from cotenant.store.mapping import TenantRecord, contract_to_dict

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], responses=ERROR_RESPONSES)
TenantPath = Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


def contract_out(svc: Service, c: Contract) -> ContractOut:
    raw: dict[str, Any] = contract_to_dict(c)
    raw["entitled_gpus_now"] = svc.status.entitled.get(c.tenant)
    return ContractOut.model_validate(raw)


def tenant_out(svc: Service, t: TenantRecord) -> TenantOut:
    c = svc.contracts.get(t.name)
    return TenantOut(
        name=t.name,
        display_name=t.display_name,
        created_s=t.created_s,
        contract=contract_out(svc, c) if c is not None else None,
    )


@router.get("", response_model=list[TenantOut], summary="Tenants (a tenant key: its own)")
def list_tenants(p: Caller, svc: Svc) -> list[TenantOut]:
    found = svc.tenants.all()
    if p.role.tenant_scoped:
        found = [t for t in found if t.name == p.tenant]
    return [tenant_out(svc, t) for t in found]


@router.post("", response_model=TenantOut, status_code=201, summary="Create a tenant (operator)")
def create_tenant(body: TenantCreate, p: Caller, svc: Svc) -> TenantOut:
    require(p, Role.OPERATOR)
    svc.create_tenant(
        p,
        body.name,
        body.display_name or body.name,
        body.contract,
    )
    return tenant_out(svc, svc.tenants.get(body.name))


@router.get("/{tenant}", response_model=TenantOut, summary="One tenant")
def get_tenant(tenant: TenantPath, p: Caller, svc: Svc) -> TenantOut:
    tenant_visible(p, tenant)
    return tenant_out(svc, svc.tenants.get(tenant))


@router.get("/{tenant}/contract", response_model=ContractOut, summary="The contract in force")
def get_contract(tenant: TenantPath, p: Caller, svc: Svc) -> ContractOut:
    tenant_visible(p, tenant)
    svc.tenants.get(tenant)  # (404 for no such tenant)
    c = svc.contracts.get(tenant)
    if c is None:
        raise NotFound(f"tenant {tenant!r} has no contract")
    return contract_out(svc, c)


@router.put(
    "/{tenant}/contract",
    response_model=ContractOut,
    summary="Create or amend a tenant's contract (operator); the engine applies it at once",
)
def put_contract(tenant: TenantPath, body: ContractIn, p: Caller, svc: Svc) -> ContractOut:
    require(p, Role.OPERATOR)
    return contract_out(svc, svc.set_contract(p, tenant, body))


@router.get(
    "/{tenant}/contract/versions",
    response_model=list[ContractVersion],
    summary="Every version of the contract: created, amended, notice given",
)
def contract_versions(tenant: TenantPath, p: Caller, svc: Svc) -> list[ContractVersion]:
    tenant_visible(p, tenant)
    svc.tenants.get(tenant)  # (404 for no such tenant)
    return [
        ContractVersion(
            version=v.version,
            change=v.change,
            created_s=v.created_s,
            contract=ContractOut.model_validate(contract_to_dict(v.contract)),
        )
        for v in svc.tenants.versions(tenant)
    ]


@router.post(
    "/{tenant}/contract/notice",
    response_model=ContractOut,
    summary="Give notice (operator, or the tenant's own tenant-admin): the entitlement "
    "ramps down over the notice period",
)
def give_notice(tenant: TenantPath, body: NoticeIn, p: Caller, svc: Svc) -> ContractOut:
    # Either side may exit on notice: the owner (an operator) or the tenant itself.
    require(p, Role.OPERATOR, Role.TENANT_ADMIN)
    tenant_visible(p, tenant)
    return contract_out(svc, svc.give_notice(p, tenant, body.at_s))
