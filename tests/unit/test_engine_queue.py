"""The pending queue (engine/queue.py) and what a cycle may skip because of it: strict
FIFO stops at its head, and a job no cluster could hold is known at submit."""

from __future__ import annotations

import pytest

from builders import T0, cluster, engine, job
from cotenant.engine.jobs import JobRun
from cotenant.engine.queue import PendingQueue
from cotenant.model.errors import InvariantBroken
from cotenant.model.jobs import Constraint, JobState
from cotenant.scheduler.decisions import Reason


def queued(q: PendingQueue, *runs: JobRun) -> list[str]:
    for r in runs:
        q.add(r)
    return [k[3] for k in q.keys]


def test_queue_order_is_priority_then_queued_since_then_id() -> None:
    q = PendingQueue(cluster())
    got = queued(
        q,
        JobRun(job("late", "A", 1, submit_s=T0 + 5), queued_since_s=T0 + 5),
        JobRun(job("b", "B", 1), queued_since_s=T0),
        JobRun(job("a", "A", 1), queued_since_s=T0),
        JobRun(job("urgent", "B", 1, submit_s=T0 + 9, priority=2), queued_since_s=T0 + 9),
    )
    assert got == ["urgent", "a", "b", "late"]
    assert [pj.spec.id for pj in q.of_tenant("A")] == ["a", "late"]
    assert dict(q.gpus) == {"A": 2, "B": 2}


def test_each_tenant_queue_is_cached_until_it_changes() -> None:
    q = PendingQueue(cluster())
    a, b = JobRun(job("a", "A", 1)), JobRun(job("b", "B", 1))
    queued(q, a, b)
    first = q.by_tenant()
    assert q.by_tenant()["A"] is first["A"]  # unchanged: the same tuple
    assert q.remove(a) and not q.remove(a)
    assert "A" not in q.by_tenant() and q.by_tenant()["B"] is first["B"]
    assert q.tenants_waiting() == frozenset({"B"}) and q.counts() == {"B": 1}
    assert a not in q and b in q


@pytest.mark.parametrize(
    ("gpus", "constraint", "never"),
    [
        pytest.param(8, Constraint.AUTO, False, id="one-node"),
        pytest.param(128, Constraint.AUTO, False, id="whole-cluster"),
        pytest.param(129, Constraint.AUTO, True, id="more-than-the-cluster"),
        pytest.param(40, Constraint.RACK, True, id="more-than-a-rack"),
        pytest.param(9, Constraint.NODE, True, id="more-than-a-node"),
    ],
)
def test_a_job_no_cluster_could_hold_is_known_when_queued(
    gpus: int, constraint: Constraint, never: bool
) -> None:
    q = PendingQueue(cluster())  # 16 nodes of 8, 4 to a rack
    run = JobRun(job("j", "A", gpus, constraint=constraint))
    q.add(run)
    assert (run.id in q.never_fit) is never
    q.remove(run)
    assert not q.never_fit


def test_strict_fifo_explains_the_queue_behind_its_head_and_rejects_the_impossible() -> None:
    """2 nodes of 8: a 12-GPU job runs, 4 GPUs are free; the head (8 GPUs) waits, the
    jobs behind it wait in one verdict (queued-behind) though one would fit, and a job
    bigger than the cluster is rejected at once, wherever it stands in the queue."""
    eng = engine(cluster(nodes=2, per_rack=2, racks_per_block=1), policy="fifo")
    for spec in (
        job("big", "A", 12),
        job("head", "A", 8, submit_s=T0 + 1),
        job("behind", "B", 1, submit_s=T0 + 2),
        job("impossible", "B", 17, submit_s=T0 + 3),
        job("later", "A", 2, submit_s=T0 + 4),
    ):
        eng.submit(spec)
    eng.run(T0 + 10)
    assert eng.jobs["big"].state is JobState.RUNNING
    assert eng.why("head")[0] == Reason.NO_CAPACITY.value
    assert eng.why("behind") == (Reason.QUEUED_BEHIND.value, "strict FIFO")
    assert eng.why("later") == (Reason.QUEUED_BEHIND.value, "strict FIFO")
    assert eng.jobs["impossible"].state is JobState.FAILED
    assert eng.jobs["impossible"].reason == Reason.TOO_LARGE.value


def test_what_a_snapshot_reads_is_kept_until_the_queue_changes() -> None:
    q = PendingQueue(cluster())
    a, b, c = (JobRun(job(i, t, g)) for i, t, g in (("a", "A", 1), ("b", "B", 1), ("c", "B", 200)))
    queued(q, a, b, c)
    views, by_tenant, waiting, never = (
        q.as_tuple(),
        q.by_tenant(),
        q.tenants_waiting(),
        q.never_fit_ids(),
    )
    assert [v.spec.id for v in views] == ["a", "b", "c"] and never == {"c"}
    # Unchanged queue: the very same objects, nothing built again.
    assert q.as_tuple() is views and q.by_tenant() is by_tenant
    assert q.tenants_waiting() is waiting and q.never_fit_ids() is never
    q.remove(a)
    q.remove(c)
    assert [v.spec.id for v in q.as_tuple()] == ["b"] and q.never_fit_ids() == frozenset()
    assert list(q.by_tenant()) == ["B"] and q.tenants_waiting() == {"B"}
    # What an earlier snapshot read keeps the queue of its instant.
    assert [v.spec.id for v in views] == ["a", "b", "c"] and set(by_tenant) == {"A", "B"}
    assert waiting == {"A", "B"} and never == {"c"}
    with pytest.raises(TypeError):
        by_tenant["C"] = ()  # type: ignore[index]


def test_queueing_a_job_twice_is_an_invariant_broken() -> None:
    q = PendingQueue(cluster())
    a = JobRun(job("a", "A", 1))
    q.add(a)
    with pytest.raises(InvariantBroken):
        q.add(a)
