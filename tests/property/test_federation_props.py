"""Federation invariants over random scenarios (docs/design/0014-providers.md).

Two rival tenants share a small lease and may both use a small cloud pool; random jobs
(gangs of 1-32 GPUs, some checkpointing, some naming providers), a random pool (size,
spot and its interruption rate), random overflow budgets and waits, and sometimes the
lessee's notice. After every step of the shared clock, on every provider: no GPU is
given twice (free plus held is each node's capacity), rivals never share a node, and
a job holds GPUs on one provider at most, its whole gang there. At the end: every job
is accounted for, overflow reserved in a month never exceeds the tenant's budget, and
no overflowed job cost more than was reserved for it.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cotenant.federation.core import Federation
from cotenant.federation.metering import DataMove, rate_pool
from cotenant.federation.providers import PoolProvider
from cotenant.metering.run import metered_ledger
from cotenant.model.jobs import JobKind, JobSpec, JobState
from cotenant.twin.federated import run_federated
from cotenant.twin.scenario import parse_scenario

T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
HOUR, DAY = 3600, 86_400
HORIZON = 2 * DAY
RIVALS = ("owner", "lessee")


def raw_scenario(pool: dict[str, Any], lessee: dict[str, Any], owner_cloud: bool) -> dict[str, Any]:
    def tenant(name: str, contract: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        iso = {"rivals": [r for r in RIVALS if r != name]}
        return {"name": name, "contract": {**contract, "isolation": iso}, **extra}

    owner_extra: dict[str, Any] = {}
    if owner_cloud:
        owner_extra = {
            "providers": ["lease", "cloud"],
            "overflow": {"budget_per_month": 500, "max_wait": {"experiment": "1h"}},
        }
    return {
        "name": "fed-props",
        "start": "2026-10-01T00:00:00Z",
        "duration": "2d",
        "seed": 3,
        "cluster": {"preset": "small-16"},
        "providers": [{"name": "lease", "kind": "cluster"}, {"name": "cloud", **pool}],
        "tenants": [
            tenant("owner", {"commitment": {"gpus": 48}, "priority": 10}, owner_extra),
            tenant("lessee", lessee.pop("contract"), lessee),
        ],
    }


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[JobSpec]]:
    spot = draw(st.booleans())
    pool = {
        "kind": "pool",
        "accelerator": "H100-SXM-80GB",
        "max_gpus": draw(st.sampled_from((16, 32, 64))),
        "on_demand_per_gpu_hour": "3.00",
        "spot_per_gpu_hour": "1.25",
        "spot": spot,
        "spot_interruptions_per_node_day": draw(st.sampled_from((0.0, 1.0, 6.0))),
        "provisioning": draw(st.sampled_from(("0s", "10m", "1h"))),
        "data_move_per_tb": "15",
        "data_move_time_per_tb": "5m",
    }
    contract: dict[str, Any] = {"commitment": {"all_available": True}}
    notice = draw(st.one_of(st.none(), st.integers(0, HORIZON)))
    if notice is not None:
        contract["notice"] = {"period": draw(st.sampled_from(("6h", "1d", "3d"))),
                              "given_at": T0 + notice}  # fmt: skip
    lessee = {
        "contract": contract,
        "providers": ["lease", "cloud"],
        "overflow": {
            "budget_per_month": draw(st.sampled_from((0, 50, 400, 100_000))),
            "max_wait": {
                "experiment": draw(st.sampled_from(("0s", "30m", "2h"))),
                "training": draw(st.sampled_from(("1h", "6h"))),
            },
            "data_gb_per_gpu": draw(st.sampled_from((0, 40))),
        },
    }
    owner_cloud = draw(st.booleans())
    raw = raw_scenario(pool, lessee, owner_cloud)
    n = draw(st.integers(1, 45))
    jobs = []
    for i in range(n):
        tenant = draw(st.sampled_from(RIVALS))
        training = draw(st.booleans())
        names: tuple[str, ...] = ()
        if tenant == "lessee" or owner_cloud:  # rivals side by side on the pool too
            names = draw(st.sampled_from(((), (), ("lease",), ("cloud",))))
        jobs.append(
            JobSpec(
                id=f"{tenant}-{i}",
                tenant=tenant,
                gpus=draw(st.sampled_from((1, 2, 4, 8, 16, 24, 32))),
                duration_s=draw(st.integers(10 * 60, 12 * HOUR)),
                submit_s=T0 + draw(st.integers(0, HORIZON - HOUR)),
                kind=JobKind.TRAINING if training else JobKind.EXPERIMENT,
                checkpoint_interval_s=draw(st.sampled_from((0, 1800, 3600))),
                priority=draw(st.integers(0, 2)),
                providers=names,
            )
        )
    jobs.sort(key=lambda j: (j.submit_s, j.id))
    return raw, jobs


def check_providers(fed: Federation) -> None:
    """No GPU twice, rivals apart, and every held gang whole on one provider."""
    holder: dict[str, str] = {}
    for name, eng in fed.engines.items():
        st_ = eng.state
        st_.check_invariants()
        if all(t in st_.tenants for t in RIVALS):
            a, b = (st_.tenant_index(t) for t in RIVALS)
            both = (st_.tenant_gpus[a] > 0) & (st_.tenant_gpus[b] > 0)
            assert not np.any(both), f"rivals share a node on {name}"
        for rj in eng.running():
            assert rj.spec.id not in holder, f"{rj.spec.id} on {holder.get(rj.spec.id)} and {name}"
            holder[rj.spec.id] = name
            assert sum(rj.placement.gpus) == rj.spec.gpus  # the whole gang, here


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scenarios())
def test_federation_invariants(case: tuple[dict[str, Any], list[JobSpec]]) -> None:
    raw, jobs = case
    sc = parse_scenario(raw)
    assert sc.providers is not None
    holder: list[Federation] = []

    def each_step(now: int) -> None:
        if holder:
            check_providers(holder[0])

    run = _run(sc, jobs, holder, each_step)
    fed = run
    check_providers(fed)
    for tenant, book in fed.job_book().items():
        assert book["lost"] == 0, tenant
    assert sum(b["submitted"] for b in fed.job_book().values()) == len(jobs)
    for (tenant, _month), micro in fed.book.reserved.items():
        assert micro <= fed.providers.terms(tenant).budget_micro_per_month
    pool = fed.providers.get("cloud")
    assert isinstance(pool, PoolProvider)
    eng = fed.engines["cloud"]
    spot = {j: u for (p, j), u in fed.book.spot_until.items() if p == "cloud"}
    data = [DataMove(m.job_id, m.tenant, m.t, m.data_gb) for m in fed.book.moves]
    bill = rate_pool(
        pool, metered_ledger(eng, fed.clock.now()).records(), spot, data, sc.start_s, sc.end_s + 1
    )
    for job, r in fed.book.overflowed.items():
        assert bill.job_micro.get(job, Fraction(0)) <= r.cost_micro, job
    for m in fed.book.moves:
        assert m.lost_s == 0 or not m.migration or fed.book.specs[m.job_id].checkpoint_interval_s
        if m.migration:
            assert m.lost_s == 0  # a migration waits for the checkpoint
    for job, where in fed.book.visited.items():  # a job leaves a provider only cancelled there
        for name in where[:-1]:
            assert fed.engines[name].jobs[job].state is JobState.CANCELLED


def _run(sc: Any, jobs: list[JobSpec], holder: list[Federation], each_step: Any) -> Federation:
    run = run_federated(
        sc, sc.providers, jobs=jobs, progress=each_step, federation_hook=holder.append
    )
    return run.federation
