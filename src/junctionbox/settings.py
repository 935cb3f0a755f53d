"""One validated configuration, read once at start and passed explicitly.

Sources, highest priority first: explicit overrides (CLI flags), ``JB_*`` environment variables,
the TOML file named by ``JB_CONFIG_FILE`` (or ``--config``), then the defaults below.
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from junctionbox.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/junctionbox.db"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
SUPPORTED_DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def parse_duration(value: Any) -> timedelta:
    """``604800``, ``"7d"``, ``"12h"``, ``"30m"`` or ``"45s"`` as a positive timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError("expected seconds or a duration like 7d, 12h, 30m, 45s")
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be positive")
    return timedelta(seconds=seconds)


class Settings(BaseModel):
    """Every setting junctionbox reads; each field ``x`` is also the variable ``JB_X``."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy URL of the store.")
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the API listens on.")
    data_dir: Path = Field(Path("./data"), description="Where SQLite and generated keys live.")
    secret_key: SecretStr | None = Field(
        None, description="Signs sessions and encrypts secrets; generated if absent."
    )
    jwt_ttl: timedelta = Field(timedelta(days=7), description="Lifetime of login tokens.")
    # argon2id cost of stored passwords (RFC 9106's second recommendation by default). Hashes
    # keep their own parameters, so changing these affects new passwords only.
    password_hash_time_cost: int = Field(3, ge=1, le=20, description="argon2id passes.")
    password_hash_memory_kib: int = Field(
        65_536, ge=64, le=4_194_304, description="argon2id memory per hash, KiB."
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body.")
    log_format: LogFormat = Field(LogFormat.JSON, description="json or console.")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    roles: str = Field("all", description="Comma-separated roles this process runs, or all.")
    admin_email: str | None = Field(None, description="First admin, created if no user exists.")
    admin_password: SecretStr | None = Field(None, description="Password of the first admin.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS.")
    trusted_proxies: str = Field("", description="Comma-separated proxy addresses trusted.")
    shutdown_grace_seconds: float = Field(20.0, ge=0, description="Time to finish work on stop.")
    db_pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connection pool size.")
    ssrf_allowlist: str = Field(
        "", description="Comma-separated hosts/CIDRs outbound calls may reach despite the guard."
    )
    events_max_batch: int = Field(1000, ge=1, le=100_000, description="Most events per publish.")
    events_max_event_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest event data, in bytes."
    )
    events_max_depth: int = Field(64, ge=2, le=512, description="Deepest JSON nesting accepted.")
    events_default_partitions: int = Field(
        4, ge=1, le=1024, description="Partitions of a stream created on first publish."
    )
    live_queue_size: int = Field(
        1000, ge=2, le=100_000, description="Events a live subscriber may fall behind by."
    )
    live_queue_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Event bytes a live subscriber may hold."
    )
    live_heartbeat_seconds: float = Field(15.0, gt=0, le=300, description="Live heartbeat period.")
    live_max_per_tenant: int = Field(100, ge=1, description="Live subscriptions per tenant, node.")
    idempotency_ttl: timedelta = Field(
        timedelta(hours=24), description="How long an Idempotency-Key's response is replayed."
    )
    worker_concurrency: int = Field(
        64, ge=1, le=4096, description="Deliveries one worker process runs at once."
    )
    worker_destination_concurrency: int = Field(
        16, ge=1, le=4096, description="Most of those at once to one destination (fairness)."
    )
    worker_lease_seconds: float = Field(
        60.0, ge=1, le=3600, description="Lease of a claimed delivery job; heartbeats renew it."
    )
    dispatcher_batch: int = Field(
        500, ge=1, le=10_000, description="Events the dispatcher reads per partition per pass."
    )
    dlq_poll_seconds: float = Field(
        60.0, gt=0, le=3600, description="How often the DLQ worker looks for entries to retry."
    )
    scheduled_jobs_poll_seconds: float = Field(
        1.0, gt=0, le=3600, description="How often the scheduler looks for due scheduled jobs."
    )
    scheduled_jobs_concurrency: int = Field(
        4, ge=1, le=256, description="Scheduled job runs one worker process runs at once."
    )
    scheduled_jobs_max_rows: int = Field(
        10_000, ge=1, le=10_000_000, description="Most rows a scheduled job's SQL may return."
    )
    scheduled_jobs_env_allowlist: str = Field(
        "", description="Comma-separated environment variables {{env.NAME}} may read."
    )
    # observability
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token for /metrics; unset: /metrics answers loopback only."
    )
    heartbeat_seconds: float = Field(
        10.0, gt=0, le=300, description="How often a process records its heartbeat."
    )
    node_stale_seconds: float = Field(
        60.0, gt=0, le=3600, description="A process unseen this long is presumed stopped."
    )
    health_lag_warn_seconds: float = Field(
        60.0, gt=0, description="Oldest due job or undispatched event older: health degraded."
    )
    health_lag_fail_seconds: float = Field(
        900.0, gt=0, description="Older than this: health unhealthy."
    )
    alerts_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often the scheduler evaluates alert rules."
    )
    job_retention_hours: float = Field(
        24.0,
        ge=0,
        le=24 * 3650,
        description=(
            "Done and cancelled queue jobs are deleted this long after they finish (0 keeps"
            " them); a job's dedupe key is remembered as long as the job."
        ),
    )
    log_retention_days: int = Field(
        0,
        ge=0,
        le=3650,
        description=(
            "Delivery-log rows (deliveries, proxied calls, received webhooks, with their"
            " execution traces) are deleted this many days after they were written (0 keeps"
            " them)."
        ),
    )
    rollup_retention_days: int = Field(
        90, ge=1, le=3650, description="Days of dashboard rollups kept."
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis URL, when Redis is used; the health check pings it."
    )
    smtp_host: str | None = Field(None, description="SMTP server for alert e-mails.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP user name.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_from: str = Field("junctionbox@localhost", description="Sender of alert e-mails.")
    smtp_starttls: bool = Field(False, description="Use STARTTLS with the SMTP server.")
    webhooks_public_url: str = Field(
        "", description="Base URL partners send webhooks to (receiveUrl); default: the request's."
    )
    webhooks_replay_ttl_seconds: int = Field(
        259_200, ge=60, le=90 * 86_400, description="How long received webhook ids are kept."
    )
    # API rate limits (docs/rate-limits.md): per client IP before authentication, per tenant
    # after it; gateway routes add their own per-route and per-client limits.
    rate_limit_enabled: bool = Field(True, description="Apply the API rate limits.")
    rate_limit_ip_per_minute: int = Field(1000, ge=1, description="Requests per minute per IP.")
    rate_limit_tenant_per_minute: int = Field(
        100, ge=1, description="Authenticated API requests per minute per tenant."
    )
    rate_limit_backend: Literal["memory", "redis"] = Field(
        "memory", description="memory (one node) or redis."
    )
    rate_limit_fail_open: bool = Field(
        True, description="When Redis is down: allow (true, logged) or refuse with 503."
    )
    redis_key_prefix: str = Field("jb:", description="Prefix of junctionbox's Redis keys.")
    login_attempts_per_ip_per_minute: int = Field(
        20, ge=1, description="Login attempts per minute per client IP (API and console)."
    )
    login_attempts_per_account_per_minute: int = Field(
        10, ge=1, description="Login attempts per minute per account (e-mail)."
    )

    @field_validator("jwt_ttl", "idempotency_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if "://" not in value or scheme not in SUPPORTED_DATABASE_SCHEMES:
            supported = ", ".join(f"{s}://" for s in SUPPORTED_DATABASE_SCHEMES)
            raise ValueError(f"must start with one of {supported}")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def scheduled_jobs_env_names(self) -> list[str]:
        return [n.strip() for n in self.scheduled_jobs_env_allowlist.split(",") if n.strip()]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    section = data.get("junctionbox", data)
    return {str(k).replace("-", "_"): v for k, v in section.items()}


def load_settings(
    overrides: dict[str, Any] | None = None,
    config_file: Path | str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read and validate the configuration; any problem is a ``ConfigurationError`` naming it.

    ``environ`` replaces ``os.environ`` (tests pass their own).
    """
    import os

    env = dict(os.environ if environ is None else environ)
    file_name = config_file or env.get("JB_CONFIG_FILE")
    values: dict[str, Any] = _read_toml(Path(file_name)) if file_name else {}
    values.update(_from_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from exc


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    fields = Settings.model_fields
    found = {}
    for key, value in env.items():
        if key.startswith("JB_") and key != "JB_CONFIG_FILE":
            name = key[3:].lower()
            if name in fields:
                found[name] = value
    return found


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "settings"
        env_name = f"JB_{field.upper()}"
        lines.append(f"{env_name}: {error['msg']}")
    return "invalid configuration: " + "; ".join(lines)
