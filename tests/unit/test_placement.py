"""find_placement, could_ever_fit and smallest_level on small hand-drawn clusters.

The default test cluster has 16 nodes of 8 GPUs, 4 nodes to a rack, 2 racks to a block:

    block 0: rack 0 = nodes 0-3,   rack 1 = nodes 4-7
    block 1: rack 2 = nodes 8-11,  rack 3 = nodes 12-15

Each case gives the free GPUs that differ from 8 and the nodes that are not eligible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from builders import cluster
from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology
from cotenant.model.jobs import Constraint
from cotenant.scheduler.placement import Level, could_ever_fit, find_placement, smallest_level

TOPO = cluster(nodes=16, per_rack=4, racks_per_block=2)
AUTO, NODE, RACK, BLOCK, ANY = (
    Constraint.AUTO,
    Constraint.NODE,
    Constraint.RACK,
    Constraint.BLOCK,
    Constraint.ANY,
)
# Nodes 2, 3, 5, 6, 7, 10, 11 and all of rack 3 are fully used: whole free nodes are
# 0, 1 (rack 0), 4 (rack 1), 8, 9 (rack 2). Block 0 has 3 free nodes, block 1 has 2.
SCATTERED = {2: 0, 3: 0, 5: 0, 6: 0, 7: 0, 10: 0, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}


@dataclass(frozen=True)
class Case:
    gpus: int
    constraint: Constraint = AUTO
    free: dict[int, int] = field(default_factory=dict)  # nodes whose free GPUs differ from 8
    ineligible: tuple[int, ...] = ()
    want: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (nodes, gpus) or None


def arrays(topo: Topology, case: Case) -> tuple[np.ndarray, np.ndarray]:
    free = topo.node_gpus.astype(np.int16).copy()
    for n, g in case.free.items():
        free[n] = g
    eligible = np.ones(topo.n_nodes, dtype=bool)
    eligible[list(case.ineligible)] = False
    return free, eligible


CASES = {
    # -- one node: best fit is the fullest node that still holds the gang ------------------
    "one-node/best-fit-fullest": Case(2, free={3: 5, 5: 3, 6: 2}, want=((6,), (2,))),
    "one-node/skips-nodes-too-small": Case(3, free={3: 5, 5: 3, 6: 2}, want=((5,), (3,))),
    "one-node/exact-remaining-fit": Case(5, free={3: 5, 5: 3, 6: 2}, want=((3,), (5,))),
    "one-node/empty-cluster-takes-first": Case(8, want=((0,), (8,))),
    "one-node/full-node-needs-a-whole-node": Case(8, free={0: 7, 1: 0}, want=((2,), (8,))),
    "one-node/nothing-holds-it": Case(4, free=dict.fromkeys(range(16), 3), want=None),
    # -- gangs larger than a node: whole nodes, remainder on one partial node ---------------
    "gang/16-takes-two-whole-nodes": Case(16, free={0: 0}, want=((1, 2), (8, 8))),
    "gang/12-remainder-on-best-partial": Case(12, free={1: 4, 2: 6, 3: 0}, want=((0, 1), (8, 4))),
    "gang/12-remainder-on-a-whole-node-if-no-partial-holds-it": Case(12, want=((0, 1), (8, 4))),
    "gang/partial-nodes-never-hold-whole-node-shares": Case(
        # rack 0 has 24 free GPUs but only one whole node: 16 needs two whole nodes.
        16,
        free={0: 8, 1: 6, 2: 5, 3: 5},
        want=((4, 5), (8, 8)),
    ),
    "gang/best-fit-rack-is-the-fullest-that-holds-it": Case(
        16, free={0: 0, 4: 0, 5: 0, 8: 0, 9: 0}, want=((6, 7), (8, 8))
    ),
    # -- domains --------------------------------------------------------------------------
    "rack/no-rack-has-three-free-nodes": Case(24, RACK, free=SCATTERED, want=None),
    # AUTO prefers the smallest domain but widens when none has room (Kueue "preferred").
    "auto/widens-to-a-block-when-no-rack-has-room": Case(
        24, AUTO, free=SCATTERED, want=((0, 1, 4), (8, 8, 8))
    ),
    "block/spans-racks-inside-one-block": Case(
        24, BLOCK, free=SCATTERED, want=((0, 1, 4), (8, 8, 8))
    ),
    "auto/40-gpus-widen-across-blocks": Case(
        40, AUTO, free=SCATTERED, want=((0, 1, 4, 8, 9), (8, 8, 8, 8, 8))
    ),
    "any/spans-blocks-when-allowed": Case(
        40, ANY, free=SCATTERED, want=((0, 1, 4, 8, 9), (8, 8, 8, 8, 8))
    ),
    "block/best-fit-block": Case(40, free={0: 0}, want=((1, 2, 3, 4, 5), (8, 8, 8, 8, 8))),
    "auto/72-gpus-spans-both-blocks": Case(72, want=(tuple(range(9)), (8,) * 9)),
    "rack/small-gang-spread-inside-one-rack": Case(
        4, RACK, free=dict.fromkeys(range(16), 2), want=((0, 1), (2, 2))
    ),
    "node/small-gang-not-spread": Case(4, NODE, free=dict.fromkeys(range(16), 2), want=None),
    "auto/one-node-gang-never-spread": Case(4, AUTO, free=dict.fromkeys(range(16), 2), want=None),
    "any/too-few-free-gpus": Case(20, ANY, free=dict.fromkeys(range(16), 1), want=None),
    # -- eligibility masks ----------------------------------------------------------------
    "mask/best-fit-node-ineligible": Case(2, free={6: 2, 9: 3}, ineligible=(6,), want=((9,), (2,))),
    "mask/gang-avoids-ineligible-nodes": Case(16, ineligible=(0, 1), want=((2, 3), (8, 8))),
    "mask/ineligible-partial-not-used-for-remainder": Case(
        12, free={1: 4, 2: 0, 3: 0}, ineligible=(1,), want=((4, 5), (8, 4))
    ),
    "mask/nothing-eligible": Case(1, ineligible=tuple(range(16)), want=None),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_find_placement(case: Case) -> None:
    free, eligible = arrays(TOPO, case)
    got = find_placement(TOPO, free, eligible, case.gpus, case.constraint)
    want = None if case.want is None else Placement(*case.want)
    assert got == want


@pytest.mark.parametrize(
    "case", [c for c in CASES.values() if c.want], ids=[k for k, c in CASES.items() if c.want]
)
def test_a_placement_is_a_valid_gang(case: Case) -> None:
    """Whatever it picks: exactly the gang's GPUs, on eligible nodes with room, in one domain."""
    free, eligible = arrays(TOPO, case)
    p = find_placement(TOPO, free, eligible, case.gpus, case.constraint)
    assert p is not None
    nodes = np.asarray(p.nodes)
    assert p.total_gpus == case.gpus
    assert list(p.nodes) == sorted(set(p.nodes))
    assert all(g > 0 for g in p.gpus)
    assert eligible[nodes].all()
    assert (free[nodes] >= np.asarray(p.gpus)).all()
    # At most one node is shared: the others are taken whole.
    assert sum(g < TOPO.node_gpus[n] for n, g in zip(p.nodes, p.gpus, strict=True)) <= (
        1 if case.gpus > 8 else len(p.nodes)
    )
    if case.constraint is NODE or (
        case.constraint is AUTO and smallest_level(TOPO, case.gpus) is Level.NODE
    ):
        assert len(p.nodes) == 1
    if case.constraint is RACK:
        assert len(set(TOPO.node_rack[nodes])) == 1
    if case.constraint is BLOCK:
        assert len(set(TOPO.node_block[nodes])) == 1
    if case.constraint is AUTO:
        # The smallest domain is preferred: when one has room, AUTO takes that placement.
        level = smallest_level(TOPO, case.gpus)
        strict = {Level.NODE: NODE, Level.RACK: RACK, Level.BLOCK: BLOCK, Level.ANY: ANY}[level]
        inside = find_placement(TOPO, free, eligible, case.gpus, strict)
        if inside is not None:
            assert p == inside


