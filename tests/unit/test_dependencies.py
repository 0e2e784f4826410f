"""Jobs that wait for other jobs (model/dependencies.py, engine/dependencies.py).

A 4-node cluster of 8 GPUs (32 GPUs); tenant A has a 16-GPU commitment, B borrows.
"""

from __future__ import annotations

from typing import Any

import pytest

from builders import DAY, HOUR, T0, cluster, contract, engine, job
from cotenant.engine.core import Engine
from cotenant.model.dependencies import (
    COMPLETED,
    LIVE,
    UNCOMPLETED,
    Dependency,
    DependencyKind,
    OnNeverMet,
    Pipeline,
    Verdict,
    clause_verdict,
    find_cycle,
    topological,
)
from cotenant.model.errors import NotFound, SpecError
from cotenant.model.jobs import JobState

SMALL = cluster(nodes=4, per_rack=2, racks_per_block=2)
K = DependencyKind


def dep(kind: DependencyKind, *jobs: str) -> tuple[Dependency, ...]:
    return (Dependency(kind, jobs),)


def of(events: list[dict[str, Any]], kind: str, job_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind and e.get("job") == job_id]


# -- the verdict table ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "outcomes", "expected"),
    [
        (K.AFTER, [LIVE], Verdict.WAITING),
        (K.AFTER, [COMPLETED, UNCOMPLETED], Verdict.MET),
        (K.AFTER_OK, [COMPLETED, LIVE], Verdict.WAITING),
        (K.AFTER_OK, [COMPLETED, COMPLETED], Verdict.MET),
        (K.AFTER_OK, [UNCOMPLETED, LIVE], Verdict.NEVER),
        (K.AFTER_FAILED, [UNCOMPLETED, UNCOMPLETED], Verdict.MET),
        (K.AFTER_FAILED, [COMPLETED, LIVE], Verdict.NEVER),
        (K.AFTER_FAILED, [UNCOMPLETED, LIVE], Verdict.WAITING),
        (K.AFTER_ANY, [LIVE, COMPLETED], Verdict.MET),
        (K.AFTER_ANY, [LIVE, UNCOMPLETED], Verdict.WAITING),
        (K.AFTER_ANY, [UNCOMPLETED, UNCOMPLETED], Verdict.NEVER),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)) if isinstance(v, list) else "",
)
def test_clause_verdict(kind: DependencyKind, outcomes: list[str], expected: Verdict) -> None:
    jobs = tuple(f"j{i}" for i in range(len(outcomes)))
    got, _ = clause_verdict(Dependency(kind, jobs), dict(zip(jobs, outcomes, strict=True)).get)  # type: ignore[arg-type]
    assert got is expected


def test_a_cycle_is_found_and_refused() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b", "x"]}) is None
    assert topological({"c": ["b"], "b": ["a"], "a": []}) == ["a", "b", "c"]
    with pytest.raises(SpecError, match="cycle: a -> a"):
        topological({"a": ["a"]})


# -- the engine holds and releases ------------------------------------------------------------
def test_a_stage_waits_for_its_dependency_then_is_owed_from_its_release() -> None:
    """b waits for a (1 h); it starts at a's end, its queue delay counts from then, and
    the wait is no guarantee violation even with a 0 s grace."""
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 16, grace=0)], events=ev)
    eng.submit(job("a", "A", 16, duration_s=HOUR))
    eng.submit(job("b", "A", 16, duration_s=HOUR, after=dep(K.AFTER_OK, "a")))
    eng.run(T0 + 60)
    assert eng.why("b") == ("waiting-for-dependency", "waits for job a (after_ok:a)")
    assert eng.pending_count() == 0  # held outside the queue: no policy sees it
    eng.run(T0 + DAY)
    b = eng.jobs["b"]
    assert b.state is JobState.COMPLETED and b.first_start_s == T0 + HOUR
    assert of(ev, "release", "b")[0]["t"] == T0 + HOUR
    assert eng.acct.tenants["A"].queue_delays_s == [0, 0]
    assert eng.acct.tenants["A"].violation_jobs == 0


