"""Event log, schema registry, polled event sources and the job queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Children before parents, so that downgrade can drop in this order.
TABLES = (
    "stream_partitions",
    "consumer_offsets",
    "events",
    "event_streams",
    "idempotency_keys",
    "event_type_schemas",
    "event_types",
    "event_sources",
    "jobs",
)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("log_offset", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("partition_key", sa.String(length=500), nullable=True),
        sa.Column("data_content_type", sa.String(length=200), nullable=True),
        sa.Column("data_schema", sa.String(length=500), nullable=True),
        sa.Column("extensions", JSON, nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "stream", "partition", "log_offset", name=op.f("pk_events")
        ),
        sa.UniqueConstraint(
            "org_id", "source", "event_id", name=op.f("uq_events_org_id_source_event_id")
        ),
    )
    op.create_index(
        op.f("ix_events_org_id_stream_received_at"),
        "events",
        ["org_id", "stream", "received_at"],
        unique=False,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ordering_key", sa.String(length=200), nullable=True),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("lease_token", sa.String(length=40), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("kind", "dedupe_key", name=op.f("uq_jobs_kind_dedupe_key")),
    )
    op.create_index(
        op.f("ix_jobs_ordering_key_state"), "jobs", ["ordering_key", "state"], unique=False
    )
    op.create_index(op.f("ix_jobs_org_id_state"), "jobs", ["org_id", "state"], unique=False)
    op.create_index(
        op.f("ix_jobs_queue_state_run_at"), "jobs", ["queue", "state", "run_at"], unique=False
    )
    op.create_table(
        "event_sources",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("connection_secret", sa.Text(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("checkpoint", sa.String(length=100), nullable=True),
        sa.Column("events_ingested", sa.BigInteger(), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_event_sources_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_sources")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_event_sources_org_id_name")),
    )
    op.create_table(
        "event_streams",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("partition_count", sa.Integer(), nullable=False),
        sa.Column("retention_seconds", sa.BigInteger(), nullable=True),
        sa.Column("retention_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_event_streams_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("org_id", "name", name=op.f("pk_event_streams")),
    )
    op.create_table(
        "event_types",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("example", JSON, nullable=True),
        sa.Column("compatibility", sa.String(length=32), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_event_types_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_types")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_event_types_org_id_name")),
    )
    op.create_table(
        "consumer_offsets",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("group_name", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("committed_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id", "stream"],
            ["event_streams.org_id", "event_streams.name"],
            name=op.f("fk_consumer_offsets_org_id_event_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "org_id", "group_name", "stream", "partition", name=op.f("pk_consumer_offsets")
        ),
    )
    op.create_table(
        "event_type_schemas",
        sa.Column("event_type_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("schema", JSON, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_type_id"],
            ["event_types.id"],
            name=op.f("fk_event_type_schemas_event_type_id_event_types"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_type_id", "version", name=op.f("pk_event_type_schemas")),
    )
    op.create_table(
        "stream_partitions",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("first_offset", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("byte_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id", "stream"],
            ["event_streams.org_id", "event_streams.name"],
            name=op.f("fk_stream_partitions_org_id_event_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "stream", "partition", name=op.f("pk_stream_partitions")),
    )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