def test_find_placement_does_not_modify_its_inputs() -> None:
    free, eligible = arrays(TOPO, Case(12, free={1: 4}))
    before = (free.copy(), eligible.copy())
    find_placement(TOPO, free, eligible, 12)
    assert np.array_equal(free, before[0]) and np.array_equal(eligible, before[1])


def test_four_gpu_nodes_take_whole_nodes_of_four() -> None:
    """GB200 nodes hold 4 GPUs; a gang of 10 is two whole nodes plus 2 on a partial one."""
    topo = cluster(nodes=8, per_rack=4, racks_per_block=2, kind="GB200-NVL72")
    free = topo.node_gpus.astype(np.int16).copy()
    free[2] = 3
    p = find_placement(topo, free, np.ones(8, dtype=bool), 10)
    assert p == Placement((0, 1, 2), (4, 4, 2))


# -- could_ever_fit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "constraint", "capacity", "reason"),
    [
        pytest.param(8, NODE, 128, None, id="fits-one-node"),
        pytest.param(128, ANY, 128, None, id="whole-cluster"),
        pytest.param(72, AUTO, 128, None, id="auto-never-impossible-under-capacity"),
        pytest.param(32, RACK, 128, None, id="fills-one-rack"),
        pytest.param(0, AUTO, 128, "a job needs at least one GPU", id="zero-gpus"),
        pytest.param(
            129, ANY, 128, "needs 129 GPUs; the cluster (of its kind) has 128", id="over-capacity"
        ),
        pytest.param(
            16, AUTO, 8, "needs 16 GPUs; the cluster (of its kind) has 8", id="over-kind-capacity"
        ),
        pytest.param(12, NODE, 128, "12 GPUs cannot fit inside one node", id="node-too-small"),
        pytest.param(40, RACK, 128, "40 GPUs cannot fit inside one rack", id="rack-too-small"),
        pytest.param(72, BLOCK, 128, "72 GPUs cannot fit inside one block", id="block-too-small"),
    ],
)
def test_could_ever_fit(
    gpus: int, constraint: Constraint, capacity: int, reason: str | None
) -> None:
    assert could_ever_fit(TOPO, gpus, constraint, capacity) == reason


# -- smallest_level -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "per_node", "level"),
    [
        pytest.param(1, None, Level.NODE, id="1-node"),
        pytest.param(8, None, Level.NODE, id="8-node"),
        pytest.param(9, None, Level.RACK, id="9-rack"),
        pytest.param(32, None, Level.RACK, id="32-rack"),
        pytest.param(33, None, Level.BLOCK, id="33-block"),
        pytest.param(64, None, Level.BLOCK, id="64-block"),
        pytest.param(65, None, Level.ANY, id="65-any"),
        pytest.param(128, None, Level.ANY, id="128-any"),
        pytest.param(8, 4, Level.RACK, id="8-on-4-gpu-nodes-rack"),
        pytest.param(17, 4, Level.BLOCK, id="17-on-4-gpu-nodes-block"),
    ],
)
def test_smallest_level(gpus: int, per_node: int | None, level: Level) -> None:
    assert smallest_level(TOPO, gpus, per_node) is level
