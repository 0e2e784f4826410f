"""Dependencies and pipelines: the jobs a job waits for, the pipeline it is a stage of,
and the pipelines themselves. Additive: existing jobs wait for nothing.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("after", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("pipeline", sa.String(40), nullable=True))
    op.create_index("ix_jobs_pipeline", "jobs", ["pipeline"])
    op.create_table(
        "pipelines",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("stages", sa.Text(), nullable=False),
        sa.Column("submit_s", sa.BigInteger(), nullable=False),
        sa.Column("submitted_by", sa.String(40), nullable=False),
        sa.Column("cancelled_s", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_pipelines_tenant_seq", "pipelines", ["tenant", "seq"])


def downgrade() -> None:
    op.drop_index("ix_pipelines_tenant_seq", table_name="pipelines")
    op.drop_table("pipelines")
    op.drop_index("ix_jobs_pipeline", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("pipeline")
        batch.drop_column("after")
