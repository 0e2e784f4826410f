"""Turns a failure model's sampled events into engine actions at their times.

Node faults take the node down (every job on it is interrupted) until repaired; a
rack uplink fault takes every node of the rack; a software fault interrupts one job
and leaves the node up; planned maintenance drains the node with notice first. A
fault on a node that is already down keeps it down longer (its repair is counted
separately), which is what a second fault on a broken node would do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cotenant.engine.core import Engine
from cotenant.faults.model import Effect, FailureEvent, FailureModel
from cotenant.model.errors import SpecError


@dataclass(frozen=True, slots=True)
class FailureSettings:
    enabled: bool
    model: FailureModel
    seed_offset: int = 1_000_003  # failures draw from their own stream of the scenario seed


def parse_failure_settings(
    raw: Mapping[str, Any] | None, scale: float | None = None
) -> FailureSettings:
    """The scenario's [failures] table: ``enabled`` plus the model's own keys."""
    raw = dict(raw or {})
    enabled = raw.pop("enabled", bool(raw))
    if not isinstance(enabled, bool):
        raise SpecError("failures.enabled", f"must be true or false, got {enabled!r}")
    model = FailureModel.from_settings(raw)
    if scale is not None:
        if scale < 0:
            raise SpecError("--failure-scale", f"must be >= 0, got {scale}")
        model = model.with_scale(model.scale * scale)
        enabled = enabled or scale > 0
        if scale == 0:
            enabled = False
    return FailureSettings(enabled, model)


def install(
    engine: Engine, model: FailureModel, seed: int, start_s: int, end_s: int
) -> list[FailureEvent]:
    """Sample every failure over the horizon and schedule it on the engine."""
    topo = engine.topo
    events = model.sample(np.random.default_rng(seed), topo.n_nodes, topo.node_gpus, start_s, end_s)
    schedule(engine, events)
    return events


def schedule(engine: Engine, events: Iterable[FailureEvent]) -> None:
    """Schedule given failures on the engine (sampled, replayed, or made up by a test)."""
    for ev in events:
        engine.at(ev.time_s, _handler(engine, ev))


def _handler(engine: Engine, ev: FailureEvent) -> Any:
    topo = engine.topo

    def fire(t: int) -> None:
        if ev.effect is Effect.NODE_DOWN:
            engine.fail_nodes([ev.node], t, ev.cause, ev.repair_s)
        elif ev.effect is Effect.RACK_UPLINK:
            rack = int(topo.node_rack[ev.node])
            nodes = [int(n) for n in np.flatnonzero(topo.node_rack == rack)]
            engine.fail_nodes(nodes, t, ev.cause, ev.repair_s)
        elif ev.effect is Effect.JOB_ONLY:
            engine.interrupt_job_on_node(ev.node, t, ev.cause)
        elif ev.effect is Effect.PLANNED_DRAIN:
            engine.drain_node(ev.node, t, ev.down_at_s, ev.repair_s, ev.cause)

    return fire
