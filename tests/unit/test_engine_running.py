"""The running set (engine/running.py): running order, the runs being reclaimed, and who
holds GPUs on each node."""

from __future__ import annotations

from builders import T0, job
from cotenant.cluster.state import Placement
from cotenant.engine.jobs import JobRun
from cotenant.engine.running import WIDE_RUN_NODES, RunningSet


def running(id: str, nodes: tuple[int, ...], hours: int, gpus: int = 8) -> JobRun:
    spec = job(id, "A", gpus * len(nodes), duration_s=hours * 3600)
    return JobRun(spec, placement=Placement(nodes, (gpus,) * len(nodes)), start_s=T0)


def test_runs_are_kept_in_order_of_expected_end_then_id() -> None:
    rs = RunningSet()
    long, short, tie = running("long", (0,), 5), running("short", (1,), 1), running("a", (2,), 5)
    for r in (long, short, tie):
        rs.add(r)
    assert [v.spec.id for v in rs.views] == ["short", "a", "long"]
    rs.remove(tie)
    assert [v.spec.id for v in rs.views] == ["short", "long"]
    rs.remove(tie)  # not there: nothing happens
    assert len(rs) == 2


def test_the_runs_being_reclaimed_follow_their_views() -> None:
    rs = RunningSet()
    a, b = running("a", (0,), 2), running("b", (1,), 1)
    rs.add(a)
    rs.add(b)
    assert rs.reclaiming() == ()
    for r in (a, b):  # as the lifecycle does: out, changed, back in
        rs.remove(r)
        r.reclaim_deadline_s = T0 + 300
        r.touch()
        rs.add(r)
    assert [v.spec.id for v in rs.reclaiming()] == ["b", "a"]
    assert all(v.reclaiming for v in rs.reclaiming())
    rs.remove(b)
    assert [v.spec.id for v in rs.reclaiming()] == ["a"]


def test_each_node_knows_the_jobs_holding_gpus_there() -> None:
    rs = RunningSet()
    b, a = running("b", (0, 1), 1, gpus=4), running("a", (1,), 1, gpus=4)
    rs.hold_nodes(b)
    rs.hold_nodes(a)
    assert rs.ids_on_node(1) == ["a", "b"]
    assert rs.ids_on_node(0) == ["b"]
    rs.free_nodes(b)
    assert rs.ids_on_node(1) == ["a"] and rs.ids_on_node(0) == []
    assert rs.ids_on_node(7) == []


def test_a_wide_run_is_found_on_each_of_its_nodes() -> None:
    """A run on more than WIDE_RUN_NODES nodes keeps them as one array; a node it shares
    with a small run lists both, and freeing it clears every node."""
    rs = RunningSet()
    nodes = tuple(range(10, 10 + 2 * (WIDE_RUN_NODES + 1), 2))  # every other node
    wide, small = running("wide", nodes, 1, gpus=4), running("small", (12, 13), 1, gpus=4)
    rs.hold_nodes(wide)
    rs.hold_nodes(small)
    assert rs.ids_on_node(12) == ["small", "wide"]
    assert rs.ids_on_node(13) == ["small"]
    assert rs.ids_on_node(nodes[-1]) == ["wide"]
    assert rs.ids_on_node(11) == [] and rs.ids_on_node(nodes[-1] + 5) == []
    rs.free_nodes(wide)
    assert rs.ids_on_node(12) == ["small"] and rs.ids_on_node(nodes[-1]) == []
