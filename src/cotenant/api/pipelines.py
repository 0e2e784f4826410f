"""/v1/pipelines: submit a pipeline (a named group of stages), list, get, cancel."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, StringConstraints

from cotenant.api.auth import TENANT_ROLES, Caller, Svc, require, submitting_tenant, tenant_visible
from cotenant.api.errors import ERROR_RESPONSES, Forbidden
from cotenant.api.schemas import Dependency, JobSubmit, Strict, TenantName, Text
from cotenant.model.errors import NotFound, SpecError
from cotenant.server.keys import Principal, Role

PipelineId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
StageName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"], responses=ERROR_RESPONSES)


class StageSubmit(JobSubmit):
    """One stage: a job (without a tenant: the pipeline's), named; its dependencies name
    other stages by name, or any job of the tenant by id."""

    name: StageName


class PipelineSubmit(Strict):
    tenant: TenantName | None = Field(
        None, description="the tenant to run as; tenant keys may omit it (their own)"
    )
    name: Text
    stages: list[StageSubmit] = Field(min_length=1, max_length=64)


class Stage(BaseModel):
    name: str
    job: str = Field(description="the stage's job id")
    state: str
    reason: str
    reason_detail: str
    after: list[Dependency] = Field(description="what it waits for; stages by name")
    gpus: int
    first_start_s: int | None
    end_s: int | None


class Pipeline(BaseModel):
    id: str
    tenant: str
    name: str
    state: str = Field(description="pending, running, completed, failed or cancelled")
    submit_s: int
    submitted_by: str
    cancelled_s: int | None
    end_s: int | None = Field(description="when its last stage ended, once all have")
    makespan_s: int | None = Field(description="from submission to the end of its last stage")
    stages: list[Stage] = Field(description="in submission order, each after its dependencies")


class PipelinePage(BaseModel):
    items: list[Pipeline]
    next_cursor: str | None


def _visible(p: Principal, row: dict[str, Any] | None, pipeline_id: str) -> dict[str, Any]:
    require(p, Role.OPERATOR, *TENANT_ROLES)
    if row is None or (p.role.tenant_scoped and row["tenant"] != p.tenant):
        raise NotFound(f"no pipeline {pipeline_id!r}")
    return row


@router.post("", status_code=201, response_model=Pipeline, summary="Submit a pipeline")
async def submit_pipeline(body: PipelineSubmit, p: Caller, svc: Svc) -> Response:
    tenant = submitting_tenant(p, body.tenant, "pipeline")
    stages = []
    for i, st in enumerate(body.stages):
        if st.tenant is not None:
            raise SpecError(f"stages[{i}].tenant", "give the tenant once, for the pipeline")
        stages.append(st.model_dump(exclude={"tenant"}))
    fut = svc.pipelines.submit(p, tenant, body.name, stages)
    row = await asyncio.wrap_future(fut)
    return JSONResponse(
        svc.pipelines.doc(row),
        status_code=201,
        headers={"Location": f"/v1/pipelines/{row['id']}"},
    )


@router.get("", response_model=PipelinePage, summary="List pipelines, oldest first")
def list_pipelines(
    p: Caller,
    svc: Svc,
    tenant: TenantName | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> Response:
    require(p, Role.OPERATOR, *TENANT_ROLES)
    if p.role.tenant_scoped:
        if tenant is not None:
            tenant_visible(p, tenant)
        tenant = p.tenant
    rows = svc.store.pipelines(tenant, int(cursor) if cursor else 0, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return JSONResponse(
        {
            "items": [svc.pipelines.doc(r) for r in rows],
            "next_cursor": str(rows[-1]["seq"]) if more and rows else None,
        }
    )


@router.get("/{pipeline_id}", response_model=Pipeline, summary="One pipeline and its stages")
def get_pipeline(pipeline_id: PipelineId, p: Caller, svc: Svc) -> Response:
    row = _visible(p, svc.store.pipeline(pipeline_id), pipeline_id)
    return JSONResponse(svc.pipelines.doc(row))


@router.post(
    "/{pipeline_id}/cancel",
    response_model=Pipeline,
    summary="Cancel a pipeline: its waiting and running stages",
)
def cancel_pipeline(pipeline_id: PipelineId, p: Caller, svc: Svc) -> Response:
    row = _visible(p, svc.store.pipeline(pipeline_id), pipeline_id)
    if p.role is Role.TENANT_MEMBER and row["submitted_by"] != p.key_id:
        raise Forbidden(
            "a tenant-member may cancel only the pipelines it submitted; ask a tenant-admin"
        )
    return JSONResponse(svc.pipelines.doc(svc.pipelines.cancel(row)))
