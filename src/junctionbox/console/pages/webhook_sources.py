"""Webhook sources (the receiver): list, create and edit (problems beside the fields), the
generated secret shown once (on creation and rotation), rotate with overlap, the receive URL
with a copyable sender example, delete, and the source's recent inbound log lines."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.api.routers.webhook_sources import SourceIn, SourcePatch
from junctionbox.console.specforms import Spec, body_of, validated
from junctionbox.console.web import (
    PREFIX,
    ConsoleRoute,
    Ctx,
    context,
    problems_by_field,
    redirect,
    render,
)
from junctionbox.domain.paging import PageRequest
from junctionbox.domain.webhook_sources import EventTypeFrom
from junctionbox.domain.webhook_verification import Encoding, Scheme
from junctionbox.errors import ValidationError
from junctionbox.services.webhook_intake import RECEIVE_PATH
from junctionbox.services.webhook_sources import Revealed, WebhookSource
from junctionbox.store.queries.delivery_logs import LogFilter

router = APIRouter(prefix=f"{PREFIX}/webhook-sources", route_class=ConsoleRoute)
SCHEMES = tuple(s.value for s in Scheme)
V = "verification."

SPECS: tuple[Spec, ...] = (
    Spec("name", "Name", hint="stripe-payments", section="Source"),
    Spec("description", "Description", section="Source"),
    Spec("stream", "Stream", hint="default", section="Source"),
    Spec(
        "eventTypeFrom",
        "Event type from",
        "select",
        ("", *(e.value for e in EventTypeFrom)),
        section="Source",
    ),
    Spec(
        "eventType",
        "Event type rule",
        hint="FIXED: the type; HEADER: its header; BODY: a path",
        section="Source",
    ),
    Spec("eventTypePrefix", "Event type prefix", hint="stripe.", section="Source"),
    Spec(f"{V}scheme", "Verification scheme", "select", ("", *SCHEMES), section="Verification"),
    Spec(f"{V}header", "Signature / key header", section="Verification"),
    Spec(f"{V}prefix", "Signature prefix", hint="sha256=", section="Verification"),
    Spec(
        f"{V}encoding",
        "Encoding",
        "select",
        ("", *(e.value for e in Encoding)),
        section="Verification",
    ),
    Spec(f"{V}username", "Username (BASIC)", section="Verification"),
    Spec(
        f"{V}secret", "Secret (empty: keep it, or generate one at creation)", section="Verification"
    ),
    Spec("toleranceSeconds", "Timestamp tolerance (s)", "number", hint="300", section="Limits"),
    Spec("messageIdHeader", "Message id header", hint="webhook-id", section="Limits"),
    Spec("messageIdPath", "Message id body path", hint="id", section="Limits"),
    Spec("maxBodyBytes", "Largest body (bytes)", "number", hint="1048576", section="Limits"),
    Spec("rejectDuplicates", "Answer 409 to a re-sent message id", "check", section="Limits"),
)
SECTIONS = tuple(dict.fromkeys(s.section for s in SPECS))


def _body(ctx: Ctx) -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    values = {spec.name: ctx.field(spec.name) for spec in SPECS}
    values[f"{V}secret"] = ctx.secret_field(f"{V}secret").strip()
    flat, errors = body_of(SPECS, values)
    body: dict[str, Any] = {k: v for k, v in flat.items() if not k.startswith(V)}
    body["verification"] = {k[len(V) :]: v for k, v in flat.items() if k.startswith(V)}
    return values, body, errors


def values_of(view: WebhookSource) -> dict[str, str]:
    document = {**view.config.to_json(), "name": view.name, "description": view.description}
    values = {spec.name: _text(document.get(spec.name)) for spec in SPECS}
    for key, value in (document.get("verification") or {}).items():
        values[f"{V}{key}"] = _text(value)
    values[f"{V}secret"] = ""  # write-only
    values["rejectDuplicates"] = "on" if document.get("rejectDuplicates") else ""
    return values


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def receive_url(ctx: Ctx, source_id: str) -> str:
    """What to give the partner: ``JB_WEBHOOKS_PUBLIC_URL`` or this console's address."""
    base = ctx.svc.settings.webhooks_public_url.strip() or str(ctx.request.base_url)
    return base.rstrip("/") + RECEIVE_PATH.format(source_id=source_id)


