"""Late steps, any lag: random workloads on a leased cluster, every step of the engine
delayed by a random lag (``LaggingClock``). Whatever the lag:

- every reclaim is resolved: its job is preempted no later than its deadline plus the
  lag, or ends before the deadline; none is still reclaiming at the end;
- no GPU is given twice, and every job completes;
- metered GPU-seconds equal the GPU-seconds the accounting integrated.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import DAY, HOUR, T0, cluster, contract, job
from cotenant.backends.sim import SimBackend
from cotenant.engine.clock import LaggingClock
from cotenant.engine.core import Engine
from cotenant.model.jobs import JobState
from cotenant.scheduler.policies import get_policy

TOPO = cluster(nodes=8, per_rack=2, racks_per_block=2)  # 64 GPUs

jobs_ = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C"]),
        st.sampled_from([1, 4, 8, 16, 24]),
        st.integers(60, 6 * HOUR),  # duration
        st.integers(0, 12 * HOUR),  # submitted after T0
        st.sampled_from([0, HOUR]),  # checkpoint interval
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=jobs_,
    lag=st.one_of(st.sampled_from([0, 1, 59, 60, 299, 300, 301, HOUR]), st.integers(0, 3 * HOUR)),
    grace=st.sampled_from([0, 60, 300]),
)
def test_every_deadline_is_honoured_within_the_lag(
    jobs: list[tuple[str, int, int, int, int]], lag: int, grace: int
) -> None:
    ev: list[dict[str, Any]] = []
    eng = Engine(
        TOPO,
        [contract("A", 24, rivals=("C",), grace=grace), contract("B", 16, grace=grace)],
        get_policy("contract"),
        SimBackend(),
        LaggingClock(T0, lag),
        tenants=["A", "B", "C"],
    )
    eng.sinks.append(ev.append)
    for i, (tenant, gpus, duration, at, every) in enumerate(jobs):
        eng.submit(job(f"j{i}", tenant, gpus, duration, T0 + at, checkpoint_interval_s=every))
    eng.run(T0 + 30 * DAY)

    deadline: dict[str, int] = {}
    for e in ev:
        if e["event"] == "reclaim":
            deadline[e["job"]] = e["deadline"]
        elif e["event"] in ("preempt", "end") and e["job"] in deadline:
            d = deadline.pop(e["job"])
            if e["event"] == "preempt":
                assert d <= e["t"] <= d + lag, (e, d, lag)
            else:
                assert e["t"] <= d + lag, (e, d, lag)
    assert not deadline, f"reclaims never resolved: {deadline}"
    eng.state.check_invariants()
    assert all(r.state is JobState.COMPLETED for r in eng.jobs.values())
    assert eng.ledger.gpu_seconds() == eng.acct.allocated_gpu_s
