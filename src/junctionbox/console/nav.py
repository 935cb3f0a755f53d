"""The console's navigation: one entry per page; ``admin`` entries are shown to ADMINs only
(and their routes refuse everyone else with 403)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    title: str
    path: str
    admin: bool = False


NAV = (
    NavItem("Dashboard", "/dashboard"),
    NavItem("Events", "/events"),
    NavItem("Integrations", "/integrations"),
    NavItem("Inbound integrations", "/inbound"),
    NavItem("Gateway routes", "/gateway"),
    NavItem("Webhook sources", "/webhook-sources"),
    NavItem("Delivery logs", "/logs"),
    NavItem("Dead letters", "/dlq"),
    NavItem("Scheduled", "/scheduled"),
    NavItem("Scheduled jobs", "/jobs"),
    NavItem("Alerts", "/alerts"),
    NavItem("Lookups", "/lookups"),
    NavItem("Event types", "/event-types"),
    NavItem("Streams & sources", "/sources"),
    NavItem("Organizations", "/admin/orgs", admin=True),
    NavItem("Users", "/admin/users", admin=True),
    NavItem("API keys", "/admin/api-keys", admin=True),
    NavItem("Audit log", "/admin/audit", admin=True),
)
