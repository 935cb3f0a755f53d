"""Every table, defined once for SQLite and PostgreSQL. Migrations must produce exactly this
(tests/migration checks it). Tenant data carries ``org_id``, the entity it belongs to.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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


# --- the event log ---

# A stream is named per tenant (``default`` unless the producer names one). Partition counts
# only grow; retention is by age and/or bytes per partition.
event_streams = Table(
    "event_streams",
    metadata,
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("description", Text),
    Column("partition_count", Integer, nullable=False),
    Column("retention_seconds", BigInteger),
    Column("retention_bytes", BigInteger),
    *_timestamps(),
)

# One row per partition: the next offset to hand out (its row lock orders appends, so offsets
# commit in order), the first offset retention kept, and running totals for the metrics.
stream_partitions = Table(
    "stream_partitions",
    metadata,
    Column("org_id", BigInteger, primary_key=True),
    Column("stream", String(100), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("first_offset", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("byte_count", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["org_id", "stream"], ["event_streams.org_id", "event_streams.name"], ondelete="CASCADE"
    ),
)

# The log itself. ``payload`` holds the event's data bytes exactly as received; the CloudEvents
# attributes are columns, extension attributes (and traceparent) live in ``extensions``.
events = Table(
    "events",
    metadata,
    Column("org_id", BigInteger, primary_key=True),
    Column("stream", String(100), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("log_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(200), nullable=False),
    Column("source", String(500), nullable=False),
    Column("type", String(200), nullable=False),
    Column("subject", String(500)),
    Column("event_time", UTCDateTime()),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("partition_key", String(500)),
    Column("data_content_type", String(200)),
    Column("data_schema", String(500)),
    Column("extensions", PortableJSON),
    Column("payload", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    UniqueConstraint("org_id", "source", "event_id"),
    Index(None, "org_id", "stream", "received_at"),
)

# Committed positions of named readers (Kafka semantics: the next offset to read).
consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("org_id", BigInteger, primary_key=True),
    Column("group_name", String(100), primary_key=True),
    Column("stream", String(100), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("committed_offset", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["org_id", "stream"], ["event_streams.org_id", "event_streams.name"], ondelete="CASCADE"
    ),
)

# Stripe-style idempotency: the first response for a key, replayed for 24 hours.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("org_id", BigInteger, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response_status", Integer, nullable=False),
    Column("response_body", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "expires_at"),
)

# --- the schema registry ---

event_types = Table(
    "event_types",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    Column("example", PortableJSON),
    Column("compatibility", String(32), nullable=False),
    Column("latest_version", Integer, nullable=False),
    *_timestamps(),
    UniqueConstraint("org_id", "name"),
)

event_type_schemas = Table(
    "event_type_schemas",
    metadata,
    Column(
        "event_type_id",
        String(40),
        ForeignKey("event_types.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("schema", PortableJSON, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_by", String(40)),
    Column("created_at", UTCDateTime(), nullable=False),
)

# --- event sources that poll (the SQL table source) ---

# ``connection_secret`` is the sealed connection URL; ``config`` holds the table, columns and
# polling options. The lease makes one node the poller of a source at a time.
event_sources = Table(
    "event_sources",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("connection_secret", Text, nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("checkpoint", String(100)),
    Column("events_ingested", BigInteger, nullable=False),
    Column("last_polled_at", UTCDateTime()),
    Column("last_error", Text),
    Column("lease_owner", String(100)),
    Column("lease_expires_at", UTCDateTime()),
    *_timestamps(),
    UniqueConstraint("org_id", "name"),
)

# --- the job queue ---

# One durable queue for all asynchronous work. A claim sets ``lease_token`` (fencing: only the
# holder of the current token may finish the job) and ``leased_until`` (heartbeats extend it;
# an expired lease makes the job claimable again).
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger),
    Column("kind", String(64), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("payload", PortableJSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", UTCDateTime(), nullable=False),
    Column("ordering_key", String(200)),
    Column("dedupe_key", String(200)),
    Column("lease_token", String(40)),
    Column("lease_owner", String(100)),
    Column("leased_until", UTCDateTime()),
    Column("last_error", Text),
    Column("finished_at", UTCDateTime()),
    *_timestamps(),
    UniqueConstraint("kind", "dedupe_key"),
    Index(None, "org_id", "state"),
)
# FIFO per ordering key finds the key's other jobs here. Most jobs have no key, and this
# index leaves them out: their insert, claim and completion touch one index fewer (a claim
# of 256 jobs on SQLite: 40 -> 35 µs per job).
_KEYED = jobs.c.ordering_key.is_not(None)
Index(
    "ix_jobs_ordering_key_state",
    jobs.c.ordering_key,
    jobs.c.state,
    sqlite_where=_KEYED,
    postgresql_where=_KEYED,
)
# The claim's ORDER BY, so a claim reads the head of the index instead of sorting the backlog
# (PostgreSQL: 100 of 100k ready jobs in 2 ms instead of 360 ms).
Index(
    "ix_jobs_due",
    jobs.c.queue,
    jobs.c.state,
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.created_at,
    jobs.c.id,
)


# --- outbound delivery ---

# ``config`` is the integration in its API form without credentials; ``sealed_secrets`` is the
# SecretBox-sealed JSON of its credentials (outgoing auth secrets, signing keys). Every change
# bumps ``version`` and is copied to ``integration_versions``.
outbound_integrations = Table(
    "outbound_integrations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("sealed_secrets", Text),
    Column("consecutive_failures", Integer, nullable=False),
    Column("disabled_reason", String(200)),
    Column("disabled_at", UTCDateTime()),
    Column("created_by", String(40)),
    *_timestamps(),
    UniqueConstraint("org_id", "name"),
    Index(None, "org_id", "is_active"),
)

integration_versions = Table(
    "integration_versions",
    metadata,
    Column("integration_id", String(40), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("org_id", BigInteger, nullable=False),
    Column("change", String(32), nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("sealed_secrets", Text),
    Column("created_by", String(40)),
    Column("created_at", UTCDateTime(), nullable=False),
)

# One row per attempt (seed 003 ``delivery_logs``); ``steps`` is the execution trace that
# ``/execution-logs`` shows. Bodies and headers are capped at 64 KB when written.
# ``delivery_id`` is the message id sent as ``webhook-id``: the same for every attempt,
# retry, DLQ redrive and replay of one (event, integration, action).
delivery_logs = Table(
    "delivery_logs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("integration_id", String(40)),
    Column("integration_name", String(200)),
    Column("direction", String(16), nullable=False),
    Column("delivery_id", String(40)),
    Column("job_id", String(40)),
    Column("event_id", String(200)),
    Column("event_type", String(200)),
    Column("status", String(16), nullable=False),
    Column("target_url", Text),
    Column("http_method", String(10)),
    Column("response_status", Integer),
    Column("response_time_ms", Integer),
    Column("attempt_count", Integer, nullable=False),
    Column("error_message", Text),
    Column("error_category", String(32)),
    Column("original_payload", Text),
    Column("request_headers", PortableJSON),
    Column("request_body", Text),
    Column("response_headers", PortableJSON),
    Column("response_body", Text),
    Column("correlation_id", String(100)),
    Column("trace_id", String(64)),
    Column("signature", Text),
    Column("trigger_type", String(16), nullable=False),
    Column("action_name", String(200)),
    Column("action_index", Integer),
    Column("should_retry", Boolean, nullable=False),
    Column("steps", PortableJSON),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    Index(None, "org_id", "created_at"),
    Index(None, "org_id", "integration_id", "created_at"),
    Index(None, "org_id", "status", "created_at"),
    Index(None, "delivery_id"),
    Index(None, "trace_id"),
)

# A delivery that failed for good (seed 003 ``dlq``): ``job`` is the delivery job's payload,
# enough to send it again. PENDING_RETRY -> RETRYING -> (deleted on success) | ABANDONED.
dlq_entries = Table(
    "dlq_entries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("integration_id", String(40), nullable=False),
    Column("integration_name", String(200)),
    Column("direction", String(16), nullable=False),
    Column("delivery_id", String(40), nullable=False),
    Column("event_id", String(200)),
    Column("event_type", String(200)),
    Column("status", String(16), nullable=False),
    Column("job", PortableJSON, nullable=False),
    Column("original_payload", Text),
    Column("target_url", Text),
    Column("http_method", String(10)),
    Column("last_error", Text),
    Column("error_category", String(32)),
    Column("delivery_attempts", Integer, nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("max_retries", Integer, nullable=False),
    Column("next_retry_at", UTCDateTime()),
    Column("trace_id", String(64)),
    *_timestamps(),
    Index(None, "status", "next_retry_at"),
    Index(None, "org_id", "status", "created_at"),
    Index(None, "delivery_id"),
)

# DELAYED and RECURRING deliveries (seed 003 ``scheduled_integrations``); each occurrence is a
# row with its own job. ``job`` is the delivery job's payload.
scheduled_integrations = Table(
    "scheduled_integrations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("integration_id", String(40), nullable=False),
    Column("integration_name", String(200)),
    Column("original_event_id", String(200)),
    Column("event_type", String(200)),
    Column("mode", String(16), nullable=False),
    Column("scheduled_for", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("occurrence", Integer, nullable=False),
    Column("job", PortableJSON, nullable=False),
    Column("job_id", String(40)),
    Column("target_url", Text),
    Column("http_method", String(10)),
    Column("recurring_config", PortableJSON),
    Column("cancellation_info", PortableJSON),
    Column("last_error", Text),
    *_timestamps(),
    Index(None, "org_id", "status", "scheduled_for"),
    Index(None, "integration_id", "status"),
)

# Lookup tables for SIMPLE mappings' ``lookup`` transformer: (type, key) -> value per tenant.
lookups = Table(
    "lookups",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("type", String(100), nullable=False),
    Column("key", String(500), nullable=False),
    Column("value", Text, nullable=False),
    Column("description", Text),
    *_timestamps(),
    UniqueConstraint("org_id", "type", "key"),
)

# Circuit breaker per (tenant, destination origin), shared by every worker node.
destination_breakers = Table(
    "destination_breakers",
    metadata,
    Column("org_id", BigInteger, primary_key=True, autoincrement=False),
    Column("destination", String(300), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("successes", Integer, nullable=False),
    Column("opened_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Operator alerts (an integration auto-disabled, a DLQ entry abandoned, ...).
alerts = Table(
    "alerts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("subject_id", String(40)),
    Column("message", Text, nullable=False),
    Column("details", PortableJSON),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("acknowledged_at", UTCDateTime()),
    Index(None, "org_id", "created_at"),
)

# --- Scheduled jobs (issue 6): time-driven fetch -> transform -> deliver, and their runs ---

# ``config`` is the API document without credentials; ``secrets`` the sealed credentials
# (outgoing auth, external database URL). ``next_run_at`` is the first tick not yet claimed:
# a scheduler claims a tick by moving it with a compare-and-set.
scheduled_jobs = Table(
    "scheduled_jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("secrets", Text),
    Column("timezone", String(64), nullable=False),
    Column("next_run_at", UTCDateTime()),
    Column("last_run_at", UTCDateTime()),
    Column("last_status", String(16)),
    Column("version", Integer, nullable=False),
    Column("created_by", String(320)),
    *_timestamps(),
    UniqueConstraint("org_id", "name"),
    Index(None, "is_active", "next_run_at"),
)

# One row per run (seed 003's ``scheduled_job_logs``). ``run_key`` is ``tick:<instant>`` for
# a scheduled tick or ``manual:<id>``: unique per job, the second lock on "once per tick".
scheduled_job_logs = Table(
    "scheduled_job_logs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(40), nullable=False),
    Column("org_id", BigInteger, nullable=False),
    Column("run_key", String(80), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("scheduled_for", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("stage", String(16)),
    Column("queue_job_id", String(40)),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime()),
    Column("completed_at", UTCDateTime()),
    Column("duration_ms", Integer),
    Column("data_fetch_stage", String(16)),
    Column("records_fetched", Integer),
    Column("data_fetched", PortableJSON),
    Column("data_truncated", Boolean, nullable=False),
    Column("transformation_stage", String(16)),
    Column("transformed_payload", PortableJSON),
    Column("delivery_stage", String(16)),
    Column("http_request", PortableJSON),
    Column("curl_command", Text),
    Column("response_status", Integer),
    Column("response_headers", PortableJSON),
    Column("response_body", Text),
    Column("delivery_attempts", Integer, nullable=False),
    Column("error_context", PortableJSON),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("trace_id", String(32)),  # the run's trace (migration 0009)
    UniqueConstraint("job_id", "run_key"),
    Index(None, "org_id", "job_id", "created_at"),
    Index(None, "status", "created_at"),
)

# --- observability (metrics, health, dashboard and analytics, alerts) ---

# Delivery counters per tenant, integration and 5-minute bucket, added to in the transaction
# that records the attempts. (metric, key): ("status", SUCCESS|RETRYING|FAILED), ("error",
# category), ("latency", upper bound in ms of a histogram bucket, or "inf"); ``total_ms`` sums
# the latencies of a latency row.
delivery_rollups = Table(
    "delivery_rollups",
    metadata,
    Column("org_id", BigInteger, primary_key=True, autoincrement=False),
    Column("integration_id", String(40), primary_key=True),
    Column("bucket_start", UTCDateTime(), primary_key=True),
    Column("metric", String(16), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("total_ms", BigInteger, nullable=False),
    Index(None, "org_id", "bucket_start"),
    Index(None, "bucket_start"),
)

# One row per process: its roles and when it was last seen (the health check's "workers
# alive" and the worker-stopped alert read it).
node_heartbeats = Table(
    "node_heartbeats",
    metadata,
    Column("node_id", String(120), primary_key=True),
    Column("roles", String(100), nullable=False),
    Column("version", String(40), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime()),
    Column("details", PortableJSON),
)

# Alert rules per tenant (org_id 0: platform-wide, set by an admin), sent to channels.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("threshold", Float),
    Column("window_seconds", Integer, nullable=False),
    Column("cooldown_seconds", Integer, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("channel_ids", PortableJSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    *_timestamps(),
    Index(None, "org_id"),
)

# EMAIL (config: recipients) or WEBHOOK (config: url; the signing secret sealed).
alert_channels = Table(
    "alert_channels",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("sealed_secret", Text),
    Column("enabled", Boolean, nullable=False),
    *_timestamps(),
    Index(None, "org_id"),
)

# Deduplication and cool-down: one row per condition (rule and subject), the last firing.
alert_firings = Table(
    "alert_firings",
    metadata,
    Column("dedupe_key", String(300), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("last_fired_at", UTCDateTime(), nullable=False),
    Column("last_alert_id", String(40)),
    Column("count", Integer, nullable=False),
)

# An alert center entry once routed to its channels (at most once: the row is claimed first).
alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("alert_id", String(40), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("routed_at", UTCDateTime(), nullable=False),
    Column("results", PortableJSON),
)

# --- webhook receiver (inbound webhooks become events) ---

# A partner's webhook endpoint: ``config`` holds stream, event type rule and verification
# options; ``secrets`` a list of {value (sealed), createdAt, expiresAt} (at most two active).
webhook_sources = Table(
    "webhook_sources",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    Column("is_active", Boolean, nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("secrets", PortableJSON, nullable=False),
    Column("created_by", String(40)),
    *_timestamps(),
    UniqueConstraint("org_id", "name"),
)

# The replay store: one row per (source, sender's message id) until ``expires_at``; the
# primary key makes two concurrent deliveries of one message store one event.
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("source_id", String(40), primary_key=True),
    Column("message_id", String(200), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "expires_at"),
)

# --- API gateway (issue 5, parts 4-5) ---

# Gateway routes per tenant. ``config`` is the route in its API form without secrets;
# ``sealed_secrets`` the SecretBox-sealed JSON of its secrets (a JWT HMAC key).
gateway_routes = Table(
    "gateway_routes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("path", String(500), nullable=False),
    Column("version", String(64)),
    Column("status", String(16), nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("sealed_secrets", Text),
    *_timestamps(),
    Index(None, "org_id", "path"),
)

# Tenant-wide gateway settings: security (CORS, IP rules, HTTPS) and default rate limits.
gateway_settings = Table(
    "gateway_settings",
    metadata,
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), primary_key=True),
    Column("security", PortableJSON, nullable=False),
    Column("rate_limits", PortableJSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Per-route request rollups by hour, maintained as requests complete (analytics reads these,
# never raw request rows): counts, a latency histogram and the busiest clients.
gateway_route_stats = Table(
    "gateway_route_stats",
    metadata,
    Column("route_id", String(40), primary_key=True),
    Column("bucket_start", UTCDateTime(), primary_key=True),
    Column("org_id", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("client_errors", BigInteger, nullable=False),
    Column("latency_ms_sum", BigInteger, nullable=False),
    Column("latency_histogram", PortableJSON, nullable=False),
    Column("clients", PortableJSON, nullable=False),
    Index(None, "org_id", "bucket_start"),
)

# --- inbound integrations (the real-time API proxy) ---

# ``config`` is the integration in its API form without credentials; ``sealed_secrets`` the
# SecretBox-sealed JSON of its outgoing and inbound credentials. ``type`` names the proxy
# route (``/api/v1/integrations/{type}``), unique per tenant. Versions go to
# ``integration_versions`` like outbound ones (ids do not collide: ``inb_`` vs ``int_``).
inbound_integrations = Table(
    "inbound_integrations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(100), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("config", PortableJSON, nullable=False),
    Column("sealed_secrets", Text),
    Column("created_by", String(40)),
    *_timestamps(),
    UniqueConstraint("org_id", "type"),
    Index(None, "org_id", "is_active"),
)

# --- service registry (the gateway's named upstreams) ---

# Services per tenant that gateway routes name as ``targetService``. ``endpoints`` is the
# list of ``{url, weight}``; ``status`` is what the operator set (ACTIVE, INACTIVE or
# DEREGISTERED; UNHEALTHY is derived when read); ``health`` is the active checker's state per
# probed URL; ``last_heartbeat`` is written by the service itself.
gateway_services = Table(
    "gateway_services",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", BigInteger, ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", String(64), nullable=False),
    Column("service_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("endpoints", PortableJSON, nullable=False),
    Column("health_check_url", String(2000)),
    Column("heartbeat_ttl_seconds", Integer),
    Column("dependencies", PortableJSON, nullable=False),
    Column("capabilities", PortableJSON, nullable=False),
    Column("configuration", PortableJSON, nullable=False),
    Column("service_metadata", PortableJSON, nullable=False),
    Column("health", PortableJSON, nullable=False),
    Column("registered_at", UTCDateTime(), nullable=False),
    Column("last_heartbeat", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("org_id", "name"),
)
