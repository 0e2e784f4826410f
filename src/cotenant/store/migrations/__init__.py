"""Alembic migrations of the store, run by ``cotenant.store.db.migrate``."""
