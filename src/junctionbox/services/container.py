"""The services one process uses, built once by the composition root (``runtime.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.secretbox import SecretBox
from junctionbox.observability.telemetry import Telemetry
from junctionbox.queue.store import JobQueue
from junctionbox.services.alerting import AlertService
from junctionbox.services.analytics import AnalyticsService
from junctionbox.services.api_keys import ApiKeyService
from junctionbox.services.api_rate_limits import ApiRateLimiter
from junctionbox.services.audit import AuditService
from junctionbox.services.auth import AuthService
from junctionbox.services.delivery_logs import DeliveryLogService
from junctionbox.services.dlq import DlqService
from junctionbox.services.event_log import EventLog
from junctionbox.services.event_sources import EventSourceService
from junctionbox.services.gateway import GatewayService
from junctionbox.services.inbound import InboundIntegrationService
from junctionbox.services.inbound_proxy import InboundProxy
from junctionbox.services.integrations import IntegrationService
from junctionbox.services.live import LiveHub
from junctionbox.services.lookups import LookupService
from junctionbox.services.monitor import Monitor
from junctionbox.services.outbound_request import RequestBuilder
from junctionbox.services.publish import PublishService
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
from junctionbox.store.database import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    tenancy: TenancyService
    users: UserService
    api_keys: ApiKeyService
    auth: AuthService
    audit: AuditService
    secretbox: SecretBox
    event_log: EventLog
    schemas: SchemaRegistry
    publisher: PublishService
    streams: StreamService
    sources: EventSourceService
    live: LiveHub
    queue: JobQueue
    http: GuardedHttpClient
    lookups: LookupService
    requests: RequestBuilder
    integrations: IntegrationService
    delivery_logs: DeliveryLogService
    dlq: DlqService
    schedules: ScheduleService
    scheduled_jobs: ScheduledJobService
    monitor: Monitor
    analytics: AnalyticsService
    alerting: AlertService
    webhook_sources: WebhookSourceService
    webhooks: WebhookIntake
    gateway: GatewayService
    registry: ServiceRegistry
    api_limiter: ApiRateLimiter
    inbound: InboundIntegrationService
    proxy: InboundProxy
    started_monotonic: float = field(default_factory=time.monotonic)
    telemetry: Telemetry = field(default_factory=Telemetry)

    async def close(self) -> None:
        """Release what the services hold: pollers' connections, listeners, the HTTP pool and
        the database pool (in that order: the last needs the others closed)."""
        await self.sources.close()
        await self.gateway.flush()
        await self.api_limiter.backend.close()
        await self.queue.close()
        await self.scheduled_jobs.runner.sql.close()
        await self.proxy.close()
        await self.http.close()
        await self.db.dispose()
        self.telemetry.close()
