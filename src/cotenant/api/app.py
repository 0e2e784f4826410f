"""``create_app(settings)``: the FastAPI application around a live ``Service``.

The store must have been bootstrapped (``cotenant serve`` does it, printing the keys
it issues); the app opens it, migrates it, rebuilds the engine from it and runs (or is
given the running service: ``cotenant serve`` starts it first, so that a store it cannot
use fails in one line before the server listens).

``/healthz`` is liveness (the process and its engine thread run); ``/readyz`` is
readiness (503 while the store cannot take writes or the engine has stopped).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.types import Receive, Scope, Send

import cotenant
from cotenant.api import (
    admin,
    console,
    errors,
    fastpath,
    fastread,
    jobs,
    pipelines,
    reports,
    tenants,
)
from cotenant.api.auth import READERS, Caller, Svc, require
from cotenant.api.errors import ERROR_RESPONSES
from cotenant.api.schemas import Health, Readiness
from cotenant.engine.keepup import GcPauses, KeepUp
from cotenant.server.demo import start_demo
from cotenant.server.recorder import AUDITED
from cotenant.server.service import Service
from cotenant.server.settings import Settings
from cotenant.server.status import Status
from cotenant.store.repo import Store
from cotenant.store.writer import Writer
from cotenant.web.live import ConsoleState


class ServiceCollector(Collector):
    """Prometheus metrics read from the service's status at scrape time."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def collect(self) -> Iterable[Metric]:
        svc = self.svc
        st = svc.status
        yield from _engine_metrics(st, sorted(svc.tenant_names))
        yield from _keepup_metrics(svc.keepup, st, svc.lag_s())
        yield from _gc_metrics(svc.gc_pauses)
        yield CounterMetricFamily(
            "cotenant_jobs_submitted", "Submissions accepted since start", svc.submitted
        )
        yield from _store_metrics(svc.store.writer)


def _engine_metrics(st: Status, names: list[str]) -> Iterable[Metric]:
    """The engine's totals after its last step, per tenant where they are."""
    yield GaugeMetricFamily("cotenant_queue_depth", "Jobs pending in the engine", st.pending)
    yield GaugeMetricFamily("cotenant_running_jobs", "Jobs holding GPUs", st.running)
    yield GaugeMetricFamily("cotenant_free_gpus", "Free GPUs on healthy nodes", st.free_gpus)
    yield GaugeMetricFamily(
        "cotenant_facility_power_watts", "Facility power now (busy/idle x PUE)", st.power_w
    )
    if st.power_cap_w is not None:
        yield GaugeMetricFamily("cotenant_power_cap_watts", "Site power cap", st.power_cap_w)
    for metric, help_, counts in (
        (
            "cotenant_guarantee_violations",
            "Jobs inside their entitlement that started later than the grace period",
            st.violation_jobs,
        ),
        (
            "cotenant_guarantee_violation_seconds",
            "Seconds such jobs waited beyond the grace period",
            st.violation_s,
        ),
    ):
        c = CounterMetricFamily(metric, help_, labels=["tenant"])
        for t in names:
            c.add_metric([t], counts.get(t, 0))
        yield c
    for metric, help_, values in (
        ("cotenant_allocated_gpus", "GPUs allocated per tenant", st.allocated),
        ("cotenant_borrowed_gpus", "GPUs held beyond the entitlement", st.borrowed),
        ("cotenant_entitled_gpus", "GPUs the contract owes the tenant now", st.entitled),
    ):
        g = GaugeMetricFamily(metric, help_, labels=["tenant"])
        for t in names:
            g.add_metric([t], values.get(t, 0))
        yield g


def _keepup_metrics(ku: KeepUp, st: Status, lag_s: float) -> Iterable[Metric]:
    """Whether the engine keeps up: its decisions, cycles, lag and step times."""
    by_kind = CounterMetricFamily(
        "cotenant_decisions",
        "Decisions acted on, by kind (place, reclaim, preempt, reject, end, ...; not waits)",
        labels=["kind"],
    )
    made = dict(ku.decisions)
    for kind in sorted(AUDITED | set(made)):  # every kind from the start, at 0
        by_kind.add_metric([kind], made.get(kind, 0))
    yield by_kind
    yield CounterMetricFamily(
        "cotenant_wait_verdicts",
        "Cycle verdicts that a pending job keeps waiting (one per job per cycle)",
        st.waits,
    )
    yield GaugeMetricFamily(
        "cotenant_decisions_per_second",
        "Decisions (not waits) per second over the last minute",
        st.decisions_per_s,
    )
    yield CounterMetricFamily("cotenant_scheduling_cycles", "Scheduling cycles", st.cycles)
    yield GaugeMetricFamily(
        "cotenant_engine_lag_seconds",
        "Wall seconds the engine is behind its clock: now minus the oldest due event",
        lag_s,
    )
    yield GaugeMetricFamily(
        "cotenant_engine_time_seconds", "The engine's time after its last step", st.t
    )
    for name, help_, h in (
        (
            "cotenant_engine_step_lag_seconds",
            "How late each engine step began (wall seconds after its oldest due event)",
            ku.lag_s,
        ),
        (
            "cotenant_engine_step_duration_seconds",
            "Wall time of each engine step (events and scheduling cycle)",
            ku.step_s,
        ),
    ):
        yield HistogramMetricFamily(name, help_, buckets=h.buckets(), sum_value=h.sum)


