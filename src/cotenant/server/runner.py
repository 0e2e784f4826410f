"""The engine runner: the engine on the wall clock, in its own thread, behind a lock.

The **engine thread** runs ``Engine.run`` holding ``lock``; the clock releases the lock
while it waits, so API calls that need the engine (cancel, why, contracts) get in
between steps. Steps are at least ``min_step_s`` apart: a burst of submissions makes one
scheduling cycle, not one each. Submissions never take the lock: a committed submission
is handed to the engine through an ``inbox`` that the engine drains when it wakes.

After every step the recorder writes what the engine decided (``server/recorder.py``)
and the runner publishes the engine's totals (``Status``) for lock-free reads.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from cotenant.backends.base import Backend
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import LiveClock
from cotenant.engine.core import Engine
from cotenant.engine.keepup import KeepUp
from cotenant.model.contracts import Contract
from cotenant.model.jobs import JobSpec
from cotenant.scheduler.policies import get_policy
from cotenant.server.readmodel import JobBook
from cotenant.server.recorder import AUDITED, DURABLE_WAIT_S, Recorder
from cotenant.server.settings import Settings
from cotenant.server.status import FOREVER, DecisionRate, Status, status_of, with_pools
from cotenant.store.repo import Store

if TYPE_CHECKING:
    from cotenant.server.overflow import Router

log = logging.getLogger("cotenant.server.service")


class Runner:
    """The live engine, its clock and lock, its thread, its inbox of submissions, its
    lag, and the recorder that stores what it decides."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        start_s: int,
        topo: Topology,
        contracts: Iterable[Contract],
        tenants: list[str],
        backend: Backend,
        node_names: Sequence[str] | None = None,
    ) -> None:
        """``node_names``: the server's node space (the lease's nodes, then the pools')."""
        self.speed = settings.speed
        self.lock = threading.Lock()
        self.inbox: deque[JobSpec] = deque()
        self._deadlines: list[int] = []  # reclaim deadlines not yet reached (a heap)
        self._step_took: deque[float] = deque(maxlen=20)  # the last steps' wall seconds
        self.clock = LiveClock(
            start_s,
            settings.speed,
            self.lock,
            self._step_begins,
            settings.min_step_s,
            lambda: self._deadlines[0] if self._deadlines else None,
            lambda: max(self._step_took, default=0.0),
        )
        self.engine = Engine(
            topo, contracts, get_policy(settings.policy), backend, self.clock, tenants=tenants
        )
        names = topo.node_names if node_names is None else node_names
        self.recorder = Recorder(store, self.engine, self.clock, JobBook(names))
        self.router: Router | None = None  # with pools (server/overflow.py)
        self.status = Status(t=self.clock.now())
        self.keepup = KeepUp()
        self._rate = DecisionRate()
        self._step_began = time.monotonic()
        self._lag_at_start = 0.0
        self._inbox_since: float | None = None
        self.stepping = False  # the engine is in a step: readers let it finish first
        self.error: str | None = None
        self.submitted = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- pools ------------------------------------------------------------------------------
    def add_pools(self, router: Router, offsets: Mapping[str, int]) -> None:
        """Pools beside the lease (before ``start``): their engines run on this clock, the
        router takes the submissions, the recorder follows jobs to the engine they are on
        (a pool's nodes after ``offsets[pool]`` in the server's node space)."""
        self.router = router
        self.recorder.engine_of = router.engine_of
        self.recorder.why = router.why
        for name, eng in router.pools.items():
            self.recorder.add_pool(name, eng, offsets[name])

    def engines(self) -> list[Engine]:
        """The lease's engine, then the pools'."""
        return [self.engine] if self.router is None else [self.engine, *self.router.pools.values()]

    def engine_of(self, job_id: str) -> Engine:
        return self.engine if self.router is None else self.router.engine_of(job_id)

    def why(self, job_id: str) -> tuple[str, str]:
        """Why a pending job waits (with pools: as its route says too)."""
        return self.engine.why(job_id) if self.router is None else self.router.why(job_id)

    # -- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        """Listen to the engine's decisions and run it in its own thread."""
        if self.router is None:
            self.engine.sinks.append(self.recorder.on_decision)
        else:
            for eng in self.engines():
                eng.sinks.append(partial(self.recorder.on_decision, source=eng))
            self.router.sinks.append(self.recorder.on_decision)
        for eng in self.engines():
            eng.sinks.append(self._on_decision)
        self._thread = threading.Thread(target=self._loop, name="cotenant-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self.clock.wake()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def alive(self) -> bool:
        return self.error is None and self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        self.lock.acquire()
        try:
            if self.router is None:
                self.engine.run(FOREVER, progress=self._after_step, stop=lambda: self._stopping)
            else:
                self._run_with_pools(self.router)
        except Exception as e:  # the service stays up to answer reads and report the failure
            log.exception("engine stopped")
            self.error = f"engine stopped: {e!r}"
        finally:
            self.stepping = False
            self.recorder.flush()
            self.lock.release()

    def _run_with_pools(self, router: Router) -> None:
        """``Engine.run`` over the lease's and the pools' engines and the router's
        re-checks: wait for the earliest event of any, step each engine with something
        due, then the router."""
        engines = self.engines()
        while not self._stopping:
            times = [t for t in (e.peek() for e in engines) if t is not None]
            if (r := router.peek()) is not None:
                times.append(r)
            now = self.clock.wait_until(min(times, default=FOREVER))
            for e in engines:
                t = e.peek()
                if t is not None and t <= now:
                    e.step(now)
            router.step(now)
            self._after_step(now)

    def _on_decision(self, ev: dict[str, Any]) -> None:
        """An engine sink (lock held): reclaim deadlines to step at, decisions counted."""
        kind = ev.get("event", "")
        if kind == "reclaim":
            heapq.heappush(self._deadlines, int(ev["deadline"]))
        if kind in AUDITED:
            self.keepup.decisions[kind] += 1

    # -- steps --------------------------------------------------------------------------------
    def enqueue(self, spec: JobSpec) -> None:
        """Hand a committed submission to the engine (any thread, without the lock)."""
        self.submitted += 1
        self.inbox.append(spec)
        if self._inbox_since is None:  # the oldest submission the engine has not taken
            self._inbox_since = self.clock.now_exact()
        self.clock.wake()

    def drain_inbox(self) -> None:
        """Hand committed submissions to the engine (lock held)."""
        self._inbox_since = None
        while self.inbox:
            spec = self.inbox.popleft()
            if self.router is None:
                self.engine.submit(spec)
            else:
                self.router.submit(spec)

    def _step_begins(self) -> None:
        """The clock woke the engine (lock held): note how late, then take submissions."""
        self.stepping = True
        self._step_began = time.monotonic()
        now = self.clock.now_exact()
        due: float | None = self.engine.next_event_time()
        first = self._inbox_since
        if first is not None:
            due = first if due is None else min(due, first)
        self._lag_at_start = 0.0 if due is None else max(0.0, now - due) / self.speed
        self.drain_inbox()

    def _after_step(self, t: int) -> None:
        while self._deadlines and self._deadlines[0] <= t:
            heapq.heappop(self._deadlines)  # (this step handled every event due by t)
        took = time.monotonic() - self._step_began
        self._step_took.append(took)
        self.keepup.stepped(self._lag_at_start, took)
        self.recorder.flush()
        decided = sum(self.keepup.decisions.values())
        self.status = status_of(self.engine, t, decided, self._rate.add(decided))
        if self.router is not None:
            r = self.router
            self.status = with_pools(self.status, self.engine, r.lease_name, r.pools)
        self.stepping = False

    def lag_s(self) -> float:
        """Wall seconds the engine is behind its clock now: clock time minus the time of the
        oldest event due and not yet handled (a submission waiting in the inbox, a deadline,
        a job's end); 0 when nothing is due. Read without the lock: a stalled engine shows
        a lag that grows."""
        now = self.clock.now_exact()
        due: float = self.status.next_due_s
        first = self._inbox_since
        if first is not None:
            due = min(due, first)
        return max(0.0, now - due) / self.speed

    # -- calls from other threads ---------------------------------------------------------------
    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the engine under the lock, then wait until what it decided is
        stored. Refused (503) while the store cannot take writes: nothing is decided that
        cannot be recorded."""
        writer = self.recorder.store.writer
        if writer.down:
            raise writer.unavailable()
        with self.lock:
            self.drain_inbox()
            out = fn()
            fut = self.recorder.flush()
        if fut is not None:
            try:
                fut.result(DURABLE_WAIT_S)
            except TimeoutError:
                raise writer.unavailable() from None
            with self.lock:
                self.recorder.flush_all()  # and what the engine decided meanwhile
        return out