HEX = "| sed 's/^.* //'"
JSON = "-H 'content-type: application/json' --data-binary \"$BODY\""


def sender_example(url: str, view: WebhookSource) -> str:
    """A signed test send in the form the source's scheme expects (shell, with openssl)."""
    verification = view.config.to_json().get("verification") or {}
    scheme = verification.get("scheme")
    header = verification.get("header")
    lines = [
        "SECRET='the source secret'  # replace with yours",
        'BODY=\'{"type": "test.ping", "id": "msg_1"}\'',
    ]
    if scheme == "STANDARD_WEBHOOKS":
        lines += [
            "ID=msg_$(date +%s); TS=$(date +%s)",
            "KEY=$(printf '%s' \"${SECRET#whsec_}\" | base64 -d | od -An -tx1 | tr -d ' \\n')",
            "SIG=$(printf '%s' \"$ID.$TS.$BODY\" | openssl dgst -sha256 -mac HMAC"
            " -macopt hexkey:$KEY -binary | base64)",
            f'curl -X POST "{url}" -H "webhook-id: $ID" -H "webhook-timestamp: $TS" '
            f'-H "webhook-signature: v1,$SIG" {JSON}',
        ]
    elif scheme in ("HMAC_SHA256", "GITHUB"):
        github = scheme == "GITHUB"
        name = "X-Hub-Signature-256" if github else header or "X-Signature"
        prefix = "sha256=" if github else verification.get("prefix") or ""
        base64 = verification.get("encoding") == "BASE64" and not github
        encode = "-binary | base64" if base64 else HEX
        lines += [
            f'SIG=$(printf \'%s\' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" {encode})',
            f'curl -X POST "{url}" -H "{name}: {prefix}$SIG" {JSON}',
        ]
    elif scheme == "STRIPE":
        lines += [
            "TS=$(date +%s)",
            f'SIG=$(printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" {HEX})',
            f'curl -X POST "{url}" -H "Stripe-Signature: t=$TS,v1=$SIG" {JSON}',
        ]
    elif scheme == "BASIC":
        user = verification.get("username") or "partner"
        lines.append(f'curl -X POST "{url}" -u "{user}:$SECRET" {JSON}')
    else:
        lines.append(f'curl -X POST "{url}" -H "{header or "X-API-Key"}: $SECRET" {JSON}')
    return "\n".join(lines)


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    status = ctx.query("status")
    active = {"active": True, "inactive": False}.get(status)
    page = await ctx.svc.webhook_sources.page(tenant, ctx.page(), is_active=active)
    urls = {s.id: receive_url(ctx, s.id) for s in page.items}
    return render(ctx, "requests_in/sources_list.html", page=page, urls=urls, chosen=status)


def _form(ctx: Ctx, values: dict[str, str], errors: dict[str, str], item: Any) -> Response:
    values = {**values, f"{V}secret": ""}  # a secret is never sent back to the browser
    return render(
        ctx,
        "requests_in/source_form.html",
        400 if errors else 200,
        specs=SPECS,
        sections=SECTIONS,
        values=values,
        errors=errors,
        item=item,
    )


@router.get("/new")
async def new(request: Request) -> Response:
    ctx = await context(request)
    ctx.require_tenant()
    return _form(ctx, {f"{V}scheme": "STANDARD_WEBHOOKS", "eventTypeFrom": "BODY"}, {}, None)


