"""The console's jobs pages (paged table filtered and sorted in SQL, a job's attempts,
why it waits, its log tail), services, and usage and invoices with downloads."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cotenant.api import jobs, reports
from cotenant.api.auth import READERS, TENANT_ROLES, job_visible, require, tenant_visible
from cotenant.api.console_base import Viewer, fragment, int_param, page, run
from cotenant.audit.chain import AuditEntry
from cotenant.model.errors import NotFound, SpecError
from cotenant.model.jobs import JobState
from cotenant.server.keys import Role
from cotenant.store.queries import JOB_SORTS, JobQuery, job_page, job_trail

router = APIRouter(include_in_schema=False)
PAGE_SIZES = (25, 50, 100, 200)
STATES = [s.value for s in JobState]
ENDINGS = ("end", "preempt", "interrupt", "cancel", "reject")


# -- jobs ---------------------------------------------------------------------------------------
def job_query(v: Viewer, request: Request) -> JobQuery:
    """The table's filters from the URL, checked as the API checks ``GET /v1/jobs``."""
    require(v.p, Role.OPERATOR, *TENANT_ROLES)
    q = request.query_params
    tenant = q.get("tenant") or None
    if v.p.role.tenant_scoped:
        if tenant is not None:
            tenant_visible(v.p, tenant)
        tenant = v.p.tenant
    elif tenant is not None and tenant not in v.svc.tenant_names:
        raise NotFound(f"no tenant {tenant[:64]!r}")
    states = tuple(s for s in q.getlist("state") if s)
    for s in states:
        if s not in STATES:
            raise SpecError("state", f"unknown state {s[:20]!r}; valid: {', '.join(STATES)}")
    sort = q.get("sort", "submitted")
    if sort not in JOB_SORTS:
        raise SpecError("sort", f"unknown column {sort[:20]!r}; valid: {', '.join(JOB_SORTS)}")
    size = int_param(request, "size", 50, 1, 200)
    pg = int_param(request, "page", 1, 1, 1_000_000)
    return JobQuery(
        tenant=tenant,
        states=states,
        name=q.get("q", "")[:100],
        sort=sort,
        desc=q.get("dir", "desc") != "asc",
        offset=(pg - 1) * size,
        limit=size,
    )


