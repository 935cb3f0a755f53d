"""Scheduled job runs keep their trace id (``scheduled_job_logs.trace_id``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scheduled_job_logs", sa.Column("trace_id", sa.String(length=32)))


def downgrade() -> None:
    with op.batch_alter_table("scheduled_job_logs") as batch:
        batch.drop_column("trace_id")
