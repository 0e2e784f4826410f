"""The web console's plumbing: who is signed in, rendering a page for them, errors as
pages, CSRF checks. Pages are in ``api/console.py`` and ``api/console_jobs.py``.

Visibility is the API's: pages call the API's own checks (``require``, ``tenant_visible``,
``job_visible``) and its handlers, so a page shows exactly what the same key would get
from the API, and another tenant's job is "not found" exactly as a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cotenant.api.auth import READERS, TENANT_ROLES
from cotenant.api.errors import Forbidden
from cotenant.model.errors import CotenantError, SpecError
from cotenant.server.keys import Principal, Role
from cotenant.server.service import Service
from cotenant.web.live import ConsoleState
from cotenant.web.render import render
from cotenant.web.session import COOKIE, Session, csrf_ok

# Console pages allow scripts and styles from this server only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Viewer:
    p: Principal
    session: Session
    svc: Service
    cs: ConsoleState

    @property
    def role(self) -> Role:
        return self.p.role

    @property
    def operator(self) -> bool:
        return self.p.role is Role.OPERATOR

    @property
    def sees_jobs(self) -> bool:
        return self.p.role in (Role.OPERATOR, *TENANT_ROLES)

    @property
    def sees_audit(self) -> bool:
        return self.p.role in READERS

    def nav(self) -> list[tuple[str, str]]:
        items = [("/", "Overview")]
        if self.p.role.tenant_scoped:
            items.append((f"/tenants/{self.p.tenant}", "Tenant"))
        else:
            items.append(("/tenants", "Tenants"))
        if self.sees_jobs:
            items.append(("/jobs", "Jobs"))
        items.append(("/nodes", "Nodes"))
        if self.sees_jobs:
            items.append(("/services", "Services"))
        items.append(("/usage", "Usage"))
        if self.sees_audit:
            items.append(("/audit", "Audit"))
        return items


def state_of(request: Request) -> tuple[Service, ConsoleState]:
    svc: Service = request.app.state.service
    cs: ConsoleState = request.app.state.console
    return svc, cs


def viewer(request: Request) -> Viewer:
    svc, cs = state_of(request)
    sid = request.cookies.get(COOKIE)
    if not sid:
        raise SignInNeeded()
    s = cs.sessions.get(sid)
    if s is None:
        raise SignInNeeded("your session has ended; sign in again")
    p = svc.keys.check(s.token)
    if p is None:
        cs.sessions.close(sid)
        raise SignInNeeded("that API key was revoked; sign in with another")
    return Viewer(p, s, svc, cs)


def page(v: Viewer, request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
    ctx.setdefault("now", v.svc.status.t or v.svc.clock.now())
    html = render(template, v=v, nav=v.nav(), path=request.url.path, csrf=v.session.csrf, **ctx)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def fragment(template: str, status: int = 200, **ctx: Any) -> Response:
    return HTMLResponse(render(template, **ctx), status_code=status, headers=SECURITY_HEADERS)


def signin_redirect(request: Request, message: str) -> Response:
    target = "/signin"
    if message:
        target += "?m=" + quote(message)
    if request.headers.get("HX-Request"):  # htmx: reload the whole page onto the sign-in
        return Response(status_code=204, headers={"HX-Redirect": target})
    r = RedirectResponse(target, status_code=303)
    r.delete_cookie(COOKIE, path="/")
    return r


def run(request: Request, handler: Callable[[Viewer], Response]) -> Response:
    """Resolve the viewer, run the handler, and turn the API's errors into pages."""
    try:
        v = viewer(request)
    except SignInNeeded as e:
        return signin_redirect(request, e.message)
    try:
        return handler(v)
    except CotenantError as e:
        status = e.http_status
        message = str(e)
        if isinstance(e, SpecError):
            message = f"{e.field}: {e.problem}"
        if request.headers.get("HX-Request"):
            return fragment("_error.html", status=status, status_code=status, message=message)
        return page(v, request, "error.html", status=status, status_code=status, message=message)


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form body (the console posts nothing else); the last value wins."""
    body = (await request.body())[:65536].decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def check_post(request: Request, v: Viewer, form: dict[str, str]) -> None:
    """A state-changing request must come from our own page: same origin, right token."""
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise Forbidden("the form came from another site")
    if not csrf_ok(v.session, form.get("csrf") or request.headers.get("x-csrf-token")):
        raise Forbidden("the form has expired (bad CSRF token); reload the page and try again")


def int_param(request: Request, name: str, default: int, low: int = 0, high: int = 1 << 62) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise SpecError(name, f"must be a whole number, got {raw[:40]!r}")
    n = int(raw)
    if not low <= n <= high:
        raise SpecError(name, f"must be between {low} and {high}, got {n}")
    return n
