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


# -- durations ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90d", 90 * 86_400, id="days"),
        pytest.param("45", 45, id="plain-seconds"),
        pytest.param("1.5h", 5400, id="fractional"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("2d12h30m15s", 2 * 86_400 + 12 * 3600 + 30 * 60 + 15, id="compound-all"),
        pytest.param("1w2d", 9 * 86_400, id="weeks-days"),
        pytest.param("5:00", 300, id="slurm-mm-ss"),
        pytest.param("1:30:00", 5400, id="slurm-hh-mm-ss"),
        pytest.param("2-00:00:00", 2 * 86_400, id="slurm-days"),
        pytest.param("1-12", 36 * 3600, id="slurm-days-hours"),
        pytest.param("1-12:30", 36 * 3600 + 1800, id="slurm-days-hours-minutes"),
    ],
)
def test_durations_in_compound_and_slurm_forms(text: str, seconds: int) -> None:
    from cotenant.model.time import parse_duration

    assert parse_duration(text, "--duration") == seconds


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("-1h", "must not be negative", id="negative"),
        pytest.param("1e400", "finite", id="huge"),
        pytest.param("nan", "finite", id="nan"),
        pytest.param("1h30", "cannot read", id="dangling-number"),
        pytest.param("--5", "cannot read", id="double-sign"),
        pytest.param("1-2-3", "cannot read", id="bad-slurm"),
        pytest.param("soon", "cannot read", id="word"),
    ],
)
def test_bad_durations_name_the_field(text: str, problem: str) -> None:
    from cotenant.model.errors import SpecError
    from cotenant.model.time import parse_duration

    with pytest.raises(SpecError) as e:
        parse_duration(text, "--duration")
    assert e.value.field == "--duration" and problem in e.value.problem
