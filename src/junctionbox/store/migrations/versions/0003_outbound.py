"""Outbound delivery: integrations and their versions, delivery logs, DLQ, scheduled
deliveries, lookups, destination breakers and alerts; the job queue's claim index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

TABLES = (
    "outbound_integrations",
    "integration_versions",
    "delivery_logs",
    "dlq_entries",
    "scheduled_integrations",
    "lookups",
    "destination_breakers",
    "alerts",
)
JOBS_DUE_COLUMNS: list[str | sa.TextClause] = [
    "queue",
    "state",
    sa.text("priority DESC"),
    "run_at",
    "created_at",
    "id",
]


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "details",
            JSON,
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(
        op.f("ix_alerts_org_id_created_at"), "alerts", ["org_id", "created_at"], unique=False
    )
    op.create_table(
        "delivery_logs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("integration_id", sa.String(length=40), nullable=True),
        sa.Column("integration_name", sa.String(length=200), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=True),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("event_type", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=True),
        sa.Column("http_method", sa.String(length=10), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_time_ms", sa.Integer(), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_category", sa.String(length=32), nullable=True),
        sa.Column("original_payload", sa.Text(), nullable=True),
        sa.Column(
            "request_headers",
            JSON,
            nullable=True,
        ),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column(
            "response_headers",
            JSON,
            nullable=True,
        ),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.String(length=100), nullable=True),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column("action_name", sa.String(length=200), nullable=True),
        sa.Column("action_index", sa.Integer(), nullable=True),
        sa.Column("should_retry", sa.Boolean(), nullable=False),
        sa.Column(
            "steps",
            JSON,
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_logs")),
    )
    op.create_index(
        op.f("ix_delivery_logs_delivery_id"), "delivery_logs", ["delivery_id"], unique=False
    )
    op.create_index(
        op.f("ix_delivery_logs_org_id_created_at"),
        "delivery_logs",
        ["org_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_delivery_logs_org_id_integration_id_created_at"),
        "delivery_logs",
        ["org_id", "integration_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_delivery_logs_org_id_status_created_at"),
        "delivery_logs",
        ["org_id", "status", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_delivery_logs_trace_id"), "delivery_logs", ["trace_id"], unique=False)
    op.create_table(
        "destination_breakers",
        sa.Column("org_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "destination", name=op.f("pk_destination_breakers")),
    )
    op.create_table(
        "dlq_entries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("integration_id", sa.String(length=40), nullable=False),
        sa.Column("integration_name", sa.String(length=200), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("event_type", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "job",
            JSON,
            nullable=False,
        ),
        sa.Column("original_payload", sa.Text(), nullable=True),
        sa.Column("target_url", sa.Text(), nullable=True),
        sa.Column("http_method", sa.String(length=10), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_category", sa.String(length=32), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dlq_entries")),
    )
    op.create_index(
        op.f("ix_dlq_entries_delivery_id"), "dlq_entries", ["delivery_id"], unique=False
    )
    op.create_index(
        op.f("ix_dlq_entries_org_id_status_created_at"),
        "dlq_entries",
        ["org_id", "status", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_dlq_entries_status_next_retry_at"),
        "dlq_entries",
        ["status", "next_retry_at"],
        unique=False,
    )
    op.create_table(
        "integration_versions",
        sa.Column("integration_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("change", sa.String(length=32), nullable=False),
        sa.Column(
            "config",
            JSON,
            nullable=False,
        ),
        sa.Column("sealed_secrets", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("integration_id", "version", name=op.f("pk_integration_versions")),
    )
    op.create_table(
        "scheduled_integrations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("integration_id", sa.String(length=40), nullable=False),
        sa.Column("integration_name", sa.String(length=200), nullable=True),
        sa.Column("original_event_id", sa.String(length=200), nullable=True),
        sa.Column("event_type", sa.String(length=200), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column(
            "job",
            JSON,
            nullable=False,
        ),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("target_url", sa.Text(), nullable=True),
        sa.Column("http_method", sa.String(length=10), nullable=True),
        sa.Column(
            "recurring_config",
            JSON,
            nullable=True,
        ),
        sa.Column(
            "cancellation_info",
            JSON,
            nullable=True,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_integrations")),
    )
    op.create_index(
        op.f("ix_scheduled_integrations_integration_id_status"),
        "scheduled_integrations",
        ["integration_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_scheduled_integrations_org_id_status_scheduled_for"),
        "scheduled_integrations",
        ["org_id", "status", "scheduled_for"],
        unique=False,
    )
    op.create_table(
        "lookups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_lookups_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lookups")),
        sa.UniqueConstraint("org_id", "type", "key", name=op.f("uq_lookups_org_id_type_key")),
    )
    op.create_table(
        "outbound_integrations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "config",
            JSON,
            nullable=False,
        ),
        sa.Column("sealed_secrets", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_outbound_integrations_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_integrations")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_outbound_integrations_org_id_name")),
    )
    op.create_index(
        op.f("ix_outbound_integrations_org_id_is_active"),
        "outbound_integrations",
        ["org_id", "is_active"],
        unique=False,
    )

    op.drop_index(op.f("ix_jobs_queue_state_run_at"), table_name="jobs")
    op.create_index("ix_jobs_due", "jobs", JOBS_DUE_COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_due", table_name="jobs")
    op.create_index(
        op.f("ix_jobs_queue_state_run_at"), "jobs", ["queue", "state", "run_at"], unique=False
    )
    for table in TABLES:
        op.drop_table(table)
