"""Service registry: the tenants' named upstreams for gateway routes (``gateway_services``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_services",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("service_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("endpoints", JSON, nullable=False),
        sa.Column("health_check_url", sa.String(length=2000), nullable=True),
        sa.Column("heartbeat_ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("dependencies", JSON, nullable=False),
        sa.Column("capabilities", JSON, nullable=False),
        sa.Column("configuration", JSON, nullable=False),
        sa.Column("service_metadata", JSON, nullable=False),
        sa.Column("health", JSON, nullable=False),
        sa.Column("registered_at", STAMP, nullable=False),
        sa.Column("last_heartbeat", STAMP, nullable=True),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["entities.id"],
            name=op.f("fk_gateway_services_org_id_entities"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_services")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_gateway_services_org_id_name")),
    )


def downgrade() -> None:
    op.drop_table("gateway_services")
