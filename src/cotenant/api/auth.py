"""Authentication (a Bearer API key) and the checks every route makes.

Two rules keep tenants apart: a role that may not use an endpoint at all gets 403;
an object of another tenant is answered with 404, exactly as if it did not exist
(same status, same message), so a tenant cannot even learn that it exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cotenant.api.errors import Forbidden, Unauthorized
from cotenant.model.errors import NotFound, SpecError
from cotenant.server.keys import Principal, Role
from cotenant.server.service import Service

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer ctk_...`")


# Both are async on purpose: FastAPI runs a sync dependency in a worker thread, a hop that
# cost more than the whole submission (bench/bench_api.py). Neither blocks.
async def service_of(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


async def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if creds is None:
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    p = (await service_of(request)).keys.check(creds.credentials)
    if p is None:
        raise Unauthorized("unknown or revoked API key")
    return p


Caller = Annotated[Principal, Depends(principal)]
Svc = Annotated[Service, Depends(service_of)]

READERS = (Role.OPERATOR, Role.AUDITOR)
TENANT_ROLES = (Role.TENANT_ADMIN, Role.TENANT_MEMBER)


def require(p: Principal, *roles: Role) -> None:
    if p.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"a {p.role.value} key may not do this (needs: {allowed})")


def tenant_visible(p: Principal, tenant: str) -> None:
    """A tenant-scoped key sees only its own tenant; others look absent."""
    if p.role.tenant_scoped and tenant != p.tenant:
        raise NotFound(f"no tenant {tenant!r}")


def submitting_tenant(p: Principal, asked: str | None, what: str) -> str:
    """The tenant a submission (a ``what``: job, pipeline) is for: an operator must name
    it; a tenant key submits for its own tenant (naming another looks like no tenant)."""
    require(p, Role.OPERATOR, *TENANT_ROLES)
    if p.role is Role.OPERATOR:
        if asked is None:
            raise SpecError("tenant", f"an operator must say which tenant the {what} is for")
        return asked
    assert p.tenant is not None
    if asked is not None:
        tenant_visible(p, asked)
    return p.tenant


def job_visible(p: Principal, row: dict[str, Any] | None, job_id: str) -> dict[str, Any]:
    """Jobs: operator any; tenant roles their own tenant's; auditor none (403)."""
    require(p, Role.OPERATOR, *TENANT_ROLES)
    if row is None or (p.role.tenant_scoped and row["tenant"] != p.tenant):
        raise NotFound(f"no job {job_id!r}")
    return row
