"""``cotenant scenario schema`` prints a JSON Schema that every built-in scenario meets
and that refuses what the scenario reader refuses (an unknown key, a bad type)."""

from __future__ import annotations

import json
import tomllib
from datetime import date, datetime
from importlib import resources
from typing import Any

import jsonschema
import pytest

from cotenant.cli.main import run
from cotenant.twin.scenario import builtin_names


def printed_schema(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert run(["scenario", "schema"]) == 0
    schema: dict[str, Any] = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def as_json(value: Any) -> Any:
    """A TOML table as JSON would hold it (dates become ISO strings)."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def builtin(name: str) -> dict[str, Any]:
    text = resources.files("cotenant.twin.scenarios").joinpath(f"{name}.toml").read_text()
    return as_json(tomllib.loads(text))


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_scenario_meets_the_printed_schema(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    jsonschema.validate(builtin(name), printed_schema(capsys))


def _set(table: dict[str, Any], path: list[str | int], value: Any) -> None:
    here: Any = table
    for part in path[:-1]:
        here = here.setdefault(part, {}) if isinstance(part, str) else here[part]
    here[path[-1]] = value


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(["polcy"], "fifo", id="unknown-top-level-key"),
        pytest.param(["tenants", 0, "contract", "commitment", "gpu"], 8, id="unknown-nested-key"),
        pytest.param(["tenants", 0, "contract", "commitment", "gpus"], -1, id="negative-gpus"),
        pytest.param(["tenants", 0, "contract", "lending", "lend_idle"], "no", id="flag-as-text"),
        pytest.param(["policy"], "fifo-backfil", id="unknown-policy"),
        pytest.param(["cluster", "preset"], "small-17", id="unknown-preset"),
        pytest.param(["tenants", 0, "contract", "notice", "ramp"], "cubic", id="unknown-ramp"),
    ],
)
def test_the_schema_refuses_what_the_reader_refuses(
    capsys: pytest.CaptureFixture[str], path: list[str | int], value: Any
) -> None:
    raw = builtin("small-lease")
    _set(raw, path, value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, printed_schema(capsys))