def _table_ctx(v: Viewer, request: Request) -> dict[str, Any]:
    q = job_query(v, request)
    rows, total = job_page(v.svc.store, q, v.svc.clock.now())
    params: list[tuple[str, str]] = []
    if q.tenant and not v.p.role.tenant_scoped:
        params.append(("tenant", q.tenant))
    params += [("state", s) for s in q.states]
    if q.name:
        params.append(("q", q.name))
    size = q.limit
    pg = q.offset // size + 1

    def link(**over: Any) -> str:
        base = dict(sort=q.sort, dir="desc" if q.desc else "asc", size=size, page=pg)
        base.update(over)
        return "?" + urlencode([*params, *((k, str(x)) for k, x in base.items())])

    sort_links = {
        c: link(sort=c, dir="asc" if (q.sort == c and q.desc) else "desc", page=1)
        for c in JOB_SORTS
    }
    pages = max(1, (total + size - 1) // size)
    return {
        "rows": rows,
        "total": total,
        "q": q,
        "pg": pg,
        "pages": pages,
        "prev": link(page=pg - 1) if pg > 1 else None,
        "next": link(page=pg + 1) if pg < pages else None,
        "sort_links": sort_links,
        "self_query": link(),
        "states": STATES,
        "tenants": sorted(v.svc.tenant_names) if not v.p.role.tenant_scoped else [],
        "sizes": PAGE_SIZES,
    }


@router.get("/jobs")
def jobs_page(request: Request) -> Response:
    return run(request, lambda v: page(v, request, "jobs.html", **_table_ctx(v, request)))


@router.get("/jobs/table")
def jobs_table(request: Request) -> Response:
    return run(request, lambda v: fragment("_jobs_table.html", v=v, **_table_ctx(v, request)))


def attempts(trail: list[AuditEntry], topo_names: list[str]) -> list[dict[str, Any]]:
    """Each run of the job from its audit trail: nodes, start, end, how it ended."""
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for e in trail:
        if e.kind == "place":
            nodes = e.payload.get("nodes") or []
            names = [
                topo_names[n] if isinstance(n, int) and n < len(topo_names) else str(n)
                for n in nodes
            ]
            cur = {
                "start": e.time,
                "end": None,
                "nodes": names,
                "how": "running",
                "exit_code": None,
                "borrowed": e.payload.get("borrowed"),
            }
            out.append(cur)
        elif e.kind in ENDINGS and cur is not None and cur["end"] is None:
            cur["end"] = e.time
            cur["exit_code"] = e.payload.get("exit_code")
            how = e.payload.get("state") if e.kind == "end" else e.kind
            cause = e.payload.get("cause")
            cur["how"] = f"{how}: {cause}" if cause else str(how)
    return out


def log_tail(v: Viewer, row: dict[str, Any], max_bytes: int = 8192) -> str | None:
    """The last lines of the current attempt's output, where the backend keeps one."""
    paths = getattr(v.svc.engine.backend, "log_paths", None)
    if paths is None:
        return None
    for attempt in (row["attempt"], row["attempt"] - 1):
        if attempt < 0:
            continue
        out: Path = paths(row["id"], attempt)[0]
        if out.exists():
            with out.open("rb") as f:
                f.seek(max(0, out.stat().st_size - max_bytes))
                return f.read().decode("utf-8", "replace")
    return ""


def _job_ctx(v: Viewer, job_id: str) -> dict[str, Any]:
    if len(job_id) > 64:
        raise NotFound(f"no job {job_id[:64]!r}")
    row = job_visible(v.p, v.svc.store.job(job_id), job_id)
    job = jobs.job_out(v.svc, row)
    trail = job_trail(v.svc.store, job_id, row["submit_s"], row["end_s"])
    live = row["state"] in ("running", "reclaiming")
    return {
        "job": job,
        "row": row,
        "attempts": attempts(trail, list(v.svc.node_names)),
        "log": log_tail(v, row),
        "live": live or row["state"] == "pending",
        "now": v.svc.clock.now(),
    }


@router.get("/jobs/{job_id}")
def job_detail(request: Request, job_id: str) -> Response:
    return run(request, lambda v: page(v, request, "job.html", **_job_ctx(v, job_id)))


@router.get("/jobs/{job_id}/live")
def job_live(request: Request, job_id: str) -> Response:
    def h(v: Viewer) -> Response:
        ctx = _job_ctx(v, job_id)
        # 286: htmx swaps this last state in and stops polling (the job has ended)
        return fragment("_job_live.html", status=200 if ctx["live"] else 286, v=v, **ctx)

    return run(request, h)


# -- services -----------------------------------------------------------------------------------
def service_rows(v: Viewer) -> list[dict[str, Any]]:
    """Inference services: their replicas (service jobs, by name) running and waiting,
    with the demand and latency target where the autoscaler runs them (the demo)."""
    require(v.p, Role.OPERATOR, *TENANT_ROLES)
    q = JobQuery(
        tenant=v.p.tenant if v.p.role.tenant_scoped else None,
        states=("pending", "running", "reclaiming"),
        limit=100_000,
    )
    rows, _ = job_page(v.svc.store, q, v.svc.clock.now())
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["kind"] != "service":
            continue
        name = r["name"].rsplit("-r", 1)[0] if "-r" in r["name"] else r["name"]
        s = by.setdefault(
            (r["tenant"], name),
            {"tenant": r["tenant"], "name": name, "running": 0, "waiting": 0, "gpus": 0},
        )
        if r["state"] == "pending":
            s["waiting"] += 1
        else:
            s["running"] += 1
            s["gpus"] += r["gpus"]
    tier = v.cs.series.tier("day").view()
    for sn in v.cs.services_now():
        if v.p.role.tenant_scoped and sn.tenant != v.p.tenant:
            continue
        s = by.setdefault(
            (sn.tenant, sn.name),
            {"tenant": sn.tenant, "name": sn.name, "running": 0, "waiting": 0, "gpus": 0},
        )
        series = tier["series"].get(f"svc_met:{sn.tenant}/{sn.name}", [])
        met = [x for x in series if x is not None]
        s.update(
            running=sn.running,
            waiting=max(0, sn.asked - sn.running),
            gpus=sn.running * sn.gpus_per_replica,
            asked=sn.asked,
            needed=sn.needed,
            demand=sn.demand_rps,
            target=f"{sn.latency_target_s:g} s p99",
            slo=f"{100 * sum(met) / len(met):.1f}% (last day)" if met else "—",
            key=f"{sn.tenant}/{sn.name}",
        )
    return [by[k] for k in sorted(by)]


# -- usage and invoices -------------------------------------------------------------------------
def _month(request: Request, now: int) -> str:
    m = request.query_params.get("month") or dt.datetime.fromtimestamp(now, dt.UTC).strftime(
        "%Y-%m"
    )
    try:
        dt.datetime.strptime(m[:7], "%Y-%m")
    except ValueError:
        raise SpecError("month", f"must be YYYY-MM, got {m[:20]!r}") from None
    if len(m) != 7:
        raise SpecError("month", f"must be YYYY-MM, got {m[:20]!r}")
    return m


def _month_bounds(month: str) -> tuple[int, int]:
    y, m = int(month[:4]), int(month[5:7])
    start = dt.datetime(y, m, 1, tzinfo=dt.UTC)
    end = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=dt.UTC)
    return int(start.timestamp()), int(end.timestamp())


