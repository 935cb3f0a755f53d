"""Browser tests: the system Chromium driven by Playwright against ``junctionbox serve``
started as a subprocess. Without Chromium they skip locally and fail in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.test_serve import ADMIN, JB, environment, free_port, wait_healthy

from junctionbox.testing import RecordingSink

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"


def require_chromium() -> None:
    if Path(CHROMIUM).exists() and shutil.which("chromium"):
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            pass
        else:
            return
    message = f"Chromium ({CHROMIUM}) or the playwright package is missing"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI requires it: apt-get install -y chromium)")
    pytest.skip(message)


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as started:
        yield started


@pytest.fixture
def server(tmp_path: Path, sink: RecordingSink) -> Iterator[str]:
    """``junctionbox serve`` on SQLite with every role; the sink's address allowlisted, and
    the DLQ worker's automatic retries out of the way (the test retries by hand)."""
    port = free_port()
    env = environment(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path}/jb.db",
        JB_SSRF_ALLOWLIST=sink.allowlist_entry,
        JB_DLQ_POLL_SECONDS="3600",
    )
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*JB, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def admin_headers(base: str) -> dict[str, str]:
    token = httpx.post(f"{base}/api/v1/auth/login", json=ADMIN, timeout=10).json()["token"]
    return {"authorization": f"Bearer {token}"}
