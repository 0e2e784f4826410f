"""NVLink domains as a placement level, on a hand-drawn GB200 cluster and the presets.

The test cluster has 144 trays (nodes) of 4 GPUs: NVLink domains of 18 trays, racks of
two domains (36 trays), fabric blocks of two racks (72 trays):

    block 0: rack 0 = domains 0 (nodes 0-17), 1 (18-35); rack 1 = domains 2, 3 (36-71)
    block 1: rack 2 = domains 4, 5 (72-107);              rack 3 = domains 6, 7 (108-143)

Each case gives the free GPUs that differ from 4 (by node ranges).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from cotenant.cluster.presets import preset
from cotenant.cluster.state import Placement
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.model.jobs import Constraint
from cotenant.scheduler.placement import (
    Level,
    could_ever_fit,
    find_placement,
    levels_to_try,
    smallest_level,
)

GB200 = "GB200-NVL72"
TOPO = Topology(ClusterSpec("nvl-test", (NodeGroup(GB200, 144, 36, 2, 4, 18),)))
AUTO, DOMAIN, RACK, ANY = Constraint.AUTO, Constraint.DOMAIN, Constraint.RACK, Constraint.ANY


@dataclass(frozen=True)
class Case:
    gpus: int
    constraint: Constraint = AUTO
    free: dict[range, int] = field(default_factory=dict)  # node ranges whose free GPUs differ
    want: tuple[int, ...] | None = None  # the nodes, each taken whole unless ``rem`` says
    rem: tuple[int, int] | None = None  # (node, GPUs) of a remainder on a partial node


HALF_FULL = {range(d + 9, d + 18): 0 for d in range(0, 144, 18)}


def nodes(*spans: range) -> tuple[int, ...]:
    return tuple(sorted(n for s in spans for n in s))


CASES = {
    # A gang of one domain's size stays in one domain: the rack level would take nodes
    # 1-18 of rack 0 (its best fit), across domains 0 and 1.
    "domain/72-gpus-in-one-whole-domain": Case(
        72, free={range(0, 1): 0}, want=nodes(range(18, 36))
    ),
    "domain/best-fit-domain": Case(8, free={range(20, 36): 0}, want=(18, 19)),
    "domain/remainder-on-a-partial-tray-of-the-domain": Case(
        10, free={range(5, 6): 3}, want=(0, 1), rem=(5, 2)
    ),
    # Every domain has 9 whole trays; a gang of 10 trays needs a rack.
    "domain/required-and-no-domain-has-room": Case(40, DOMAIN, free=HALF_FULL, want=None),
    "auto/widens-to-the-rack-when-no-domain-has-room": Case(
        40, AUTO, free=HALF_FULL, want=nodes(range(0, 9), range(18, 19))
    ),
    # Larger gangs take whole domains first, then the rest from the domain with the
    # fewest whole trays that holds it; index order would cross three or four domains.
    "rack/whole-domain-first": Case(
        100, free={range(8, 18): 0}, want=nodes(range(0, 7), range(18, 36))
    ),
    "block/fewest-domains-best-fit-rest": Case(
        160,
        free={range(5, 18): 0, range(46, 54): 0},
        want=nodes(range(0, 4), range(18, 36), range(54, 72)),
    ),
    "any/whole-domains-across-blocks": Case(
        320, free={range(0, 1): 0}, want=nodes(range(1, 9), range(18, 90))
    ),
}


def arrays(case: Case) -> tuple[np.ndarray, np.ndarray]:
    free = TOPO.node_gpus.astype(np.int16).copy()
    for span, g in case.free.items():
        free[span.start : span.stop] = g
    return free, np.ones(TOPO.n_nodes, dtype=bool)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_find_placement_by_nvlink_domain(case: Case) -> None:
    free, eligible = arrays(case)
    got = find_placement(TOPO, free, eligible, case.gpus, case.constraint)
    if case.want is None:
        assert got is None
        return
    want = dict.fromkeys(case.want, 4)
    if case.rem is not None:
        want[case.rem[0]] = case.rem[1]
    assert got == Placement(tuple(sorted(want)), tuple(want[n] for n in sorted(want)))


@pytest.mark.parametrize(
    ("gpus", "level"),
    [
        pytest.param(4, Level.NODE, id="one-tray"),
        pytest.param(8, Level.DOMAIN, id="two-trays"),
        pytest.param(72, Level.DOMAIN, id="one-domain"),
        pytest.param(76, Level.RACK, id="one-tray-over-a-domain"),
        pytest.param(288, Level.BLOCK, id="one-block"),
        pytest.param(292, Level.ANY, id="over-a-block"),
    ],
)
def test_smallest_level_knows_the_domain(gpus: int, level: Level) -> None:
    assert smallest_level(TOPO, gpus) is level


def test_a_gang_larger_than_a_domain_cannot_require_one() -> None:
    assert could_ever_fit(TOPO, 72, DOMAIN, TOPO.total_gpus) is None
    assert could_ever_fit(TOPO, 76, DOMAIN, TOPO.total_gpus) == (
        "76 GPUs cannot fit inside one domain"
    )
    h100 = Topology(ClusterSpec("h100", (NodeGroup("H100-SXM-80GB", 16, 4, 2),)))
    assert could_ever_fit(h100, 16, DOMAIN, h100.total_gpus) == (
        "16 GPUs cannot fit inside one domain"
    )


def test_levels_that_add_nothing_are_not_tried() -> None:
    """HGX: every domain is one node, so gangs go node -> rack. NVL72 racks: every domain
    is one rack, so the domain level places and the rack level is skipped."""
    h100 = Topology(ClusterSpec("h100", (NodeGroup("H100-SXM-80GB", 16, 4, 2),)))
    assert h100.domains_are_nodes and not h100.domains_are_racks
    assert levels_to_try(h100, 16, AUTO) == (Level.RACK, Level.BLOCK, Level.ANY)
    assert levels_to_try(h100, 8, ANY) == (Level.NODE, Level.RACK, Level.BLOCK, Level.ANY)
    nvl = Topology(preset("nvl72-64"))
    assert nvl.domains_are_racks and not nvl.domains_are_nodes
    assert levels_to_try(nvl, 72, AUTO) == (Level.DOMAIN, Level.BLOCK, Level.ANY)
    assert levels_to_try(nvl, 72, RACK) == (Level.DOMAIN,)
    assert levels_to_try(TOPO, 76, AUTO) == (Level.RACK, Level.BLOCK, Level.ANY)


def test_colossus_2_is_a_million_gb200_in_nvl72_domains() -> None:
    topo = Topology(preset("colossus-2"))
    assert (topo.total_gpus, topo.n_nodes) == (1_000_000, 250_000)
    assert topo.n_domains == topo.n_racks == 13_889 and topo.domains_are_racks
    assert topo.max_domain_nodes == 18 and int(topo.domains.nodes[-1]) == 16
    assert topo.n_blocks == 1_737  # 8 racks (576 GPUs) to a block
    assert Topology(preset("colossus-2x")).total_gpus == 200_000  # the old name still works


def test_domains_are_runs_of_consecutive_nodes() -> None:
    for units in (TOPO.domains, TOPO.racks, TOPO.blocks):
        for u in range(units.count):
            lo, hi = int(units.start[u]), int(units.start[u + 1])
            assert (units.of_node[lo:hi] == u).all() and hi - lo == units.nodes[u]
    assert TOPO.n_domains == 8 and list(TOPO.node_domain[[0, 17, 18, 143]]) == [0, 0, 1, 7]


def test_a_domain_lies_inside_a_rack_unless_the_group_says_otherwise() -> None:
    """GB200 trays in racks of 8 (a Slurm import's default) get domains of 8, not 18; a
    group may name a domain over two racks (GB200 NVL36x2)."""
    racks_of_8 = Topology(ClusterSpec("x", (NodeGroup(GB200, 32, 8, 2),)))
    assert racks_of_8.max_domain_nodes == 8 and racks_of_8.domains_are_racks
    nvl36x2 = Topology(ClusterSpec("y", (NodeGroup(GB200, 36, 9, 2, None, 18),)))
    assert nvl36x2.n_domains == 2 and nvl36x2.n_racks == 4
    assert smallest_level(nvl36x2, 72) is Level.DOMAIN


def test_the_colossus_2_scenario_runs_the_lease_on_the_new_site() -> None:
    """colossus-2-lease: the preset, an owner lab and an all-available lessee, one service
    each on whole NVL72 domains, and failures on (bench/bench_colossus2.py runs it)."""
    from cotenant.faults.injector import parse_failure_settings
    from cotenant.serving.services import parse_services
    from cotenant.twin.scenario import load_scenario

    sc = load_scenario("colossus-2-lease")
    assert sc.cluster.name == "colossus-2" and sc.cluster.total_gpus == 1_000_000
    owner, lessee = (t.contract for t in sc.tenants)
    assert owner is not None and lessee is not None
    assert owner.commitment.gpus == 200_000 and lessee.commitment.all_available
    assert parse_failure_settings(sc.sections["failures"]).enabled
    services = parse_services(sc.sections["services"], [t.name for t in sc.tenants])
    assert [s.spec.gpus_per_replica for s in services] == [72, 72]