def _shift(month: str, k: int) -> str:
    y, m = int(month[:4]), int(month[5:7]) - 1 + k
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def usage_ctx(v: Viewer, request: Request) -> dict[str, Any]:
    now = v.svc.clock.now()
    month = _month(request, now)
    start, end = _month_bounds(month)
    use = reports.usage(v.p, v.svc, None, start, end)
    invoices = []
    if v.p.role in (*READERS, Role.TENANT_ADMIN):
        for u in use.tenants:
            tenant_visible(v.p, u.tenant)
            if u.tenant in v.svc.contracts:
                invoices.append(reports.invoice(u.tenant, month, v.p, v.svc))
    return {
        "month": month,
        "prev_month": _shift(month, -1),
        "next_month": _shift(month, 1),
        "usage": use,
        "invoices": invoices,
    }


@router.get("/usage")
def usage(request: Request) -> Response:
    return run(request, lambda v: page(v, request, "usage.html", **usage_ctx(v, request)))


@router.get("/usage/download")
def usage_download(request: Request) -> Response:
    def h(v: Viewer) -> Response:
        ctx = usage_ctx(v, request)
        fmt = request.query_params.get("format", "json")
        name = f"cotenant-usage-{ctx['month']}"
        invoices = [i.model_dump() for i in ctx["invoices"]]
        if fmt == "json":
            body = {"month": ctx["month"], "usage": ctx["usage"].model_dump(), "invoices": invoices}
            return JSONResponse(
                body, headers={"Content-Disposition": f'attachment; filename="{name}.json"'}
            )
        if fmt != "csv":
            raise SpecError("format", "must be csv or json")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(
            [
                "month",
                "tenant",
                "gpu_hours",
                "own_gpu_seconds",
                "borrowed_gpu_seconds",
                "invoice_total",
                "currency",
            ]
        )
        totals = {i["tenant"]: (i["total"], i["currency"]) for i in invoices}
        for u in ctx["usage"].tenants:
            total, cur = totals.get(u.tenant, ("", ""))
            w.writerow(
                [
                    ctx["month"],
                    u.tenant,
                    f"{u.gpu_hours:.3f}",
                    u.own_gpu_seconds,
                    u.borrowed_gpu_seconds,
                    total,
                    cur,
                ]
            )
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )

    return run(request, h)
