"""/v1/jobs: submit, list, get, cancel, why."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse

from cotenant.api.auth import TENANT_ROLES, Caller, Svc, job_visible, require, tenant_visible
from cotenant.api.errors import ERROR_RESPONSES, Forbidden
from cotenant.api.keys import Principal, Role
from cotenant.api.schemas import Job, JobPage, JobSubmit, TenantName, Why
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobState
from cotenant.service import Service

JobId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="retrying with the same key returns the first submission, never a second",
    ),
]


def job_dict(svc: Service, row: dict[str, Any]) -> dict[str, Any]:
    """A stored job as the ``Job`` schema's JSON (built directly: the submit path is hot)."""
    placement = None
    if row["nodes"] is not None and row["node_gpus"] is not None:
        names = svc.topo.node_names
        placement = {
            "nodes": [names[n] for n in json.loads(row["nodes"])],
            "gpus": json.loads(row["node_gpus"]),
        }
    out = {k: row[k] for k in JOB_COLUMNS}
    out["command"] = json.loads(row["command"])
    out["borrowed"] = bool(row["borrowed"])
    out["placement"] = placement
    return out


JOB_COLUMNS = [f for f in Job.model_fields if f not in ("command", "borrowed", "placement")]


def job_out(svc: Service, row: dict[str, Any]) -> Job:
    return Job.model_validate(job_dict(svc, row))


def _submit_tenant(p: Principal, asked: str | None) -> str:
    require(p, Role.OPERATOR, *TENANT_ROLES)
    if p.role is Role.OPERATOR:
        if asked is None:
            raise SpecError("tenant", "an operator must say which tenant the job is for")
        return asked
    assert p.tenant is not None
    if asked is not None:
        tenant_visible(p, asked)
    return p.tenant


@router.post(
    "",
    status_code=201,
    response_model=Job,
    responses={
        200: {
            "model": Job,
            "description": "a retry: the job first submitted with this Idempotency-Key",
        }
    },
    summary="Submit a job (committed before the answer)",
)
async def submit_job(
    body: JobSubmit,
    p: Caller,
    svc: Svc,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    tenant = _submit_tenant(p, body.tenant)
    fields = body.model_dump(exclude={"tenant"})
    row, created = await asyncio.wrap_future(svc.submit_job(p, tenant, fields, idempotency_key))
    return JSONResponse(
        job_dict(svc, row),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/jobs/{row['id']}"},
    )


@router.get("", response_model=JobPage, summary="List jobs, oldest first, a page at a time")
def list_jobs(
    p: Caller,
    svc: Svc,
    tenant: TenantName | None = None,
    state: Annotated[list[JobState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> Response:
    require(p, Role.OPERATOR, *TENANT_ROLES)
    if p.role.tenant_scoped:
        if tenant is not None:
            tenant_visible(p, tenant)
        tenant = p.tenant
    after = 0
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise SpecError("cursor", "not a cursor this server gave out")
        after = int(cursor)
    rows = svc.store.jobs(tenant, [s.value for s in state or ()], after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    # Built as the schema's JSON directly: validating 100 models and then the page again
    # cost more than the query (bench/bench_live.py); the schema stays the documented one.
    page = {
        "items": [job_dict(svc, r) for r in rows],
        "next_cursor": str(rows[-1]["seq"]) if more and rows else None,
    }
    return JSONResponse(page)


@router.get("/{job_id}", response_model=Job, summary="One job")
def get_job(job_id: JobId, p: Caller, svc: Svc) -> Response:
    row = job_visible(p, svc.store.job(job_id), job_id)
    return JSONResponse(job_dict(svc, row))


@router.post("/{job_id}/cancel", response_model=Job, summary="Cancel a pending or running job")
def cancel_job(job_id: JobId, p: Caller, svc: Svc) -> Job:
    row = job_visible(p, svc.store.job(job_id), job_id)
    if p.role is Role.TENANT_MEMBER and row["submitted_by"] != p.key_id:
        raise Forbidden("a tenant-member may cancel only the jobs it submitted; ask a tenant-admin")
    return job_out(svc, svc.cancel_job(job_id))


@router.get("/{job_id}/why", response_model=Why, summary="Why a job is where it is")
def why_job(job_id: JobId, p: Caller, svc: Svc) -> Why:
    job_visible(p, svc.store.job(job_id), job_id)
    state, reason, detail = svc.why(job_id)
    return Why(job=job_id, state=state, reason=reason, detail=detail)
