"""The job lifecycle (engine/lifecycle.py): every transition keeps the parts in step, and
preemption and faults share one requeue path."""

from __future__ import annotations

import pytest

from builders import HOUR, T0, cluster, contract, engine, job
from cotenant.backends.base import EXIT_NOT_RUN, JobEnded
from cotenant.engine.core import Engine
from cotenant.engine.jobs import JobRun
from cotenant.model.errors import Conflict, SpecError
from cotenant.model.jobs import JobState
from cotenant.scheduler.decisions import Reason, Reclaim


def started(eng: Engine, id: str, gpus: int = 8, submit_s: int = T0) -> JobRun:
    run = eng.submit(
        job(id, "A", gpus, duration_s=10 * HOUR, submit_s=submit_s, checkpoint_interval_s=HOUR)
    )
    eng.step(eng.clock.now())
    assert run.state is JobState.RUNNING
    return run


def test_submit_refuses_a_second_job_of_the_same_id_and_impossible_specs() -> None:
    eng = engine(cluster(nodes=2), policy="fifo")
    eng.submit(job("a", "A", 1))
    with pytest.raises(Conflict):
        eng.submit(job("a", "A", 1))
    with pytest.raises(SpecError, match="gpus"):
        eng.submit(job("b", "A", 0))
    with pytest.raises(SpecError, match="duration_s"):
        eng.submit(job("c", "A", 1, duration_s=-1))


def test_a_start_takes_the_gpus_the_node_the_ownership_and_opens_usage() -> None:
    eng = engine(cluster(nodes=2), [contract("A", 8)])
    run = started(eng, "a")
    assert run.placement is not None and run.attempt == 1 and not run.borrowed
    assert eng.jobs_on_node(run.placement.nodes[0]) == [run]
    assert eng.owned["A"] == 8 and eng.state.allocated_gpus() == 8
    assert dict(eng.open_usage()) == {"a": (T0, False)}
    assert [v.spec.id for v in eng.running()] == ["a"]


@pytest.mark.parametrize("cause", ["preempt", "fault"])
def test_preemption_and_faults_share_one_requeue_path(cause: str) -> None:
    eng = engine(cluster(nodes=2), policy="fifo")
    run = started(eng, "a")
    t = T0 + int(2.5 * HOUR)
    eng.clock.wait_until(t)
    eng.handle_due(t)
    saved = run.current_run().saved_s(t)
    lost = run.progress_s(t) - saved
    if cause == "preempt":
        eng.life.preempt(run, t)
        assert run.queued_since_s == t and run.preemptions == 1
    else:
        eng.interrupt(run, t, "node")
        assert run.queued_since_s == T0 and run.interruptions == 1  # keeps its place
    assert run.state is JobState.PENDING and run.placement is None
    assert run.work_saved_s == saved == 2 * HOUR
    assert run.lost_gpu_s == lost * 8
    assert run.reason == "requeued" and run in eng.queue
    assert eng.state.allocated_gpus() == 0 and eng.jobs_on_node(0) == []
    assert dict(eng.open_usage()) == {}
    (rec,) = list(eng.ledger)
    assert (rec.start_s, rec.end_s) == (T0, t)


def test_a_reclaim_gives_notice_and_the_deadline_stops_the_run() -> None:
    eng = engine(cluster(nodes=2), policy="fifo")
    run = started(eng, "a")
    other = eng.submit(job("b", "A", 16))
    eng.life.reclaim(Reclaim("a", "b", T0 + 300, Reason.RECLAIM_FOR_ENTITLEMENT), T0)
    assert run.state is JobState.RECLAIMING and run.reclaim_deadline_s == T0 + 300
    assert [v.spec.id for v in eng.running_set.reclaiming()] == ["a"]
    eng.clock.wait_until(T0 + 300)
    eng.handle_due(T0 + 300)  # the deadline falls due
    assert run.state is JobState.PENDING and run.preemptions == 1
    assert other.state is JobState.PENDING


def test_a_retag_closes_the_usage_interval_and_opens_another() -> None:
    eng = engine(cluster(nodes=2), [contract("A", 8)])
    run = started(eng, "a")
    eng.life.retag(run, True, T0 + 100)
    assert run.borrowed and eng.borrowed["A"] == 8 and eng.owned["A"] == 0
    assert dict(eng.open_usage()) == {"a": (T0 + 100, True)}
    assert [(r.start_s, r.end_s, r.borrowed) for r in eng.ledger] == [(T0, T0 + 100, False)]


def test_a_run_the_backend_could_not_start_goes_back_to_the_queue() -> None:
    """EXIT_NOT_RUN (a Slurm cluster's controller went silent under the start): the job
    is queued again at its place and placed anew, not failed; other codes fail it."""
    events: list[dict[str, object]] = []
    eng = engine(cluster(nodes=2), policy="fifo", events=events)
    run = started(eng, "a")
    first = run.placement
    eng.life.ended(JobEnded("a", run.attempt, T0 + 5, EXIT_NOT_RUN, "controller silent"))
    assert run.state is JobState.PENDING and run.placement is None
    [ev] = [e for e in events if e["event"] == "interrupt"]
    assert ev["cause"] == "not started: controller silent"
    assert ev["lost_s"] == 5 and run.work_saved_s == 0  # held 5 s, resumes where it was
    eng.step(T0 + 5)
    assert run.state is JobState.RUNNING and run.attempt == 2 and first is not None
    eng.life.ended(JobEnded("a", run.attempt, T0 + 9, -2))
    assert run.state is JobState.FAILED


def test_an_end_reported_for_an_earlier_attempt_is_ignored() -> None:
    eng = engine(cluster(nodes=2), policy="fifo")
    run = started(eng, "a")
    eng.life.ended(JobEnded("a", run.attempt - 1, T0 + 10, 0))
    assert run.state is JobState.RUNNING
    eng.life.ended(JobEnded("a", run.attempt, T0 + 10, 0))
    assert run.state is JobState.COMPLETED and run.end_s == T0 + 10
    assert run.work_saved_s == run.spec.duration_s