@router.post("/new")
async def create(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    values, body, errors = _body(ctx)
    body["isActive"] = ctx.field("isActive") == "on"
    if not body["verification"].get("scheme"):
        errors.setdefault(f"{V}scheme", "choose how the partner's webhooks are verified")
    parsed = None
    if not errors:
        parsed, errors = validated(SourceIn, body)
    if parsed is not None:
        try:
            found = await ctx.svc.webhook_sources.create(
                tenant,
                name=parsed.name,
                description=parsed.description,
                is_active=parsed.is_active,
                config=parsed.config(),
                secret=parsed.verification.secret,
            )
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return _revealed(ctx, found, "created")
    return _form(ctx, values, errors, None)


def _revealed(ctx: Ctx, found: Revealed, what: str) -> Response:
    """The page that shows a generated secret: the only time it is ever shown."""
    url = receive_url(ctx, found.source.id)
    return render(
        ctx,
        "requests_in/source_secret.html",
        item=found.source,
        secret=found.secret,
        what=what,
        url=url,
        example=sender_example(url, found.source),
    )


@router.get("/{source_id}")
async def detail(request: Request, source_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    view = await ctx.svc.webhook_sources.get(tenant, source_id)
    where = LogFilter(integration_id=source_id, direction="INBOUND")
    recent = await ctx.svc.delivery_logs.list(tenant, where, PageRequest(1, 20))
    url = receive_url(ctx, source_id)
    return render(
        ctx,
        "requests_in/source_detail.html",
        item=view,
        config=view.config.to_json(),
        url=url,
        example=sender_example(url, view),
        recent=recent,
        flash=ctx.query("flash"),
    )


@router.get("/{source_id}/edit")
async def edit(request: Request, source_id: str) -> Response:
    ctx = await context(request)
    view = await ctx.svc.webhook_sources.get(ctx.require_tenant(), source_id)
    return _form(ctx, values_of(view), {}, view)


@router.post("/{source_id}/edit")
async def update(request: Request, source_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    view = await ctx.svc.webhook_sources.get(tenant, source_id)
    values, body, errors = _body(ctx)
    body.pop("rejectDuplicates", None)
    body["rejectDuplicates"] = values.get("rejectDuplicates") == "on"
    body.setdefault("description", None)  # emptied in the form
    parsed = None
    if not errors:
        parsed, errors = validated(SourcePatch, body)
    if parsed is not None:
        try:
            await ctx.svc.webhook_sources.update(tenant, source_id, parsed.changes())
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return redirect(ctx, ctx.url(f"/webhook-sources/{source_id}", flash="Saved."))
    return _form(ctx, values, errors, view)


@router.post("/{source_id}/rotate")
async def rotate(request: Request, source_id: str) -> Response:
    """A new current secret; the previous one keeps verifying for the overlap."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    raw = ctx.field("overlapSeconds")
    if raw and not raw.isdigit():
        raise ValidationError("the overlap is a number of seconds (0: none)")
    overlap = timedelta(seconds=int(raw)) if raw else None
    given = ctx.secret_field("secret").strip() or None
    found = await ctx.svc.webhook_sources.rotate(tenant, source_id, secret=given, overlap=overlap)
    if found.secret is None:
        message = "Rotated to the secret you gave."
        return redirect(ctx, ctx.url(f"/webhook-sources/{source_id}", flash=message))
    return _revealed(ctx, found, "rotated")


@router.post("/{source_id}/active")
async def set_active(request: Request, source_id: str) -> Response:
    ctx = await context(request)
    active = ctx.field("active") == "true"
    await ctx.svc.webhook_sources.update(ctx.require_tenant(), source_id, {"isActive": active})
    message = "Enabled." if active else "Disabled: the receive URL answers 404."
    return redirect(ctx, ctx.url(f"/webhook-sources/{source_id}", flash=message))


@router.post("/{source_id}/delete")
async def delete(request: Request, source_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.webhook_sources.delete(ctx.require_tenant(), source_id)
    return redirect(ctx, ctx.url("/webhook-sources"))
