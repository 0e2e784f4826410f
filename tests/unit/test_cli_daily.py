"""Daily-use commands: --version, --json on the listings, audit verify's default store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cotenant import __version__
from cotenant.cli.main import app
from cotenant.server.bootstrap import bootstrap
from cotenant.server.settings import Settings
from cotenant.store.repo import Store

runner = CliRunner()


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"cotenant {__version__}"


@pytest.mark.parametrize(
    ("command", "field", "expect"),
    [
        pytest.param("policies", "name", {"contract", "fifo-backfill", "fifo"}, id="policies"),
        pytest.param("scenarios", "name", {"colossus-lease", "small-lease"}, id="scenarios"),
    ],
)
def test_listings_as_json(command: str, field: str, expect: set[str]) -> None:
    r = runner.invoke(app, [command, "--json"])
    assert r.exit_code == 0, r.output
    assert expect <= {x[field] for x in json.loads(r.stdout)}


def test_audit_verify_checks_serves_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 2
    assert "no store at cotenant.db" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "cotenant.db").exists()  # looking did not create one
    s = Settings(scenario="small-lease")  # serve's default store, ./cotenant.db
    store = Store(s.db)
    bootstrap(store, s)
    store.close()
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 0, r.output
    assert "ok" in r.stdout.lower()
