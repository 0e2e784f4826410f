"""Overflow to elastic pools in the live server: each job's route (the pool it was sent
to; null: the lease), every routing decision (the overflow budget spent is summed from
them), and the pools' own usage ledger. Additive.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("route", sa.String(64), nullable=True))
    op.create_table(
        "job_routes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("t", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("arrives_s", sa.BigInteger(), nullable=False),
        sa.Column("cost_micro", sa.BigInteger(), nullable=False),
        sa.Column("overflow", sa.Boolean(), nullable=False),
        sa.Column("data_gb", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_job_routes_job_id", "job_routes", ["job_id"])
    op.create_index("ix_job_routes_tenant_month", "job_routes", ["tenant", "month"])
    op.create_table(
        "pool_ledger",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("accelerator", sa.String(64), nullable=False),
        sa.Column("nodes", sa.Text(), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("end_s", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
    )
    op.create_index("ix_pool_ledger_tenant_start", "pool_ledger", ["tenant", "start_s"])


def downgrade() -> None:
    op.drop_index("ix_pool_ledger_tenant_start", "pool_ledger")
    op.drop_table("pool_ledger")
    op.drop_index("ix_job_routes_tenant_month", "job_routes")
    op.drop_index("ix_job_routes_job_id", "job_routes")
    op.drop_table("job_routes")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("route")
