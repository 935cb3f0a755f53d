"""The ASGI application factory: the edge middleware, the hot paths it serves, then FastAPI
with every router."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from junctionbox import __version__, console
from junctionbox.api.errors import install_error_handlers, internal_error_response
from junctionbox.api.gateway_proxy import PREFIX as GATEWAY_PREFIX
from junctionbox.api.gateway_proxy import GatewayMiddleware, GatewayProxy
from junctionbox.api.middleware import EdgeMiddleware, HotPath
from junctionbox.api.publish_fast_path import PATH as PUBLISH_PATH
from junctionbox.api.publish_fast_path import PublishFastPath
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
    gateway_services,
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
from junctionbox.api.routers.integration_proxy import PREFIX as PROXY_PREFIX
from junctionbox.api.routers.integration_proxy import ProxyFastPath
from junctionbox.services.container import Services
from junctionbox.settings import Settings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def hot_paths(services: Services) -> list[HotPath]:
    """Paths served by pure-ASGI handlers right after the edge middleware, before FastAPI
    (its router walks every route, its layers wrap every call): the hottest ones only.
    First match by prefix wins."""
    gateway = GatewayProxy(services)
    return [
        (PUBLISH_PATH, PublishFastPath),
        (PROXY_PREFIX, lambda app: ProxyFastPath(app, services)),
        (GATEWAY_PREFIX, lambda app: GatewayMiddleware(app, gateway)),
    ]


def _cors(settings: Settings) -> Callable[[ASGIApp], ASGIApp] | None:
    origins = settings.cors_origin_list
    if not origins:
        return None
    return lambda app: CORSMiddleware(
        app,
        allow_origins=origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["x-request-id", "x-correlation-id"],
    )


class JunctionboxApp(FastAPI):
    """FastAPI with the edge middleware (``api.middleware``) in front of it: every HTTP
    request goes through the edge, which serves the hot paths itself and hands the rest to
    FastAPI's own stack."""

    edge: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["app"] = self
            await self.edge(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


async def _unhandled(_: Request, __: Exception) -> Response:
    """FastAPI answers an escaped exception itself (then re-raises it to the edge, which
    logs it): in the envelope, without detail."""
    return internal_error_response()


@asynccontextmanager
async def _no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def build_routes_now(app: FastAPI) -> int:
    """Build every route's request handling now; the number of routers built.

    FastAPI builds an included router's routes (their dependencies' and parameters'
    pydantic schemas) on the first request that reaches that router: 20-60 ms of blocked
    loop per router, once, in the middle of serving (the deliveries of the same process
    waited for the first console or API call of each kind after a start). Built at start-up
    instead. (Duck-typed: a FastAPI without lazy routers has nothing to build.)"""
    pending: list[Any] = list(app.router.routes)
    built = 0
    while pending:
        route = pending.pop()
        candidates = getattr(route, "effective_candidates", None)
        if candidates is None:
            continue
        pending.extend(candidates())
        route.effective_low_priority_routes()
        built += 1
    return built


def create_app(services: Services, lifespan: Lifespan | None = None) -> FastAPI:
    app = JunctionboxApp(
        title="junctionbox",
        version=__version__,
        description="Integration gateway and orchestration engine.",
        lifespan=lifespan or _no_lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_exception_handler(Exception, _unhandled)
    app.edge = EdgeMiddleware(
        app.framework,
        telemetry=services.telemetry,
        limiter=services.api_limiter,
        max_body_bytes=services.settings.max_body_bytes,
        hot_paths=hot_paths(services),
        wrap=_cors(services.settings),
    )
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
        gateway_services,
        inbound_integrations,
        integration_proxy,
    ):
        app.include_router(module.router)
    console.mount(app, services)
    return app
