"""A covering index for usage aggregated in SQL (``store/usage.py``): the GROUP BY
tenant, borrowed reads the index in order, never the ledger's wide rows, and never sorts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_usage", "ledger", ["tenant", "borrowed", "start_s", "end_s", "gpus"])


def downgrade() -> None:
    op.drop_index("ix_ledger_usage", table_name="ledger")
