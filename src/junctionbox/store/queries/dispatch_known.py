"""PostgreSQL: a dispatcher batch of events this process appended itself, in ONE statement
run outside any transaction (see ``Dispatcher._dispatch_known``).

From its cursor the dispatcher's batch was a transaction of four round trips (BEGIN; the
partition's lock, the owners' stamps, the events and the offset's move; the jobs; COMMIT),
each with SQLAlchemy's transaction around it: at a moderate load, where a batch is an event
or two, it cost more of the process's CPU than the publish that made the event. When the
events are already in memory (announced by this process's own appends, after their commit)
and the integrations they match are cached, nothing needs reading first, so one statement
does it all, with data-modifying CTEs:

1. the partition's advisory lock (for the statement's own transaction), and the commit made
   not to wait for the WAL flush (the work is redone after a crash, same dedupe keys);
2. the owners' stamps (``dispatch.integration_stamps``'s own aggregate) compared with those
   the jobs were planned from: the catalog the plan used is still current;
3. only if both hold: the group's offset moved from the cursor past the events
   (compare-and-set), and only if it moved: the jobs inserted (a repeated dedupe key
   skipped) and the waiting workers notified at commit.

A single statement is atomic: the offset never moves without its jobs. It returns whether
the lock was held, the stamps matched and the offset moved, and the ids inserted; when any
of the three failed nothing was written and the caller takes the usual way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Dialect

from junctionbox.store.queries.dispatch import Stamp, stamps_sql
from junctionbox.store.queries.driver_calls import pg_call, pg_rows_form
from junctionbox.store.queries.job_inserts import (
    CONFLICT,
    insert_from_rows,
    pg_insert_arguments,
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

# $1 lock key, $2 owners, $3 their expected stamps (``stamps_digest``), $4 the new offset,
# $5 now, $6-$9 the partition (org, group, stream, partition), $10 the cursor; when
# notifying, $11 the channel and $12 the payloads; then the jobs' rows.
_HEAD: Final = """
WITH held AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock($1::bigint) AS held,
        set_config('synchronous_commit', 'off', true) AS not_durable
), fresh AS MATERIALIZED (
    SELECT (SELECT held FROM held) AND coalesce((
        SELECT string_agg(concat_ws(':', org_id, n, versions, active,
            (extract(epoch FROM changed) * 1000000)::bigint), ',' ORDER BY org_id)
        FROM ({stamps}) AS stamps(org_id, n, versions, active, changed)
    ), '') = $3::text AS ok
), moved AS (
    UPDATE consumer_offsets SET committed_offset = $4::bigint, updated_at = $5::timestamptz
    WHERE org_id = $6::bigint AND group_name = $7::text AND stream = $8::text
        AND partition = $9::integer AND committed_offset = $10::bigint
        AND (SELECT ok FROM fresh)
    RETURNING 1
)"""
_WOKEN: Final = """, woken AS (
    SELECT pg_notify($11::text, payload) FROM unnest($12::text[]) AS q(payload)
    WHERE EXISTS (SELECT FROM moved)
)"""
_INSERTED: Final = """, inserted AS (
    {insert} WHERE EXISTS (SELECT FROM moved){conflict} RETURNING id
)
SELECT (SELECT held FROM held), (SELECT ok FROM fresh), EXISTS (SELECT FROM moved),
    ARRAY(SELECT id FROM inserted){woken}
"""
_TEXTS: dict[tuple[str, bool, int], str] = {}


def stamps_digest(stamps: Mapping[int, Stamp]) -> str:
    """The text the statement makes of the owners' stamps: one ``org:count:versions:active:
    changed`` (microseconds since the epoch) per owner with integrations, by owner. Exact:
    a changed instant differs in its microseconds or not at all."""
    parts = [
        f"{owner}:{count}:{versions}:{active}:{(changed - _EPOCH) // _MICROSECOND}"
        for owner, (count, versions, active, changed) in sorted(stamps.items())
        if count and changed is not None
    ]
    return ",".join(parts)


def _statement(dialect: Dialect, notifying: bool, rows: int) -> str:
    key = (dialect.name, notifying, pg_rows_form(rows))
    found = _TEXTS.get(key)
    if found is None:
        first = 13 if notifying else 11
        found = _TEXTS[key] = "".join(
            [
                _HEAD.format(stamps=stamps_sql(dialect, "$2")),
                _WOKEN if notifying else "",
                _INSERTED.format(
                    insert=insert_from_rows(dialect, first, rows),
                    conflict=CONFLICT,
                    woken=", (SELECT count(*) FROM woken)" if notifying else "",
                ),
            ]
        )
    return found


@dataclass(frozen=True, slots=True)
class KnownBatch:
    """What the statement did: whether the lock was held, the stamps matched and the offset
    moved (all three, or nothing was written), and the ids of the jobs inserted."""

    held: bool
    fresh: bool
    moved: bool
    inserted: frozenset[str]


async def dispatch_known(
    driver: Any,
    dialect: Dialect,
    *,
    lock_key: int,
    stamps: tuple[Collection[int], str],
    offsets: tuple[str, tuple[int, str, int], int, int],
    now: datetime,
    rows: Sequence[tuple[Any, ...]],
    notify: tuple[str, Sequence[str]] | None,
) -> KnownBatch:
    """Run the statement on ``driver`` (an asyncpg connection outside any transaction).
    ``stamps``: the owners and their expected ``stamps_digest``; ``offsets``: the group, the
    partition (org, stream, partition), the cursor and the offset after the batch; ``rows``
    the jobs in ``job_inserts.COLUMNS`` order; ``notify``: (channel, payloads), sent at
    commit if anything was inserted."""
    owners, digest = stamps
    group, (org_id, stream, partition), cursor, following = offsets
    arguments: list[Any] = [
        lock_key,
        list(owners),
        digest,
        following,
        now,
        org_id,
        group,
        stream,
        partition,
        cursor,
    ]
    if notify is not None:
        arguments += [notify[0], list(notify[1])]
    arguments += pg_insert_arguments(dialect, rows)
    sql = _statement(dialect, notify is not None, len(rows))
    row = await pg_call(driver.fetchrow(sql, *arguments))
    return KnownBatch(bool(row[0]), bool(row[1]), bool(row[2]), frozenset(row[3]))
