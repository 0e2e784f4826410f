"""Invariants of jobs that wait for other jobs, and of pipelines (engine/dependencies.py).

Hypothesis draws a tenant's workload on a 32-GPU cluster: jobs submitted over a few hours,
each waiting (0 to 2 clauses of any kind) for jobs submitted before it, some failing, some
cancelled by their tenant; then a pipeline whose stages depend on each other in any way the
draw makes (cycles included), cancelled whole at a drawn time or left to run. A rival
tenant without a contract borrows beside it. The engine is stepped event by event:

- a stage never starts before its dependencies are met: at each ``place``, every clause of
  the job holds over the states of the jobs it names (ended states are final);
- no cycle is ever accepted: a pipeline is taken iff its graph has no cycle, and the graph
  of every job the engine holds has none; a refused pipeline leaves no job behind;
- a cancelled pipeline leaves no stage pending (nor running), at once and at the end;
- at the end nothing is held whose dependencies are decided: each job either ran, or ended
  (cancelled by request, or ``dependency-never-met``);
- the wait for a dependency is never a guarantee violation (the tenant's grace is 0 s and
  its commitment covers every job alone).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import DAY, HOUR, MIN, T0, cluster, contract, engine, job
from cotenant.backends.base import BackendEvent, JobEnded
from cotenant.backends.sim import SimBackend
from cotenant.engine.core import Engine
from cotenant.engine.events import EngineEvent, RunPlaced
from cotenant.model.dependencies import (
    COMPLETED,
    LIVE,
    UNCOMPLETED,
    Dependency,
    DependencyKind,
    Pipeline,
    Verdict,
    find_cycle,
    verdict,
)
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobSpec, JobState

TOPO = cluster(nodes=4, per_rack=2, racks_per_block=2)  # 32 GPUs
KINDS = list(DependencyKind)
LIVE_STATES = (JobState.PENDING, JobState.RUNNING, JobState.RECLAIMING)


class FailingSim(SimBackend):
    """The twin's backend, except that the runs of ``failing`` jobs exit 1."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = failing

    def poll(self, now: int) -> list[BackendEvent]:
        return [
            JobEnded(e.job_id, e.attempt, e.end_s, 1)
            if isinstance(e, JobEnded) and e.job_id in self.failing
            else e
            for e in super().poll(now)
        ]


def outcome_in(eng: Engine) -> Any:
    def outcome(job_id: str) -> str:
        s = eng.jobs[job_id].state
        if s is JobState.COMPLETED:
            return COMPLETED
        return LIVE if s in LIVE_STATES else UNCOMPLETED

    return outcome


