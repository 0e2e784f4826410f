"""``cotenant --help`` starts fast: the heavy libraries (NumPy, Matplotlib, SQLAlchemy,
FastAPI, Dask) and the engine load only inside the commands that use them (issue 15).
Checked by what a fresh interpreter has imported, not by a timing (bench/bench_cli_start.py
measures the time). Pydantic is kept out of the top-level help only: a command's own help
loads it (typer's parameter types, the API client's models). The top-level help builds
no command and loads neither typer's Markdown nor its traceback modules
(cli/deferred.py), and reads the same as with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from cotenant.cli.deferred import Described
from cotenant.cli.main import app

HEAVY = (
    "numpy",
    "matplotlib",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "distributed",
    "dask",
    "pandas",
    "scipy",
    "cotenant.engine.core",
    "cotenant.store",
    "cotenant.api",
)

PROBE = """
import contextlib, io, json, sys
from cotenant.cli.main import run
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = run(sys.argv[1:])
loaded = sorted(m for m in json.loads(sys.stdin.read()) if m in sys.modules)
print(json.dumps({"code": code, "help": out.getvalue(), "loaded": loaded}))
"""


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-arguments"),
        pytest.param(["--help"], id="help"),
        pytest.param(["replay", "--help"], id="replay-help"),
        pytest.param(["serve", "--help"], id="serve-help"),
        pytest.param(["whatif", "--help"], id="whatif-help"),
        pytest.param(["jobs", "--help"], id="jobs-help"),
    ],
)
def test_help_loads_no_heavy_module(argv: list[str]) -> None:
    got = probe(argv, HEAVY)
    assert got["code"] == 0
    assert str(got["help"]).count("Usage:") == 1, "the help is printed once"
    assert got["loaded"] == [], f"cotenant {' '.join(argv)} imported {got['loaded']}"


def test_top_level_help_loads_no_pydantic() -> None:
    """(The pipeline file's models load only when a file is read: ``pipelines submit``.)"""
    got = probe(["--help"], ("pydantic", "httpx", "cotenant.cli.pipeline_file"))
    assert got["code"] == 0 and got["loaded"] == [], got["loaded"]


# What the top-level help needs none of: typer.rich_utils' Markdown (markdown-it, Pygments)
# and traceback (attrs) modules, and what only a command's own work uses.
NOT_FOR_TOP_HELP = (
    "rich.markdown",
    "markdown_it",
    "rich.syntax",
    "pygments",
    "rich.traceback",
    "rich.pretty",
    "attr",
    "tomllib",
    "rich.progress",
)


@pytest.mark.parametrize("argv", [pytest.param([], id="no-arguments"), ["--help"]])
def test_top_level_help_loads_only_what_it_shows(argv: list[str]) -> None:
    got = probe(argv, NOT_FOR_TOP_HELP)
    assert got["code"] == 0 and got["loaded"] == [], got["loaded"]


def test_top_level_help_reads_the_same_with_the_real_modules() -> None:
    """The stand-ins change nothing shown: the help printed when rich.markdown and
    rich.traceback were loaded before typer's help (so typer binds the real classes) is
    the same, colours included."""
    preload = "import rich.markdown, rich.traceback\n"
    env = {"FORCE_COLOR": "1", "COLUMNS": "120"}
    lean = probe(["--help"], ("rich.markdown",), env=env)
    full = probe(["--help"], ("rich.markdown",), env=env, before=preload)
    assert lean["loaded"] == [] and full["loaded"] == ["rich.markdown"]
    assert "\x1b[" in str(full["help"]) and "Commands" in str(full["help"])
    assert lean["help"] == full["help"]


STAND_INS_WORK = """
import json
from cotenant.cli.deferred import import_rich_help
import_rich_help()
import typer.rich_utils as ru
md = ru.Markdown("*hi*")
try:
    raise ValueError("x")
except ValueError as e:
    tb = ru.Traceback.from_exception(type(e), e, e.__traceback__)
import rich.markdown, rich.traceback
print(json.dumps([
    type(md) is rich.markdown.Markdown,
    type(tb) is rich.traceback.Traceback,
    rich.markdown.Markdown.__module__ == "rich.markdown",
]))
"""


def test_stand_ins_load_the_real_classes_when_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STAND_INS_WORK], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == [True, True, True]


FALLBACK = """
import json
import cotenant.cli.deferred as deferred
# As if typer imported a name the stand-in does not have (here: Markdown).
deferred.RICH_EXTRAS = (("rich.markdown", "Other"), ("rich.traceback", "Traceback"))
deferred.import_rich_help()
import rich.markdown, typer.rich_utils as ru
print(json.dumps(ru.Markdown is rich.markdown.Markdown))
"""


def test_a_typer_importing_other_names_gets_the_real_modules() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FALLBACK], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) is True


def test_top_level_help_builds_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    """Each command is built when it runs or shows its help; the top-level help lists
    what it is told of each, which is what the built command says."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    ctx = root.make_context("cotenant", [], resilient_parsing=True)
    root.get_help(ctx)  # (typer's rich help prints it)
    assert "replay" in capsys.readouterr().out
    names = root.list_commands(ctx)
    assert names[:3] == ["simulate", "policies", "scenarios"] and "jobs" in names
    assert all(isinstance(root.commands[n], Described) for n in names)
    for name in names:
        described = root.commands[name]
        _, built, _ = root.resolve_command(ctx, [name])
        assert built is not None and not isinstance(built, Described)
        assert built is root.commands[name]
        seen = ("name", "help", "short_help", "hidden", "deprecated", "rich_help_panel")
        assert {a: getattr(described, a) for a in seen} == {a: getattr(built, a) for a in seen}


def probe(
    argv: list[str],
    modules: tuple[str, ...],
    env: dict[str, str] | None = None,
    before: str = "",
) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", before + PROBE, *argv],
        input=json.dumps(modules),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(env or {})},
    )
    got: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return got
