"""Fixtures the delivery tests share: a recording sink, and services (organizations 100 and
200) whose SSRF guard lets that sink through. A module needing more sinks or other services
defines its own ``svc``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.delivery_helpers import tenant_services

from junctionbox.services.container import Services
from junctionbox.testing import RecordingSink


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as recording:
        yield recording


@pytest.fixture
async def svc(db_url: str, tmp_path: Path, sink: RecordingSink) -> AsyncIterator[Services]:
    services = await tenant_services(db_url, tmp_path, [sink.allowlist_entry])
    yield services
    await services.close()
