"""The workspace's incremental structures answer exactly as a pass over the whole cluster
would: the best-fit buckets (``scheduler/nodefit.py``) as ``placement._on_one_node``, the
whole free nodes counted per unit as counting them afresh, and the rival masks kept up
to date in place as masks built afresh, after any sequence of starts, promises,
withdrawals and releases in a cycle."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import bare_snapshot, cluster, job
from cotenant.cluster.state import ClusterState, Health, Placement
from cotenant.scheduler.nodefit import ASK_NUMPY, NodeFit
from cotenant.scheduler.placement import _on_one_node, find_placement
from cotenant.scheduler.snapshot import Snapshot, blocked_nodes
from cotenant.scheduler.workspace import Workspace

TENANTS = ("A", "B", "C", "D")
# A and B a node apart, A and C a rack apart, D nobody's rival.
RIVALS = {
    "A": (frozenset({"B", "C"}), frozenset({"C"})),
    "B": (frozenset({"A"}), frozenset()),
    "C": (frozenset({"A"}), frozenset({"A"})),
}


@settings(max_examples=300, deadline=None)
@given(
    free=st.lists(st.integers(0, 8), min_size=1, max_size=60),
    data=st.data(),
)
def test_node_fit_answers_as_the_numpy_pass(free: list[int], data: st.DataObject) -> None:
    n = len(free)
    free_a = np.array(free, dtype=np.int16)
    usable = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    fit = NodeFit(free_a, usable, 8)
    for _ in range(data.draw(st.integers(0, 20))):
        node = data.draw(st.integers(0, n - 1))
        free_a[node] = data.draw(st.integers(0, 8))
        fit.moved(node, int(free_a[node]))
        eligible = usable & np.array(
            data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool
        )
        gpus = data.draw(st.integers(1, 8))
        want = _on_one_node(free_a, eligible, gpus)
        got = fit.find(eligible, gpus)
        if got == ASK_NUMPY:
            continue  # too many closed nodes: the caller asks NumPy
        assert (None if got is None else Placement((got,), (gpus,))) == want


def _snapshot(state: ClusterState) -> Snapshot:
    return bare_snapshot(state, RIVALS)


def _reference(ws: Workspace, tenant: str, gpus: int) -> Placement | None:
    """What a pass over the whole cluster finds now: free in both views, on usable nodes
    no rival holds in either view."""
    now, future = ws.now, ws.future
    free = now.free if future is None else np.minimum(now.free, future.free)
    eligible = now.usable().copy()
    for state in (now,) if future is None else (now, future):
        b = blocked_nodes(state, tenant, RIVALS)
        if b is not None:
            eligible &= ~b
    return find_placement(ws.topo, free, eligible, gpus)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_cycle_of_changes_leaves_the_workspace_answering_as_afresh(
    data: st.DataObject,
) -> None:
    topo = cluster(nodes=24, per_rack=4, racks_per_block=2)
    state = ClusterState(topo, TENANTS)
    held: list[tuple[str, Placement]] = []
    for node in range(topo.n_nodes):  # what runs before the cycle
        if data.draw(st.booleans()):
            tenant = data.draw(st.sampled_from(TENANTS))
            p = Placement((node,), (data.draw(st.integers(1, 8)),))
            state.apply(tenant, p)
            held.append((tenant, p))
    for node in data.draw(st.lists(st.integers(0, topo.n_nodes - 1), max_size=3)):
        state.set_health(node, Health.DOWN)
    ws = Workspace(_snapshot(state))
    promises: list[tuple[str, Placement, Placement | None]] = []
    for step in range(data.draw(st.integers(1, 25))):
        tenant = data.draw(st.sampled_from(TENANTS))
        gpus = data.draw(st.sampled_from((1, 2, 3, 4, 8, 12, 16, 20)))
        action = data.draw(st.sampled_from(("start", "start", "promise", "withdraw", "release")))
        if action == "start":
            p = ws.try_now(job(f"j{step}", tenant, gpus))
            assert p == _reference(ws, tenant, gpus)
            if p is not None:
                ws.commit_now(tenant, p)
        elif action == "promise":
            p = ws.try_future(job(f"j{step}", tenant, gpus))
            if p is not None:
                promises.append((tenant, p, ws.promise(tenant, p)))
        elif action == "withdraw" and promises:
            ws.withdraw(*promises.pop(data.draw(st.integers(0, len(promises) - 1))))
        elif action == "release" and held:
            ws.release_future(*held.pop(data.draw(st.integers(0, len(held) - 1))))
        for t in TENANTS:
            for g in (1, 4, 8, 12, 16, 24):
                assert ws.try_now(job(f"q{step}{t}{g}", t, g)) == _reference(ws, t, g)


@settings(max_examples=200, deadline=None)
@given(
    free=st.lists(st.integers(0, 8), min_size=8, max_size=8),
    nodes=st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_holds_is_the_free_part_being_the_whole(
    free: list[int], nodes: list[int], data: st.DataObject
) -> None:
    state = ClusterState(cluster(nodes=8, per_rack=4, racks_per_block=2), ("A",))
    state.apply("A", Placement((0,), (8,)))
    state.release("A", Placement((0,), (8,)))
    state.free[:] = free
    nodes = sorted(nodes)
    gpus = tuple(data.draw(st.integers(1, 8)) for _ in nodes)
    p = Placement(tuple(nodes), gpus)
    assert state.holds(p) == (state.free_part(p) == p)