@st.composite
def clauses(draw: st.DrawFn, earlier: list[str]) -> tuple[Dependency, ...]:
    if not earlier:
        return ()
    out = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(KINDS))
        jobs = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True))
        out.append(Dependency(kind, tuple(jobs)))
    return tuple(out)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    specs: list[JobSpec] = []
    failing: set[str] = set()
    for i in range(draw(st.integers(1, 10))):
        jid = f"j{i}"
        after = draw(clauses([s.id for s in specs]))
        specs.append(
            job(
                jid,
                "A",
                draw(st.sampled_from([8, 16])),
                duration_s=draw(st.integers(1, 8)) * 15 * MIN,
                submit_s=T0 + draw(st.integers(0, 6)) * 10 * MIN,
                after=after,
            )
        )
        if draw(st.booleans()) and draw(st.booleans()):
            failing.add(jid)
    cancels = draw(
        st.lists(
            st.tuples(st.integers(0, 12 * 4), st.sampled_from([s.id for s in specs])), max_size=3
        )
    )
    # A pipeline of 1..5 stages, each naming any stages (itself too) or earlier jobs.
    n = draw(st.integers(1, 5))
    names = [f"p-{k}" for k in range(n)]
    stages = []
    for k in range(n):
        deps = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        extra = draw(clauses([s.id for s in specs]))
        after = tuple(Dependency(DependencyKind.AFTER_OK, (d,)) for d in deps) + extra
        gpus = draw(st.sampled_from([8, 16]))
        stages.append(job(names[k], "A", gpus, 30 * MIN, T0, pipeline="p", after=after))
    cancel_pipeline_at = draw(st.one_of(st.none(), st.integers(0, 12 * 4)))
    return {
        "specs": specs,
        "failing": failing,
        "cancels": cancels,
        "stages": stages,
        "cancel_pipeline_at": cancel_pipeline_at,
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(worlds())
def test_dependencies_hold_and_pipelines_cancel_whole(world: dict[str, Any]) -> None:
    eng = engine(TOPO, [contract("A", 32, grace=0)], tenants=["B"])
    eng.backend = FailingSim(world["failing"])
    early: list[str] = []

    def on_event(ev: EngineEvent) -> None:
        if isinstance(ev, RunPlaced):
            after = eng.jobs[ev.job].spec.after
            v, _, clause = verdict(after, outcome_in(eng))
            if v is not Verdict.MET:
                early.append(f"{ev.job} started at {ev.t - T0} before {clause}")

    eng.observers.append(on_event)
    for s in world["specs"]:
        eng.submit(s)
    for k in range(6):  # a rival borrowing beside it
        eng.submit(job(f"b{k}", "B", 8, duration_s=HOUR, submit_s=T0 + k * 20 * MIN))

    stages: list[JobSpec] = world["stages"]
    graph = {s.id: [j for d in s.after for j in d.jobs] for s in stages}
    cyclic = find_cycle(graph) is not None
    try:
        eng.deps.submit_pipeline(Pipeline("p", "A", "p", (), T0), stages)
        accepted = True
    except SpecError as e:
        assert "cycle" in e.problem or "itself" in e.problem
        accepted = False
    assert accepted is not cyclic
    if not accepted:
        assert not any(s.id in eng.jobs for s in stages) and "p" not in eng.deps.pipelines

    actions: list[tuple[int, str]] = [(T0 + m * 15 * MIN, j) for m, j in world["cancels"]]
    if accepted and world["cancel_pipeline_at"] is not None:
        actions.append((T0 + world["cancel_pipeline_at"] * 15 * MIN, ""))
    actions.sort()
    pipeline_cancelled = False
    by_request: set[str] = set()
    end = T0 + 2 * DAY
    while True:
        t = eng.peek()
        if actions and (t is None or actions[0][0] <= t):
            at, what = actions.pop(0)
            eng.run(at)
            if what == "":
                by_request.update(r.id for r in eng.deps.cancel_pipeline("p"))
                pipeline_cancelled = True
                left = [j for j in graph if eng.jobs[j].state in LIVE_STATES]
                assert left == [], f"stages still live after the cancel: {left}"
            elif eng.jobs[what].state in LIVE_STATES:
                eng.cancel(what)
                by_request.add(what)
            continue
        if t is None or t > end:
            break
        eng.step(t)

    assert early == []
    # The graph of every job the engine took has no cycle.
    held = {j: [d for dep in r.spec.after for d in dep.jobs] for j, r in eng.jobs.items()}
    assert find_cycle(held) is None
    if pipeline_cancelled:
        assert all(eng.jobs[j].state not in LIVE_STATES for j in graph)
    # Nothing is left waiting on a decided dependency, and nothing is left pending at all
    # (every dependency ends within the horizon).
    assert not eng.deps.held
    for r in eng.jobs.values():
        assert r.state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED), r.id
        v, _, _ = verdict(r.spec.after, outcome_in(eng))
        if r.reason == "dependency-never-met":
            assert r.state is JobState.CANCELLED and v is Verdict.NEVER, r.id
        elif r.first_start_s is None and r.id not in by_request:
            raise AssertionError(f"{r.id} never ran nor was cancelled: {r.reason}")
    assert eng.acct.tenants["A"].violation_jobs == 0
