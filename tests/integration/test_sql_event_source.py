"""The SQL table event source: rows of an external table become events of the right tenant.

External tables live in real databases: SQLite (a file), MariaDB (127.0.0.1:3306, database
``test``) and PostgreSQL (a fresh database); our own store runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import pytest
from sqlalchemy import select, text
from tests.support import World, require_service

from junctionbox.connectors.sql_source import SqlTableReader
from junctionbox.domain.identity import Entity, Principal, PrincipalKind, Role, TenantContext
from junctionbox.engine.sql_poller import SqlSourcePoller
from junctionbox.errors import UpstreamError, UpstreamTimeoutError, ValidationError
from junctionbox.services.container import Services
from junctionbox.services.event_sources import EventSourceService
from junctionbox.store.database import Database
from junctionbox.store.queries import event_sources as queries
from junctionbox.store.tables import audit_logs, event_sources, events

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ROOT = Principal(PrincipalKind.USER, "usr_root", Role.ADMIN, None, "root@example.com")
ORG_A = TenantContext(Entity(100, None, "Org a"), ROOT)
ORG_B = TenantContext(Entity(200, None, "Org b"), ROOT)
Row = tuple[int, str, str | None, Any, datetime | None]  # id, type, payload, tenant, created


# --- external databases ---


class External:
    """A ``notification_queue``-shaped table in a real database, created and dropped here."""

    def __init__(self, kind: str, url: str, table: str) -> None:
        self.kind = kind
        self.url = url  # as a user writes it (sync spelling)
        self.table = table

    async def execute(self, statement: str) -> None:
        raise NotImplementedError

    async def insert(self, rows: list[Row]) -> None:
        raise NotImplementedError

    async def create(self) -> None:
        id_type = {"sqlite": "INTEGER", "mariadb": "BIGINT", "postgres": "BIGINT"}[self.kind]
        payload = {"sqlite": "TEXT", "mariadb": "LONGTEXT", "postgres": "json"}[self.kind]
        moment = {"sqlite": "TEXT", "mariadb": "DATETIME(6)", "postgres": "timestamptz"}[self.kind]
        await self.execute(
            f"CREATE TABLE {self.table} (id {id_type} PRIMARY KEY, event_type VARCHAR(200), "
            f"payload {payload}, entity_rid VARCHAR(20), created_at {moment})"
        )

    async def rename(self, old: str, new: str) -> None:
        if self.kind == "mariadb":
            await self.execute(f"RENAME TABLE {old} TO {new}")
        else:
            await self.execute(f"ALTER TABLE {old} RENAME TO {new}")


class SqliteExternal(External):
    def __init__(self, path: Path) -> None:
        super().__init__("sqlite", f"sqlite:///{path}", "notification_queue")
        self.path = path

    async def execute(self, statement: str) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(statement)

    async def insert(self, rows: list[Row]) -> None:
        values = [
            (i, t, p, tenant, c.replace(tzinfo=None).isoformat(sep=" ") if c else None)
            for i, t, p, tenant, c in rows
        ]
        with sqlite3.connect(self.path) as conn:
            conn.executemany(f"INSERT INTO {self.table} VALUES (?, ?, ?, ?, ?)", values)  # noqa: S608 (our own table name)


class MariaExternal(External):
    async def _connect(self) -> aiomysql.Connection:
        return await aiomysql.connect(
            host="127.0.0.1", port=3306, user="root", password="", db="test", autocommit=True
        )

    async def execute(self, statement: str) -> None:
        conn = await self._connect()
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(statement)
        finally:
            conn.close()

    async def insert(self, rows: list[Row]) -> None:
        values = [
            (i, t, p, None if e is None else str(e), c.replace(tzinfo=None) if c else None)
            for i, t, p, e, c in rows
        ]
        conn = await self._connect()
        try:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s, %s)",  # noqa: S608
                    values,
                )
        finally:
            conn.close()


class PgExternal(External):
    def __init__(self, dsn: str, table: str) -> None:
        super().__init__("postgres", dsn, table)
        self.dsn = dsn

    async def execute(self, statement: str) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def insert(self, rows: list[Row]) -> None:
        values = [(i, t, p, None if e is None else str(e), c) for i, t, p, e, c in rows]
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.executemany(
                f"INSERT INTO {self.table} VALUES ($1, $2, $3::json, $4, $5)",  # noqa: S608
                values,
            )
        finally:
            await conn.close()


def _external(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[External]:
    """The same table in each kind of external database (set up outside the test's loop)."""
    kind = request.param
    if kind == "sqlite":
        db: External = SqliteExternal(tmp_path / "external.db")
    elif kind == "mariadb":
        require_service("MariaDB", "127.0.0.1", 3306)
        name = f"jb_nq_{uuid.uuid4().hex[:10]}"
        db = MariaExternal("mariadb", "mysql://root:@127.0.0.1:3306/test", name)
    else:
        url = request.getfixturevalue("fresh_pg_database").replace("+asyncpg", "")
        db = PgExternal(url, "notification_queue")
    asyncio.run(db.create())
    yield db
    if kind == "mariadb":
        with warnings.catch_warnings():  # MariaDB notes the table that is not there
            warnings.simplefilter("ignore")
            asyncio.run(db.execute(f"DROP TABLE IF EXISTS {db.table}, {db.table}_moved"))


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def external(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[External]:
    yield from _external(request, tmp_path)


@pytest.fixture(params=["mariadb", "postgres"])
def server_external(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[External]:
    yield from _external(request, tmp_path)


@pytest.fixture
def sqlite_external(tmp_path: Path) -> SqliteExternal:
    db = SqliteExternal(tmp_path / "external.db")
    asyncio.run(db.create())
    return db


def make_service(services: Services, db: Database | None = None) -> EventSourceService:
    return EventSourceService(
        db or services.db, services.secretbox, services.event_log, schemas=services.schemas
    )


@pytest.fixture
async def sources(world: World) -> AsyncIterator[EventSourceService]:
    service = make_service(world.services)
    yield service
    await service.close()


async def logged(services: Services, org_id: int | None = None) -> list[Any]:
    query = select(events).order_by(events.c.event_id)
    if org_id is not None:
        query = query.where(events.c.org_id == org_id)
    async with services.db.read() as conn:
        return list((await conn.execute(query)).mappings())


async def row_of(services: Services, source_id: str) -> Any:
    async with services.db.read() as conn:
        query = select(event_sources).where(event_sources.c.id == source_id)
        return (await conn.execute(query)).mappings().one()


def payload(n: int, **extra: Any) -> str:
    body = ", ".join(f'"{k}": "{v}"' for k, v in extra.items())
    tail = f", {body}" if body else ""
    return f'{{ "id" : {n},  "n":[1, 2.50]{tail} }}'


# --- rows to events ---


async def test_rows_become_events_of_their_tenant_with_exact_payload_bytes(
    world: World, sources: EventSourceService, external: External
) -> None:
    source = await sources.create(
        ORG_A, name="queue", connection_string=external.url, config={"table": external.table}
    )
    assert "+aio" in source.connection or "+asyncpg" in source.connection
    await external.insert(
        [
            (1, "appointment-created", payload(1), 100, T0 - timedelta(minutes=5)),
            (2, "appointment-updated", payload(2), "101", None),
        ]
    )
    report = await sources.poll_once(source.id, "node-a", now=T0)
    assert (report.status, report.rows_read, report.appended) == ("ok", 2, 2), report
    assert report.checkpoint_after == "2"
    [first] = await logged(world.services, 100)
    [second] = await logged(world.services, 101)
    assert first["payload"] == payload(1).encode()
    assert second["payload"] == payload(2).encode()
    assert (first["type"], first["event_id"], first["source"]) == (
        "appointment-created",
        f"{source.id}:1",
        "sql:queue",
    )
    assert first["event_time"] == T0 - timedelta(minutes=5)
    assert first["data_content_type"] == "application/json"
    stored = await row_of(world.services, source.id)
    assert (stored["checkpoint"], stored["events_ingested"], stored["last_error"]) == ("2", 2, None)
    assert stored["lease_owner"] == "node-a"


async def test_numeric_ids_are_read_in_numeric_order(
    world: World, sources: EventSourceService, external: External
) -> None:
    source = await sources.create(
        ORG_A,
        name="queue",
        connection_string=external.url,
        config={"table": external.table, "batchSize": 2, "timestampColumn": None},
    )
    await external.insert([(n, "t.x", payload(n), 100, None) for n in (1, 2, 3, 9)])
    checkpoints = []
    for _ in range(3):
        report = await sources.poll_once(source.id, "node-a", now=T0)
        checkpoints.append(report.checkpoint_after)
    assert checkpoints == ["2", "9", "9"]
    await external.insert(
        [(10, "t.x", payload(10), 100, None), (11, "t.x", payload(11), 100, None)]
    )
    report = await sources.poll_once(source.id, "node-a", now=T0)
    assert (report.rows_read, report.checkpoint_after) == (2, "11")
    ids = sorted(int(e["event_id"].split(":")[1]) for e in await logged(world.services, 100))
    assert ids == [1, 2, 3, 9, 10, 11]


async def _install_failing_trigger(db: Database) -> None:
    """A real failure inside the append: the store refuses events of type ``boom``."""
    async with db.write() as conn:
        if db.is_sqlite:
            await conn.execute(
                text(
                    "CREATE TRIGGER jb_test_boom BEFORE INSERT ON events WHEN NEW.type = 'boom' "
                    "BEGIN SELECT RAISE(ABORT, 'boom'); END"
                )
            )
            return
        await conn.execute(
            text(
                "CREATE FUNCTION jb_test_boom() RETURNS trigger AS $$ BEGIN "
                "IF NEW.type = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER jb_test_boom BEFORE INSERT ON events FOR EACH ROW "
                "EXECUTE FUNCTION jb_test_boom()"
            )
        )


async def _drop_failing_trigger(db: Database) -> None:
    async with db.write() as conn:
        if db.is_sqlite:
            await conn.execute(text("DROP TRIGGER jb_test_boom"))
        else:
            await conn.execute(text("DROP TRIGGER jb_test_boom ON events"))
            await conn.execute(text("DROP FUNCTION jb_test_boom()"))


async def test_a_failed_append_keeps_the_checkpoint_and_loses_nothing(
    world: World, sources: EventSourceService, external: External
) -> None:
    source = await sources.create(
        ORG_A,
        name="queue",
        connection_string=external.url,
        config={"table": external.table, "payloadIdPath": "id"},
    )
    await external.insert(
        [
            (1, "ok.first", payload(1), 100, None),
            (2, "boom", payload(2), 101, None),
            (3, "ok.second", payload(3), 100, None),
        ]
    )
    await _install_failing_trigger(world.services.db)
    failed = await sources.poll_once(source.id, "node-a", now=T0)
    assert failed.status == "error"
    assert failed.error
    stored = await row_of(world.services, source.id)
    assert stored["checkpoint"] is None
    assert stored["events_ingested"] == 0
    assert stored["last_error"] == failed.error
    assert await logged(world.services) == []  # org 100's events rolled back with org 101's

    await _drop_failing_trigger(world.services.db)
    recovered = await sources.poll_once(source.id, "node-a", now=T0 + timedelta(seconds=5))
    # The dedupe window learnt nothing from the failed batch, so nothing is dropped now.
    assert (recovered.status, recovered.appended, recovered.deduplicated) == ("ok", 3, 0)
    assert [e["type"] for e in await logged(world.services)] == ["ok.first", "boom", "ok.second"]
    stored = await row_of(world.services, source.id)
    assert (stored["checkpoint"], stored["events_ingested"], stored["last_error"]) == ("3", 3, None)


async def test_a_failed_read_keeps_the_checkpoint_and_resumes(
    world: World, sources: EventSourceService, external: External
) -> None:
    source = await sources.create(
        ORG_A, name="queue", connection_string=external.url, config={"table": external.table}
    )
    await external.insert([(1, "t.x", payload(1), 100, None)])
    assert (await sources.poll_once(source.id, "node-a", now=T0)).checkpoint_after == "1"
    await external.insert([(2, "t.x", payload(2), 100, None)])
    await external.rename(external.table, f"{external.table}_moved")
    failed = await sources.poll_once(source.id, "node-a", now=T0)
    assert failed.status == "error"
    assert failed.error
    assert "source database error" in failed.error
    assert (await row_of(world.services, source.id))["checkpoint"] == "1"
    await external.rename(f"{external.table}_moved", external.table)
    resumed = await sources.poll_once(source.id, "node-a", now=T0)
    assert (resumed.status, resumed.appended, resumed.checkpoint_after) == ("ok", 1, "2")
    assert (await row_of(world.services, source.id))["last_error"] is None


async def test_filters_skip_rows_but_move_the_checkpoint(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    source = await sources.create(
        ORG_A,
        name="queue",
        connection_string=sqlite_external.url,
        config={"maxEventAgeDays": 30},
    )
    recent, old = T0 - timedelta(days=1), T0 - timedelta(days=40)
    await sqlite_external.insert(
        [
            (1, "t.x", payload(1), 100, recent),
            (2, "t.x", payload(2), 101, recent),  # a unit of org 100: its own log
            (3, "t.x", payload(3), 200, recent),  # another tenant
            (4, "t.x", payload(4), 201, recent),  # another tenant's unit
            (5, "t.x", payload(5), 999, recent),  # no such entity
            (6, "t.x", payload(6), 100, old),
            (7, "t.x", "not json", 100, recent),
            (8, "has space", payload(8), 100, recent),
            (9, "t.x", payload(9), "abc", recent),
        ]
    )
    report = await sources.poll_once(source.id, "node-a", now=T0)
    assert report.appended == 2
    assert report.skipped == {"foreign_tenant": 3, "too_old": 1, "invalid": 3}
    assert report.checkpoint_after == "9"
    assert {e["org_id"] for e in await logged(world.services)} == {100, 101}

    other = await sources.create(
        ORG_A,
        name="only-org-300",
        connection_string=sqlite_external.url,
        config={"allowedParentRids": [300]},
    )
    allowed = await sources.create(
        ORG_A,
        name="only-org-100",
        connection_string=sqlite_external.url,
        config={"allowedParentRids": [100], "timestampColumn": None},
    )
    refused = await sources.poll_once(other.id, "node-a", now=T0)
    assert refused.appended == 0
    assert refused.skipped["parent_not_allowed"] == 3
    passed = await sources.poll_once(allowed.id, "node-a", now=T0)
    assert passed.appended == 3  # rows 1, 2 and 6 (no age limit here)


async def test_unit_source_only_takes_its_own_rows(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    unit = TenantContext(Entity(101, 100, "Unit a"), ROOT)
    source = await sources.create(unit, name="unit-queue", connection_string=sqlite_external.url)
    await sqlite_external.insert(
        [(1, "t.x", payload(1), 100, None), (2, "t.x", payload(2), 101, None)]
    )
    report = await sources.poll_once(source.id, "node-a", now=T0)
    assert (report.appended, report.skipped) == (1, {"foreign_tenant": 1})
    assert [e["org_id"] for e in await logged(world.services)] == [101]


async def test_dedupe_window_drops_repeats_for_five_minutes(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    source = await sources.create(
        ORG_A,
        name="queue",
        connection_string=sqlite_external.url,
        config={"payloadIdPath": "id", "timestampColumn": None},
    )
    await sqlite_external.insert(
        [
            (1, "order.created", payload(7), 100, None),
            (2, "order.created", payload(7, note="again"), 100, None),  # same key
            (3, "order.updated", payload(7), 100, None),  # another type
            (4, "order.created", payload(7), 101, None),  # another tenant
        ]
    )
    first = await sources.poll_once(source.id, "node-a", now=T0)
    assert (first.appended, first.deduplicated) == (3, 1)
    await sqlite_external.insert([(5, "order.created", payload(7), 100, None)])
    within = await sources.poll_once(source.id, "node-a", now=T0 + timedelta(minutes=4))
    assert (within.appended, within.deduplicated) == (0, 1)
    await sqlite_external.insert([(6, "order.created", payload(7), 100, None)])
    after = await sources.poll_once(source.id, "node-a", now=T0 + timedelta(minutes=10))
    assert (after.appended, after.deduplicated, after.checkpoint_after) == (1, 0, "6")


async def test_rereading_rows_after_a_reset_logs_no_duplicates(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    source = await sources.create(ORG_A, name="queue", connection_string=sqlite_external.url)
    await sqlite_external.insert([(n, "t.x", payload(n), 100, None) for n in (1, 2, 3)])
    await sources.poll_once(source.id, "node-a", now=T0)
    reset = await sources.reset_checkpoint(ORG_A, source.id, None)
    assert reset.checkpoint is None
    fresh = make_service(world.services)  # a restarted node: an empty dedupe window
    again = await fresh.poll_once(source.id, "node-a", now=T0 + timedelta(minutes=1))
    assert (again.appended, again.duplicates, again.checkpoint_after) == (0, 3, "3")
    assert len(await logged(world.services)) == 3
    await fresh.close()


async def test_a_poll_that_lost_its_footing_rolls_back(
    world: World, sources: EventSourceService, sqlite_external: SqliteExternal
) -> None:
    """The checkpoint is reset (or the lease taken) while a batch is being read: the
    batch's events and checkpoint are rolled back, and the next poll starts where told."""
    source = await sources.create(ORG_A, name="queue", connection_string=sqlite_external.url)
    await sqlite_external.insert([(n, "t.x", payload(n), 100, None) for n in (1, 2, 3)])
    for interference in ("reset", "lease"):
        await sources.release_leases("node-a")
        blocker = sqlite3.connect(sqlite_external.path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the poll's read waits on this lock
        try:
            polling = asyncio.create_task(sources.poll_once(source.id, "node-a", now=T0))
            await _eventually(lambda: _leased_by(world.services, source.id, "node-a"))
            if interference == "reset":
                await sources.reset_checkpoint(ORG_A, source.id, "2")
            else:
                async with world.services.db.write() as conn:
                    await queries.release(conn, "node-a")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        report = await polling
        assert report.status == "fenced", report
        assert await logged(world.services) == []
        stored = await row_of(world.services, source.id)
        assert (stored["checkpoint"], stored["events_ingested"]) == ("2", 0)
    resumed = await sources.poll_once(source.id, "node-a", now=T0)
    assert (resumed.rows_read, resumed.appended, resumed.checkpoint_after) == (1, 1, "3")


async def _leased_by(services: Services, source_id: str, owner: str) -> bool:
    return bool((await row_of(services, source_id))["lease_owner"] == owner)


async def test_start_from_latest_skips_existing_rows(
    world: World, sources: EventSourceService, external: External
) -> None:
    await external.insert([(n, "t.x", payload(n), 100, None) for n in (5, 6)])
    source = await sources.create(
        ORG_A,
        name="queue",
        connection_string=external.url,
        config={"table": external.table, "startFrom": "latest"},
    )
    assert source.checkpoint == "6"
    await external.insert([(7, "t.x", payload(7), 100, None)])
    report = await sources.poll_once(source.id, "node-a", now=T0)
    assert (report.rows_read, report.checkpoint_after) == (1, "7")


# --- one poller per source ---


async def test_two_nodes_never_poll_one_source_at_once(
    world: World, db_url: str, sqlite_external: External
) -> None:
    node_a = make_service(world.services)
    other_db = Database(db_url)
    node_b = make_service(world.services, other_db)
    try:
        source = await node_a.create(ORG_A, name="queue", connection_string=sqlite_external.url)
        await sqlite_external.insert([(n, "t.x", payload(n), 100, None) for n in range(1, 6)])
        first = await asyncio.gather(
            node_a.poll_once(source.id, "node-a", now=T0),
            node_b.poll_once(source.id, "node-b", now=T0),
        )
        statuses = sorted(r.status for r in first)
        assert statuses == ["busy", "ok"]
        holder = next(r for r in first if r.status == "ok").lease_owner
        loser = node_b if holder == "node-a" else node_a
        loser_id = "node-b" if holder == "node-a" else "node-a"
        busy = await loser.poll_once(source.id, loser_id, now=T0 + timedelta(seconds=20))
        assert (busy.status, busy.lease_owner) == ("busy", holder)
        # The holder stops renewing (a dead node): after the lease expires the other takes over.
        await sqlite_external.insert([(6, "t.x", payload(6), 100, None)])
        later = T0 + timedelta(seconds=36)
        taken = await loser.poll_once(source.id, loser_id, now=later)
        assert (taken.status, taken.appended, taken.checkpoint_after) == ("ok", 1, "6")
        winner = node_a if loser is node_b else node_b
        fenced = await winner.poll_once(source.id, str(holder), now=later)
        assert fenced.status == "busy"
        assert len(await logged(world.services)) == 6
    finally:
        await node_a.close()
        await node_b.close()
        await other_db.dispose()


async def test_pollers_on_two_nodes_share_the_work_without_overlap(
    world: World, db_url: str, sqlite_external: External
) -> None:
    other_db = Database(db_url)
    service_a, service_b = make_service(world.services), make_service(world.services, other_db)
    clock = Clock(T0)
    poller_a = SqlSourcePoller(service_a, node_id="node-a", clock=clock)
    poller_b = SqlSourcePoller(service_b, node_id="node-b", clock=clock)
    try:
        ids = []
        for name in ("one", "two", "three"):
            config = {"pollIntervalSeconds": 1}
            made = await service_a.create(
                ORG_A, name=name, connection_string=sqlite_external.url, config=config
            )
            ids.append(made.id)
        owners: dict[str, set[str]] = {i: set() for i in ids}
        for step in range(6):
            await sqlite_external.insert([(step + 1, "t.x", payload(step), 100, None)])
            reports = await asyncio.gather(poller_a.run_once(), poller_b.run_once())
            for node, found in zip(("node-a", "node-b"), reports, strict=True):
                for report in found:
                    if report.status == "ok":
                        owners[report.source_id].add(node)
            clock.advance(seconds=1)
        assert all(len(nodes) == 1 for nodes in owners.values()), owners
        for source_id in ids:
            stored = await row_of(world.services, source_id)
            assert (stored["checkpoint"], stored["events_ingested"]) == ("6", 6)
    finally:
        await service_a.close()
        await service_b.close()
        await other_db.dispose()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def test_poller_loop_polls_when_due_and_releases_on_stop(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    source = await sources.create(
        ORG_A,
        name="queue",
        connection_string=sqlite_external.url,
        config={"pollIntervalSeconds": 1},
    )
    await sqlite_external.insert([(1, "t.x", payload(1), 100, None)])
    poller = SqlSourcePoller(sources, node_id="node-a", tick_seconds=0.05)
    stop = asyncio.Event()
    loop = asyncio.create_task(poller.run(stop))
    await _eventually(lambda: _checkpoint_is(world.services, source.id, "1"))
    await sqlite_external.insert([(2, "t.x", payload(2), 100, None)])
    await _eventually(lambda: _checkpoint_is(world.services, source.id, "2"))
    stop.set()
    await asyncio.wait_for(loop, timeout=3)
    stored = await row_of(world.services, source.id)
    assert (stored["lease_owner"], stored["lease_expires_at"]) == (None, None)


async def test_due_sources_respect_the_interval_and_the_lease(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    source = await sources.create(
        ORG_A,
        name="queue",
        connection_string=sqlite_external.url,
        config={"pollIntervalSeconds": 10},
    )
    assert await sources.due_sources("node-a", T0) == [source.id]
    await sources.poll_once(source.id, "node-a", now=T0)
    assert source.id in sources.reader.cached_keys()
    assert await sources.due_sources("node-a", T0 + timedelta(seconds=9)) == []
    assert await sources.due_sources("node-a", T0 + timedelta(seconds=10)) == [source.id]
    assert await sources.due_sources("node-b", T0 + timedelta(seconds=10)) == []  # leased
    assert await sources.due_sources("node-b", T0 + timedelta(seconds=41)) == [source.id]
    await sources.poll_once(source.id, "node-b", now=T0 + timedelta(seconds=41))
    assert source.id in sources.reader.cached_keys()
    await sources.update(ORG_A, source.id, {"isActive": False})
    assert await sources.due_sources("node-b", T0 + timedelta(seconds=60)) == []
    assert source.id not in sources.reader.cached_keys()  # no idle pool for a stopped source


async def _checkpoint_is(services: Services, source_id: str, value: str) -> bool:
    return bool((await row_of(services, source_id))["checkpoint"] == value)


async def _eventually(check: Callable[[], Any]) -> None:
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached within 5 s")


# --- configuration through the service ---


async def test_configuration_is_validated(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"table": "queue; DROP TABLE users"}, "table"),
        ({"idColumn": "id) OR (1=1"}, "idColumn"),
        ({"batchSize": 5000}, "batchSize"),
        ({"pollIntervalSeconds": 0}, "pollIntervalSeconds"),
        ({"maxEventAgeDays": 3, "timestampColumn": None}, "maxEventAgeDays"),
        ({"allowedParentRids": ["x"]}, "allowedParentRids"),
        ({"startFrom": "middle"}, "startFrom"),
        ({"stream": "-bad"}, "stream"),
        ({"bogus": 1}, "bogus"),
    ]
    for config, field_name in cases:
        with pytest.raises(ValidationError) as caught:
            await sources.create(
                ORG_A, name="x", connection_string=sqlite_external.url, config=config
            )
        assert ("body", field_name) in {p.loc for p in caught.value.problems}, config
    for url in ("nonsense", "oracle://u:p@h/db", "sqlite://", "mysql://root@/test"):
        with pytest.raises(ValidationError) as caught:
            await sources.create(ORG_A, name="x", connection_string=url)
        assert caught.value.problems[0].loc == ("body", "connectionString")


async def test_test_reports_unknown_tables_and_unreachable_databases(
    world: World, sources: EventSourceService, sqlite_external: External
) -> None:
    with pytest.raises(ValidationError) as missing_table:
        await sources.test(ORG_A, connection_string=sqlite_external.url, config={"table": "nope"})
    assert missing_table.value.problems[0].loc == ("body", "table")
    with pytest.raises(ValidationError) as missing_column:
        await sources.test(
            ORG_A, connection_string=sqlite_external.url, config={"typeColumn": "kind"}
        )
    assert missing_column.value.problems[0].loc == ("body", "typeColumn")
    with pytest.raises(UpstreamError) as unreachable:
        await sources.test(ORG_A, connection_string="postgresql://u:sekrit@127.0.0.1:1/db")
    assert "sekrit" not in unreachable.value.message


async def test_connect_and_query_timeouts(world: World, server_external: External) -> None:
    external = server_external
    reader = SqlTableReader(connect_timeout=0.5, query_timeout=0.5)
    sources = EventSourceService(
        world.services.db, world.services.secretbox, world.services.event_log, reader=reader
    )

    async def say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3)  # accepts the connection, never greets
        writer.close()

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    scheme = "mysql" if external.kind == "mariadb" else "postgresql"
    async with silent:
        with pytest.raises(UpstreamTimeoutError, match="could not connect"):
            await sources.test(ORG_A, connection_string=f"{scheme}://u@127.0.0.1:{port}/db")

    await external.insert([(1, "t.x", payload(1), 100, None)])
    slow = f"{external.table}_slow"
    sleep = "SLEEP(2) = 0" if external.kind == "mariadb" else "pg_sleep(2) IS NOT NULL"
    view = f"CREATE VIEW {slow} AS SELECT * FROM {external.table} WHERE {sleep}"  # noqa: S608
    await external.execute(view)
    try:
        with pytest.raises(UpstreamTimeoutError, match="did not answer"):
            await sources.test(ORG_A, connection_string=external.url, config={"table": slow})
        tried = await sources.test(
            ORG_A, connection_string=external.url, config={"table": external.table}
        )
        assert [r.row_id for r in tried.rows] == ["1"]
    finally:
        await external.execute(f"DROP VIEW {slow}")
        await sources.close()


# --- the API ---

BASE = "/api/v1/integration/events/sources"


async def test_api_crud_masks_the_secret_and_isolates_tenants(world: World) -> None:
    client, admin = world.client, world.headers["admin"]
    body = {
        "name": "crm-queue",
        "connectionString": "postgresql://reader:sekrit@127.0.0.1:1/crm",
        "table": "crm.notification_queue",
        "batchSize": 50,
    }
    created = await client.post(f"{BASE}?orgId=100", json=body, headers=admin)
    assert created.status_code == 201, created.text
    source = created.json()
    assert source["connectionString"] == "postgresql+asyncpg://reader:***@127.0.0.1:1/crm"
    assert (source["table"], source["batchSize"], source["idColumn"]) == (
        "crm.notification_queue",
        50,
        "id",
    )
    assert (source["checkpoint"], source["eventsIngested"], source["lastError"]) == (None, 0, None)
    url = f"{BASE}/{source['id']}"

    own = await client.get(url, headers=world.headers["user_a"])
    assert own.status_code == 200
    assert "sekrit" not in own.text
    listed = await client.get(BASE, headers=world.headers["key_a"])
    assert [s["id"] for s in listed.json()["sources"]] == [source["id"]]
    for caller in ("user_b", "key_b"):
        assert (await client.get(url, headers=world.headers[caller])).status_code == 404
        assert (await client.get(BASE, headers=world.headers[caller])).json()["sources"] == []
    assert (await client.get(f"{url}?orgId=200", headers=admin)).status_code == 404
    assert (await client.delete(f"{url}?orgId=200", headers=admin)).status_code == 404
    refused = await client.post(BASE, json=body, headers=world.headers["user_a"])
    assert refused.status_code == 403

    duplicate = await client.post(f"{BASE}?orgId=100", json=body, headers=admin)
    assert duplicate.status_code == 409
    patched = await client.patch(
        f"{url}?orgId=100",
        json={"batchSize": 10, "isActive": False, "timestampColumn": None},
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["batchSize"], patched.json()["isActive"]) == (10, False)
    assert patched.json()["timestampColumn"] is None
    assert patched.json()["connectionString"] == source["connectionString"]

    unreachable = await client.post(f"{url}/test?orgId=100", headers=admin)
    assert unreachable.status_code == 502, unreachable.text
    assert "sekrit" not in unreachable.text

    async with world.services.db.read() as conn:
        stored = (await conn.execute(select(event_sources))).mappings().one()
        trail = (await conn.execute(select(audit_logs).order_by(audit_logs.c.id))).mappings().all()
    assert "sekrit" not in str(dict(stored))
    assert "sekrit" not in str([dict(t) for t in trail])
    actions = [t["action"] for t in trail if t["resource_type"] == "event_source"]
    assert actions == ["event_source.create", "event_source.update"]

    deleted = await client.delete(f"{url}?orgId=100", headers=admin)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=world.headers["user_a"])).status_code == 404


async def test_api_validation_errors_name_the_field(world: World) -> None:
    client, admin = world.client, world.headers["admin"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"connectionString": "not a url"}, "connectionString"),
        ({"connectionString": "sqlite:///x.db", "table": "a b"}, "table"),
        ({"connectionString": "sqlite:///x.db", "payloadColumn": "1x"}, "payloadColumn"),
        ({"connectionString": "sqlite:///x.db", "batchSize": 0}, "batchSize"),
        ({"connectionString": "sqlite:///x.db", "secret": 1}, "secret"),
    ]
    for extra, field_name in cases:
        response = await client.post(
            f"{BASE}?orgId=100", json={"name": "x", **extra}, headers=admin
        )
        assert response.status_code == 400, (extra, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert ["body", field_name] in [d["loc"] for d in response.json()["details"]], extra


async def test_api_test_poll_and_checkpoint(world: World, sqlite_external: External) -> None:
    client, admin = world.client, world.headers["admin"]
    await sqlite_external.insert(
        [(1, "t.x", payload(1), 100, None), (2, "t.x", payload(2), 200, None)]
    )
    body = {"connectionString": sqlite_external.url, "timestampColumn": None}
    tried = await client.post(f"{BASE}/test?orgId=100", json=body, headers=admin)
    assert tried.status_code == 200, tried.text
    assert [(r["rowId"], r["outcome"]) for r in tried.json()["rows"]] == [
        ("1", "ingest"),
        ("2", "foreign_tenant"),
    ]
    assert tried.json()["rows"][0]["data"] == {"id": 1, "n": [1, 2.5]}
    missing = await client.post(
        f"{BASE}/test?orgId=100", json={**body, "typeColumn": "kind"}, headers=admin
    )
    assert missing.status_code == 400
    assert missing.json()["details"][0]["loc"] == ["body", "typeColumn"]

    created = await client.post(f"{BASE}?orgId=100", json={**body, "name": "q"}, headers=admin)
    source = created.json()
    url = f"{BASE}/{source['id']}"
    polled = await client.post(f"{url}/poll", headers=world.headers["user_a"])
    assert polled.status_code == 200, polled.text
    report = polled.json()
    assert (report["status"], report["appended"], report["skipped"]) == (
        "ok",
        1,
        {"foreign_tenant": 1},
    )
    shown = (await client.get(url, headers=world.headers["user_a"])).json()
    assert (shown["checkpoint"], shown["eventsIngested"], shown["leaseOwner"]) == ("2", 1, None)
    assert shown["lastPolledAt"] is not None
    assert (await client.post(f"{url}/poll", headers=world.headers["user_b"])).status_code == 404

    preview = await client.post(f"{url}/test?orgId=100", headers=admin)
    assert preview.json()["afterCheckpoint"] == "2"
    assert preview.json()["rows"] == []
    reset = await client.post(f"{url}/checkpoint?orgId=100", json={"checkpoint": 1}, headers=admin)
    assert reset.status_code == 200
    assert reset.json()["checkpoint"] == "1"
    latest = await client.post(f"{url}/checkpoint?orgId=100", json={"latest": True}, headers=admin)
    assert latest.json()["checkpoint"] == "2"
    refused = await client.post(
        f"{url}/checkpoint", json={"checkpoint": None}, headers=world.headers["user_a"]
    )
    assert refused.status_code == 403

    # While a poller holds the lease, "poll now" makes the source due for it instead.
    poller_node = make_service(world.services)
    await poller_node.poll_once(source["id"], "node-x")
    scheduled = await client.post(f"{url}/poll", headers=world.headers["user_a"])
    assert scheduled.json()["status"] == "scheduled"
    assert await poller_node.due_sources("node-x") == [source["id"]]
    await poller_node.close()
