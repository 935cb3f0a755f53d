"""The job queue's hot statements at the driver's level: a worker's claim and the fenced
transitions of its jobs (done, retry, dead, defer, release).

Through SQLAlchemy each of these statements costs more CPU than the database's own work
(cache keys, parameter and result processing, greenlet switches, and on SQLite three or
four hand-overs to aiosqlite's thread per statement), and every await inside a write
transaction lengthens the hold of the write lock. Here:

* on SQLite a claim (reap, due ids, lease) and a batch of transitions each run in ONE call
  on aiosqlite's thread, as plain ``sqlite3`` statements;
* on PostgreSQL each statement goes straight to asyncpg (its prepared statement cache), and
  a transition of many jobs is one ``UPDATE … FROM unnest(…)`` whatever the number of jobs.

The statements were SQLAlchemy Core's in :mod:`junctionbox.queue.store` (same conditions,
same order, same values); they are written once with ``?`` placeholders: ``?::type`` is a
cast PostgreSQL needs to type a parameter, dropped on SQLite. Values are converted as the columns' types would
(timestamps: naive UTC text on SQLite, aware datetimes on PostgreSQL), and the drivers'
errors are turned into junctionbox's as the database layer turns SQLAlchemy's.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.queue.jobs import Job, JobState
from junctionbox.store.database import dumps_json, loads_json
from junctionbox.store.queries.driver_calls import pg_call, pg_driver
from junctionbox.store.queries.driver_calls import sqlite_run as on_sqlite
from junctionbox.store.types import sqlite_utc_moment, sqlite_utc_text

T = TypeVar("T")

JOB_COLUMNS: Final = tuple(Job.__dataclass_fields__)
# SQLite: ids bound as one JSON array (a search of the primary key per id).
_SQLITE_IDS: Final = "id IN (SELECT value FROM json_each(?))"
_PLACEHOLDER = re.compile(r"\?(::[a-z]+(?:\[\])?)?")


# ---------------------------------------------------------------------- dialects


def sql_for(dialect: str, text: str) -> str:
    """``text`` for ``dialect``: ``?`` (casts dropped) on SQLite, ``$n`` (with casts) on
    PostgreSQL."""
    if dialect == "sqlite":
        return _PLACEHOLDER.sub("?", text)
    numbers = iter(range(1, text.count("?") + 1))
    return _PLACEHOLDER.sub(lambda m: f"${next(numbers)}{m.group(1) or ''}", text)


def pg_moment(value: datetime) -> datetime:
    """An aware datetime for asyncpg (``UTCDateTime`` refuses naive ones too)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value


# ---------------------------------------------------------------------- claim

_EXPIRED_IDS = """SELECT id FROM jobs
 WHERE queue = ? AND state = 'running' AND leased_until < ?::timestamptz"""

# Running jobs whose lease ran out: back to ready (their token is void, the next claim
# counts a new attempt), or dead when that was their last attempt. A statement of its own,
# so that the claim's select only reads ready rows in index order. Parameters: last error
# (last attempt, not last), now (finished_at), now (updated_at), queue, now.
_REAP = """UPDATE jobs SET
 state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'ready' END,
 last_error = CASE WHEN attempts >= max_attempts THEN ?::text ELSE ?::text END,
 finished_at = CASE WHEN attempts >= max_attempts THEN ?::timestamptz ELSE NULL END,
 updated_at = ?::timestamptz, lease_token = NULL, leased_until = NULL
 WHERE id IN ({expired}{lock})"""

# Due jobs' ids in claim order, FIFO per ordering key: no job of the key is running, and
# none created earlier is still waiting (dead, done and cancelled jobs hold nothing up).
# Two statements (ids, then the lease), not UPDATE ... WHERE id IN (SELECT ... LIMIT n SKIP
# LOCKED): PostgreSQL may run that subquery once per row of a semi join, each run skipping
# the rows the statement itself has locked, and so claim more than ``limit``.
# Parameters: queue, now, kinds..., limit.
_DUE = """SELECT candidate.id FROM jobs AS candidate
 WHERE candidate.queue = ? AND candidate.state = 'ready'
 AND candidate.run_at <= ?::timestamptz{kinds}
 AND (candidate.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS other
  WHERE other.ordering_key = candidate.ordering_key AND other.id != candidate.id
  AND (other.state = 'running' OR (other.state = 'ready'
   AND (other.created_at, other.id) < (candidate.created_at, candidate.id)))))
 ORDER BY candidate.priority DESC, candidate.run_at, candidate.created_at, candidate.id
 LIMIT ?::integer{lock}"""

