"""Observability: delivery rollups, node heartbeats, alert rules, channels, firings and
notifications.

Revision ID: 0008
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "delivery_rollups",
        sa.Column("org_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("integration_id", sa.String(length=40), nullable=False),
        sa.Column("bucket_start", TS, nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("total_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "integration_id",
            "bucket_start",
            "metric",
            "key",
            name=op.f("pk_delivery_rollups"),
        ),
    )
    op.create_index(
        op.f("ix_delivery_rollups_org_id_bucket_start"),
        "delivery_rollups",
        ["org_id", "bucket_start"],
    )
    op.create_index(op.f("ix_delivery_rollups_bucket_start"), "delivery_rollups", ["bucket_start"])
    op.create_table(
        "node_heartbeats",
        sa.Column("node_id", sa.String(length=120), nullable=False),
        sa.Column("roles", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("details", JSON, nullable=True),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_heartbeats")),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("channel_ids", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_index(op.f("ix_alert_rules_org_id"), "alert_rules", ["org_id"])
    op.create_table(
        "alert_channels",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_channels")),
    )
    op.create_index(op.f("ix_alert_channels_org_id"), "alert_channels", ["org_id"])
    op.create_table(
        "alert_firings",
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("last_fired_at", TS, nullable=False),
        sa.Column("last_alert_id", sa.String(length=40), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("dedupe_key", name=op.f("pk_alert_firings")),
    )
    op.create_table(
        "alert_notifications",
        sa.Column("alert_id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("routed_at", TS, nullable=False),
        sa.Column("results", JSON, nullable=True),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alert_notifications")),
    )


def downgrade() -> None:
    for table in (
        "alert_notifications",
        "alert_firings",
        "alert_channels",
        "alert_rules",
        "node_heartbeats",
        "delivery_rollups",
    ):
        op.drop_table(table)
