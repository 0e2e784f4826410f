"""The hot reads without FastAPI's machinery, from memory: ``GET /v1/jobs/{id}``, a
page of ``GET /v1/jobs`` (``limit``, ``cursor``, ``tenant``) and ``GET /v1/cluster``.

Jobs come from the job book (``server/readmodel.py``: the stored jobs as ready JSON), the
cluster from the status the engine publishes after each step (its JSON made once per
step and viewer). Neither the store nor the engine's lock is touched, and no thread is
involved: a read is one stretch of Python on the event loop, which does not let go of
the interpreter lock halfway and queue for it again behind the engine.

Like ``api/fastpath.py`` for submissions, only the ordinary case is handled here: a
known key allowed to read, plain parameters, a job the book has. Anything else (no
key, a rival's or unknown job, other filters, a bad parameter) goes to the FastAPI
route, which answers as it always has; so every error is still defined once, and
the schema stays the route's (a test compares the two answers byte for byte).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from cotenant.api.reports import cluster_view
from cotenant.server.keys import Principal, Role
from cotenant.server.readmodel import dumps
from cotenant.server.service import Service
from cotenant.server.status import Status

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

HOT_PATHS = ("/v1/cluster", "/v1/jobs")
_JOB = re.compile(r"^/v1/jobs/([A-Za-z0-9._-]{1,64})$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_CURSOR = re.compile(r"^[0-9]{1,18}$")
_LIMIT = re.compile(r"^[0-9]{1,4}$")
PAGE_PARAMS = {"limit", "cursor", "tenant"}
JOB_READERS = (Role.OPERATOR, Role.TENANT_ADMIN, Role.TENANT_MEMBER)
ENGINE_FIRST_S = 0.05


class FastReads:
    def __init__(self, svc: Service, slots: int = 2) -> None:
        self.svc = svc
        self.gate = asyncio.Semaphore(slots)
        self._status: Status | None = None
        self._tenants = 0
        self._cluster: dict[str | None, bytes] = {}
        self._engine_step: asyncio.Future[None] | None = None
        self.served = 0  # reads answered here

    @staticmethod
    def wants(scope: Scope) -> bool:
        path = scope["path"]
        return path in HOT_PATHS or _JOB.match(path) is not None

    def _busy(self) -> bool:
        return self.svc.stepping or self.svc.writing

    async def engine_first(self) -> None:
        """Let an engine step or a write in progress finish before a read starts (a few
        ms; at most ENGINE_FIRST_S, so a stuck engine or store cannot stall reads): reads
        in a closed loop would otherwise keep the interpreter busy while the engine
        and the writer wait for it. One poller for all the reads waiting, not one each."""
        if not self._busy():
            return
        if self._engine_step is None or self._engine_step.done():
            self._engine_step = asyncio.ensure_future(self._step_over())
        await asyncio.shield(self._engine_step)

    async def _step_over(self) -> None:
        waited = 0.0
        while self._busy() and waited < ENGINE_FIRST_S:
            await asyncio.sleep(0.001)
            waited += 0.001

    async def handle(self, scope: Scope, send: Send) -> bool:
        """Answer ``scope`` if it is an ordinary hot read (True); else leave it (False)."""
        body = self.answer(scope)
        if body is None:
            return False
        self.served += 1
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True

    def answer(self, scope: Scope) -> bytes | None:
        p = self._principal(scope)
        if p is None:
            return None
        path = scope["path"]
        if path == "/v1/cluster":
            return None if scope.get("query_string") else self.cluster(p)
        if p.role not in JOB_READERS or not self.svc.book.ready:
            return None
        if path == "/v1/jobs":
            return self.page(p, scope.get("query_string", b""))
        m = _JOB.match(path)
        if m is None or scope.get("query_string"):
            return None
        found = self.svc.book.job(m.group(1), self.svc.live_row)
        if found is None or (p.role.tenant_scoped and found[0] != p.tenant):
            return None  # the route says 404 (for a rival's job too, in the same words)
        return found[1]

    def _principal(self, scope: Scope) -> Principal | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                if not value.startswith(b"Bearer "):
                    return None
                return self.svc.keys.check(value[7:].decode("latin-1").strip())
        return None

    def page(self, p: Principal, query: bytes) -> bytes | None:
        try:
            pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return None
        params = dict(pairs)
        if len(params) != len(pairs) or not params.keys() <= PAGE_PARAMS:
            return None  # repeated or other parameters: the route
        limit, cursor = params.get("limit", "100"), params.get("cursor")
        tenant = params.get("tenant")
        if not _LIMIT.match(limit) or not 1 <= int(limit) <= 1000:
            return None
        if cursor is not None and not _CURSOR.match(cursor):
            return None
        if tenant is not None and not _TENANT.match(tenant):
            return None
        if p.role.tenant_scoped:
            if tenant is not None and tenant != p.tenant:
                return None
            tenant = p.tenant
        after = 0 if cursor is None else int(cursor)
        return self.svc.book.page(tenant, after, int(limit), self.svc.live_row)

    def cluster(self, p: Principal) -> bytes:
        """The cluster view's JSON, made once per engine step and viewer."""
        svc = self.svc
        st, tenants = svc.status, len(svc.tenant_names)
        if st is not self._status or tenants != self._tenants:
            self._cluster = {}
            self._status, self._tenants = st, tenants
        key = p.tenant if p.role.tenant_scoped else None
        body = self._cluster.get(key)
        if body is None:
            body = dumps(cluster_view(svc, p).model_dump(mode="json"))
            self._cluster[key] = body
        return body
