"""Metered GPU-seconds equal allocated GPU-seconds, own and borrowed, whatever the run.

The engine runs random workloads of two or three tenants on a small cluster under the
contract policy, with node, rack and job failures at a high rate (so runs are
interrupted, requeued, preempted and re-tagged between own and borrowed). The ledger,
with the intervals still open at the end closed there (``metered_ledger``), must hold
exactly the GPU-seconds the accounting integrated, per tenant, own and borrowed apart.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import DAY, HOUR, MIN, T0, cluster, contract, engine, job
from cotenant.faults.injector import install
from cotenant.faults.model import FailureModel
from cotenant.metering.run import metered_ledger
from cotenant.model.jobs import JobKind

TENANTS = ("alpha", "beta", "gamma")
HORIZON = 2 * DAY


@st.composite
def workloads(draw: st.DrawFn) -> tuple[int, list[tuple[str, int, int, int, int, bool]]]:
    n_tenants = draw(st.integers(2, 3))
    jobs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(TENANTS[:n_tenants]),
                st.sampled_from((1, 2, 4, 8, 16, 24)),  # GPUs
                st.integers(10 * MIN, 12 * HOUR),  # duration
                st.integers(0, HORIZON - HOUR),  # submit offset
                st.integers(0, 1),  # priority within the tenant
                st.booleans(),  # checkpoints every 30 minutes
            ),
            min_size=1,
            max_size=40,
        )
    )
    return n_tenants, jobs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workload=workloads(),
    seed=st.integers(0, 2**31 - 1),
    until=st.integers(HOUR, HORIZON),
    commitments=st.tuples(st.integers(0, 32), st.integers(0, 16)),
)
def test_metered_equals_allocated_own_and_borrowed(
    workload: tuple[int, list[tuple[str, int, int, int, int, bool]]],
    seed: int,
    until: int,
    commitments: tuple[int, int],
) -> None:
    n_tenants, specs = workload
    topo = cluster(nodes=8, per_rack=4, racks_per_block=2)  # 64 GPUs
    deals = [contract("alpha", commitments[0]), contract("beta", commitments[1], priority=5)]
    eng = engine(topo, deals, "contract", tenants=TENANTS[:n_tenants])
    # About one interruption per GPU-day: hundreds of times Llama 3's rate.
    install(eng, FailureModel(scale=2000.0), seed, T0, T0 + HORIZON)
    for i, (tenant, gpus, duration, offset, prio, ckpt) in enumerate(specs):
        eng.submit(
            job(
                f"j{i}",
                tenant,
                gpus,
                duration,
                T0 + offset,
                priority=prio,
                checkpoint_interval_s=30 * MIN if ckpt else 0,
                kind=JobKind.TRAINING if ckpt else JobKind.EXPERIMENT,
            )
        )
    eng.run(T0 + until)

    ledger = metered_ledger(eng, T0 + until)
    acct = eng.acct.tenants
    for tenant in TENANTS[:n_tenants]:
        own = ledger.gpu_seconds(tenant, borrowed=False)
        borrowed = ledger.gpu_seconds(tenant, borrowed=True)
        assert own == acct[tenant].own_gpu_s, tenant
        assert borrowed == acct[tenant].borrowed_gpu_s, tenant
        assert own + borrowed == acct[tenant].used_gpu_s, tenant
    # Closing the open intervals does not change the engine's own ledger.
    assert len(eng.ledger) <= len(ledger)
    for r in ledger.records():
        assert T0 <= r.start_s < r.end_s <= T0 + until
