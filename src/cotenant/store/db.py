"""Database engines and migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout and
``synchronous=NORMAL``: a committed transaction survives the process being killed
(the crash the service must survive); a power cut may lose the last few commits.
Set ``COTENANT_SQLITE_SYNCHRONOUS=FULL`` to trade throughput for that too.
PostgreSQL is used by URL (``postgresql+psycopg://...``), with a connect timeout
(``COTENANT_PG_CONNECT_TIMEOUT``, 5 s by default).

Connecting backs off: after a failed connection attempt, further attempts fail at once
(as the driver's own OperationalError) until an exponential back-off is over, so an
unreachable server costs a few attempts a second at most, not one per request.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cotenant.model.errors import SpecError
from cotenant.store.health import Backoff

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_S = 5


class ConnectGate:
    """Exponential back-off on opening connections (shared by every pool thread)."""

    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff(base_s=0.05, cap_s=2.0)
        self.attempts = 0
        self._lock = threading.Lock()

    def connect(self, dialect: Any, cargs: Any, cparams: Any) -> Any:
        with self._lock:
            wait = self.backoff.wait_s()
        if wait > 0:
            raise dialect.loaded_dbapi.OperationalError(
                f"not connecting to the database for another {wait:.1f} s (back-off after "
                "failed attempts)"
            )
        self.attempts += 1
        try:
            conn = dialect.connect(*cargs, **cparams)
        except Exception:
            with self._lock:
                self.backoff.failed()
            raise
        with self._lock:
            self.backoff.reset()
        return conn


def _gate(engine: sa.Engine) -> ConnectGate:
    gate = ConnectGate()

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _rec: Any, cargs: Any, cparams: Any) -> Any:
        return gate.connect(dialect, cargs, cparams)

    return gate


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

        _gate(engine)
        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    kw.setdefault("pool_timeout", 10)
    timeout = os.environ.get("COTENANT_PG_CONNECT_TIMEOUT", str(PG_CONNECT_TIMEOUT_S))
    if not timeout.isdigit() or int(timeout) < 1:
        raise SpecError(
            "COTENANT_PG_CONNECT_TIMEOUT", f"must be whole seconds >= 1, got {timeout!r}"
        )
    if "connect_timeout" not in parsed.query:
        kw.setdefault("connect_args", {"connect_timeout": int(timeout)})
    engine = sa.create_engine(parsed, **kw)
    _gate(engine)
    return engine


def sqlite_problem(url: str) -> str | None:
    """Why an SQLite file store cannot be written (a missing directory, a read-only
    filesystem, directory or file), in words; None if none of these (or not SQLite)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).absolute()
    parent = path.parent
    if not parent.is_dir():
        return f"directory {parent} does not exist"
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        return f"{parent} is on a read-only filesystem"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is read-only"
    if not os.access(parent, os.W_OK):
        return f"directory {parent} is not writable"
    return None


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


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
