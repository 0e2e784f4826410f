"""Late steps: a live engine's step can run after the time of the events it handles (a
loaded host, a long cycle, a paused process). Every event must still be handled, and a
reclaim deadline that passed during the lag honoured at once, never dropped.

The twin reproduces live timing with ``LaggingClock`` (steps delayed by N s, or a clock
that jumps). Same cluster as tests/unit/test_engine.py: 4 nodes of 8 GPUs, A owns 16.
"""

from __future__ import annotations

from typing import Any

import pytest

from builders import DAY, HOUR, T0, cluster, contract, job
from cotenant.backends.sim import SimBackend
from cotenant.engine.clock import LaggingClock
from cotenant.engine.core import Engine
from cotenant.model.jobs import JobState
from cotenant.scheduler.policies import get_policy

SMALL = cluster(nodes=4, per_rack=2, racks_per_block=2)  # 32 GPUs
GRACE = 300
LAGS = [pytest.param(1, id="1s"), pytest.param(60, id="60s"), pytest.param(HOUR, id="1h")]


def lease(ev: list[dict[str, Any]], lag_s: int = 0) -> Engine:
    """B borrows all 32 GPUs as four 8-GPU jobs of 10 h; at T0 + 2.5 h A asks for 16 GPUs
    (inside its commitment), so two of B's jobs are reclaimed with a 5-minute grace."""
    eng = Engine(
        SMALL,
        [contract("A", 16, grace=GRACE)],
        get_policy("contract"),
        SimBackend(),
        LaggingClock(T0, lag_s),
        tenants=["A", "B"],
    )
    eng.sinks.append(ev.append)
    for i in range(4):
        eng.submit(job(f"b{i}", "B", 8, duration_s=10 * HOUR, checkpoint_interval_s=HOUR))
    eng.submit(job("a1", "A", 16, duration_s=HOUR, submit_s=T0 + 9000))
    return eng


def of(ev: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in ev if e["event"] == kind]


@pytest.mark.parametrize("lag", LAGS)
def test_one_late_step_preempts_every_reclaim_whose_deadline_passed(lag: int) -> None:
    ev: list[dict[str, Any]] = []
    eng = lease(ev)
    eng.run(T0 + 9000)  # on time up to the reclaims
    reclaims = of(ev, "reclaim")
    assert len(reclaims) == 2 and {r["deadline"] for r in reclaims} == {T0 + 9000 + GRACE}

    late = T0 + 9000 + GRACE + lag
    eng.clock.jump(late - eng.clock.now())
    eng.step(late)  # one step, `lag` seconds after the deadline

    preempts = of(ev, "preempt")
    assert sorted(p["job"] for p in preempts) == sorted(r["job"] for r in reclaims)
    assert {p["t"] for p in preempts} == {late}  # at once, at the late step's time
    assert not [r for r in eng.jobs.values() if r.state is JobState.RECLAIMING]
    assert eng.jobs["a1"].state is JobState.RUNNING and eng.jobs["a1"].start_s == late
    assert eng.lag_s(late) == 0


@pytest.mark.parametrize("lag", LAGS)
def test_an_engine_whose_steps_all_run_late_honours_every_deadline(lag: int) -> None:
    """Every step `lag` s late: each reclaim is preempted `lag` s after its deadline (no
    more), the beneficiary starts then, and the borrowers resume after it ends."""
    ev: list[dict[str, Any]] = []
    eng = lease(ev, lag)
    eng.run(T0 + DAY)
    reclaims = {r["job"]: r for r in of(ev, "reclaim")}
    preempts = {p["job"]: p for p in of(ev, "preempt")}
    assert len(reclaims) == 2 and preempts.keys() == reclaims.keys()
    for job_id, r in reclaims.items():
        assert preempts[job_id]["t"] - r["deadline"] == lag
    assert all(r.state is JobState.COMPLETED for r in eng.jobs.values())
    # Time was accounted to the end: GPU-seconds metered equal those allocated.
    assert eng.ledger.gpu_seconds() == eng.acct.allocated_gpu_s


def test_a_stale_deadline_is_ignored_even_when_handled_late() -> None:
    """A reclaimed job that ended before its deadline leaves a stale deadline event: a late
    step must not act on it (the job is gone; its id may be running again)."""
    ev: list[dict[str, Any]] = []
    eng = Engine(
        SMALL,
        [contract("A", 16, grace=GRACE)],
        get_policy("contract"),
        SimBackend(),
        LaggingClock(T0),
        tenants=["A", "B"],
    )
    eng.sinks.append(ev.append)
    for i in range(4):  # these end 100 s into the grace
        eng.submit(job(f"b{i}", "B", 8, duration_s=9100))
    eng.submit(job("a1", "A", 16, duration_s=HOUR, submit_s=T0 + 9000))
    eng.run(T0 + 9000)
    assert len(of(ev, "reclaim")) == 2
    eng.clock.jump(GRACE + HOUR)
    eng.step(eng.clock.now())
    assert of(ev, "preempt") == []
    assert sorted(e["job"] for e in of(ev, "end")) == ["b0", "b1", "b2", "b3"]


def test_lag_is_the_age_of_the_oldest_due_event() -> None:
    eng = lease([])
    assert eng.lag_s(T0 - 1) == 0  # nothing due yet
    assert eng.lag_s(T0 + 5) == 5  # the submissions at T0 wait
    eng.step(T0 + 5)
    assert eng.lag_s(T0 + 5) == 0
