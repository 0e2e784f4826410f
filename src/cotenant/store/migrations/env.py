"""Alembic environment: runs on the connection ``cotenant.store.db.migrate`` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from cotenant.store.tables import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):  # pragma: no cover - only via migrate()
    raise RuntimeError("run migrations with cotenant.store.db.migrate(engine)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
