"""Start ``junctionbox serve`` as a user would and drive it over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import TEST_SECRET

JB = [sys.executable, "-m", "junctionbox.cli"]
ADMIN = {"email": "admin@example.com", "password": "admin-password-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy")


def environment(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JB_")}
    env.update(
        JB_DATABASE_URL=database_url,
        JB_DATA_DIR=str(tmp_path),
        JB_ADMIN_EMAIL=ADMIN["email"],
        JB_ADMIN_PASSWORD=ADMIN["password"],
        JB_LOG_FORMAT="json",
        **extra,
    )
    return env


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/jb.db"
    return str(request.getfixturevalue("fresh_pg_database"))


@pytest.fixture
def server(
    tmp_path: Path, database_url: str
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*JB, "serve", "--port", str(port)],
            env=environment(tmp_path, database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base, process, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_clone_to_authenticated_call(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, process, log_path = server
    with httpx.Client(base_url=base, timeout=10) as http:
        login = http.post("/api/v1/auth/login", json=ADMIN)
        assert login.status_code == 200
        admin = {"authorization": f"Bearer {login.json()['token']}"}
        org = http.post("/api/v1/admin/orgs", json={"orgId": 648, "name": "Acme"}, headers=admin)
        assert org.status_code == 201
        key = http.post(
            "/api/v1/admin/api-keys", json={"orgId": 648, "name": "ci"}, headers=admin
        ).json()
        tenant = http.get("/api/v1/tenant?orgId=648", headers={"x-api-key": key["key"]})
        assert tenant.status_code == 200
        assert tenant.json()["name"] == "Acme"
        assert http.get("/openapi.json").status_code == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) in (0, -signal.SIGTERM)
    log = log_path.read_text()
    assert "junctionbox stopped" in log  # the lifespan ran to its end: a graceful stop
    assert key["key"] not in log
    assert login.json()["token"] not in log
    assert ADMIN["password"] not in log


def test_restart_keeps_data_and_generated_secret(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/jb.db"
    tokens = []
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen(
            [*JB, "serve", "--port", str(port)],
            env=environment(tmp_path, url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, process)
            if tokens:  # a token from the first run still works: the secret was kept
                me = httpx.get(
                    f"{base}/api/v1/auth/me", headers={"authorization": f"Bearer {tokens[0]}"}
                )
                assert me.status_code == 200
            tokens.append(httpx.post(f"{base}/api/v1/auth/login", json=ADMIN).json()["token"])
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(20) in (0, 130, -signal.SIGINT)
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JB, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_commands(tmp_path: Path) -> None:
    env = environment(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/jb.db", JB_SECRET_KEY=TEST_SECRET)
    assert run_cli("version", env=env).stdout.strip()
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0
    assert "revision" in migrated.stdout
    user = run_cli(
        "admin",
        "create-user",
        "--email",
        "ops@example.com",
        "--password",
        "ops-password-1",
        "--role",
        "ADMIN",
        env=env,
    )
    assert user.returncode == 0, user.stderr
    no_org = run_cli("admin", "create-api-key", "--org-id", "5", "--name", "x", env=env)
    assert no_org.returncode == 1
    assert "organization not found" in no_org.stderr
    bad = run_cli("serve", env={**env, "JB_PORT": "not-a-port"})
    assert bad.returncode == 2
    assert "JB_PORT" in bad.stderr
    bad_role = run_cli("serve", "--roles", "juggler", env=env)
    assert bad_role.returncode == 2
    assert "unknown role" in bad_role.stderr
    assert "JB_DATABASE_URL" in run_cli("serve", "--help", env=env).stdout
