"""One place maps errors to HTTP: domain errors by their ``http_status``, request
validation to 422 with the path of every bad field, the store being unavailable to a
503 with ``Retry-After`` (logged once per episode, not per request), and anything
unexpected to a 500 that is logged (and that the fuzzing tests make sure never happens)."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cotenant.api.schemas import ErrorBody
from cotenant.model.errors import CotenantError, SpecError, StoreUnavailable
from cotenant.store.health import STORE_ERRORS, is_store_fault, one_line

log = logging.getLogger("cotenant.api")


class Unauthorized(CotenantError):
    http_status = 401


class Forbidden(CotenantError):
    http_status = 403


def error_response(
    status: int,
    message: str,
    field: str | None = None,
    problem: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "status": status,
        "message": message,
        "field": field,
        "problem": problem if problem is not None else message,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse({"error": body}, status_code=status, headers=headers)


# Union members add their type to an error's location ("start.constrained-str"); a user
# wants the field, so such parts are dropped and the problems of one field joined.
_TYPE_TAG = re.compile(r"^(constrained-)?(str|int|float|bool|none|list|dict)$|^function-|\[")


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _TYPE_TAG.search(str(part)):
            out += ("." if out else "") + str(part)
    return out


def field_errors(raw: list[Any]) -> list[dict[str, str]]:
    merged: dict[str, list[str]] = {}
    for e in raw:
        loc = list(e.get("loc", ()))
        if e.get("type") == "spec" and "at" in (e.get("ctx") or {}):
            loc.append(e["ctx"]["at"])  # the part of the value at fault (an unknown key)
        problems = merged.setdefault(_loc(loc) or "request", [])
        msg = str(e.get("msg", "invalid"))
        if msg not in problems:
            problems.append(msg)
    return [{"field": f, "problem": " or ".join(p)} for f, p in merged.items()]


def unavailable_response(exc: StoreUnavailable) -> JSONResponse:
    return error_response(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)})


class ReadFaults:
    """Reads that failed because the store is unavailable: one log line a minute at most,
    with the count since the last one (the writer logs the outage itself)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.count = 0
        self._since_log = 0
        self._logged = -float("inf")
        self._lock = threading.Lock()

    def failed(self, request: Request, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self._since_log += 1
            if now - self._logged < self.every_s:
                return
            n, self._since_log, self._logged = self._since_log, 0, now
        log.warning(
            "store read failed on %s %s: %s (%d failed reads since the last report)",
            request.method,
            request.url.path,
            one_line(exc),
            n,
        )


READ_FAULTS = ReadFaults()


def _retry_after(request: Request) -> int:
    svc = getattr(request.app.state, "service", None)
    return 1 if svc is None else svc.store.writer.retry_after_s()


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CotenantError)
    if isinstance(exc, StoreUnavailable):
        return unavailable_response(exc)
    status = exc.http_status
    if status >= 500:
        log.error("broken invariant on %s %s: %s", request.method, request.url.path, exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, SpecError):
        return error_response(status, str(exc), exc.field, exc.problem, headers=headers)
    return error_response(status, str(exc), headers=headers)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(list(exc.errors()))
    first = errors[0] if errors else {"field": "request", "problem": "invalid"}
    return error_response(
        422, f"{first['field']}: {first['problem']}", first["field"], first["problem"], errors
    )


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        # Starlette names only the methods of the first route that matched the path.
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, str(exc.detail), headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """The methods the published schema gives for this path."""
    methods: set[str] = set()
    for template, ops in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in ops}
    return sorted(methods)


async def on_store_error(request: Request, exc: Exception) -> JSONResponse:
    """Database errors (registered for their classes: a handler for ``Exception`` runs in
    Starlette's outermost middleware, which re-raises to the server, logging a traceback
    per request)."""
    if is_store_fault(exc):
        READ_FAULTS.failed(request, exc)
        return unavailable_response(
            StoreUnavailable(
                f"the store is unavailable ({one_line(exc)}); try again", _retry_after(request)
            )
        )
    return await on_unexpected(request, exc)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(CotenantError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    for cls in STORE_ERRORS:
        app.add_exception_handler(cls, on_store_error)
    app.add_exception_handler(Exception, on_unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a value is wrong; `field` names it"},
    401: {"model": ErrorBody, "description": "no key, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "the key's role may not do this"},
    404: {"model": ErrorBody, "description": "no such object (or another tenant's)"},
    409: {"model": ErrorBody, "description": "conflicts with the current state"},
    422: {"model": ErrorBody, "description": "the request does not match the schema"},
    503: {"model": ErrorBody, "description": "the store is unavailable; see Retry-After"},
}
