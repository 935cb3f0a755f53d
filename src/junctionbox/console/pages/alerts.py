"""Alerts: the alert center (filter, acknowledge), alert rules (CRUD) and channels (e-mail or
webhook, the signing secret masked), through ``AlertService`` as the API calls it.

A USER acts for their organization (its units included). An ADMIN acts for the organization
of the switcher, or, with ``scope=platform``, for the platform: every tenant's alerts and the
platform's own rules and channels (``WORKER_STOPPED`` is a platform rule).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.web import PREFIX, ConsoleRoute, Ctx, context, redirect, render
from junctionbox.domain.identity import TenantContext
from junctionbox.errors import ValidationError
from junctionbox.services.alerting import (
    CHANNEL_TYPES,
    KINDS,
    SEVERITIES,
    alert_out,
    channel_out,
    rule_out,
)
from junctionbox.store.tables import alert_channels, alert_rules

router = APIRouter(prefix=f"{PREFIX}/alerts", route_class=ConsoleRoute)
RULE_FIELDS = ("name", "kind", "threshold", "windowSeconds", "cooldownSeconds", "severity")
CHANNEL_FIELDS = ("name", "type", "recipients", "url", "secret")
OPTIONS = {"kinds": KINDS, "severities": SEVERITIES, "channel_types": CHANNEL_TYPES}


def _platform(ctx: Ctx) -> bool:
    """The ADMIN's platform scope (``scope=platform`` in the query or the form)."""
    wanted = ctx.query("scope") == "platform" or ctx.field("scope") == "platform"
    if wanted:
        ctx.require_admin()
    return wanted


def _tenant(ctx: Ctx) -> TenantContext | None:
    return None if _platform(ctx) else ctx.require_tenant()


def _back(ctx: Ctx, flash: str, path: str = "/alerts") -> Response:
    scope = "platform" if _platform(ctx) else None
    return redirect(ctx, ctx.url(path, scope=scope, flash=flash))


def _problem(exc: ValidationError, fields: tuple[str, ...]) -> dict[str, str]:
    """The service's message beside the field it starts with (``threshold must be …``)."""
    first = exc.message.split(" ", 1)[0]
    return {first if first in fields else "_": exc.message}


def _number(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw  # the service says what is wrong with it


def rule_body(ctx: Ctx) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": ctx.field("name") or None,
        "kind": ctx.field("kind"),
        "severity": ctx.field("severity") or "WARNING",
        "channelIds": ctx.fields("channelIds"),
        "enabled": ctx.field("enabled") == "on",
    }
    for key in ("threshold", "windowSeconds", "cooldownSeconds"):
        if ctx.field(key):
            body[key] = _number(ctx.field(key))
    return body


