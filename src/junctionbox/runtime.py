"""The composition root: builds the store and services from Settings and runs the roles.

Roles are what a process does. ``api`` serves HTTP; the worker roles of later features
(dispatcher, delivery workers, scheduler) register here. ``all`` runs every role, which is
what ``make run`` does on the embedded SQLite store.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from junctionbox.api.app import create_app
from junctionbox.errors import ConfigurationError
from junctionbox.services.api_keys import ApiKeyService
from junctionbox.services.audit import AuditService
from junctionbox.services.auth import AuthService
from junctionbox.services.bootstrap import ensure_first_admin
from junctionbox.services.container import Services
from junctionbox.services.credentials import PasswordHasher, TokenSigner
from junctionbox.services.tenancy import TenancyService
from junctionbox.services.users import UserService
from junctionbox.settings import Settings
from junctionbox.store import migrate
from junctionbox.store.database import Database

log = logging.getLogger(__name__)

KNOWN_ROLES = ("api",)
SECRET_FILE = "secret.key"  # noqa: S105 (a file name, not a secret)


@dataclass(frozen=True)
class RolePlan:
    roles: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> RolePlan:
        names = [r.strip() for r in text.split(",") if r.strip()] or ["all"]
        if names == ["all"]:
            return cls(KNOWN_ROLES)
        unknown = sorted(set(names) - set(KNOWN_ROLES))
        if unknown:
            known = ", ".join(KNOWN_ROLES)
            raise ConfigurationError(f"unknown role(s) {', '.join(unknown)}; known: {known}, all")
        return cls(tuple(dict.fromkeys(names)))


def ensure_secret_key(settings: Settings) -> Settings:
    """The configured secret, or one generated once into the data directory (with a warning)."""
    if settings.secret_key is not None:
        return settings
    path = Path(settings.data_dir) / SECRET_FILE
    if path.exists():
        secret = path.read_text().strip()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(secret)
        log.warning(
            "JB_SECRET_KEY is not set: generated one in %s. Back it up: it decrypts stored "
            "secrets. In a cluster every node needs the same JB_SECRET_KEY.",
            path,
        )
    return settings.model_copy(update={"secret_key": SecretStr(secret)})


def build_services(settings: Settings) -> Services:
    if settings.secret_key is None:
        raise ConfigurationError("secret key missing; call ensure_secret_key first")
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    hasher = PasswordHasher()
    signer = TokenSigner(settings.secret_key.get_secret_value(), settings.jwt_ttl)
    return Services(
        settings=settings,
        db=db,
        tenancy=TenancyService(db),
        users=UserService(db, hasher),
        api_keys=ApiKeyService(db),
        auth=AuthService(db, hasher, signer),
        audit=AuditService(db),
    )


async def prepare(services: Services) -> None:
    """Migrate the store and create the first admin if configured."""
    await migrate.upgrade(services.db)
    password = services.settings.admin_password
    await ensure_first_admin(
        services.db,
        services.users,
        services.settings.admin_email,
        password.get_secret_value() if password else None,
    )


def build_app(settings: Settings) -> FastAPI:
    """The API application with its lifespan: prepare on start, release on stop."""
    services = build_services(ensure_secret_key(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await prepare(services)
        log.info("junctionbox ready", extra={"roles": list(RolePlan.parse(settings.roles).roles)})
        try:
            yield
        finally:
            await services.db.dispose()
            log.info("junctionbox stopped")

    return create_app(services, lifespan)


def serve(settings: Settings) -> None:
    """Run the process's roles until SIGINT/SIGTERM; in-flight requests finish first."""
    RolePlan.parse(settings.roles)  # fail before binding the port
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list or None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        server_header=False,
    )
    uvicorn.Server(config).run()
