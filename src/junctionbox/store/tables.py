"""Every table, defined once for SQLite and PostgreSQL. Migrations must produce exactly this
(tests/migration checks it). Tenant data carries ``org_id``, the entity it belongs to.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

from junctionbox.store.types import PortableJSON, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


# Organizations (parent_id NULL) and their units share one numeric id space, so an ``orgId``
# parameter names either without ambiguity.
entities = Table(
    "entities",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("parent_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT")),
    Column("name", String(200), nullable=False),
    Column("code", String(64)),
    Column("email", String(320)),
    Column("phone", String(64)),
    Column("address", Text),
    Column("tags", PortableJSON, nullable=False),
    Column("region", String(64)),
    Column("timezone", String(64)),
    *_timestamps(),
    Index(None, "parent_id"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT")),
    Column("is_active", Boolean, nullable=False),
    Column("last_login_at", UTCDateTime()),
    *_timestamps(),
    Index(None, "org_id", "role"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_by", String(40)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Index(None, "org_id"),
)

# Logged-out tokens until they would have expired anyway.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(40), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "expires_at"),
)

audit_logs = Table(
    "audit_logs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("actor_kind", String(16), nullable=False),
    Column("actor_id", String(40)),
    Column("actor_email", String(320)),
    Column("org_id", BigInteger),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64)),
    Column("before", PortableJSON),
    Column("after", PortableJSON),
    Column("request_id", String(64)),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "org_id", "created_at"),
    Index(None, "created_at"),
)
