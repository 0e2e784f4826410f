"""Fixtures for the end-to-end tests: a database URL on SQLite or PostgreSQL, and the
real server on it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import LiveServer

from harness.postgres import LocalPostgres

_dbs = itertools.count()


def make_db_url(request: pytest.FixtureRequest, kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'cotenant.db'}"
    pg: LocalPostgres = request.getfixturevalue("postgres_server")
    return pg.create_database(f"e2e_{os.getpid()}_{next(_dbs)}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One demo server (small-lease, 60x) per test module and database."""
    workdir = tmp_path_factory.mktemp(f"server-{request.param}")
    with LiveServer(make_db_url(request, request.param, workdir), workdir) as s:
        yield s


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh demo server on its own SQLite file, for tests that kill or restart it."""
    with LiveServer(f"sqlite:///{tmp_path / 'cotenant.db'}", tmp_path) as s:
        yield s
