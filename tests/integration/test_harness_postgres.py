"""The LocalPostgres harness gives a real PostgreSQL the store's tests can use.

Why: the store will run on PostgreSQL in production; its integration tests
need a server that starts in about a second and leaves nothing behind.
"""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from harness.postgres import LocalPostgres


def _libpq(url: str) -> str:
    """psycopg wants a libpq URL, not SQLAlchemy's `postgresql+psycopg://`."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_create_database_table_insert_and_read_back(postgres_server: LocalPostgres) -> None:
    url = postgres_server.create_database("harness_roundtrip")

    assert (
        url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/harness_roundtrip"
    )
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("CREATE TABLE tenant (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO tenant (name) VALUES (%s), (%s)", ("lab-a", "lab-b"))
        conn.commit()
    with psycopg.connect(_libpq(url)) as conn:
        rows = conn.execute("SELECT id, name FROM tenant ORDER BY id").fetchall()

    assert rows == [(1, "lab-a"), (2, "lab-b")]


def test_sqlalchemy_url_works(postgres_server: LocalPostgres) -> None:
    url = postgres_server.create_database("harness_sqlalchemy")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE gpu_seconds (tenant text, used bigint)"))
            conn.execute(sa.text("INSERT INTO gpu_seconds VALUES ('lab-a', 3600)"))
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT sum(used) FROM gpu_seconds")).scalar_one()
    finally:
        engine.dispose()

    assert total == 3600
    postgres_server.drop_database("harness_sqlalchemy")


def test_create_database_rejects_unsafe_names(postgres_server: LocalPostgres) -> None:
    with pytest.raises(ValueError, match="must match"):
        postgres_server.create_database("x; DROP DATABASE postgres")


@pytest.mark.usefixtures("postgres_server")  # skips (or fails in CI) without PostgreSQL
def test_stop_leaves_no_process_port_or_directory() -> None:
    with LocalPostgres() as pg:
        pid = int(pg.pid_file.read_text().split()[0])
        port, workdir = pg.port, pg.workdir
        assert pg.create_database("short_lived").endswith("/short_lived")

    assert not Path(f"/proc/{pid}").exists()
    assert not workdir.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
