"""Holding jobs until their dependencies are met (``model.dependencies``), and pipelines.

A job with dependencies is taken by the engine as any other (it is in ``engine.jobs``,
pending), but at its queue event it is *held* here, outside the queue, while a clause
waits: no policy sees it, and the guarantee monitor, which reads only the queue, never
counts it as owed. Its reason is ``waiting-for-dependency`` naming the job it waits for.

When a job that held jobs wait for ends (the engine's ``end``, ``cancel``, ``reject``
events, and a held job itself ended here), the waiting jobs are looked at again at that
instant, before the cycle: one whose clauses all hold is *released* into the queue,
queued from that instant, so it is owed like a job submitted then (the wait for its
dependencies is not a wait for capacity); one whose clause can no longer hold ends
``dependency-never-met`` (``on_never_met``: cancelled, or kept pending with that reason).
The look happens in an engine callback, so every event is logged after the one that
caused it.

A clause with ``take_nodes`` reserves room ahead: the nodes its jobs ran on (seen as
they were placed) are remembered, and when the waiting job is released, at the instant
they are freed, it is promised the free GPUs there, so the policy serves it there before
anyone else, where the contract allows (the contract policy keeps a promise only inside
the tenant's entitlement). Too little left there (a fault, a smaller predecessor): no
promise, and it competes as any job released then.

The engine calls in at four points (``engine/core.py``): ``check`` when a job is
submitted, ``hold`` at its queue event, ``why`` for a pending job's reason, and
``eligible_s`` for its queue delay. Everything else hangs on the engine's observers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cotenant.cluster.state import Placement
from cotenant.engine.events import (
    DependencyNeverMet,
    EngineEvent,
    JobCancelled,
    JobRejected,
    JobReleased,
    RunEnded,
    RunPlaced,
)
from cotenant.engine.jobs import JobRun
from cotenant.model.dependencies import (
    COMPLETED,
    LIVE,
    UNCOMPLETED,
    OnNeverMet,
    Pipeline,
    Verdict,
    check_refs,
    topological,
    verdict,
)
from cotenant.model.errors import Conflict, NotFound, SpecError
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.decisions import Reason
from cotenant.scheduler.placement import find_placement
from cotenant.scheduler.snapshot import blocked_nodes

if TYPE_CHECKING:
    from cotenant.engine.core import Engine

# (tenant, state) of a job the engine does not hold (the store's, after a restart); None:
# no such job.
Lookup = Callable[[str], tuple[str, JobState] | None]

_ENDED = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


def _outcome(state: JobState) -> str:
    if state is JobState.COMPLETED:
        return COMPLETED
    return UNCOMPLETED if state in _ENDED else LIVE


class Dependencies:
    def __init__(self, engine: Engine, on_never_met: OnNeverMet = OnNeverMet.CANCEL) -> None:
        self.engine = engine
        self.on_never_met = on_never_met
        self.held: dict[str, JobRun] = {}  # held jobs, in the order they were held
        self._waiters: dict[str, set[str]] = defaultdict(set)  # job -> held jobs naming it
        self._review: set[str] = set()  # held jobs to look at again at the next callback
        self._review_due = False
        self._released_s: dict[str, int] = {}  # when each released job entered the queue
        self.pipelines: dict[str, Pipeline] = {}
        self.lookup: Lookup = lambda job_id: None
        # Jobs a held job will take the nodes of (a take_nodes clause), and where they ran.
        self._givers: set[str] = set()
        self._nodes: dict[str, tuple[int, ...]] = {}
        engine.observers.append(self._observe)

    # -- the engine's hooks -------------------------------------------------------------------
    def check(self, spec: JobSpec, also: dict[str, JobSpec] | None = None) -> None:
        """Refuse a job whose dependencies name itself or a job that is not its tenant's
        (``NotFound``, worded as for a job that does not exist: another tenant's jobs are
        not seen). ``also``: jobs submitted with it (a pipeline's other stages)."""
        check_refs(spec.id, spec.tenant, spec.after, lambda j: self._tenant_of(j, also))

    def hold(self, run: JobRun, now: int) -> bool:
        """At the job's queue event: True if it is held (not queued) for its dependencies."""
        if not run.spec.after:
            return False
        v, job, clause = verdict(run.spec.after, self._outcome_of)
        if v is Verdict.MET:
            return False
        self.held[run.id] = run
        for dep in run.spec.after:
            for j in dep.jobs:
                self._waiters[j].add(run.id)
                if dep.take_nodes:
                    self._givers.add(j)
                    giver = self.engine.jobs.get(j)
                    if giver is not None and giver.placement is not None:
                        self._nodes[j] = giver.placement.nodes
        run.reason = Reason.WAITING_FOR_DEPENDENCY.value
        run.reason_detail = f"waits for job {job} ({clause})"
        run.touch()
        if v is Verdict.NEVER:
            self._look_again(run.id, now)
        return True

    def why(self, run: JobRun) -> tuple[str, str] | None:
        """A held job's reason (None: the job is not held)."""
        if run.id not in self.held:
            return None
        return run.reason, run.reason_detail

    def eligible_s(self, run: JobRun) -> int:
        """Since when the job could run: its release, else its submission."""
        return self._released_s.get(run.id, run.spec.submit_s)

    # -- pipelines ----------------------------------------------------------------------------
    def submit_pipeline(self, pipeline: Pipeline, specs: Sequence[JobSpec]) -> list[JobRun]:
        """Submit a pipeline's stages in one call, each after the stages it depends on;
        all are checked first (a cycle, an unknown or foreign job), so none is taken if
        one is refused."""
        if pipeline.id in self.pipelines:
            raise Conflict(f"pipeline id {pipeline.id!r} already exists")
        if not specs:
            raise SpecError("stages", "a pipeline needs at least one stage")
        group: dict[str, JobSpec] = {}
        for s in specs:
            if s.id in group or s.id in self.engine.jobs:
                raise Conflict(f"job id {s.id!r} already exists")
            if s.tenant != pipeline.tenant or s.pipeline != pipeline.id:
                raise SpecError("stages", f"stage {s.id!r} is not of pipeline {pipeline.id!r}")
            group[s.id] = s
        order = topological({s.id: [j for d in s.after for j in d.jobs] for s in specs})
        for s in specs:
            self.check(s, group)
        self.pipelines[pipeline.id] = Pipeline(
            pipeline.id, pipeline.tenant, pipeline.name, tuple(order), pipeline.submit_s
        )
        return [self.engine.submit(group[j]) for j in order]

    def cancel_pipeline(self, pipeline_id: str) -> list[JobRun]:
        """Cancel every stage not yet ended, the last stages first (so none is released
        by the end of one before it)."""
        p = self.pipelines.get(pipeline_id)
        if p is None:
            raise NotFound(f"no pipeline {pipeline_id!r}")
        out = []
        for job_id in reversed(p.stages):
            run = self.engine.jobs[job_id]
            if run.state not in _ENDED:
                out.append(self.engine.cancel(job_id))
        return out

    # -- inner workings -----------------------------------------------------------------------
    def _tenant_of(self, job_id: str, also: dict[str, JobSpec] | None) -> str | None:
        run = self.engine.jobs.get(job_id)
        if run is not None:
            return run.tenant
        if also is not None and job_id in also:
            return also[job_id].tenant
        found = self.lookup(job_id)
        return None if found is None else found[0]

    def _outcome_of(self, job_id: str) -> str:
        run = self.engine.jobs.get(job_id)
        if run is not None:
            return _outcome(run.state)
        found = self.lookup(job_id)
        return LIVE if found is None else _outcome(found[1])

    def _observe(self, ev: EngineEvent) -> None:
        if not (self._waiters or self._givers or self.held):
            return  # no job waits on another (most runs): nothing to look at
        if isinstance(ev, RunPlaced):
            if ev.job in self._givers:
                self._nodes[ev.job] = ev.nodes
            return
        ended = isinstance(ev, RunEnded | JobCancelled | JobRejected)
        if not (ended or (isinstance(ev, DependencyNeverMet) and ev.ended)):
            return
        job = ev.job  # type: ignore[attr-defined]
        self.held.pop(job, None)  # (a held job cancelled by its tenant)
        for waiter in self._waiters.pop(job, ()):
            self._look_again(waiter, ev.t)

    def _look_again(self, job_id: str, t: int) -> None:
        self._review.add(job_id)
        if not self._review_due:
            self._review_due = True
            self.engine.at(t, self._settle)

    def _settle(self, now: int) -> None:
        """Release or end the held jobs whose dependencies ended (an engine callback)."""
        self._review_due = False
        todo, self._review = self._review, set()
        for job_id in [j for j in self.held if j in todo]:  # in the order they were held
            run = self.held[job_id]
            v, job, clause = verdict(run.spec.after, self._outcome_of)
            if v is Verdict.MET:
                self._release(run, now)
            elif v is Verdict.NEVER:
                self._never_met(run, job, clause, now)
            else:
                run.reason_detail = f"waits for job {job} ({clause})"
                run.touch()

    def _release(self, run: JobRun, now: int) -> None:
        del self.held[run.id]
        self._released_s[run.id] = now
        run.queued_since_s = now
        run.reason = run.reason_detail = ""
        run.entitled_since_s = None
        run.touch()
        self.engine.life.enqueue(run)
        self.engine.clock.wake()
        after = " ".join(d.text() for d in run.spec.after)
        self.engine.bus.emit(JobReleased(now, run.id, run.tenant, after))
        taken = [j for d in run.spec.after if d.take_nodes for j in d.jobs]
        if taken:
            p = self._room_on(run.spec, [n for j in taken for n in self._nodes.get(j, ())])
            if p is not None and self.engine.guarantees.promise(run, p, now):
                self.engine.queue.refresh(run)  # (its queue view carries the promise)
            for j in taken:
                if j not in self._waiters:  # (no other held job will take its nodes)
                    self._givers.discard(j)
                    self._nodes.pop(j, None)

    def _room_on(self, spec: JobSpec, nodes: Sequence[int]) -> Placement | None:
        """Room for the job on ``nodes`` alone, placed as any gang is (its constraint,
        accelerator kind and providers, nodes in service, none a rival of its tenant
        holds); None if they have too little."""
        state = self.engine.state
        topo = state.topo
        on = np.zeros(topo.n_nodes, dtype=bool)
        on[list(nodes)] = True
        eligible = on & state.usable()
        only = topo.job_nodes(spec.accelerator, spec.providers)
        if only is not None:
            eligible &= only
        blocked = blocked_nodes(state, spec.tenant, self.engine.book.rivals)
        if blocked is not None:
            eligible &= ~blocked
        return find_placement(topo, state.free, eligible, spec.gpus, spec.constraint)

    def _never_met(self, run: JobRun, job: str, clause: str, now: int) -> None:
        if run.reason == Reason.DEPENDENCY_NEVER_MET.value:
            return  # kept, and already said so
        state = self.engine.jobs[job].state.value if job in self.engine.jobs else "ended"
        detail = f"job {job} {state}: {clause} can no longer hold"
        run.reason, run.reason_detail = Reason.DEPENDENCY_NEVER_MET.value, detail
        ends = self.on_never_met is OnNeverMet.CANCEL
        if ends:
            del self.held[run.id]
            run.state = JobState.CANCELLED
            run.end_s = now
        run.touch()
        self.engine.bus.emit(DependencyNeverMet(now, run.id, run.tenant, job, detail, ends))