def test_a_failed_dependency_leaves_the_stage_dependency_never_met() -> None:
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 16)], events=ev)
    eng.submit(job("a", "A", 8))
    eng.submit(job("b", "A", 8, after=dep(K.AFTER_OK, "a")))
    eng.submit(job("c", "A", 8, after=dep(K.AFTER, "b")))  # any end of b: it runs
    eng.run(T0 + 60)
    eng.cancel("a")
    eng.run(T0 + DAY)
    assert eng.jobs["b"].state is JobState.CANCELLED
    assert eng.jobs["b"].reason == "dependency-never-met"
    assert "job a cancelled" in eng.jobs["b"].reason_detail
    assert eng.jobs["c"].state is JobState.COMPLETED
    kinds = [e["event"] for e in ev if e.get("job") in ("a", "b", "c")]
    assert kinds.index("cancel") < kinds.index("dependency-never-met") < kinds.index("release")


def test_keep_leaves_the_stage_pending_until_cancelled() -> None:
    eng = engine(SMALL, [contract("A", 16)])
    eng.deps.on_never_met = OnNeverMet.KEEP
    eng.submit(job("a", "A", 8))
    eng.submit(job("b", "A", 8, after=dep(K.AFTER_FAILED, "a")))
    eng.run(T0 + DAY)
    assert eng.jobs["a"].state is JobState.COMPLETED
    assert eng.jobs["b"].state is JobState.PENDING
    assert eng.why("b")[0] == "dependency-never-met"
    eng.cancel("b")
    assert eng.jobs["b"].state is JobState.CANCELLED and not eng.deps.held


def test_after_any_starts_on_the_first_completion() -> None:
    eng = engine(SMALL, [contract("A", 16)])
    eng.submit(job("x", "A", 8, duration_s=2 * HOUR))
    eng.submit(job("y", "A", 8, duration_s=HOUR))
    eng.submit(job("e", "A", 8, after=dep(K.AFTER_ANY, "x", "y")))
    eng.run(T0 + DAY)
    assert eng.jobs["e"].first_start_s == T0 + HOUR


@pytest.mark.parametrize(
    ("after", "error"),
    [
        (dep(K.AFTER_OK, "nope"), "no job 'nope'"),
        (dep(K.AFTER_OK, "b1"), "no job 'b1'"),  # another tenant's job: not seen
        (dep(K.AFTER, "a2"), "cannot wait for itself"),
        (dep(K.AFTER), "names no job"),
    ],
    ids=["unknown", "foreign", "itself", "empty"],
)
def test_bad_dependencies_are_refused(after: tuple[Dependency, ...], error: str) -> None:
    eng = engine(SMALL, [contract("A", 16)], tenants=["B"])
    eng.submit(job("b1", "B", 8))
    with pytest.raises((NotFound, SpecError), match=error):
        eng.submit(job("a2", "A", 8, after=after))
    assert "a2" not in eng.jobs


# -- room reserved ahead (take_nodes) -----------------------------------------------------------
def handover(take_nodes: bool) -> Engine:
    """A holds its 24-GPU entitlement (pre on 2 nodes, a filler), B its 8; A's `other`
    (16 GPUs) waits from 10 s; `post` (16 GPUs) waits for pre. When pre ends its 2 nodes
    are A's again, and `other` was queued first."""
    eng = engine(SMALL, [contract("A", 24), contract("B", 8)])
    eng.submit(job("pre", "A", 16, duration_s=HOUR))
    eng.submit(job("fill", "A", 8, duration_s=DAY))
    eng.submit(job("b", "B", 8, duration_s=DAY))
    eng.submit(job("other", "A", 16, submit_s=T0 + 10))
    after = (Dependency(K.AFTER_OK, ("pre",), take_nodes),)
    eng.submit(job("post", "A", 16, submit_s=T0 + 20, after=after))
    eng.run(T0 + 60)
    return eng


def test_a_stage_that_takes_nodes_starts_on_its_dependency_s_nodes_as_it_ends() -> None:
    eng = handover(take_nodes=True)
    pre_nodes = eng.jobs["pre"].placement
    assert pre_nodes is not None
    eng.run(T0 + HOUR)
    post = eng.jobs["post"]
    assert post.first_start_s == T0 + HOUR and post.placement == pre_nodes
    assert eng.jobs["other"].state is JobState.PENDING
    assert eng.acct.tenants["A"].violation_jobs == 0
    assert not eng.deps._nodes and not eng.deps._givers  # (nothing kept once handed over)


def test_without_take_nodes_the_earlier_job_gets_the_freed_room() -> None:
    eng = handover(take_nodes=False)
    eng.run(T0 + HOUR)
    assert eng.jobs["other"].first_start_s == T0 + HOUR
    assert eng.jobs["post"].state is JobState.PENDING


