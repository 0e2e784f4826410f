"""The web console's pages: sign-in, overview, tenants and contracts (give notice),
nodes and faults, services, audit. Jobs and usage are in ``api/console_jobs.py``; the
plumbing (viewer, errors, CSRF) in ``api/console_base.py``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cotenant.api import admin, console_jobs, reports, tenants
from cotenant.api.auth import READERS, require, tenant_visible
from cotenant.api.console_base import (
    SECURITY_HEADERS,
    Viewer,
    check_post,
    form_of,
    fragment,
    page,
    run,
    state_of,
    viewer,
)
from cotenant.api.schemas import NoticeIn
from cotenant.contracts.entitlement import entitled_gpus
from cotenant.model.errors import NotFound, SpecError
from cotenant.model.time import parse_time
from cotenant.server.keys import Role
from cotenant.store.queries import audit_page, stored_job_ids
from cotenant.web.render import STATIC, render
from cotenant.web.series import RANGES
from cotenant.web.session import COOKIE

router = APIRouter(include_in_schema=False)


# -- sign-in ------------------------------------------------------------------------------------
@router.get("/signin")
def signin_form(request: Request) -> Response:
    message = request.query_params.get("m", "")[:200]
    return HTMLResponse(render("signin.html", message=message), headers=SECURITY_HEADERS)


@router.post("/signin")
async def signin(request: Request) -> Response:
    svc, cs = state_of(request)
    form = await form_of(request)
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        return _signin_again("the form came from another site", 403)
    token = form.get("key", "").strip()
    p = svc.keys.check(token) if token else None
    if p is None:
        return _signin_again("unknown or revoked API key", 401)
    s = cs.sessions.open(token)
    r = RedirectResponse("/", status_code=303)
    r.set_cookie(COOKIE, s.sid, httponly=True, samesite="strict", path="/", max_age=12 * 3600)
    return r


def _signin_again(message: str, status: int) -> Response:
    return HTMLResponse(
        render("signin.html", message=message), status_code=status, headers=SECURITY_HEADERS
    )


@router.post("/signout")
async def signout(request: Request) -> Response:
    form = await form_of(request)

    def out(v: Viewer) -> Response:
        check_post(request, v, form)
        v.cs.sessions.close(v.session.sid)
        r = RedirectResponse("/signin?m=" + "signed%20out", status_code=303)
        r.delete_cookie(COOKIE, path="/")
        return r

    return run(request, out)


# -- overview -----------------------------------------------------------------------------------
def gpu_states(v: Viewer) -> dict[str, Any]:
    """GPUs by state per tenant (owned, borrowed, lent) and for the cluster (idle, down,
    draining). Lent: the idle part of a tenant's entitlement that borrowers hold now,
    the borrowed total shared among lenders in proportion to their idle entitlement."""
    cv = reports.cluster(v.p, v.svc)
    st = v.svc.status
    idle_ent = {
        t: max(0, st.entitled.get(t, 0) - st.owned.get(t, 0)) for t in sorted(v.svc.tenant_names)
    }
    borrowed_total = sum(st.borrowed.values())
    pool = sum(idle_ent.values())
    rows = []
    for a in cv.tenants:
        lent = 0
        if pool and borrowed_total:
            lent = min(idle_ent.get(a.tenant, 0), borrowed_total * idle_ent[a.tenant] // pool)
        rows.append({"a": a, "lent": lent})
    health = v.cs.health_counts()
    return {"cluster": cv, "rows": rows, "health": health}


@router.get("/")
def overview(request: Request) -> Response:
    def h(v: Viewer) -> Response:
        faults = _faults_for(v, 8)
        return page(v, request, "overview.html", g=gpu_states(v), faults=faults)

    return run(request, h)


@router.get("/overview/live")
def overview_live(request: Request) -> Response:
    return run(
        request,
        lambda v: fragment("_overview_live.html", v=v, g=gpu_states(v), faults=_faults_for(v, 8)),
    )


@router.get("/console/series")
def series(request: Request) -> Response:
    """The charts' data, as the viewer may see it: a tenant key gets its own tenant's
    figures and the cluster's free GPUs (what ``/v1/cluster`` shows it), nothing else."""

    def h(v: Viewer) -> Response:
        rng = request.query_params.get("range", "day")
        if rng not in RANGES:
            raise SpecError("range", f"must be one of {', '.join(RANGES)}")
        tier = v.cs.series.tier(rng)
        data = tier.view()
        if v.p.role.tenant_scoped:
            t = v.p.tenant
            mine = {f"alloc:{t}", f"ent:{t}", f"borrowed:{t}", "free"}
            data["series"] = {
                k: xs
                for k, xs in data["series"].items()
                if k in mine or (k.startswith("svc_") and k.split(":", 1)[1].startswith(f"{t}/"))
            }
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    return run(request, h)