# Lease the chosen ready jobs. Parameters: token, owner, until, now, then the ids.
_LEASE = """UPDATE jobs SET state = 'running', attempts = attempts + 1,
 lease_token = ?::text, lease_owner = ?::text, leased_until = ?::timestamptz,
 updated_at = ?::timestamptz
 WHERE {ids} AND state = 'ready'"""


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim's values (the lease is the same for every job it takes)."""

    queue: str
    kinds: tuple[str, ...] | None
    limit: int
    now: datetime
    token: str
    owner: str
    until: datetime
    # Turn expired leases back to ready (or dead) first; else only when the claim comes
    # back short (a full claim leaves them for later: see ``JobQueue`` and REAP_EVERY).
    reap: bool
    expired_errors: tuple[str, str]  # last_error of an expired job: last attempt, not last


@functools.lru_cache(maxsize=64)
def _due_sql(dialect: str, kinds: int) -> str:
    kinds_sql = f" AND candidate.kind IN ({', '.join(['?::text'] * kinds)})" if kinds else ""
    lock = " FOR UPDATE OF candidate SKIP LOCKED" if dialect == "postgresql" else ""
    return sql_for(dialect, _DUE.format(kinds=kinds_sql, lock=lock))


@functools.lru_cache(maxsize=64)
def _due_ids_sqlite(kinds: int) -> str:
    return f"SELECT json_group_array(id) FROM ({_due_sql('sqlite', kinds)})"  # noqa: S608 (constants)


@functools.lru_cache(maxsize=4)
def _reap_sql(dialect: str) -> str:
    # SKIP LOCKED (PostgreSQL): concurrent claimers reaping the same rows in different
    # orders would otherwise deadlock, and a row locked by a heartbeat is likely not
    # expired any more.
    lock = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    return sql_for(dialect, _REAP.format(expired=_EXPIRED_IDS, lock=lock))


# The ids in one parameter: an array on PostgreSQL, a JSON array on SQLite (``json_each``:
# one statement text whatever their number, so SQLite prepares it once). PostgreSQL returns
# the leased rows; SQLite reads them back as one JSON array of arrays (``JOB_COLUMNS``
# order): a row per job would be a step each. The payload stays a string in it, parsed on
# its own as before: SQLite's ``json()`` would refuse a stored ``NaN`` and fail the claim.
_LEASE_PG: Final = sql_for(
    "postgresql",
    _LEASE.format(ids="id = ANY(?::text[])") + f" RETURNING {', '.join(JOB_COLUMNS)}",
)
_LEASE_SQLITE: Final = sql_for("sqlite", _LEASE.format(ids=_SQLITE_IDS))
_LEASED_SQLITE: Final = (
    "SELECT json_group_array(json_array("  # noqa: S608 (the module's constants only)
    + ", ".join(JOB_COLUMNS)
    + f")) FROM jobs WHERE {_SQLITE_IDS} AND lease_token = ?"
)


def _reap_values(claim: Claim, now: Any) -> tuple[Any, ...]:
    last, not_last = claim.expired_errors
    return (last, not_last, now, now, claim.queue, now)


def _due_values(claim: Claim, now: Any) -> tuple[Any, ...]:
    return (claim.queue, now, *(claim.kinds or ()), claim.limit)


async def claim(conn: AsyncConnection, request: Claim) -> list[Job]:
    """Lease the due jobs ``request`` asks for in the transaction of ``conn``; the jobs
    (state ``running``), in no particular order."""
    if conn.dialect.name == "sqlite":
        return await on_sqlite(conn, lambda sqlite: claim_on_sqlite(sqlite, request))
    return await _claim_on_pg(await pg_driver(conn), request)


def claim_on_sqlite(sqlite: sqlite3.Connection, request: Claim) -> list[Job]:
    """:func:`claim` on aiosqlite's thread (for a caller that runs more there).

    Every statement gives back at most one row, a JSON document: ``sqlite3`` releases the
    GIL for each step of a statement and must take it back after, which on a busy process
    waits for the event loop's thread each time (a row per job made a claim of 400 jobs
    wait 15-50 ms for 8 ms of work)."""
    now = sqlite_utc_text(request.now)
    reap, due = _reap_sql("sqlite"), _due_ids_sqlite(len(request.kinds or ()))
    if request.reap:
        sqlite.execute(reap, _reap_values(request, now))
    ids = _one_document(sqlite, due, _due_values(request, now))
    # Short of due jobs: expired leases may be all there is to claim.
    short = len(ids) < request.limit and not request.reap
    if short and sqlite.execute(reap, _reap_values(request, now)).rowcount > 0:
        ids = _one_document(sqlite, due, _due_values(request, now))
    if not ids:
        return []
    chosen = dumps_json(ids)
    lease = (request.token, request.owner, sqlite_utc_text(request.until), now, chosen)
    sqlite.execute(_LEASE_SQLITE, lease)
    # The claim's token is its own: the rows holding it are the ones just leased.
    return [
        _sqlite_job(row) for row in _one_document(sqlite, _LEASED_SQLITE, (chosen, request.token))
    ]


