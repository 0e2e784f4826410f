"""One engine over several providers (the live server over several Slurm clusters,
docs/design/0014-providers.md "For the live server"), on random workloads: two rival
tenants, two or three providers of random sizes, random gangs (1 to more than any
provider holds), random node failures. After every step: no GPU is given twice (free plus
held is each node's capacity), rivals never share a node, every running gang lies inside
one provider, and one the job accepts if it names some; every placement's route names the
provider its nodes are on; a gang larger than every provider (it accepts) is never
placed: it is rejected as too large. Under every policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import DAY, HOUR, T0, contract, engine, job
from cotenant.cluster.state import Health
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.model.jobs import JobState
from cotenant.scheduler.policies import policy_names

H100 = "H100-SXM-80GB"


@st.composite
def runs(draw: st.DrawFn) -> tuple[Topology, list[Any], list[tuple[int, int]], str]:
    sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=3))
    names = [f"p{i}" for i in range(len(sizes))]
    topo = Topology(
        ClusterSpec(
            "p",
            tuple(NodeGroup(H100, n, 2, 2, provider=f"p{i}") for i, n in enumerate(sizes)),
        )
    )
    most = max(sizes) * 8
    jobs = [
        job(
            f"j{k}",
            draw(st.sampled_from(("A", "B"))),
            draw(st.one_of(st.integers(1, 8), st.integers(9, most + 8))),
            duration_s=draw(st.integers(1, 12)) * HOUR,
            submit_s=T0 + draw(st.integers(0, 12)) * HOUR,
            providers=tuple(
                draw(st.one_of(st.just([]), st.lists(st.sampled_from(names), unique=True)))
            ),
        )
        for k in range(draw(st.integers(1, 15)))
    ]
    faults = [
        (draw(st.integers(0, topo.n_nodes - 1)), T0 + draw(st.integers(0, 18)) * HOUR)
        for _ in range(draw(st.integers(0, 3)))
    ]
    return topo, jobs, faults, draw(st.sampled_from(policy_names()))


def check(eng: Any, topo: Topology) -> None:
    state = eng.state
    held = state.tenant_gpus.sum(axis=0)
    assert np.array_equal(state.free + held, topo.node_gpus)  # no GPU given twice
    a, b = state.tenant_index("A"), state.tenant_index("B")
    assert not np.any((state.tenant_gpus[a] > 0) & (state.tenant_gpus[b] > 0))  # rivals apart
    for run in eng.running():
        assert run.placement is not None
        on = {topo.provider_of_node(n) for n in run.placement.nodes}
        assert len(on) == 1
        assert not run.spec.providers or on <= set(run.spec.providers)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_one_engine_over_providers_keeps_every_gang_in_one(
    run: tuple[Topology, list[Any], list[tuple[int, int]], str],
) -> None:
    topo, jobs, faults, policy = run
    events: list[dict[str, Any]] = []
    contracts = [contract("A", 8, rivals=["B"]), contract("B", 8)]
    eng = engine(topo, contracts, policy, events=events)
    for spec in jobs:
        eng.submit(spec)
    for node, at in faults:
        eng.at(at, lambda now, node=node: eng.node_reported(node, Health.DOWN, "test", now))
        eng.at(at + HOUR, lambda now, node=node: eng.node_reported(node, Health.HEALTHY, "", now))
    t = T0
    while t < T0 + DAY:
        t += HOUR
        eng.run(t)
        check(eng, topo)

    size = {topo.provider_names[i]: int(n) * 8 for i, n in enumerate(topo.providers.nodes)}
    for e in events:
        if e["event"] == "place":
            on = {topo.provider_of_node(n) for n in e["nodes"]}
            assert on == {e["provider"]}, e
            assert e["route"] in ("first-provider", "no-room-before", "best-fit", "named-by-job")
    for spec in jobs:
        if spec.gpus > max(size[p] for p in spec.providers or size):
            r = eng.jobs[spec.id]
            assert r.attempt == 0 and r.state is JobState.FAILED and r.reason == "too-large"
