"""Webhook receiver: webhook sources and the replay store of received message ids.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_sources",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("secrets", JSON, nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_webhook_sources_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_sources")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_webhook_sources_org_id_name")),
    )
    op.create_table(
        "webhook_receipts",
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source_id", "message_id", name=op.f("pk_webhook_receipts")),
    )
    op.create_index(
        op.f("ix_webhook_receipts_expires_at"), "webhook_receipts", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_receipts_expires_at"), table_name="webhook_receipts")
    op.drop_table("webhook_receipts")
    op.drop_table("webhook_sources")
