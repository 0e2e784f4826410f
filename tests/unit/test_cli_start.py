"""``cotenant --help`` starts fast: the heavy libraries (NumPy, Matplotlib, SQLAlchemy,
FastAPI, Dask) and the engine load only inside the commands that use them (issue 15).
Checked by what a fresh interpreter has imported, not by a timing (bench/bench_cli_start.py
measures the time). Pydantic is kept out of the top-level help only: a command's own help
loads it (typer's parameter types, the API client's models)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
    assert "Usage:" in got["help"]
    assert got["loaded"] == [], f"cotenant {' '.join(argv)} imported {got['loaded']}"


def test_top_level_help_loads_no_pydantic() -> None:
    """(The pipeline file's models load only when a file is read: ``pipelines submit``.)"""
    got = probe(["--help"], ("pydantic", "httpx", "cotenant.cli.pipeline_file"))
    assert got["code"] == 0 and got["loaded"] == [], got["loaded"]


def probe(argv: list[str], modules: tuple[str, ...]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        input=json.dumps(modules),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return got
