"""One place maps errors to HTTP: domain errors by their ``http_status``, request
validation to 422 with the path of every bad field, and anything unexpected to a 500
that is logged (and that the fuzzing tests make sure never happens)."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cotenant.api.schemas import ErrorBody
from cotenant.model.errors import CotenantError, SpecError

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
        problems = merged.setdefault(_loc(e.get("loc", ())) or "request", [])
        msg = str(e.get("msg", "invalid"))
        if msg not in problems:
            problems.append(msg)
    return [{"field": f, "problem": " or ".join(p)} for f, p in merged.items()]


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CotenantError)
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


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(CotenantError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a value is wrong; `field` names it"},
    401: {"model": ErrorBody, "description": "no key, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "the key's role may not do this"},
    404: {"model": ErrorBody, "description": "no such object (or another tenant's)"},
    409: {"model": ErrorBody, "description": "conflicts with the current state"},
    422: {"model": ErrorBody, "description": "the request does not match the schema"},
}