def test_room_on_a_dependency_s_nodes_is_placed_as_any_gang_is() -> None:
    """The nodes a stage takes are only where it may go: its gang constraint, its
    accelerator kind, health and rivals still hold (one node in each of two racks holds
    16 GPUs, but not inside one rack)."""
    from cotenant.cluster.state import Health, Placement
    from cotenant.model.jobs import Constraint

    eng = engine(SMALL, [contract("A", 16), contract("B", 8, rivals=("A",))])
    room = eng.deps._room_on
    across = [1, 2]  # rack 0 and rack 1
    assert room(job("s", "A", 16), across) == Placement((1, 2), (8, 8))
    assert room(job("s", "A", 16, constraint=Constraint.RACK), across) is None
    assert room(job("s", "A", 8, accelerator="B200"), across) is None
    eng.submit(job("b", "B", 4, duration_s=DAY))
    eng.run(T0 + 1)
    b_node = eng.jobs["b"].placement.nodes[0]  # type: ignore[union-attr]
    assert room(job("s", "A", 8), [b_node]) is None  # a rival holds GPUs there
    eng.state.set_health(across[0], Health.DOWN)
    assert room(job("s", "A", 8), [across[0]]) is None


def test_take_nodes_is_kept_in_the_clause_and_needs_a_dependency() -> None:
    from cotenant.model.dependencies import from_fields
    from cotenant.store.mapping import after_from_json, after_to_json

    after = from_fields({"after_ok": ["a", "b"], "after": ["c"], "take_nodes": True})
    assert all(d.take_nodes for d in after) and after[0].text() == "after:c+nodes"
    assert after_from_json(after_to_json(after)) == after
    plain = from_fields({"after_ok": ["a"]})
    assert after_to_json(plain) == '[{"jobs":["a"],"kind":"after_ok"}]'  # rows as before
    with pytest.raises(SpecError, match="take_nodes: waits for no job"):
        from_fields({"take_nodes": True})


# -- pipelines --------------------------------------------------------------------------------
def pipeline(eng: Engine, pid: str = "p1", fail_first: bool = False) -> None:
    stages = [
        job(f"{pid}-pre", "A", 16, duration_s=2 * HOUR, pipeline=pid),
        job(f"{pid}-sft", "A", 8, pipeline=pid, after=dep(K.AFTER_OK, f"{pid}-pre")),
        job(f"{pid}-eval", "A", 8, pipeline=pid, after=dep(K.AFTER_OK, f"{pid}-sft")),
    ]
    eng.deps.submit_pipeline(Pipeline(pid, "A", "llm", (), T0), stages[::-1])


def test_a_pipeline_runs_its_stages_in_order() -> None:
    eng = engine(SMALL, [contract("A", 16)])
    pipeline(eng)
    assert eng.deps.pipelines["p1"].stages == ("p1-pre", "p1-sft", "p1-eval")
    eng.run(T0 + DAY)
    starts = [eng.jobs[j].first_start_s for j in eng.deps.pipelines["p1"].stages]
    assert starts == [T0, T0 + 2 * HOUR, T0 + 3 * HOUR]


def test_cancelling_a_pipeline_cancels_running_and_waiting_stages() -> None:
    eng = engine(SMALL, [contract("A", 16)])
    pipeline(eng)
    eng.run(T0 + HOUR)
    cancelled = eng.deps.cancel_pipeline("p1")
    assert [r.id for r in cancelled] == ["p1-eval", "p1-sft", "p1-pre"]
    eng.run(T0 + DAY)
    assert {eng.jobs[j].state for j in eng.deps.pipelines["p1"].stages} == {JobState.CANCELLED}
    assert not eng.deps.held and eng.state.allocated_gpus() == 0


def test_a_pipeline_with_a_cycle_is_refused_whole() -> None:
    eng = engine(SMALL, [contract("A", 16)])
    stages = [
        job("s1", "A", 8, pipeline="p", after=dep(K.AFTER_OK, "s2")),
        job("s2", "A", 8, pipeline="p", after=dep(K.AFTER_OK, "s1")),
    ]
    with pytest.raises(SpecError, match="cycle: s1 -> s2 -> s1"):
        eng.deps.submit_pipeline(Pipeline("p", "A", "x", (), T0), stages)
    assert not eng.jobs and not eng.deps.pipelines