def channel_body(ctx: Ctx, kind: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": ctx.field("name") or None, "type": kind or ctx.field("type")}
    if body["type"] == "EMAIL":
        raw = ctx.field("recipients").replace(",", "\n").splitlines()
        body["recipients"] = [r.strip() for r in raw if r.strip()]
    else:
        body["url"] = ctx.field("url") or None
        if ctx.secret_field("secret"):
            body["secret"] = ctx.secret_field("secret")
    return body


async def _page(ctx: Ctx, status: int = 200, **forms: Any) -> Response:
    tenant = _tenant(ctx)
    svc = ctx.svc.alerting
    raw_ack = ctx.query("acknowledged")
    acknowledged = {"yes": True, "no": False}.get(raw_ack)
    kind = ctx.query("kind")
    if kind and kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    page = ctx.page()
    rows, total = await svc.alerts(tenant, page, acknowledged=acknowledged, kind=kind or None)
    values = {
        "alerts": [alert_out(r) for r in rows],
        "total": total,
        "has_more": page.offset + len(rows) < total,
        "number": page.page,
        "rules": [rule_out(r) for r in await svc.rows(alert_rules, tenant)],
        "channels": [channel_out(r) for r in await svc.rows(alert_channels, tenant)],
        "platform": tenant is None,
        "chosen": {"acknowledged": raw_ack, "kind": kind},
        "flash": ctx.query("flash"),
        "rule_form": forms.get("rule_form", {"values": {"severity": "WARNING"}, "errors": {}}),
        "channel_form": forms.get("channel_form", {"values": {"type": "WEBHOOK"}, "errors": {}}),
        **OPTIONS,
    }
    return render(ctx, "alerts/index.html", status, **values)


@router.get("")
async def index(request: Request) -> Response:
    return await _page(await context(request))


@router.post("/{alert_id}/acknowledge")
async def acknowledge(request: Request, alert_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.alerting.acknowledge(_tenant(ctx), alert_id)
    return _back(ctx, "Acknowledged.")


@router.post("/rules")
async def create_rule(request: Request) -> Response:
    ctx = await context(request)
    try:
        await ctx.svc.alerting.create_rule(_tenant(ctx), rule_body(ctx))
    except ValidationError as exc:
        values = {k: ctx.field(k) for k in RULE_FIELDS}
        form = {"values": values, "errors": _problem(exc, RULE_FIELDS)}
        return await _page(ctx, 400, rule_form=form)
    return _back(ctx, "Rule created.")


@router.get("/rules/{rule_id}")
async def edit_rule(request: Request, rule_id: str) -> Response:
    ctx = await context(request)
    tenant = _tenant(ctx)
    rule = rule_out(await ctx.svc.alerting.get(alert_rules, tenant, rule_id))
    return await _rule_form(ctx, tenant, rule, {k: _text(rule.get(k)) for k in RULE_FIELDS}, {})


async def _rule_form(
    ctx: Ctx,
    tenant: TenantContext | None,
    rule: dict[str, Any],
    values: dict[str, str],
    errors: dict[str, str],
) -> Response:
    channels = [channel_out(r) for r in await ctx.svc.alerting.rows(alert_channels, tenant)]
    return render(
        ctx, "alerts/rule.html", 400 if errors else 200, rule=rule, values=values,
        errors=errors, channels=channels, platform=tenant is None, **OPTIONS,
    )  # fmt: skip


@router.post("/rules/{rule_id}")
async def update_rule(request: Request, rule_id: str) -> Response:
    ctx = await context(request)
    tenant = _tenant(ctx)
    current = rule_out(await ctx.svc.alerting.get(alert_rules, tenant, rule_id))
    try:
        await ctx.svc.alerting.update_rule(tenant, rule_id, rule_body(ctx))
    except ValidationError as exc:
        values = {k: ctx.field(k) for k in RULE_FIELDS}
        return await _rule_form(ctx, tenant, current, values, _problem(exc, RULE_FIELDS))
    return _back(ctx, "Rule saved.")


@router.post("/rules/{rule_id}/delete")
async def delete_rule(request: Request, rule_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.alerting.delete(alert_rules, _tenant(ctx), rule_id)
    return _back(ctx, "Rule deleted.")


@router.post("/channels")
async def create_channel(request: Request) -> Response:
    ctx = await context(request)
    try:
        await ctx.svc.alerting.create_channel(_tenant(ctx), channel_body(ctx))
    except ValidationError as exc:
        values = {k: ctx.field(k) for k in CHANNEL_FIELDS if k != "secret"}
        form = {"values": values, "errors": _problem(exc, CHANNEL_FIELDS)}
        return await _page(ctx, 400, channel_form=form)
    return _back(ctx, "Channel created.")


@router.get("/channels/{channel_id}")
async def edit_channel(request: Request, channel_id: str) -> Response:
    ctx = await context(request)
    channel = channel_out(await ctx.svc.alerting.get(alert_channels, _tenant(ctx), channel_id))
    values = {
        "name": channel["name"],
        "recipients": "\n".join(channel.get("recipients") or ()),
        "url": channel.get("url") or "",
    }
    return _channel_form(ctx, channel, values, {})


def _channel_form(
    ctx: Ctx, channel: dict[str, Any], values: dict[str, str], errors: dict[str, str]
) -> Response:
    platform = _tenant(ctx) is None
    return render(
        ctx, "alerts/channel.html", 400 if errors else 200, channel=channel, values=values,
        errors=errors, platform=platform,
    )  # fmt: skip


@router.post("/channels/{channel_id}")
async def update_channel(request: Request, channel_id: str) -> Response:
    ctx = await context(request)
    tenant = _tenant(ctx)
    current = channel_out(await ctx.svc.alerting.get(alert_channels, tenant, channel_id))
    body = {**channel_body(ctx, current["type"]), "enabled": ctx.field("enabled") == "on"}
    if ctx.field("removeSecret") == "on":
        body["secret"] = None
    try:
        await ctx.svc.alerting.update_channel(tenant, channel_id, body)
    except ValidationError as exc:
        values = {k: ctx.field(k) for k in CHANNEL_FIELDS if k != "secret"}
        return _channel_form(ctx, current, values, _problem(exc, CHANNEL_FIELDS))
    return _back(ctx, "Channel saved.")


@router.post("/channels/{channel_id}/delete")
async def delete_channel(request: Request, channel_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.alerting.delete(alert_channels, _tenant(ctx), channel_id)
    return _back(ctx, "Channel deleted.")


def _text(value: Any) -> str:
    return "" if value is None else str(value)