def _one_document(sqlite: sqlite3.Connection, sql: str, values: Sequence[Any]) -> Any:
    """The JSON document (an aggregate) that ``sql``'s one row holds, parsed."""
    return loads_json(sqlite.execute(sql, values).fetchone()[0])


async def _claim_on_pg(driver: Any, request: Claim) -> list[Job]:
    now = pg_moment(request.now)
    reap, due = _reap_sql("postgresql"), _due_sql("postgresql", len(request.kinds or ()))
    if request.reap:
        await pg_call(driver.execute(reap, *_reap_values(request, now)))
    ids = [row[0] for row in await pg_call(driver.fetch(due, *_due_values(request, now)))]
    if len(ids) < request.limit and not request.reap:
        # Short of due jobs: expired leases may be all there is to claim. (The rows the
        # first select locked are ours: the second finds them again.)
        status = await pg_call(driver.execute(reap, *_reap_values(request, now)))
        if not status.endswith(" 0"):
            ids = [row[0] for row in await pg_call(driver.fetch(due, *_due_values(request, now)))]
    if not ids:
        return []
    lease = (request.token, request.owner, pg_moment(request.until), now)
    rows = await pg_call(driver.fetch(_LEASE_PG, *lease, ids))
    # asyncpg gives aware UTC datetimes and, through SQLAlchemy's codec, parsed JSON.
    return [_pg_job(row) for row in rows]


_RUNNING: Final = JobState.RUNNING
_PAYLOAD, _RUN_AT, _LEASED_UNTIL = (
    JOB_COLUMNS.index(n) for n in ("payload", "run_at", "leased_until")
)
_FINISHED_AT, _CREATED_AT, _UPDATED_AT = (
    JOB_COLUMNS.index(n) for n in ("finished_at", "created_at", "updated_at")
)
_SQLITE_MOMENTS: Final = (_RUN_AT, _LEASED_UNTIL, _FINISHED_AT, _CREATED_AT, _UPDATED_AT)


def _sqlite_job(values: list[Any]) -> Job:
    """A job from its ``_LEASED_SQLITE`` array."""
    payload = values[_PAYLOAD]
    values[_PAYLOAD] = loads_json(payload) if payload is not None else None
    for index in _SQLITE_MOMENTS:
        values[index] = sqlite_utc_moment(values[index])
    job = Job(*values)
    job.state = _RUNNING
    return job


def _pg_job(row: Any) -> Job:
    job = Job(*row)
    job.state = _RUNNING
    return job


# ---------------------------------------------------------------------- transitions


@dataclass(frozen=True, slots=True)
class Move:
    """How one kind of transition changes a job whose lease is still current.

    ``sets`` are the SQL assignments: ``?now`` is the transition's instant and ``v.<field>``
    the job's own value of ``fields`` (beyond its id and lease token)."""

    state: JobState
    sets: tuple[str, ...]
    fields: tuple[tuple[str, str], ...] = ()  # (name, PostgreSQL array type)


# ``JobQueue.complete_many``, ``retry_many``, ``dead_letter``, ``defer_many``, ``release``.
DONE: Final = Move(JobState.DONE, ("finished_at = ?now",))
RETRY: Final = Move(
    JobState.READY,
    ("run_at = v.run_at", "last_error = v.error"),
    (("run_at", "timestamptz"), ("error", "text")),
)
DEAD: Final = Move(
    JobState.DEAD, ("finished_at = ?now", "last_error = v.error"), (("error", "text"),)
)
DEFER: Final = Move(
    JobState.READY,
    (
        "run_at = v.run_at",
        "attempts = jobs.attempts - 1",
        "last_error = COALESCE(v.error, jobs.last_error)",
    ),
    (("run_at", "timestamptz"), ("error", "text")),
)
RELEASE: Final = Move(JobState.READY, ("attempts = jobs.attempts - 1",))


@dataclass(frozen=True, slots=True)
class Transition:
    """Jobs to move one way: per job (id, lease token, *values of the move's fields);
    ``wake`` when the jobs moved are claimable at once (their queues' waiters are woken)."""

    move: Move
    jobs: Sequence[tuple[Any, ...]]
    wake: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    """Transitions made together at one instant (see ``JobQueue.settle``)."""

    transitions: Sequence[Transition]
    now: datetime


