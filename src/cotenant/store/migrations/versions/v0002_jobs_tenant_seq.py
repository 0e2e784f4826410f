"""A tenant's jobs in submission order: the index a paged ``GET /v1/jobs`` of one tenant
needs. Without it SQLite searched (tenant, state, seq) and sorted every job of the
tenant for each page (bench/bench_live.py).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_seq", "jobs", ["tenant", "seq"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_seq", table_name="jobs")
