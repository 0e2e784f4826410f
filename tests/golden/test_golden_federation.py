"""The decision log of a small seeded federated scenario matches the checked-in file: the
federation's routing decisions and every provider engine's events, in order, each
tagged with its provider.

Regenerate after an intended change with ``COTENANT_UPDATE_GOLDEN=1 pytest tests/golden``
and review the diff like code.
"""

from __future__ import annotations

import json
from pathlib import Path

from golden_compare import matches_golden

from cotenant.federation.core import Federation
from cotenant.twin.federated import run_federated
from cotenant.twin.scenario import load_scenario

HERE = Path(__file__).parent
GOLDEN = HERE / "small_fed_decisions.jsonl"


def decision_log() -> list[str]:
    scenario = load_scenario(HERE / "small_fed.toml")
    assert scenario.providers is not None
    lines: list[str] = []

    def sink(provider: str) -> object:
        return lambda e: lines.append(json.dumps({"log": provider, **e}, sort_keys=True))

    def hook(fed: Federation) -> None:
        fed.sinks.append(sink("federation"))  # type: ignore[arg-type]
        for name, eng in fed.engines.items():
            eng.sinks.append(sink(name))  # type: ignore[arg-type]

    run_federated(scenario, scenario.providers, federation_hook=hook)
    return lines


def test_federated_decision_log_matches_golden_file() -> None:
    matches_golden(decision_log(), GOLDEN)


def test_the_log_records_overflow_and_migration() -> None:
    entries = [json.loads(x) for x in GOLDEN.read_text().splitlines()]
    reasons = {e["reason"] for e in entries if e["log"] == "federation"}
    assert {"overflowed", "migrated", "entitled-room"} <= reasons
    assert {e["log"] for e in entries} == {"federation", "lease", "cloud"}
