"""API gateway: routes, tenant gateway settings and per-route hourly rollups.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_routes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("sealed_secrets", sa.Text(), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_gateway_routes_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_routes")),
    )
    op.create_index(
        op.f("ix_gateway_routes_org_id_path"), "gateway_routes", ["org_id", "path"], unique=False
    )
    op.create_table(
        "gateway_settings",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("security", JSON, nullable=False),
        sa.Column("rate_limits", JSON, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_gateway_settings_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_gateway_settings")),
    )
    op.create_table(
        "gateway_route_stats",
        sa.Column("route_id", sa.String(length=40), nullable=False),
        sa.Column("bucket_start", STAMP, nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("client_errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.Column("latency_histogram", JSON, nullable=False),
        sa.Column("clients", JSON, nullable=False),
        sa.PrimaryKeyConstraint("route_id", "bucket_start", name=op.f("pk_gateway_route_stats")),
    )
    op.create_index(
        op.f("ix_gateway_route_stats_org_id_bucket_start"),
        "gateway_route_stats",
        ["org_id", "bucket_start"],
        unique=False,
    )


def downgrade() -> None:
    for table in ("gateway_route_stats", "gateway_settings", "gateway_routes"):
        op.drop_table(table)
