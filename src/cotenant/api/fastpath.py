"""``POST /v1/jobs`` without FastAPI's routing, middleware and dependency machinery.

The submission is the one hot path (bench/bench_api.py): on this 2-core machine the
generic stack cost more than the submission itself. The fast path handles only the
ordinary case: a known key, a JSON body that validates, a submission that is
accepted. Anything else (no key, a bad field, an unknown tenant, an idempotency
conflict) is handed, with the body already read, to the FastAPI route, which answers
exactly as it would have; nothing has been written by then. So there is one
definition of every error, and the schema stays the route's. The one exception: the
store being unavailable is answered here (503, ``Retry-After``), as the route would,
without trying the write a second time.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError

from cotenant.api.schemas import JobSubmit
from cotenant.model.errors import CotenantError, StoreUnavailable
from cotenant.server.keys import Principal, Role
from cotenant.server.service import Service
from cotenant.store.health import is_store_fault, one_line

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1 << 20
_IDEMPOTENCY = re.compile(rb"^[\x21-\x7e]{1,200}$")


class Fallback(Exception):
    """Let the full route answer."""


def is_submission(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"] == "/v1/jobs"
        and not scope.get("root_path")
    )


async def read_body(receive: Receive) -> bytes | None:
    """The whole body; None if the client went away or sent more than MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return None
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: dict[str, Any], extra: list[Any]) -> None:
    out = json.dumps(body, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": out})


def replay(body: bytes) -> Receive:
    """A receive() that gives ``body`` again, then waits for the disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # pragma: no cover - the route never reads twice
        return {"type": "http.disconnect"}

    return receive


async def submit(svc: Service, scope: Scope, body: bytes, send: Send) -> None:
    headers = {k.lower(): v for k, v in scope["headers"]}
    ctype = headers.get(b"content-type", b"")
    if not ctype.startswith(b"application/json"):
        raise Fallback
    auth = headers.get(b"authorization", b"")
    if not auth.startswith(b"Bearer "):
        raise Fallback
    p = svc.keys.check(auth[7:].decode("latin-1").strip())
    if p is None or p.role is Role.AUDITOR:
        raise Fallback
    key = headers.get(b"idempotency-key")
    if key is not None and not _IDEMPOTENCY.match(key):
        raise Fallback
    try:
        req = JobSubmit.model_validate_json(body)
    except ValidationError:
        raise Fallback from None
    tenant = _tenant(p, req.tenant)
    from cotenant.api.jobs import job_dict

    try:
        fut = svc.submit_job(
            p, tenant, req.model_dump(exclude={"tenant"}), key.decode() if key is not None else None
        )
        row, created = await asyncio.wrap_future(fut)
    except StoreUnavailable as e:
        await unavailable(send, e)
        return
    except CotenantError:
        raise Fallback from None
    except Exception as e:
        if not is_store_fault(e):
            raise
        await unavailable(send, StoreUnavailable(f"the store is unavailable ({one_line(e)})"))
        return
    location = [(b"location", f"/v1/jobs/{row['id']}".encode())]
    attempts = None if created else svc.store.attempts([row["id"]])[row["id"]]
    await respond(send, 201 if created else 200, job_dict(svc, row, attempts), location)


async def unavailable(send: Send, e: StoreUnavailable) -> None:
    err = {"status": 503, "message": str(e), "field": None, "problem": str(e)}
    await respond(send, 503, {"error": err}, [(b"retry-after", str(e.retry_after_s).encode())])


def _tenant(p: Principal, asked: str | None) -> str:
    if p.role is Role.OPERATOR:
        if asked is None:
            raise Fallback
        return asked
    if asked is not None and asked != p.tenant:
        raise Fallback
    assert p.tenant is not None
    return p.tenant


async def handle(svc: Service, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    if body is None:
        problem = f"a submission is at most {MAX_BODY} bytes"
        err = {"status": 413, "message": f"body: {problem}", "field": "body", "problem": problem}
        await respond(send, 413, {"error": err}, [])
        return
    try:
        await submit(svc, scope, body, send)
    except Fallback:
        await app(scope, replay(body), send)
