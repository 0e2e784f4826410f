"""The policy's workspace (scheduler/workspace.py): its ``now`` view is the snapshot's
state until its first change, then a copy; the free total needs no pass over the nodes
while every node is healthy and is the masked sum once one is not."""

from __future__ import annotations

import numpy as np
import pytest

from builders import bare_snapshot, cluster, job
from cotenant.cluster.state import ClusterState, Health, Placement
from cotenant.scheduler.snapshot import Snapshot
from cotenant.scheduler.workspace import Workspace


def snapshot(state: ClusterState) -> Snapshot:
    return bare_snapshot(state)


def test_the_snapshot_state_is_read_until_the_first_change_and_never_changed() -> None:
    state = ClusterState(cluster())  # 16 nodes of 8
    state.apply("A", Placement((0,), (8,)))
    before = (state.free.copy(), state.tenant_gpus.copy(), state.held)
    ws = Workspace(snapshot(state))
    assert ws.now is state  # nothing copied yet
    p = ws.try_now(job("j", "B", 8))
    assert p is not None and ws.now is state
    ws.commit_now("B", p)
    assert ws.now is not state and ws.now.held == 16
    p2 = ws.try_now(job("k", "B", 8))
    assert p2 is not None and p2.nodes != p.nodes  # the workspace sees its own change
    assert np.array_equal(state.free, before[0]) and np.array_equal(state.tenant_gpus, before[1])
    assert state.held == before[2]


@pytest.mark.parametrize(
    ("down", "health"),
    [
        pytest.param((), Health.HEALTHY, id="all-healthy"),
        pytest.param((3,), Health.DOWN, id="one-down"),
        pytest.param((0, 5), Health.DRAINING, id="draining"),
    ],
)
def test_free_total_is_the_free_gpus_on_usable_nodes(down: tuple[int, ...], health: Health) -> None:
    state = ClusterState(cluster())
    state.apply("A", Placement((0, 1, 2), (8, 4, 2)))
    for n in down:
        state.set_health(n, health)
    ws = Workspace(snapshot(state))
    want = int(state.free[state.usable()].sum())
    assert ws.free_total() == want
    assert ws.free_gpus("B", None) == want
    ws.commit_now("B", Placement((7,), (3,)))
    assert ws.free_total() == want - 3 == ws.free_gpus("B", None)
