"""The autoscaler in the engine: carries out :mod:`cotenant.serving.scaling` decisions and
watches what the replicas actually did.

Mechanism only. A replica is a ``SERVICE`` job of the service's tenant at the service's
priority (above training and experiments), one gang of ``gpus_per_replica``, with a
duration longer than any run: the ``contract`` policy places it like any job inside the
tenant's entitlement (taking idle room, then reclaiming borrowers, then preempting the
tenant's less important work, with the grace period) and lets it borrow beyond.
Scaling up submits replicas; scaling down cancels the newest (queued ones first). Every
decision goes to the engine's decision log (``event: "scale"``) with its reason.

The autoscaler reads the decision log (it is one of the engine's sinks) to know when each
replica started and stopped (it serves ``startup_s`` after each start) and who was
reclaimed or preempted for it, and samples the engine after every step for the serving
and training GPUs of each tenant (``progress``). ``serving.measure`` turns that into the
report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobKind, JobSpec, JobState
from cotenant.model.time import DAY
from cotenant.serving.demand import DemandCurve
from cotenant.serving.scaling import ReplicaPlan, ScaleDecision
from cotenant.serving.services import ServiceConfig

if TYPE_CHECKING:
    from cotenant.engine.core import Engine

REPLICA_DURATION_S = 3650 * DAY  # "until cancelled"
_STOPS = ("preempt", "interrupt", "end")


@dataclass(slots=True)
class ReplicaRun:
    """One replica job: its runs (start, stop) as the decision log tells them."""

    service: int
    gpus: int
    queued: bool = False
    running_since: int | None = None
    borrowed: bool = False
    runs: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class ServiceRecord:
    """What one service asked for and what it got, for the report."""

    cfg: ServiceConfig
    plan: ReplicaPlan
    curve: DemandCurve
    asked: int = 0
    seq: int = 0
    live: list[str] = field(default_factory=list)  # replica ids, oldest first
    decisions: list[ScaleDecision] = field(default_factory=list)
    own_preempted: int = 0  # the tenant's own runs preempted for a replica
    own_preempted_gpus: int = 0
    borrowers_reclaimed: int = 0  # other tenants' borrowed runs reclaimed for a replica
    borrowers_reclaimed_gpus: int = 0
    replicas_reclaimed: int = 0  # replicas (borrowed) reclaimed by others


@dataclass(slots=True)
class TenantServing:
    """Per tenant with services: GPUs its replicas hold or wait for, right now, and the
    time integrals and samples the report needs."""

    allocated: int = 0
    owned: int = 0
    pending: int = 0
    given_up_gpu_s: int = 0
    serving_samples: list[int] = field(default_factory=list)
    training_samples: list[int] = field(default_factory=list)


class Autoscaler:
    """Scales every service of a run on its tick; install with :meth:`install`."""

    def __init__(
        self,
        engine: Engine,
        services: Sequence[ServiceConfig],
        start_s: int,
        end_s: int,
        sample_step_s: int = 3600,
    ) -> None:
        self.engine = engine
        self.start_s, self.end_s = start_s, end_s
        self.services: list[ServiceRecord] = []
        self.replicas: dict[str, ReplicaRun] = {}
        self.tenants: dict[str, TenantServing] = {}
        for i, cfg in enumerate(services):
            lookahead = self.lookahead_s(cfg)
            try:
                curve = cfg.demand.curve(start_s, end_s + lookahead)
            except SpecError as e:
                raise SpecError(f"services[{i}].{e.field}", e.problem, e.source) from None
            plan = ReplicaPlan(cfg.spec, cfg.scaling, curve, start_s, end_s, lookahead)
            self.services.append(ServiceRecord(cfg, plan, curve))
            self.tenants.setdefault(cfg.spec.tenant, TenantServing())
        self.sample_step_s = sample_step_s
        self.sample_times: list[int] = []
        self._next_sample = start_s
        self._last_s = start_s

    def lookahead_s(self, cfg: ServiceConfig) -> int:
        """The configured look-ahead, or start-up + the tenant's reclaim grace + one tick."""
        if cfg.scaling.lookahead_s is not None:
            return cfg.scaling.lookahead_s
        c = self.engine.contracts.get(cfg.spec.tenant)
        grace = c.lending.reclaim_grace_s if c is not None else 0
        return cfg.spec.startup_s + grace + cfg.scaling.tick_s

    def install(self) -> Autoscaler:
        """Listen to the decision log and schedule each service's first tick."""
        self.engine.sinks.append(self.observe)
        for i in range(len(self.services)):
            self._schedule(i, 0)
        return self

    # -- acting ---------------------------------------------------------------------------
    def _schedule(self, i: int, k: int) -> None:
        t = int(self.services[i].plan.ticks[k])
        self.engine.at(t, lambda now: self._tick(i, k, now))

    def _tick(self, i: int, k: int, now: int) -> None:
        rec = self.services[i]
        d = rec.plan.decide(k, rec.asked)
        if d is not None:
            self._apply(i, d, now)
        nxt = rec.plan.next_decision(k, rec.asked)
        if nxt is not None:
            self._schedule(i, nxt)

    def _apply(self, i: int, d: ScaleDecision, now: int) -> None:
        rec = self.services[i]
        spec = rec.cfg.spec
        if d.to > d.frm:
            for _ in range(d.to - d.frm):
                rec.seq += 1
                rid = f"{spec.name}-r{rec.seq}"
                self.replicas[rid] = ReplicaRun(i, spec.gpus_per_replica)
                rec.live.append(rid)
                self.engine.submit(
                    JobSpec(
                        id=rid,
                        tenant=spec.tenant,
                        gpus=spec.gpus_per_replica,
                        duration_s=REPLICA_DURATION_S,
                        submit_s=now,
                        kind=JobKind.SERVICE,
                        priority=spec.priority,
                        name=f"{spec.name} replica {rec.seq}",
                    )
                )
        else:
            for rid in self._newest(rec, d.frm - d.to):
                self.engine.cancel(rid)
                rec.live.remove(rid)
        rec.asked = d.to
        rec.decisions.append(d)
        terms = rec.cfg.scaling
        entry = {
            "t": now,
            "event": "scale",
            "service": spec.name,
            "tenant": spec.tenant,
            "from": d.frm,
            "to": d.to,
            "reason": d.reason.value,
            "detail": d.detail(terms.headroom, rec.plan.lookahead_s, terms.scale_down_hold_s),
        }
        for sink in self.engine.sinks:
            sink(entry)

    def _newest(self, rec: ServiceRecord, n: int) -> list[str]:
        """The ``n`` replicas to cancel: the newest queued ones, then the newest running."""
        jobs = self.engine.jobs
        waiting = [r for r in reversed(rec.live) if jobs[r].state is JobState.PENDING]
        running = [r for r in reversed(rec.live) if jobs[r].state is not JobState.PENDING]
        return (waiting + running)[:n]

    # -- watching -------------------------------------------------------------------------
    def observe(self, e: Mapping[str, Any]) -> None:
        """A decision-log entry: follow the replicas' lives and who made room for them."""
        kind = e.get("event")
        job = e.get("job")
        if kind == "reclaim":
            self._on_reclaim(e)
        if not isinstance(job, str):
            return
        r = self.replicas.get(job)
        if r is None:
            return
        ts = self.tenants[self.services[r.service].cfg.spec.tenant]
        t = int(e["t"])
        if kind == "submit":
            r.queued = True
            ts.pending += r.gpus
        elif kind == "place":
            r.queued = False
            r.running_since = t
            r.borrowed = bool(e.get("borrowed"))
            ts.pending -= r.gpus
            ts.allocated += r.gpus
            ts.owned += 0 if r.borrowed else r.gpus
        elif kind == "retag" and r.running_since is not None:
            now_borrowed = bool(e.get("borrowed"))
            ts.owned += (r.gpus if r.borrowed else 0) - (r.gpus if now_borrowed else 0)
            r.borrowed = now_borrowed
        elif kind in _STOPS or kind == "cancel":
            if r.running_since is not None:
                r.runs.append((r.running_since, t))
                r.running_since = None
                ts.allocated -= r.gpus
                ts.owned -= 0 if r.borrowed else r.gpus
                if kind in ("preempt", "interrupt"):  # requeued
                    r.queued = True
                    ts.pending += r.gpus
            elif kind == "cancel" and r.queued:
                r.queued = False
                ts.pending -= r.gpus
        elif kind == "reject" and r.queued:
            r.queued = False
            ts.pending -= r.gpus

    def _on_reclaim(self, e: Mapping[str, Any]) -> None:
        victim = self.engine.jobs.get(str(e.get("job")))
        beneficiary = self.replicas.get(str(e.get("beneficiary")))
        if str(e.get("job")) in self.replicas:
            self.services[self.replicas[str(e["job"])].service].replicas_reclaimed += 1
        if beneficiary is None or victim is None:
            return
        rec = self.services[beneficiary.service]
        if victim.tenant == rec.cfg.spec.tenant:
            rec.own_preempted += 1
            rec.own_preempted_gpus += victim.spec.gpus
        else:
            rec.borrowers_reclaimed += 1
            rec.borrowers_reclaimed_gpus += victim.spec.gpus

    def progress(self, then: Callable[[int], None] | None = None) -> Callable[[int], None]:
        """A progress callback for ``Engine.run``: integrate, sample, then call ``then``."""

        def tick(t: int) -> None:
            self.advance(t)
            if then is not None:
                then(t)

        return tick

    def advance(self, t: int) -> None:
        """The state since the last call held over ``[last, t)``: sample it on the grid and
        integrate the training GPUs given up (docs/design/0007-serving.md, "Measures")."""
        t = min(t, self.end_s)
        if t <= self._last_s and self.sample_times:
            return
        eng = self.engine
        while self._next_sample < t or (self._next_sample == t == self.end_s):
            self.sample_times.append(self._next_sample)
            for name, ts in self.tenants.items():
                ts.serving_samples.append(ts.allocated)
                ts.training_samples.append(eng.allocated.get(name, 0) - ts.allocated)
            self._next_sample += self.sample_step_s
        dt = t - self._last_s
        if dt > 0:
            for name, ts in self.tenants.items():
                if not ts.allocated:
                    continue
                room = eng.entitled.get(name, 0) - (eng.owned.get(name, 0) - ts.owned)
                waiting = eng.pending_gpus(name) - ts.pending
                ts.given_up_gpu_s += min(ts.allocated, max(0, waiting), max(0, room)) * dt
        self._last_s = t

    def serving_intervals(self, i: int) -> list[tuple[int, int]]:
        """Each run of each replica of service ``i`` as (start, stop), open runs to the end."""
        out: list[tuple[int, int]] = []
        for r in self.replicas.values():
            if r.service != i:
                continue
            out.extend(r.runs)
            if r.running_since is not None:
                out.append((r.running_since, self.end_s))
        return out
