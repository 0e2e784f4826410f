"""Database engines and migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout and
``synchronous=NORMAL``: a committed transaction survives the process being killed
(the crash the service must survive); a power cut may lose the last few commits.
Set ``COTENANT_SQLITE_SYNCHRONOUS=FULL`` to trade throughput for that too.
PostgreSQL is used by URL (``postgresql+psycopg://...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cotenant.model.errors import SpecError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def default_url(path: str | Path = "cotenant.db") -> str:
    return f"sqlite:///{Path(path)}"


def make_engine(url: str, **kw: Any) -> sa.Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and thread-shareable
    connections. An unusable URL raises SpecError on ``db``."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise SpecError("db", f"cannot read {url!r} as a database URL") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise SpecError("db", f"unsupported database {backend!r}; use sqlite:/// or postgresql://")
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        kw.setdefault("connect_args", {"check_same_thread": False, "timeout": 10})
        kw.setdefault("pool_size", 8)
        kw.setdefault("max_overflow", 16)
        engine = sa.create_engine(parsed, **kw)
        synchronous = os.environ.get("COTENANT_SQLITE_SYNCHRONOUS", "NORMAL").upper()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise SpecError("COTENANT_SQLITE_SYNCHRONOUS", "must be NORMAL, FULL or EXTRA")

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if parsed.database not in (None, "", ":memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.close()

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kw)


def _alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (all migrations by default); idempotent."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def schema_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
