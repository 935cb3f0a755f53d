"""PostgreSQL keeps no planner statistics of the columns that hold bodies, headers and traces.

No query filters or joins on them, yet ANALYZE (autovacuum's, and ``TableStatistics``'s as a
log grows) compared and sorted every sampled value of each, detoasting the large ones: about
half of what analysing ``delivery_logs``, ``jobs`` and ``events`` cost (580 -> 265-300 ms for
30,000 delivery logs of 1 KiB), a burst of CPU that delayed every delivery on a busy two-core
machine. SQLite keeps no such statistics: nothing to do there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Per table, the columns only ever read back whole (the logs' searches use other columns).
UNANALYSED = {
    "delivery_logs": (
        "original_payload",
        "request_headers",
        "request_body",
        "response_headers",
        "response_body",
        "signature",
        "steps",
    ),
    "events": ("payload", "extensions"),
    "jobs": ("payload",),
    "scheduled_job_logs": (
        "data_fetched",
        "transformed_payload",
        "http_request",
        "curl_command",
        "response_headers",
        "response_body",
        "error_context",
    ),
}


def _set_statistics(target: int) -> None:
    """``target`` -1 is PostgreSQL's default (``default_statistics_target``)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in UNANALYSED.items():
        changes = ", ".join(f"ALTER COLUMN {column} SET STATISTICS {target}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _set_statistics(0)


def downgrade() -> None:
    _set_statistics(-1)
