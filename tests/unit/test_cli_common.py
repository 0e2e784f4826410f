"""The errors every command shares (``cli/common.py``): one line, exit code 2, no
traceback; and the commands use that one copy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from cotenant.cli import client, common, invoice, main, replay, serve
from cotenant.model.errors import SpecError


def _app(error: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @common.friendly
    def boom() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    ("error", "line"),
    [
        pytest.param(
            SpecError("energy.pue", "must be >= 1"), "error: energy.pue: must be >= 1", id="spec"
        ),
        pytest.param(
            FileNotFoundError(2, "No such file", "x.toml"),
            "error: file not found: x.toml",
            id="file",
        ),
        pytest.param(
            httpx.ConnectError("refused"),
            "error: cannot reach the server (ConnectError); is COTENANT_URL right?",
            id="server",
        ),
    ],
)
def test_an_error_a_user_can_fix_is_one_line_and_exit_2(error: Exception, line: str) -> None:
    r = CliRunner().invoke(_app(error), [])
    assert r.exit_code == 2
    assert r.stderr.strip() == line
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_a_broken_invariant_is_not_hidden() -> None:
    r = CliRunner().invoke(_app(ZeroDivisionError("bug")), [])
    assert isinstance(r.exception, ZeroDivisionError)


def test_fail_exits_with_the_code_given() -> None:
    with pytest.raises(typer.Exit) as e:
        common.fail("audit chain broken", code=1)
    assert e.value.exit_code == 1


@pytest.mark.parametrize("module", [main, client, invoice, replay, serve], ids=lambda m: m.__name__)
def test_every_command_module_uses_the_one_copy(module: Any) -> None:
    assert module.friendly is common.friendly
    if hasattr(module, "fail"):
        assert module.fail is common.fail
