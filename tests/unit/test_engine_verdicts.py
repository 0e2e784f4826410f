"""Why a job waits (engine/verdicts.py): a hold first, then the verdict on the queue behind
its head, then the job's own reason, then its tenant's."""

from __future__ import annotations

from builders import T0, cluster, job
from cotenant.engine.jobs import JobRun
from cotenant.engine.queue import PendingQueue
from cotenant.engine.verdicts import Verdicts
from cotenant.model.jobs import JobState
from cotenant.scheduler.decisions import Behind, Decisions, Reason, Wait


def setup() -> tuple[Verdicts, PendingQueue, list[JobRun]]:
    q = PendingQueue(cluster())
    runs = [JobRun(job(f"j{i}", "A" if i < 2 else "B", 1), queued_since_s=T0 + i) for i in range(3)]
    for r in runs:
        q.add(r)
    return Verdicts(), q, runs


def test_a_new_job_is_queued_and_not_yet_considered() -> None:
    v, _, runs = setup()
    assert v.why(runs[0]) == ("queued", "not yet considered")


def test_the_tenant_verdict_stands_for_jobs_without_their_own() -> None:
    v, q, runs = setup()
    v.take(Decisions(tenant_waits={"B": Wait("", Reason.OVER_ENTITLEMENT, "at its limit")}), q)
    assert v.why(runs[2]) == (Reason.OVER_ENTITLEMENT.value, "at its limit")
    runs[2].reason, runs[2].reason_detail = "own", "its own"
    assert v.why(runs[2]) == ("own", "its own")


def test_jobs_behind_the_head_wait_for_it_and_a_hold_comes_first() -> None:
    v, q, runs = setup()
    runs[1].reason = "own"
    v.take(Decisions(behind=Behind(1, 2, Reason.QUEUED_BEHIND, "behind j0")), q)
    assert v.why(runs[0]) == ("queued", "not yet considered")
    assert v.why(runs[1]) == (Reason.QUEUED_BEHIND.value, "behind j0")
    assert v.why(runs[2]) == (Reason.QUEUED_BEHIND.value, "behind j0")
    v.hold = ("store-down", "the store cannot take writes")
    assert v.why(runs[1]) == v.hold
    runs[1].state = JobState.RUNNING
    assert v.why(runs[1]) == ("running", "")


def test_counts_add_every_verdict_and_the_waits_among_them() -> None:
    v, _, _ = setup()
    v.count(Decisions(waits=[Wait("j0", Reason.NO_CAPACITY), Wait("j1", Reason.NO_CAPACITY)]))
    v.count(Decisions())
    assert (v.cycles, v.decisions_made, v.waits) == (2, 2, 2)
