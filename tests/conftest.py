"""Fixtures shared by the whole suite.

``db_url`` runs a test once on SQLite and once on PostgreSQL (127.0.0.1:5432). Without a
PostgreSQL server the PostgreSQL half is skipped locally and fails in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from tests.support import (
    PG_ADMIN_DSN,
    PG_HOST,
    PG_PORT,
    World,
    make_settings,
    pg_url,
    require_service,
)

from junctionbox.api.app import create_app
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.store import migrate
from junctionbox.store.database import Database


async def _admin_execute(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that per-test databases are cloned from."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"jb_tpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))

    async def migrate_template() -> None:
        db = Database(pg_url(name))
        await migrate.upgrade(db)
        await db.dispose()

    asyncio.run(migrate_template())
    yield name
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """An empty PostgreSQL database, dropped after the test."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"jb_t_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    yield pg_url(name)
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of the parametrised backend, private to this test."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/junctionbox.db"

        async def migrate_sqlite() -> None:
            db = Database(url)
            await migrate.upgrade(db)
            await db.dispose()

        asyncio.run(migrate_sqlite())
        yield url
        return
    template = request.getfixturevalue("pg_template")
    name = f"jb_t_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield pg_url(name)
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def services(db_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    svc = build_services(make_settings(db_url, tmp_path))
    yield svc
    await svc.close()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def world(client: httpx.AsyncClient, services: Services) -> World:
    return await World(client, services).build()
