"""Invariants of sampled failures, whatever the cluster, horizon and seed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cotenant.faults.model import Effect, FailureModel
from cotenant.model.time import DAY


@st.composite
def clusters(draw: st.DrawFn) -> tuple[int, int | np.ndarray]:
    n_nodes = draw(st.integers(1, 64))
    if draw(st.booleans()):
        return n_nodes, draw(st.integers(0, 8))
    gpus = draw(st.lists(st.integers(0, 8), min_size=n_nodes, max_size=n_nodes))
    return n_nodes, np.array(gpus, dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(
    cluster=clusters(),
    seed=st.integers(0, 2**32 - 1),
    start_s=st.integers(0, 365 * DAY),
    span_s=st.integers(0, 30 * DAY),
    scale=st.floats(0, 200),
    notice_s=st.integers(0, 2 * DAY),
)
def test_sampled_events_are_well_formed(
    cluster: tuple[int, int | np.ndarray],
    seed: int,
    start_s: int,
    span_s: int,
    scale: float,
    notice_s: int,
) -> None:
    n_nodes, gpus = cluster
    model = FailureModel(scale=scale, planned_notice_s=notice_s)
    end_s = start_s + span_s
    events = model.sample(np.random.default_rng(seed), n_nodes, gpus, start_s, end_s)

    keys = [(e.time_s, e.node) for e in events]
    assert keys == sorted(keys)
    causes = {c.name: c for c in (*model.causes, model.planned)}
    weights = np.broadcast_to(gpus, (n_nodes,))
    for e in events:
        assert start_s <= e.time_s < end_s
        assert 0 <= e.node < n_nodes
        assert weights[e.node] > 0  # a node without GPUs never fails
        cause = causes[e.cause]
        assert e.effect is cause.effect
        assert e.repair_s == model.repair_s(cause)
        assert e.notice_s == (notice_s if e.effect is Effect.PLANNED_DRAIN else 0)
