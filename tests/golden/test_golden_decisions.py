"""The decision log of a small seeded scenario matches the checked-in file.

Regenerate after an intended change with ``COTENANT_UPDATE_GOLDEN=1 pytest tests/golden``
and review the diff like code.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from golden_compare import matches_golden

from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import load_scenario

GOLDEN = Path(__file__).parent / "small_lease_decisions.jsonl"


def decision_log() -> list[str]:
    scenario = replace(load_scenario("small-lease"), duration_s=2 * 86_400)
    lines: list[str] = []

    def hook(engine: Any) -> None:
        engine.sinks.append(lambda e: lines.append(json.dumps(e, sort_keys=True)))

    simulate(scenario, engine_hook=hook)
    return lines


def test_decision_log_matches_golden_file() -> None:
    matches_golden(decision_log(), GOLDEN)


def test_the_log_records_every_kind_of_decision() -> None:
    kinds = {json.loads(x)["event"] for x in GOLDEN.read_text().splitlines()}
    assert {"submit", "place", "reclaim", "preempt", "end"} <= kinds
