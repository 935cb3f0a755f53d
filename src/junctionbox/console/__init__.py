"""The operators' web console at ``/console``: server-rendered (Jinja2 + htmx), served by the
API process, calling the services directly under the API's tenancy and role checks.

A page per resource lives in ``pages/`` (one module, one router) and is listed in ``PAGES``
and in ``nav.NAV``; that is all a new resource's page needs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from junctionbox.console import nav
from junctionbox.console.pages import (
    admin,
    alerts,
    auth,
    catalog,
    dashboard,
    dlq,
    events,
    gateway_routes,
    inbound,
    integrations,
    jobs,
    logs,
    lookups,
    not_found,
    scheduled,
    webhook_sources,
)
from junctionbox.console.session import SessionCodec
from junctionbox.console.web import HERE, PREFIX, ConsoleState
from junctionbox.services.container import Services

PAGES = (
    *(auth, dashboard, events, integrations, logs, dlq, scheduled, lookups, catalog, admin),
    *(jobs, alerts),
    *(inbound, gateway_routes, webhook_sources),
)


def _when(value: Any) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=str(HERE / "templates"))
    found.env.filters["when"] = _when
    found.env.globals["nav"] = nav.NAV
    found.env.globals["prefix"] = PREFIX
    return found


def mount(app: FastAPI, services: Services) -> None:
    """Add the console's routes and static files to ``app``."""
    secret = services.settings.secret_key
    if secret is None:  # build_services refuses this already; keep mypy and readers sure
        raise RuntimeError("the console needs the secret key")
    app.state.console = ConsoleState(services, SessionCodec(secret.get_secret_value()), templates())
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for page in PAGES:
        app.include_router(page.router, include_in_schema=False)
    app.include_router(not_found.router, include_in_schema=False)  # last: catches the rest
