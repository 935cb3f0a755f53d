"""The ASGI application factory. The middleware stack is listed here, outermost first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from junctionbox import __version__, console
from junctionbox.api.errors import install_error_handlers
from junctionbox.api.gateway_proxy import GatewayMiddleware, GatewayProxy
from junctionbox.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from junctionbox.api.publish_fast_path import PublishFastPath
from junctionbox.api.rate_limit import RateLimitMiddleware
from junctionbox.api.routers import (
    admin,
    alerts,
    analytics,
    auth,
    dlq,
    event_sources,
    event_types,
    events,
    gateway,
    health,
    inbound_integrations,
    integration_proxy,
    logs,
    lookups,
    metrics,
    outbound_integrations,
    scheduled_integrations,
    scheduled_jobs,
    subscribe,
    templates,
    tenant,
    webhook_sources,
    webhooks,
)
from junctionbox.api.routers.integration_proxy import ProxyFastPath
from junctionbox.observability.http import TelemetryMiddleware
from junctionbox.services.container import Services

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_middleware(services: Services) -> list[Middleware]:
    settings = services.settings
    stack = [
        Middleware(TelemetryMiddleware, telemetry=services.telemetry),
        Middleware(RequestContextMiddleware),
    ]
    if settings.cors_origin_list:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origin_list,
                allow_credentials=True,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=["x-request-id", "x-correlation-id"],
            )
        )
    stack.append(Middleware(RateLimitMiddleware, limiter=services.api_limiter))
    stack.append(Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes))
    stack.append(Middleware(GatewayMiddleware, proxy=GatewayProxy(services)))
    stack.append(Middleware(PublishFastPath))
    stack.append(Middleware(ProxyFastPath))  # innermost: the proxy skips FastAPI's router
    return stack


@asynccontextmanager
async def _no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def create_app(services: Services, lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(
        title="junctionbox",
        version=__version__,
        description="Integration gateway and orchestration engine.",
        middleware=build_middleware(services),
        lifespan=lifespan or _no_lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(alerts.admin_router)
    for module in (
        health,
        auth,
        tenant,
        admin,
        events,
        event_types,
        event_sources,
        subscribe,
        outbound_integrations,
        templates,
        lookups,
        logs,
        dlq,
        scheduled_integrations,
        scheduled_jobs,
        metrics,
        analytics,
        alerts,
        webhook_sources,
        webhooks,
        gateway,
        inbound_integrations,
        integration_proxy,
    ):
        app.include_router(module.router)
    console.mount(app, services)
    return app