@functools.lru_cache(maxsize=16)
def _move_sql(dialect: str, move: Move) -> str:
    """SQLite: the jobs of one lease token at once when the move has no per-job values
    (``?2`` their ids as a JSON array, ``?3`` the token), else one job per execution (``v.x``
    are its parameters after ``?now``, then id and token). PostgreSQL: every job at once,
    ``v`` the rows of ``unnest`` of one array per field."""
    sets = [f"state = '{move.state.value}'", *move.sets, "updated_at = ?now"]
    sets += ["lease_token = NULL", "leased_until = NULL"]
    text = "UPDATE jobs SET " + ", ".join(sets)  # noqa: S608 (the module's constants only)
    if dialect == "sqlite":
        text = text.replace("?now", "?1")
        if not move.fields:  # the rows it moves are read first (_MOVING_SQLITE)
            where = _SQLITE_IDS.replace("?", "?2")
            text += f" WHERE {where} AND lease_token = ?3 AND state = 'running'"
            return text.replace("jobs.", "")
        for position, (name, _) in enumerate(move.fields, start=2):
            text = text.replace(f"v.{name}", f"?{position}")
        after = len(move.fields) + 2
        text += f" WHERE id = ?{after} AND lease_token = ?{after + 1} AND state = 'running'"
        return text.replace("jobs.", "") + " RETURNING id, queue"
    text = text.replace("?now", "$1::timestamptz")
    names = ["id", "token", *(name for name, _ in move.fields)]
    types = ["text", "text", *(kind for _, kind in move.fields)]
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, start=2))
    text += f" FROM unnest({arrays}) AS v({', '.join(names)})"
    text += " WHERE jobs.id = v.id AND jobs.lease_token = v.token AND jobs.state = 'running'"
    return text + " RETURNING jobs.id, jobs.queue"


async def apply(conn: AsyncConnection, settlement: Settlement) -> list[dict[str, str]]:
    """Move the jobs whose lease is still current, in the transaction of ``conn``: for each
    transition, {job id: queue} of the jobs it moved."""
    if conn.dialect.name == "sqlite":
        return await on_sqlite(conn, lambda sqlite: apply_on_sqlite(sqlite, settlement))
    driver = await pg_driver(conn)
    now = pg_moment(settlement.now)
    return [await _apply_on_pg(driver, transition, now) for transition in settlement.transitions]


def apply_on_sqlite(sqlite: sqlite3.Connection, settlement: Settlement) -> list[dict[str, str]]:
    """:func:`apply` on aiosqlite's thread (for a caller that runs more there)."""
    now = sqlite_utc_text(settlement.now)
    moved: list[dict[str, str]] = []
    for transition in settlement.transitions:
        sql = _move_sql("sqlite", transition.move)
        if transition.move.fields:
            moved.append(_one_by_one(sqlite, sql, transition, now))
            continue
        # A claim gives all its jobs one token: a batch holds few.
        by_token: dict[str, list[str]] = {}
        for job_id, token in transition.jobs:
            by_token.setdefault(token, []).append(job_id)
        changed: dict[str, str] = {}
        for token, ids in by_token.items():
            chosen = dumps_json(ids)
            # One row (a JSON document) rather than RETURNING's row per job: see claim_on_sqlite.
            changed.update(_one_document(sqlite, _MOVING_SQLITE, (chosen, token)))
            sqlite.execute(sql, (now, chosen, token))
        moved.append(changed)
    return moved


# The jobs of one lease token that a move without per-job values moves, {id: queue} as one
# JSON object; the move itself follows in the same transaction (nothing else writes between).
_MOVING_SQLITE: Final = (
    "SELECT json_group_object(id, queue) FROM jobs"  # noqa: S608 (the module's constants only)
    f" WHERE {_SQLITE_IDS} AND lease_token = ? AND state = 'running'"
)


def _one_by_one(
    sqlite: sqlite3.Connection, sql: str, transition: Transition, now: str
) -> dict[str, str]:
    timed = [i for i, (_, kind) in enumerate(transition.move.fields) if kind == "timestamptz"]
    changed: dict[str, str] = {}
    for job_id, token, *values in transition.jobs:
        for i in timed:
            values[i] = sqlite_utc_text(values[i])
        changed.update(sqlite.execute(sql, (now, *values, job_id, token)))
    return changed


async def _apply_on_pg(driver: Any, transition: Transition, now: datetime) -> dict[str, str]:
    if not transition.jobs:
        return {}
    columns = [list(column) for column in zip(*transition.jobs, strict=True)]
    for i, (_, kind) in enumerate(transition.move.fields, start=2):
        if kind == "timestamptz":
            columns[i] = [pg_moment(value) for value in columns[i]]
    sql = _move_sql("postgresql", transition.move)
    rows = await pg_call(driver.fetch(sql, now, *columns))
    return {row[0]: row[1] for row in rows}