# -- tenants and contracts ----------------------------------------------------------------------
@router.get("/tenants")
def tenant_list(request: Request) -> Response:
    def h(v: Viewer) -> Response:
        if v.p.role.tenant_scoped:
            return RedirectResponse(f"/tenants/{v.p.tenant}", status_code=303)
        return page(v, request, "tenants.html", tenants=tenants.list_tenants(v.p, v.svc))

    return run(request, h)


def _tenant_name(name: str) -> str:
    if len(name) > 64 or not name or not all(c.isalnum() or c in "._-" for c in name):
        raise NotFound(f"no tenant {name[:64]!r}")
    return name


@router.get("/tenants/{name}")
def tenant_page(request: Request, name: str) -> Response:
    def h(v: Viewer) -> Response:
        t = tenants.get_tenant(_tenant_name(name), v.p, v.svc)
        versions = tenants.contract_versions(name, v.p, v.svc)
        ramp = _ramp(v, name, None) if t.contract is not None else []
        flash = request.query_params.get("m", "")[:200]
        return page(v, request, "tenant.html", t=t, versions=versions, ramp=ramp, flash=flash)

    return run(request, h)


def _ramp(v: Viewer, tenant: str, at: int | None) -> list[dict[str, int]]:
    """The entitlement at points across the notice period: given now (``at``) or as the
    contract stands (its own notice, if given)."""
    c = v.svc.contracts.get(tenant)
    if c is None:
        return []
    if at is not None:
        c = c.with_notice(at)
    start = c.notice.given_at
    if start is None:
        return []
    others = [o for o in v.svc.contracts.values() if o.tenant != tenant]
    cap = v.svc.topo.capacity_of(c.commitment.accelerator)
    period = max(c.notice.period_s, 1)
    points = []
    for i in range(0, 11):  # tenths of the period, its end included
        t = start + period * i // 10
        points.append({"t": t, "gpus": entitled_gpus(c, t, cap, others)})
    return points


def _notice_at(form_value: str, now: int) -> int | None:
    raw = form_value.strip()
    if not raw:
        return None
    return parse_time(raw, "at_s")


@router.get("/tenants/{name}/notice")
def notice_confirm(request: Request, name: str) -> Response:
    def h(v: Viewer) -> Response:
        require(v.p, Role.OPERATOR, Role.TENANT_ADMIN)  # either side may exit (as the API)
        t = tenants.get_tenant(_tenant_name(name), v.p, v.svc)
        if t.contract is None:
            raise NotFound(f"tenant {name!r} has no contract")
        now = v.svc.clock.now()
        raw_at = request.query_params.get("at", "")[:40]
        at = _notice_at(raw_at, now)
        ramp = _ramp(v, name, now if at is None else at)
        return page(v, request, "notice.html", t=t, ramp=ramp, at=raw_at, error="")

    return run(request, h)


