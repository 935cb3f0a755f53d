"""The composition root: builds the store and services from Settings and runs the roles.

Roles are what a process does. ``api`` serves HTTP and health-checks the registered services;
``dispatcher`` reads the event log and queues a delivery job per matching integration;
``worker`` runs delivery jobs and scheduled-job runs; ``scheduler`` runs the time-driven
loops (DLQ retries, stream retention, idempotency-key expiry, SQL table sources,
scheduled-job ticks, alert rules, the webhook replay-store purge).
``all`` runs every role, which is what ``make run`` does on the embedded SQLite store. Every
process answers the health endpoints and records a heartbeat.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from junctionbox.api.app import build_routes_now, create_app
from junctionbox.api.http_protocol import CoalescingHttpToolsProtocol
from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.connectors.job_sources import SqlQueryRunner
from junctionbox.domain.event_envelope import EnvelopeLimits
from junctionbox.domain.netguard import parse_allowlist
from junctionbox.domain.secretbox import SecretBox
from junctionbox.engine.alert_loop import AlertLoop
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.engine.dispatcher import Dispatcher
from junctionbox.engine.dlq_worker import DlqWorker
from junctionbox.engine.heartbeat import NodeHeartbeat
from junctionbox.engine.maintenance import Maintenance
from junctionbox.engine.scheduled_jobs import JobTicker, ScheduledJobWorker
from junctionbox.engine.service_health import ServiceHealthChecker
from junctionbox.engine.sql_poller import SqlSourcePoller
from junctionbox.engine.table_statistics import TableStatistics
from junctionbox.engine.webhook_janitor import WebhookJanitor
from junctionbox.errors import ConfigurationError
from junctionbox.observability.telemetry import Telemetry
from junctionbox.queue.store import JobQueue
from junctionbox.services.alerting import AlertEvaluator, AlertService, ChannelSender
from junctionbox.services.analytics import AnalyticsService
from junctionbox.services.api_keys import ApiKeyService
from junctionbox.services.api_rate_limits import ApiLimits, ApiRateLimiter
from junctionbox.services.audit import AuditService
from junctionbox.services.auth import AuthService
from junctionbox.services.bootstrap import ensure_first_admin
from junctionbox.services.container import Services
from junctionbox.services.credentials import PasswordHasher, TokenSigner
from junctionbox.services.delivery_logs import DeliveryLogService
from junctionbox.services.dlq import DlqService
from junctionbox.services.event_log import EventLog
from junctionbox.services.event_sources import EventSourceService
from junctionbox.services.gateway import GatewayService
from junctionbox.services.inbound import InboundIntegrationService
from junctionbox.services.inbound_proxy import InboundProxy
from junctionbox.services.integrations import IntegrationService
from junctionbox.services.live import LiveHub
from junctionbox.services.login_throttle import LoginLimits, LoginThrottle
from junctionbox.services.lookups import LookupService
from junctionbox.services.monitor import Monitor
from junctionbox.services.outbound_request import RequestBuilder
from junctionbox.services.publish import PublishService
from junctionbox.services.rate_limit_backends import MemoryBackend, RateLimitBackend
from junctionbox.services.read_cache import credential_caches
from junctionbox.services.scheduled_job_runs import JobRunner
from junctionbox.services.scheduled_jobs import ScheduledJobService
from junctionbox.services.schedules import ScheduleService
from junctionbox.services.schema_registry import SchemaRegistry
from junctionbox.services.service_registry import ServiceRegistry
from junctionbox.services.streams import StreamService
from junctionbox.services.tenancy import TenancyService
from junctionbox.services.users import UserService
from junctionbox.services.webhook_intake import WebhookIntake
from junctionbox.services.webhook_sources import WebhookSourceService
from junctionbox.settings import Settings
from junctionbox.store import migrate
from junctionbox.store.database import Database

log = logging.getLogger(__name__)

KNOWN_ROLES = ("api", "dispatcher", "worker", "scheduler")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
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
    hasher = PasswordHasher(settings.password_hash_time_cost, settings.password_hash_memory_kib)
    secret = settings.secret_key.get_secret_value()
    secretbox = SecretBox(secret)
    signer = TokenSigner(secret, settings.jwt_ttl)
    event_log = EventLog(db, default_partitions=settings.events_default_partitions)
    schemas = SchemaRegistry(db)
    queue = JobQueue(db)
    credentials = credential_caches(db)
    http = GuardedHttpClient(parse_allowlist(settings.ssrf_allowlist))
    lookups = LookupService(db)
    telemetry = Telemetry.from_env()
    event_log.listeners.append(lambda stored: telemetry.metrics.events_ingested.inc(len(stored)))
    limiter_backend = rate_limit_backend(settings)
    throttle = LoginThrottle(
        limiter_backend,
        LoginLimits(
            per_ip_per_minute=settings.login_attempts_per_ip_per_minute,
            per_account_per_minute=settings.login_attempts_per_account_per_minute,
        ),
    )
    auth = AuthService(db, hasher, signer, credentials, throttle)
    requests = RequestBuilder(lookups, http)
    proxy = InboundProxy(
        db,
        secretbox,
        http,
        lookups,
        requests.oauth,
        trusted_proxies=settings.trusted_proxy_list,
        max_transform_bytes=settings.max_body_bytes,
        telemetry=telemetry,
    )
    limits = EnvelopeLimits(
        max_batch=settings.events_max_batch,
        max_event_bytes=settings.events_max_event_bytes,
        max_depth=settings.events_max_depth,
    )
    webhook_sources = WebhookSourceService(
        db, secretbox, max_body_limit=settings.events_max_event_bytes
    )
    replay_ttl = timedelta(seconds=settings.webhooks_replay_ttl_seconds)
    gateway = GatewayService(db, secretbox, limiter_backend, http)
    return Services(
        settings=settings,
        db=db,
        tenancy=TenancyService(db),
        users=UserService(db, hasher),
        api_keys=ApiKeyService(db, credentials),
        auth=auth,
        audit=AuditService(db),
        secretbox=secretbox,
        event_log=event_log,
        schemas=schemas,
        publisher=PublishService(
            db,
            event_log,
            schemas,
            limits=limits,
            idempotency_ttl=settings.idempotency_ttl,
            telemetry=telemetry,
        ),
        streams=StreamService(db),
        sources=EventSourceService(
            db,
            secretbox,
            event_log,
            schemas=schemas,
            max_event_bytes=settings.events_max_event_bytes,
        ),
        live=LiveHub(
            db,
            event_log,
            queue_size=settings.live_queue_size,
            queue_bytes=settings.live_queue_bytes,
            heartbeat_seconds=settings.live_heartbeat_seconds,
            max_per_tenant=settings.live_max_per_tenant,
        ),
        queue=queue,
        http=http,
        lookups=lookups,
        requests=requests,
        integrations=IntegrationService(db, secretbox, settings),
        delivery_logs=DeliveryLogService(db),
        dlq=DlqService(db, queue),
        schedules=ScheduleService(db, queue),
        scheduled_jobs=build_scheduled_jobs(settings, db, queue, secretbox, http, telemetry),
        monitor=Monitor(db, settings, telemetry.metrics),
        analytics=AnalyticsService(db),
        alerting=AlertService(db, secretbox),
        telemetry=telemetry,
        webhook_sources=webhook_sources,
        webhooks=WebhookIntake(
            db, event_log, schemas, webhook_sources, replay_ttl=replay_ttl, telemetry=telemetry
        ),
        gateway=gateway,
        registry=ServiceRegistry(db, on_change=gateway.forget_services),
        api_limiter=ApiRateLimiter(
            limiter_backend,
            auth,
            ApiLimits.per_minute(
                settings.rate_limit_enabled,
                settings.rate_limit_ip_per_minute,
                settings.rate_limit_tenant_per_minute,
            ),
        ),
        inbound=InboundIntegrationService(db, secretbox, settings, on_change=proxy.forget),
        proxy=proxy,
    )


def build_scheduled_jobs(
    settings: Settings,
    db: Database,
    queue: JobQueue,
    secretbox: SecretBox,
    http: GuardedHttpClient,
    telemetry: Telemetry | None = None,
) -> ScheduledJobService:
    """Scheduled jobs; ``{{env.NAME}}`` sees the allowlisted variables as set at start."""
    env = {n: os.environ[n] for n in settings.scheduled_jobs_env_names if n in os.environ}
    runner = JobRunner(
        SqlQueryRunner(settings.database_url),
        http,
        max_rows=settings.scheduled_jobs_max_rows,
        telemetry=telemetry,
    )
    return ScheduledJobService(
        db,
        queue,
        secretbox,
        runner,
        env=env,
        max_rows=settings.scheduled_jobs_max_rows,
        allowlist=parse_allowlist(settings.ssrf_allowlist),
    )


def rate_limit_backend(settings: Settings) -> RateLimitBackend:
    """Rate-limit buckets in this process, or in Redis when the cluster shares them."""
    if settings.rate_limit_backend == "redis":
        from junctionbox.connectors.redis_rate_limit import RedisBackend

        url = settings.redis_url.get_secret_value() if settings.redis_url else DEFAULT_REDIS_URL
        return RedisBackend(
            url,
            prefix=settings.redis_key_prefix,
            fail_open=settings.rate_limit_fail_open,
        )
    return MemoryBackend()


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


def settle_heap() -> None:
    """Move everything start-up allocated out of the collector's view, and collect less
    often: the loops allocate many short-lived objects per delivery, and full passes over a
    heap of long-lived modules and caches cost about 7 % of a worker's time (measured)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def node_id() -> str:
    """This process's name in leases: host, pid and a random suffix (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def role_loops(
    services: Services, plan: RolePlan
) -> list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]]:
    """The long-running loops of the roles in ``plan``; each stops when its event is set."""
    loops: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
    worker = None
    if "worker" in plan.roles:
        listeners = (services.dlq, services.schedules)
        worker = DeliveryWorker(services, node_id=node_id(), listeners=listeners)
    if "dispatcher" in plan.roles:
        # With both roles here, new jobs go straight to this worker (engine.handoff).
        loops.append(Dispatcher(services, node_id=node_id(), handoff=worker).run)
    if worker is not None:
        loops.append(worker.run)
        loops.append(
            ScheduledJobWorker(
                services.scheduled_jobs,
                services.queue,
                node_id=node_id(),
                concurrency=services.settings.scheduled_jobs_concurrency,
                lease_seconds=services.settings.worker_lease_seconds,
            ).run
        )
    if "api" in plan.roles:
        registry = services.registry
        checker = ServiceHealthChecker(registry, services.http, on_change=services.gateway.forget)
        loops.append(checker.run)
    if "scheduler" in plan.roles:
        loops.append(DlqWorker(services, node_id=node_id()).run)
        loops.append(maintenance(services).run)
        loops.append(SqlSourcePoller(services.sources, node_id=node_id()).run)
        poll = services.settings.scheduled_jobs_poll_seconds
        loops.append(JobTicker(services.scheduled_jobs, poll_seconds=poll).run)
        loops.append(alert_loop(services).run)
        loops.append(WebhookJanitor(services.webhooks).run)
    if not services.db.is_sqlite and {"dispatcher", "worker", "scheduler"} & set(plan.roles):
        loops.append(TableStatistics(services.db).run)
    loops.append(heartbeat(services, plan).run)
    return loops


def maintenance(services: Services) -> Maintenance:
    settings = services.settings
    jobs, logs = settings.job_retention_hours, settings.log_retention_days
    return Maintenance(
        services.db,
        services.streams,
        services.publisher,
        services.queue,
        job_retention=timedelta(hours=jobs) if jobs > 0 else None,
        log_retention=timedelta(days=logs) if logs > 0 else None,
    )


def alert_loop(services: Services) -> AlertLoop:
    settings = services.settings
    sender = ChannelSender(settings, services.http, services.secretbox)
    return AlertLoop(
        AlertEvaluator(services.db, settings, sender),
        services.db,
        interval=settings.alerts_interval_seconds,
        retention_days=settings.rollup_retention_days,
    )


def heartbeat(services: Services, plan: RolePlan) -> NodeHeartbeat:
    """Every process (whatever its roles) records that it is alive."""
    return NodeHeartbeat(
        services.db,
        node_id=node_id(),
        roles=plan.roles,
        interval=services.settings.heartbeat_seconds,
    )


@asynccontextmanager
async def background_roles(services: Services, plan: RolePlan) -> AsyncIterator[None]:
    """Run the roles' loops for the duration of the block, then stop them and wait."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in role_loops(services, plan)]
    try:
        yield
    finally:
        stop.set()
        done, pending = (
            await asyncio.wait(tasks, timeout=services.settings.shutdown_grace_seconds)
            if tasks
            else (set(), set())
        )
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("background loop failed", exc_info=task.exception())


def build_app(settings: Settings) -> FastAPI:
    """The API application with its lifespan: prepare on start, release on stop."""
    services = build_services(ensure_secret_key(settings))

    plan = RolePlan.parse(settings.roles)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare(services)
        build_routes_now(app)
        settle_heap()
        await services.live.start()
        try:
            async with background_roles(services, plan):
                log.info("junctionbox ready", extra={"roles": list(plan.roles)})
                try:
                    yield
                finally:
                    log.info("junctionbox stopping")
        finally:
            await services.live.stop()
            await services.close()
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
        http=CoalescingHttpToolsProtocol,
        log_config=None,
        access_log=False,
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list or None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        server_header=False,
    )
    _Server(config, app.state.services).run()


class _Server(uvicorn.Server):
    """uvicorn waits for open connections before the lifespan ends; live event streams never
    end by themselves, so they are closed as soon as shutdown begins."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self._services = services

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._services.live.close_all()
        await super().shutdown(sockets)