def _gc_metrics(gcp: GcPauses) -> Iterable[Metric]:
    """Garbage collection pauses: each collection's wall time, and the longest of each
    generation (a stall that neither the lag nor the step durations explain)."""
    yield HistogramMetricFamily(
        "cotenant_gc_pause_seconds",
        "Wall time of each garbage collection (its thread waits; the others too, unless a "
        "finalizer lets go of the interpreter lock)",
        buckets=gcp.pause_s.buckets(),
        sum_value=gcp.pause_s.sum,
    )
    longest = GaugeMetricFamily(
        "cotenant_gc_pause_max_seconds",
        "The longest garbage collection so far, by generation (2: the whole heap)",
        labels=["generation"],
    )
    for gen, took in enumerate(gcp.max_by_generation):
        longest.add_metric([str(gen)], took)
    yield longest


def _store_metrics(writer: Writer) -> Iterable[Metric]:
    """The store writer's commits, failures and state."""
    yield CounterMetricFamily(
        "cotenant_store_commits", "Store transactions committed", writer.commits
    )
    yield CounterMetricFamily(
        "cotenant_store_write_failures",
        "Store write attempts that failed (store unavailable)",
        writer.write_failures,
    )
    yield GaugeMetricFamily(
        "cotenant_store_seconds_since_commit",
        "Seconds since the last store transaction committed",
        writer.seconds_since_commit(),
    )
    yield GaugeMetricFamily(
        "cotenant_store_up", "1 if the store takes writes, else 0", 0 if writer.down else 1
    )


class CotenantAPI(FastAPI):
    """FastAPI, with job submissions taken by the fast path (``api/fastpath.py``) first,
    and reads through a gate.

    The engine shares the interpreter with the API: every thread running Python takes
    its turn at the one lock. Reads take neither the engine's lock nor its time, and
    wait for an engine step or a write in progress to finish before they start. The hot
    reads (a job, a page of jobs, the cluster) are answered from memory on the event
    loop (``api/fastread.py``): no thread, no database. Reads pass gates of
    ``read_concurrency`` slots (one for the hot reads, one for the others); a read
    waiting for a slot is an idle coroutine, so a submission arriving meanwhile is not
    queued on the event loop behind every reader. Audit exports (long streams) and
    probes do not queue."""

    read_gate: asyncio.Semaphore | None = None
    fast_reads: fastread.FastReads | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        svc: Service | None = getattr(self.state, "service", None)
        if svc is not None and fastpath.is_submission(scope):
            scope["app"] = self
            await fastpath.handle(svc, super().__call__, scope, receive, send)
            return
        if svc is not None and self.read_gate is not None and _gated(scope):
            fast = self.fast_reads
            if fast is not None and fast.wants(scope):
                async with fast.gate:  # (few at once: a submission is not queued behind 32)
                    await fast.engine_first()
                    if await fast.handle(scope, send):
                        return
            elif fast is not None:
                await fast.engine_first()
            async with self.read_gate:
                await super().__call__(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _gated(scope: Scope) -> bool:
    path = scope.get("path", "")
    return (
        scope["type"] == "http"
        and scope["method"] == "GET"
        and path.startswith("/v1/")
        and not path.startswith("/v1/audit")
    )


def create_app(settings: Settings, service: Service | None = None) -> FastAPI:
    """The application; it starts ``Service(Store(settings.db), settings)`` itself unless
    given a started ``service``, and stops it when it shuts down."""
    app = CotenantAPI(
        title="cotenant",
        version=cotenant.__version__,
        description="Control plane for a GPU cluster leased to rival labs at once.",
        lifespan=_lifespan(settings, service),
        docs_url=None,  # served from vendored assets by console.install (works offline)
        redoc_url=None,
    )
    app.read_gate = asyncio.Semaphore(settings.read_concurrency)
    errors.install(app)
    for r in (jobs.router, pipelines.router, tenants.router, reports.router, admin.router):
        app.include_router(r)
    console.install(app)
    app.include_router(meta)
    return app


def _lifespan(
    settings: Settings, service: Service | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start (or take) the service, its metrics, the demo feeder and the console's live
    state; stop them in the reverse order."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is None:
            store = Store(settings.db)
            svc = Service(store, settings)
            svc.start()
        else:
            svc, store = service, service.store
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServiceCollector(svc))
        app.state.service = svc
        if isinstance(app, CotenantAPI):
            app.fast_reads = fastread.FastReads(svc, settings.read_concurrency)
        app.state.registry = registry
        feeder = start_demo(svc)  # None unless the live demo workload is on
        app.state.console = ConsoleState(svc, feeder)
        app.state.console.start()
        try:
            yield
        finally:
            app.state.console.stop()
            if feeder is not None:
                feeder.stop()
            svc.stop()
            store.close()

    return lifespan


# -- liveness, readiness, metrics --------------------------------------------------------------
meta = APIRouter(tags=["meta"])


@meta.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "the engine has stopped"}},
)
def healthz(svc: Svc) -> Any:
    h = Health(
        status="ok" if svc.healthy() else "degraded", time_s=svc.clock.now(), error=svc.error
    )
    if h.status != "ok":
        return JSONResponse(h.model_dump(), status_code=503)
    return h


@meta.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "cannot make progress now"}},
)
def readyz(svc: Svc) -> Any:
    problems = svc.readiness_problems()
    r = Readiness(
        status="unavailable" if problems else "ready",
        problems=problems,
        store_seconds_since_commit=round(svc.store.writer.seconds_since_commit(), 3),
    )
    if problems:
        return JSONResponse(
            r.model_dump(),
            status_code=503,
            headers={"Retry-After": str(svc.store.writer.retry_after_s())},
        )
    return r


@meta.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format (operator, auditor)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **ERROR_RESPONSES,
    },
)
def metrics(p: Caller, svc: Svc, request: Request) -> Response:
    require(p, *READERS)
    registry: CollectorRegistry = request.app.state.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
