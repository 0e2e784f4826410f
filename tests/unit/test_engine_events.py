"""Engine events: frozen typed records with one ``to_json()``; the wire form is pinned
(key order included: the audit log writes it as it comes)."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from cotenant.engine.events import (
    ContractChanged,
    EngineEvent,
    JobCancelled,
    JobRejected,
    JobSubmitted,
    NodeHealthSet,
    RunEnded,
    RunInterrupted,
    RunPlaced,
    RunPreempted,
    RunReclaimed,
    RunRetagged,
    StartHeld,
)
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import load_scenario


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        pytest.param(
            ContractChanged(5, "A"), '{"t": 5, "event": "contract", "tenant": "A"}', id="contract"
        ),
        pytest.param(
            JobSubmitted(5, "j", "A", 8),
            '{"t": 5, "event": "submit", "job": "j", "tenant": "A", "gpus": 8}',
            id="submit",
        ),
        pytest.param(
            JobCancelled(5, "j", "A"),
            '{"t": 5, "event": "cancel", "job": "j", "tenant": "A"}',
            id="cancel",
        ),
        pytest.param(
            JobRejected(5, "j", "A", "too-large", "needs 9"),
            '{"t": 5, "event": "reject", "job": "j", "tenant": "A", "reason": "too-large", '
            '"detail": "needs 9"}',
            id="reject",
        ),
        pytest.param(
            RunPlaced(5, "j", "A", 16, (3, 4), False, "placed-own"),
            '{"t": 5, "event": "place", "job": "j", "tenant": "A", "gpus": 16, "nodes": [3, 4], '
            '"borrowed": false, "reason": "placed-own"}',
            id="place",
        ),
        pytest.param(
            RunReclaimed(5, "v", "B", "j", "A", 305, "reclaim-for-entitlement"),
            '{"t": 5, "event": "reclaim", "job": "v", "tenant": "B", "beneficiary": "j", '
            '"beneficiary_tenant": "A", "deadline": 305, "rule": "reclaim-for-entitlement"}',
            id="reclaim",
        ),
        pytest.param(
            RunReclaimed(5, "v", "B", "j", "A", 205, "reclaim-for-entitlement", True),
            '{"t": 5, "event": "reclaim", "job": "v", "tenant": "B", "beneficiary": "j", '
            '"beneficiary_tenant": "A", "deadline": 205, "rule": "reclaim-for-entitlement", '
            '"hastened": true}',
            id="reclaim-hastened",
        ),
        pytest.param(
            RunPreempted(5, "v", "B", 60),
            '{"t": 5, "event": "preempt", "job": "v", "tenant": "B", "lost_s": 60}',
            id="preempt",
        ),
        pytest.param(
            RunInterrupted(5, "v", "B", "faulty_gpu", 120),
            '{"t": 5, "event": "interrupt", "job": "v", "tenant": "B", "cause": "faulty_gpu", '
            '"lost_s": 120}',
            id="interrupt",
        ),
        pytest.param(
            RunEnded(5, "j", "A", "completed", 0),
            '{"t": 5, "event": "end", "job": "j", "tenant": "A", "state": "completed", '
            '"exit_code": 0}',
            id="end",
        ),
        pytest.param(
            RunRetagged(5, "j", "A", True),
            '{"t": 5, "event": "retag", "job": "j", "tenant": "A", "borrowed": true}',
            id="retag",
        ),
        pytest.param(
            NodeHealthSet(5, 7, "down", "faulty_gpu"),
            '{"t": 5, "event": "node-health", "node": 7, "health": "down", "reason": "faulty_gpu"}',
            id="node-health",
        ),
        pytest.param(
            StartHeld(5, "j", "A", 8, "mine", "held-for-power", "4 GPUs of power headroom"),
            '{"t": 5, "event": "hold", "job": "j", "tenant": "A", "gpus": 8, "policy": "mine", '
            '"reason": "held-for-power", "detail": "4 GPUs of power headroom"}',
            id="hold",
        ),
    ],
)
def test_each_event_has_one_wire_form(event: EngineEvent, wire: str) -> None:
    assert json.dumps(event.to_json()) == wire


def test_events_are_frozen() -> None:
    ev = RunPreempted(5, "v", "B", 60)
    with pytest.raises(FrozenInstanceError):
        ev.lost_s = 0  # type: ignore[misc]
    assert replace(ev, lost_s=0).lost_s == 0


def test_observers_see_the_records_the_sinks_see_as_json() -> None:
    scenario = replace(load_scenario("small-lease"), duration_s=86_400)
    typed: list[EngineEvent] = []
    wire: list[dict[str, Any]] = []

    def hook(engine: Any) -> None:
        engine.observers.append(typed.append)
        engine.sinks.append(wire.append)

    simulate(scenario, engine_hook=hook)
    assert len(typed) > 100
    assert [e.to_json() for e in typed] == wire
    assert {type(e) for e in typed} >= {JobSubmitted, RunPlaced, RunEnded}
