"""/v1/jobs: submit, list, get, cancel, why, logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path as Path_
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from cotenant.api.auth import (
    TENANT_ROLES,
    Caller,
    Svc,
    job_visible,
    require,
    submitting_tenant,
    tenant_visible,
)
from cotenant.api.errors import ERROR_RESPONSES, Forbidden
from cotenant.api.schemas import MAX_TIME, Job, JobPage, JobSubmit, TenantName, Why
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobState
from cotenant.server.keys import Role
from cotenant.server.readmodel import ENDED, job_doc
from cotenant.server.service import Service

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


def job_dict(
    svc: Service, row: dict[str, Any], attempts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A stored job (and its stored attempts) as the ``Job`` schema's JSON (built
    directly: the submit path is hot)."""
    return job_doc(svc.node_names, row, attempts)


def job_out(svc: Service, row: dict[str, Any]) -> Job:
    return Job.model_validate(job_dict(svc, row, svc.store.attempts([row["id"]])[row["id"]]))


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
    tenant = submitting_tenant(p, body.tenant, "job")
    fields = body.model_dump(exclude={"tenant"})
    row, created = await asyncio.wrap_future(svc.submit_job(p, tenant, fields, idempotency_key))
    attempts = None if created else svc.store.attempts([row["id"]])[row["id"]]
    return JSONResponse(
        job_dict(svc, row, attempts),
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
    name: Annotated[str | None, Query(max_length=200, description="only jobs so named")] = None,
    since_s: Annotated[
        int | None,
        Query(ge=0, le=MAX_TIME, description="only jobs not ended before this (Unix s)"),
    ] = None,
    until_s: Annotated[
        int | None,
        Query(ge=0, le=MAX_TIME, description="only jobs submitted by this (Unix s)"),
    ] = None,
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
    rows = svc.store.jobs(
        tenant,
        [s.value for s in state or ()],
        after,
        limit + 1,
        name=name,
        since_s=since_s,
        until_s=until_s,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    attempts = svc.store.attempts(r["id"] for r in rows)
    # Built as the schema's JSON directly: validating 100 models and then the page again
    # cost more than the query (bench/bench_live.py); the schema stays the documented one.
    page = {
        "items": [job_dict(svc, svc.live_row(r), attempts[r["id"]]) for r in rows],
        "next_cursor": str(rows[-1]["seq"]) if more and rows else None,
    }
    return JSONResponse(page)


@router.get("/{job_id}", response_model=Job, summary="One job")
def get_job(job_id: JobId, p: Caller, svc: Svc) -> Response:
    row = svc.live_row(job_visible(p, svc.store.job(job_id), job_id))
    return JSONResponse(job_dict(svc, row, svc.store.attempts([job_id])[job_id]))


@router.post("/{job_id}/cancel", response_model=Job, summary="Cancel a pending or running job")
def cancel_job(job_id: JobId, p: Caller, svc: Svc) -> Job:
    row = job_visible(p, svc.store.job(job_id), job_id)
    if p.role is Role.TENANT_MEMBER and row["submitted_by"] != p.key_id:
        raise Forbidden("a tenant-member may cancel only the jobs it submitted; ask a tenant-admin")
    return job_out(svc, svc.cancel_job(job_id))


@router.get("/{job_id}/why", response_model=Why, summary="Why a job is where it is")
def why_job(job_id: JobId, p: Caller, svc: Svc) -> Why:
    job_visible(p, svc.store.job(job_id), job_id)
    row = svc.why(job_id)
    job = job_dict(svc, row, svc.store.attempts([job_id])[job_id])
    last = job["attempts"][-1] if job["attempts"] else None
    since = None
    if row["state"] in RUNNING:
        since = row["start_s"]
    elif row["state"] in ENDED:
        since = row["end_s"]
    return Why(
        job=job_id,
        state=row["state"],
        reason=row["reason"],
        detail=row["reason_detail"],
        since_s=since,
        attempt=row["attempt"],
        nodes=last["nodes"] if last else [],
        outcome=last["outcome"] if last else None,
        exit_code=last["exit_code"] if last else None,
        signal=last["signal"] if last else None,
    )


LOG_CHUNK = 64 * 1024
FOLLOW_POLL_S = 0.5


@router.get(
    "/{job_id}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "the log's bytes"}},
    summary="A job's stdout or stderr (local and Slurm backends), optionally followed",
)
def job_logs(
    job_id: JobId,
    p: Caller,
    svc: Svc,
    attempt: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="default: the latest")
    ] = None,
    stream: Annotated[Literal["out", "err"], Query(description="stdout or stderr")] = "out",
    offset: Annotated[int, Query(ge=0, le=1 << 50, description="skip this many bytes")] = 0,
    follow: Annotated[
        bool,
        Query(
            description="keep the answer open and send new output until the run ends (a "
            "pending job's: wait for it to start)"
        ),
    ] = False,
) -> StreamingResponse:
    row = job_visible(p, svc.store.job(job_id), job_id)
    waiting = follow and attempt is None and row["attempt"] < 1 and row["state"] == "pending"
    if waiting:
        svc.log_file({**row, "attempt": 1}, 1, stream)  # (the sim backend: 404 now)
        path, n, over = Path_(), 0, False
    else:
        path, n, over = svc.log_file(row, attempt, stream)

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal path, n
        if waiting:  # until its first run starts (or it ends without one)
            while True:
                now = svc.store.job(job_id)
                if now is None or now["attempt"] >= 1 or now["state"] != "pending":
                    break
                await asyncio.sleep(FOLLOW_POLL_S)
            if now is None or now["attempt"] < 1:
                return
            path, n, _ = svc.log_file(now, 1, stream)
        pos, done = offset, over
        while True:
            data = _read_from(path, pos)
            pos += len(data)
            if data:
                yield data
                continue
            if not follow or done:
                return
            await asyncio.sleep(FOLLOW_POLL_S)
            now = svc.store.job(job_id)
            done = now is None or now["attempt"] != n or now["state"] not in RUNNING
            # (one more read after the run is seen over: what it wrote last)

    return StreamingResponse(
        chunks(),
        media_type="text/plain; charset=utf-8",
        headers={"X-Attempt": str(n or 1), "Cache-Control": "no-store"},
    )


RUNNING = ("running", "reclaiming")


def _read_from(path: Path_, pos: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            return f.read(LOG_CHUNK)
    except FileNotFoundError:
        return b""
