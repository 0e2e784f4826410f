"""Placement over several providers in one topology (the live server's Slurm clusters
under one engine, issue 16): a gang never spans providers.

The big test cluster has two providers of H100 nodes (8 GPUs), racks of 4 nodes, blocks
of 2 racks (8 nodes):

    alpha: nodes 0-31 (blocks 0-3)        beta: nodes 32-47 (blocks 4-5)

Each case gives the free GPUs that differ from 8 (by node ranges).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import DAY, MIN, T0, contract, engine, job
from cotenant.backends.slurm_clusters import label_providers, union_spec
from cotenant.cluster.state import ClusterState, Placement
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.model.errors import SpecError
from cotenant.model.jobs import Constraint, JobSpec, JobState
from cotenant.scheduler.placement import Level, find_placement, levels_to_try, never_fits
from cotenant.scheduler.providers import ProviderReason, provider_choice
from cotenant.scheduler.snapshot import rival_map
from cotenant.store.mapping import cluster_from_json, cluster_to_json

H100 = "H100-SXM-80GB"
ALPHA, BETA = range(0, 32), range(32, 48)


def group(nodes: int, provider: str | None, gpus: int = 8) -> NodeGroup:
    return NodeGroup(H100, nodes, 4, 2, gpus_per_node=gpus, provider=provider)


BIG = Topology(ClusterSpec("two", (group(32, "alpha"), group(16, "beta"))))
# The test harness's two Slurm clusters as the server joins them: a1 a2 | b1 b2.
PAIR = Topology(
    union_spec(
        [
            ("alpha", ClusterSpec("alpha", (NodeGroup(H100, 2),), ("a1", "a2"))),
            ("beta", ClusterSpec("beta", (NodeGroup(H100, 2),), ("b1", "b2"))),
        ]
    )
)


@dataclass(frozen=True)
class Case:
    gpus: int
    free: dict[range, int] = field(default_factory=dict)
    within: range | None = None  # the provider's nodes the gang must take (None: no room)
    constraint: Constraint = Constraint.AUTO


CASES = {
    "wider-than-a-block-fits-only-alpha": Case(18 * 8, {range(20, 32): 0}, ALPHA),
    "best-fit-provider-beta": Case(12 * 8, {range(20, 32): 0}, BETA),
    "first-among-equals": Case(16 * 8, {range(16, 32): 0}, ALPHA),
    "room-in-the-union-only-waits": Case(16 * 8, {range(10, 32): 0, range(42, 48): 0}),
    "remainder-inside-the-provider": Case(12 * 8 + 3, {range(0, 32): 0, range(40, 41): 5}, BETA),
    "constraint-any-stays-in-one": Case(
        20 * 8, {range(12, 32): 0, range(40, 48): 0}, constraint=Constraint.ANY
    ),
}


def free_of(topo: Topology, spans: dict[range, int]) -> np.ndarray:
    free = topo.node_gpus.astype(np.int32).copy()
    for span, gpus in spans.items():
        free[span.start : span.stop] = gpus
    return free


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_gang_stays_inside_one_provider(case: Case) -> None:
    free = free_of(BIG, case.free)
    eligible = np.ones(BIG.n_nodes, dtype=bool)

    p = find_placement(BIG, free, eligible, case.gpus, case.constraint)

    if case.within is None:
        assert p is None
        return
    assert p is not None and sum(p.gpus) == case.gpus
    assert all(n in case.within for n in p.nodes), p.nodes
    assert all(free[n] >= g for n, g in zip(p.nodes, p.gpus, strict=True))


def test_the_test_pair_never_splits_a_gang_over_its_two_clusters() -> None:
    """a1 and b1 busy, a2 and b2 free: a 16-GPU gang has room in the union only. It used
    to be placed on a2 + b2 (and refused at start, so the job failed); now it waits."""
    free = np.array([0, 8, 0, 8], dtype=np.int32)
    eligible = np.ones(4, dtype=bool)

    assert find_placement(PAIR, free, eligible, 16) is None
    beta_free = np.array([0, 8, 8, 8], dtype=np.int32)
    p = find_placement(PAIR, beta_free, eligible, 16)
    assert p is not None and p.nodes == (2, 3)
    assert [PAIR.provider_of_node(n) for n in range(4)] == ["alpha", "alpha", "beta", "beta"]


@pytest.mark.parametrize(
    ("topo", "gpus", "words"),
    [
        pytest.param(PAIR, 24, "largest provider (of its kind) has 16", id="pair"),
        pytest.param(BIG, 33 * 8, "largest provider (of its kind) has 256", id="big"),
    ],
)
def test_a_gang_larger_than_every_provider_never_fits(
    topo: Topology, gpus: int, words: str
) -> None:
    why = never_fits(topo, gpus, Constraint.AUTO, None)
    assert why is not None and words in why
    assert never_fits(topo, gpus, Constraint.AUTO, H100) == why


def test_one_provider_places_as_before() -> None:
    one = Topology(ClusterSpec("one", (group(32, None), group(16, None))))
    assert one.n_providers == 1 and one.provider_of_node(0) is None
    for gpus in (8, 64, 20 * 8, 40 * 8):
        assert Level.PROVIDER not in levels_to_try(one, gpus, Constraint.AUTO)
    assert levels_to_try(one, 40 * 8, Constraint.AUTO)[-1] is Level.ANY
    assert levels_to_try(BIG, 20 * 8, Constraint.AUTO) == (Level.PROVIDER,)
    # each provider a block: the provider level adds nothing, no wider level is allowed
    assert levels_to_try(PAIR, 16, Constraint.AUTO) == (Level.RACK, Level.BLOCK)


@pytest.mark.parametrize(
    ("groups", "field_"),
    [
        pytest.param((group(2, "a"), group(2, None)), "cluster.groups[1].provider", id="unnamed"),
        pytest.param((group(2, "a"), group(2, "b"), group(2, "a")), "cluster.groups", id="apart"),
    ],
)
def test_bad_providers_name_the_field(groups: tuple[NodeGroup, ...], field_: str) -> None:
    with pytest.raises(SpecError) as err:
        Topology(ClusterSpec("x", groups))
    assert err.value.field == field_


def test_the_store_keeps_each_groups_provider_and_labels_an_old_spec() -> None:
    spec = PAIR.spec
    assert cluster_from_json(cluster_to_json(spec)) == spec
    plain = ClusterSpec(
        spec.name, tuple(NodeGroup(H100, 2) for _ in range(2)), ("a1", "a2", "b1", "b2")
    )
    assert "provider" not in cluster_to_json(plain)  # a spec without providers: as before
    nodes = {"alpha": ["a1", "a2"], "beta": ["b1", "b2"]}
    assert label_providers(plain, nodes) == spec
    with pytest.raises(SpecError, match="not of one Slurm cluster"):
        label_providers(plain, {"alpha": ["a1", "b1"], "beta": ["a2", "b2"]})


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=2, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    gpus=st.integers(1, 160),
    constraint=st.sampled_from([Constraint.AUTO, Constraint.ANY]),
)
def test_no_placement_spans_providers(
    sizes: list[int], seed: int, gpus: int, constraint: Constraint
) -> None:
    topo = Topology(ClusterSpec("p", tuple(group(n, f"p{i}") for i, n in enumerate(sizes))))
    rng = np.random.default_rng(seed)
    free = rng.choice([0, 0, 3, 8, 8, 8], size=topo.n_nodes).astype(np.int32)
    eligible = rng.random(topo.n_nodes) < 0.9

    p = find_placement(topo, free, eligible, gpus, constraint)

    if p is None:
        return
    assert sum(p.gpus) == gpus
    assert len({topo.provider_of_node(n) for n in p.nodes}) == 1
    assert all(eligible[n] and free[n] >= g for n, g in zip(p.nodes, p.gpus, strict=True))


# -- why a placement went to its provider (the decision log's route) -----------------------
@dataclass(frozen=True)
class Route:
    held: dict[tuple[str, int], int]  # (tenant, node) -> GPUs held before the placement
    gpus: int
    nodes: tuple[int, ...]
    reason: ProviderReason
    detail: str


ROUTES = {
    "on-the-first": Route({}, 8, (0,), ProviderReason.FIRST, "on alpha: the first provider"),
    "alpha-full": Route(
        {("T", 0): 8, ("T", 1): 8},
        8,
        (2,),
        ProviderReason.NO_ROOM_BEFORE,
        "on beta: alpha has no room for 8 GPUs (0 of its 16 free to it)",
    ),
    "alpha-room-beside-a-rival": Route(
        {("R", 0): 4, ("R", 1): 4},
        4,
        (2,),
        ProviderReason.NO_ROOM_BEFORE,
        "on beta: alpha has no room for 4 GPUs (0 of its 16 free to it)",
    ),
    "tighter-fit-on-beta": Route(
        {("T", 2): 4},
        4,
        (2,),
        ProviderReason.BEST_FIT,
        "on beta: alpha has room too (16 of 16 free); beta fits tighter",
    ),
}


@pytest.mark.parametrize("case", ROUTES.values(), ids=ROUTES.keys())
def test_a_placement_says_why_it_is_on_its_provider(case: Route) -> None:
    state = ClusterState(PAIR, ("T", "R"))
    for (tenant, node), gpus in case.held.items():
        state.apply(tenant, Placement((node,), (gpus,)))
    contracts = {"T": contract("T", 8, rivals=["R"])}
    job = JobSpec("j", "T", case.gpus, 600, 0)
    placement = Placement(case.nodes, (case.gpus,) * len(case.nodes))
    assert find_placement(PAIR, state.free, state.usable(), case.gpus) is not None

    got = provider_choice(state, rival_map(contracts), job, placement)

    assert (got.provider, got.reason, got.detail) == (
        PAIR.provider_of_node(case.nodes[0]),
        case.reason,
        case.detail,
    )


def test_a_job_naming_providers_never_fits_beyond_the_largest_of_them() -> None:
    why = never_fits(BIG, 17 * 8, Constraint.AUTO, None, ("beta",))
    assert (
        why
        == "needs 136 GPUs; the providers it accepts (beta) have at most 128 (of its kind) in one"
    )
    assert never_fits(BIG, 17 * 8, Constraint.AUTO, None, ("alpha", "beta")) is None
    assert never_fits(BIG, 16 * 8, Constraint.AUTO, None, ("beta",)) is None
    one = Topology(ClusterSpec("one", (group(4, None),)))
    # a topology that names no provider leaves routing to the federation: no limit
    assert one.provider_nodes(("beta",)) is None
    assert never_fits(one, 32, Constraint.AUTO, None, ("beta",)) is None


def test_a_placement_on_the_only_provider_the_job_names_says_so() -> None:
    state = ClusterState(PAIR, ("T",))
    job = JobSpec("j", "T", 8, 600, 0, providers=("beta",))
    elig = state.usable() & PAIR.provider_nodes(("beta",))
    p = find_placement(PAIR, state.free, elig, 8)
    assert p is not None and PAIR.provider_of_node(p.nodes[0]) == "beta"
    got = provider_choice(state, {}, job, p)
    assert (got.provider, got.reason, got.detail) == (
        "beta",
        ProviderReason.NAMED,
        "on beta: the job accepts beta",
    )


def test_a_job_held_to_a_full_cluster_does_not_stop_the_next_reclaiming() -> None:
    """A owns alpha with its own work and is entitled to the whole pair; B borrows beta.
    A's first job names alpha (only A's own work of equal priority is there: nothing to
    reclaim); its second names none and must reclaim beta. The contract policy remembers
    a failed victim search for the cycle: keyed without the providers, the first job's
    failure stopped the second from reclaiming at all."""
    eng = engine(PAIR, [contract("A", 32), contract("B", 0)])
    eng.submit(job("own", "A", 16, duration_s=DAY, priority=10, providers=("alpha",)))
    eng.submit(job("b1", "B", 8, duration_s=DAY))
    eng.submit(job("b2", "B", 8, duration_s=DAY))
    eng.run(T0 + 1)
    assert all(eng.jobs[j].state is JobState.RUNNING for j in ("own", "b1", "b2"))
    eng.submit(job("j1", "A", 16, submit_s=T0 + 10, priority=10, providers=("alpha",)))
    eng.submit(job("j2", "A", 16, submit_s=T0 + 10, priority=10))
    eng.run(T0 + 10 * MIN)
    j2 = eng.jobs["j2"]
    assert j2.state is JobState.RUNNING, (j2.state, j2.reason, j2.reason_detail)
    assert {PAIR.provider_of_node(n) for n in j2.placement.nodes} == {"beta"}
    assert eng.jobs["j1"].state is JobState.PENDING
