"""Scheduled jobs (issue 6): scheduled_jobs and their runs, scheduled_job_logs.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scheduled_jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("secrets", sa.Text(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", TIME, nullable=True),
        sa.Column("last_run_at", TIME, nullable=True),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_scheduled_jobs_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_jobs")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_scheduled_jobs_org_id_name")),
    )
    op.create_index(
        op.f("ix_scheduled_jobs_is_active_next_run_at"),
        "scheduled_jobs",
        ["is_active", "next_run_at"],
        unique=False,
    )
    op.create_table(
        "scheduled_job_logs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("run_key", sa.String(length=80), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("queue_job_id", sa.String(length=40), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("completed_at", TIME, nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("data_fetch_stage", sa.String(length=16), nullable=True),
        sa.Column("records_fetched", sa.Integer(), nullable=True),
        sa.Column("data_fetched", JSON, nullable=True),
        sa.Column("data_truncated", sa.Boolean(), nullable=False),
        sa.Column("transformation_stage", sa.String(length=16), nullable=True),
        sa.Column("transformed_payload", JSON, nullable=True),
        sa.Column("delivery_stage", sa.String(length=16), nullable=True),
        sa.Column("http_request", JSON, nullable=True),
        sa.Column("curl_command", sa.Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_headers", JSON, nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("error_context", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_job_logs")),
        sa.UniqueConstraint("job_id", "run_key", name=op.f("uq_scheduled_job_logs_job_id_run_key")),
    )
    op.create_index(
        op.f("ix_scheduled_job_logs_org_id_job_id_created_at"),
        "scheduled_job_logs",
        ["org_id", "job_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_scheduled_job_logs_status_created_at"),
        "scheduled_job_logs",
        ["status", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("scheduled_job_logs")
    op.drop_table("scheduled_jobs")
