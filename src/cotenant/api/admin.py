"""/v1/audit (export, head, verify), /v1/keys, /v1/whoami, /v1/admin/invariants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from cotenant.api.auth import READERS, Caller, Svc, require, tenant_visible
from cotenant.api.errors import ERROR_RESPONSES
from cotenant.api.schemas import (
    HeadOut,
    Invariants,
    KeyCreate,
    KeyIssuedOut,
    KeyOut,
    VerdictOut,
    WhoAmI,
)
from cotenant.model.errors import NotFound, SpecError
from cotenant.server.keys import Role
from cotenant.store.mapping import KeyRecord

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)


# -- audit ---------------------------------------------------------------------------------------
@router.get(
    "/audit",
    tags=["audit"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "JSON lines, one entry each, in seq order, up to the head "
            "(SEQ:HASH) that the `X-Audit-Head` header gives: the head when the export began",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
    summary="Export the audit log (operator, auditor)",
)
def export_audit(
    p: Caller,
    svc: Svc,
    after_seq: Annotated[int, Query(ge=0, le=1 << 62)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
) -> StreamingResponse:
    require(p, *READERS)
    head = svc.store.audit_head()
    # One chunk per page of entries, serialised from the stored text as it is read.
    chunks = svc.store.audit_jsonl(after_seq, head.seq, limit)
    return StreamingResponse(
        chunks, media_type="application/x-ndjson", headers={"X-Audit-Head": str(head)}
    )


@router.get("/audit/head", tags=["audit"], response_model=HeadOut, summary="The chain's head")
def audit_head(p: Caller, svc: Svc) -> HeadOut:
    require(p, *READERS)
    h = svc.store.audit_head()
    return HeadOut(seq=h.seq, hash=h.hash)


@router.get(
    "/audit/verify",
    tags=["audit"],
    response_model=VerdictOut,
    summary="Verify the stored chain against its recorded head",
    description="Incremental by default: the entries after the last verified one (whose "
    "hash must not have changed); `full=true` reads the whole chain.",
)
def audit_verify(
    p: Caller,
    svc: Svc,
    full: Annotated[bool, Query(description="verify every entry, not only the new ones")] = False,
) -> VerdictOut:
    require(p, *READERS)
    v = svc.store.verify_audit(full=full)
    return VerdictOut(
        ok=v.ok,
        entries=v.entries,
        head=HeadOut(seq=v.head.seq, hash=v.head.hash),
        first_bad_seq=v.first_bad_seq,
        problem=v.problem,
        after_seq=v.after_seq,
    )


# -- keys ----------------------------------------------------------------------------------------
def key_out(k: KeyRecord) -> KeyOut:
    return KeyOut(
        key_id=k.key_id,
        role=Role(k.role),
        tenant=k.tenant,
        name=k.name,
        created_s=k.created_s,
        created_by=k.created_by,
        revoked_s=k.revoked_s,
    )


@router.post(
    "/keys",
    tags=["keys"],
    response_model=KeyIssuedOut,
    status_code=201,
    summary="Issue a key (operator: any; tenant-admin: its own tenant's)",
)
def issue_key(body: KeyCreate, p: Caller, svc: Svc) -> KeyIssuedOut:
    require(p, Role.OPERATOR, Role.TENANT_ADMIN)
    tenant = body.tenant
    if p.role is Role.TENANT_ADMIN:
        if not body.role.tenant_scoped:
            raise SpecError("role", "a tenant-admin may issue tenant-admin or tenant-member keys")
        if tenant is not None:
            tenant_visible(p, tenant)
        tenant = p.tenant
    k = svc.issue_key(p, body.role, tenant, body.name)
    stored = svc.key_admin.get(k.key_id)
    assert stored is not None
    return KeyIssuedOut(**key_out(stored).model_dump(), token=k.token)


@router.get(
    "/keys",
    tags=["keys"],
    response_model=list[KeyOut],
    summary="Keys (never their tokens): operator all, tenant-admin its tenant's",
)
def list_keys(p: Caller, svc: Svc) -> list[KeyOut]:
    require(p, Role.OPERATOR, Role.TENANT_ADMIN)
    return [key_out(k) for k in svc.key_admin.all(p.tenant)]


@router.delete("/keys/{key_id}", tags=["keys"], response_model=KeyOut, summary="Revoke a key")
def revoke_key(
    key_id: Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_-]+$")],
    p: Caller,
    svc: Svc,
) -> KeyOut:
    require(p, Role.OPERATOR, Role.TENANT_ADMIN)
    k = svc.key_admin.get(key_id)
    if k is None or (p.role is Role.TENANT_ADMIN and k.tenant != p.tenant):
        raise NotFound(f"no key {key_id!r}")
    return key_out(svc.revoke_key(p, key_id))


@router.get("/whoami", tags=["keys"], response_model=WhoAmI, summary="The caller's key")
def whoami(p: Caller) -> WhoAmI:
    return WhoAmI(key_id=p.key_id, role=p.role, tenant=p.tenant, name=p.name)


# -- invariants ----------------------------------------------------------------------------------
@router.get(
    "/admin/invariants",
    tags=["admin"],
    response_model=Invariants,
    summary="Check that no GPU is allocated twice and that the store matches the engine",
)
def invariants(p: Caller, svc: Svc) -> Invariants:
    require(p, Role.OPERATOR)
    problems = svc.invariants()
    return Invariants(ok=not problems, problems=problems)