@router.post("/tenants/{name}/notice")
async def notice_give(request: Request, name: str) -> Response:
    form = await form_of(request)

    def h(v: Viewer) -> Response:
        check_post(request, v, form)
        require(v.p, Role.OPERATOR, Role.TENANT_ADMIN)
        tenant_visible(v.p, _tenant_name(name))
        raw_at = form.get("at", "")[:40]
        try:
            body = NoticeIn(at_s=_notice_at(raw_at, v.svc.clock.now()))
            tenants.give_notice(name, body, v.p, v.svc)
        except (SpecError, ValueError) as e:
            t = tenants.get_tenant(name, v.p, v.svc)
            msg = f"{e.field}: {e.problem}" if isinstance(e, SpecError) else str(e)
            return page(v, request, "notice.html", 400, t=t, ramp=[], at=raw_at, error=msg)
        return RedirectResponse(f"/tenants/{name}?m=notice%20given", status_code=303)

    return run(request, h)


# -- nodes and faults ---------------------------------------------------------------------------
def _faults_for(v: Viewer, limit: int) -> list[dict[str, Any]]:
    """Recent faults, newest first. Interrupted jobs: an operator sees all, a tenant only
    its own, an auditor none (auditors never see jobs). ``stored`` tells whether the job
    has a page (a service replica of the demo's autoscaler has none)."""
    out = []
    for ev in reversed(list(v.cs.faults)):
        hidden = not v.sees_jobs or (v.p.role.tenant_scoped and ev.get("tenant") != v.p.tenant)
        if ev.get("event") == "interrupt" and hidden:
            continue
        out.append(dict(ev))
        if len(out) >= limit:
            break
    ids = [str(e["job"]) for e in out if e.get("event") == "interrupt"]
    stored = stored_job_ids(v.svc.store, ids) if ids else set()
    for e in out:
        e["stored"] = e.get("job") in stored
    return out


@router.get("/nodes")
def nodes(request: Request) -> Response:
    return run(
        request,
        lambda v: page(
            v, request, "nodes.html", health=v.cs.health_counts(), faults=_faults_for(v, 50)
        ),
    )


@router.get("/nodes/live")
def nodes_live(request: Request) -> Response:
    return run(
        request,
        lambda v: fragment(
            "_nodes_live.html", v=v, health=v.cs.health_counts(), faults=_faults_for(v, 50)
        ),
    )


# -- services -----------------------------------------------------------------------------------
@router.get("/services")
def services(request: Request) -> Response:
    def h(v: Viewer) -> Response:
        return page(v, request, "services.html", services=console_jobs.service_rows(v))

    return run(request, h)


# -- audit --------------------------------------------------------------------------------------
@router.get("/audit")
def audit(request: Request) -> Response:
    def h(v: Viewer) -> Response:
        require(v.p, *READERS)
        before_raw = request.query_params.get("before", "")
        before = int(before_raw) if before_raw.isdigit() and len(before_raw) < 19 else None
        kind = request.query_params.get("kind", "")[:32]
        entries = audit_page(v.svc.store, before, 50, [kind] if kind else [])
        head = admin.audit_head(v.p, v.svc)
        older = entries[-1].seq if len(entries) == 50 else None
        return page(v, request, "audit.html", entries=entries, head=head, older=older, kind=kind)

    return run(request, h)


@router.get("/audit/verify")
def audit_verify(request: Request) -> Response:
    def h(v: Viewer) -> Response:
        t0 = time.perf_counter()
        verdict = admin.audit_verify(v.p, v.svc)
        return fragment("_verdict.html", verdict=verdict, took=time.perf_counter() - t0)

    return run(request, h)


@router.get("/whoami")
def who(request: Request) -> Response:
    def h(v: Viewer) -> Response:
        return JSONResponse({"role": v.p.role.value, "tenant": v.p.tenant, "name": v.p.name})

    return run(request, h)


def install(app: FastAPI) -> None:
    """Mount the console (pages, static files) and the API docs, from this server's own
    files: nothing is loaded from another host. (No /redoc: ReDoc's bundle always loads
    its logo from a CDN; /docs and /openapi.json cover the same ground.)"""
    app.include_router(router)
    app.include_router(console_jobs.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        )


__all__ = ["install", "viewer"]
