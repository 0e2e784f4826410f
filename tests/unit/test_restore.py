"""Restoring the engine from a store that is behind: reconciled with what the backend
reports, each correction returned for the audit log, and a one-line refusal only for
what cannot be reconciled."""

from __future__ import annotations

import pytest

from builders import T0, cluster, contract, engine, job
from cotenant.cluster.state import Placement
from cotenant.engine.core import Engine
from cotenant.engine.restore import ReportedRun, SavedJob, restore_jobs
from cotenant.model.errors import InvariantBroken
from cotenant.model.jobs import JobState


def running(id: str, nodes: tuple[int, ...], gpus: tuple[int, ...], start: int) -> SavedJob:
    return SavedJob(
        spec=job(id, "owner-lab", sum(gpus), submit_s=T0),
        state=JobState.RUNNING,
        placement=Placement(nodes, gpus),
        start_s=start,
        first_start_s=start,
        usage_since_s=start,
        attempt=1,
    )


def pending(id: str, gpus: int) -> SavedJob:
    return SavedJob(spec=job(id, "owner-lab", gpus, submit_s=T0), state=JobState.PENDING)


def new_engine() -> Engine:
    return engine(cluster(8), [contract("owner-lab", 64)], start=T0 + 600)


def test_an_over_committed_node_keeps_the_job_that_started_first() -> None:
    eng = new_engine()
    first = running("a", (5,), (8,), T0 + 10)
    later = running("b", (5,), (8,), T0 + 20)
    runs, fixes = restore_jobs(eng, [later, first])
    assert {r.id: r.state for r in runs} == {"a": JobState.RUNNING, "b": JobState.PENDING}
    assert [(f.job, f.action) for f in fixes] == [("b", "requeued")]
    assert "over-commits node 5 (held by a)" in fixes[0].why
    assert fixes[0].payload()["unbilled_from_s"] == T0 + 20
    eng.state.check_invariants()
    assert eng.jobs["b"].attempt == 1  # the run it had counts


def test_a_consistent_store_is_restored_as_it_was() -> None:
    eng = new_engine()
    runs, fixes = restore_jobs(eng, [running("a", (0, 1), (8, 8), T0), pending("p", 8)])
    assert fixes == []
    assert [(r.id, r.state) for r in runs] == [("a", JobState.RUNNING), ("p", JobState.PENDING)]


def test_the_backend_is_the_truth_when_it_reports_what_it_runs() -> None:
    eng = new_engine()
    saved = [
        running("gone", (1,), (8,), T0),  # the store says it runs; the backend does not
        pending("started", 8),  # placed while the store was down: the backend runs it
        running("moved", (2,), (8,), T0),  # the backend runs a later attempt elsewhere
        running("same", (4,), (8,), T0),
    ]
    reported = {
        "started": ReportedRun("started", 1, Placement((1,), (8,))),
        "moved": ReportedRun("moved", 2, Placement((3,), (8,))),
        "same": ReportedRun("same", 1, Placement((4,), (8,))),
    }
    runs, fixes = restore_jobs(eng, saved, reported)
    state = {r.id: (r.state, r.placement, r.attempt) for r in runs}
    assert state["gone"][0] is JobState.PENDING
    assert state["started"] == (JobState.RUNNING, Placement((1,), (8,)), 1)
    assert state["moved"] == (JobState.RUNNING, Placement((3,), (8,)), 2)
    assert state["same"] == (JobState.RUNNING, Placement((4,), (8,)), 1)
    assert sorted((f.job, f.action) for f in fixes) == [
        ("gone", "requeued"),
        ("moved", "adopted"),
        ("started", "adopted"),
    ]
    eng.state.check_invariants()


@pytest.mark.parametrize(
    ("saved", "reported", "named"),
    [
        pytest.param(
            [pending("p", 8)],
            {"x": ReportedRun("x", 1, Placement((0,), (8,)))},
            "the backend runs job x (attempt 1), which the store does not hold",
            id="unknown-job",
        ),
        pytest.param(
            [pending("a", 8), pending("b", 8)],
            {
                "a": ReportedRun("a", 1, Placement((0,), (8,))),
                "b": ReportedRun("b", 1, Placement((0,), (8,))),
            },
            "the backend runs job b over-commits node 0 (held by a)",
            id="backend-clash",
        ),
    ],
)
def test_what_cannot_be_reconciled_is_refused_in_one_line(
    saved: list[SavedJob], reported: dict[str, ReportedRun], named: str
) -> None:
    with pytest.raises(InvariantBroken) as e:
        restore_jobs(new_engine(), saved, reported)
    assert named in str(e.value) and "\n" not in str(e.value)
