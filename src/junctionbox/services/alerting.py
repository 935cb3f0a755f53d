"""Alerts: rules per tenant, evaluated by the scheduler, sent to channels, kept in the
alert center (seed 003 "Monitoring & Alerts", "Notification Service").

Rule kinds (``threshold`` / ``windowSeconds`` where they apply):

* ``DLQ_SIZE``: DLQ entries not abandoned above ``threshold`` (default 100);
* ``ERROR_RATE``: an integration's failed attempts over all its attempts in the window
  above ``threshold`` (default 0.10 over 900 s, with at least ``MIN_ATTEMPTS`` attempts);
* ``WORKER_STOPPED``: a process with a background role whose heartbeat went stale
  without a clean stop (platform rules only: processes belong to no tenant);
* ``CIRCUIT_OPEN``: a destination's circuit breaker is open;
* ``INTEGRATION_DISABLED``: an integration was switched off by the worker (consecutive
  failures, 410 Gone); those alerts are written by the delivery commit and routed here.

A rule of an organization covers its units; a rule with ``orgId`` 0 (admin only) covers
every tenant. Deduplication and cool-down: a condition (rule and subject) fires, then
stays silent for ``cooldownSeconds`` whatever the number of nodes evaluating (one row per
condition, updated by compare-and-set). Every firing is an alert center row first; routing
to channels claims the row (at most once) and records each channel's result.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Final

import orjson
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import PageRequest
from junctionbox.domain.redaction import redact_text
from junctionbox.domain.secretbox import SecretBox
from junctionbox.engine.delivery_commit import ALERT_AUTO_DISABLED, ALERT_GONE
from junctionbox.errors import JunctionboxError, NotFoundError, ValidationError
from junctionbox.settings import Settings
from junctionbox.store.database import Database
from junctionbox.store.queries import alerting as q
from junctionbox.store.queries import observability as obs
from junctionbox.store.queries.alerts import raise_alert
from junctionbox.store.queries.entities import unit_ids
from junctionbox.store.queries.rollups import error_rates
from junctionbox.store.tables import alert_channels, alert_rules
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

PLATFORM: Final = 0
KINDS: Final = ("DLQ_SIZE", "ERROR_RATE", "WORKER_STOPPED", "CIRCUIT_OPEN", "INTEGRATION_DISABLED")
DEFAULT_THRESHOLD: Final = {"DLQ_SIZE": 100.0, "ERROR_RATE": 0.10}
CHANNEL_TYPES: Final = ("EMAIL", "WEBHOOK")
SEVERITIES: Final = ("INFO", "WARNING", "ERROR", "CRITICAL")
MIN_ATTEMPTS: Final = 10
BACKGROUND_ROLES: Final = ("dispatcher", "worker", "scheduler")
ROUTE_LOOKBACK: Final = timedelta(days=1)
_DISABLED_KINDS: Final = (ALERT_AUTO_DISABLED, ALERT_GONE)


# ---------------------------------------------------------------------- validation


def _rule_values(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "kind" in body or not partial:
        kind = str(body.get("kind", "")).upper()
        if kind not in KINDS:
            raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
        out["kind"] = kind
    if "name" in body or not partial:
        name = str(body.get("name") or out.get("kind", "")).strip()
        if not 1 <= len(name) <= 200:
            raise ValidationError("name must be 1-200 characters")
        out["name"] = name
    if "threshold" in body or not partial:
        threshold = body.get("threshold", DEFAULT_THRESHOLD.get(out.get("kind", ""), None))
        if threshold is not None and (
            not isinstance(threshold, int | float) or isinstance(threshold, bool) or threshold < 0
        ):
            raise ValidationError("threshold must be a number >= 0")
        out["threshold"] = threshold
    for key, column, default, low, high in (
        ("windowSeconds", "window_seconds", 900, 60, 86400 * 7),
        ("cooldownSeconds", "cooldown_seconds", 3600, 0, 86400 * 7),
    ):
        if key in body or not partial:
            value = body.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValidationError(f"{key} must be an integer between {low} and {high}")
            out[column] = value
    if "severity" in body or not partial:
        severity = str(body.get("severity", "WARNING")).upper()
        if severity not in SEVERITIES:
            raise ValidationError(f"severity must be one of {', '.join(SEVERITIES)}")
        out["severity"] = severity
    if "channelIds" in body or not partial:
        ids = body.get("channelIds", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 20:
            raise ValidationError("channelIds must be a list of at most 20 channel ids")
        out["channel_ids"] = ids
    if "enabled" in body or not partial:
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValidationError("enabled must be true or false")
        out["enabled"] = enabled
    return out


def _channel_values(body: dict[str, Any], box: SecretBox, channel_id: str) -> dict[str, Any]:
    kind = str(body.get("type", "")).upper()
    if kind not in CHANNEL_TYPES:
        raise ValidationError(f"type must be one of {', '.join(CHANNEL_TYPES)}")
    name = str(body.get("name") or kind).strip()[:200]
    config: dict[str, Any]
    secret: str | None = None
    if kind == "EMAIL":
        recipients = body.get("recipients")
        if (
            not isinstance(recipients, list)
            or not 1 <= len(recipients) <= 50
            or not all(isinstance(r, str) and "@" in r and len(r) <= 254 for r in recipients)
        ):
            raise ValidationError("recipients must be a list of 1-50 e-mail addresses")
        config = {"recipients": recipients}
    else:
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValidationError("url must be an http(s) URL")
        config = {"url": url[:2000]}
        given = body.get("secret")
        if given is not None:
            if not isinstance(given, str) or len(given) < 16:
                raise ValidationError("secret must be at least 16 characters")
            secret = box.seal(given, channel_id)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError("enabled must be true or false")
    return {
        "type": kind,
        "name": name,
        "config": config,
        "sealed_secret": secret,
        "enabled": enabled,
    }


MASK = "****"


def _channel_changes(row: RowMapping, body: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """The row's new values: ``body``'s fields over the stored ones. ``secret`` absent or sent
    back masked keeps the stored secret; ``null`` removes it; a new value replaces it."""
    if "type" in body and str(body["type"]).upper() != row["type"]:
        raise ValidationError("a channel's type cannot change: create another channel")
    stored = {"type": row["type"], "name": row["name"], "enabled": row["enabled"]}
    merged = {**stored, **row["config"], **{k: v for k, v in body.items() if k != "secret"}}
    secret = body.get("secret", MASK)
    if secret not in (MASK, None):
        merged["secret"] = secret
    values = _channel_values(merged, box, row["id"])
    if secret == MASK and values["type"] == "WEBHOOK":
        values["sealed_secret"] = row["sealed_secret"]
    return values


def _platform_only(tenant: TenantContext | None, values: dict[str, Any]) -> None:
    if tenant is not None and values.get("kind") == "WORKER_STOPPED":
        raise ValidationError(
            "WORKER_STOPPED watches the platform's processes: an admin sets it without orgId"
        )


def rule_out(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "orgId": row["org_id"],
        "name": row["name"],
        "kind": row["kind"],
        "threshold": row["threshold"],
        "windowSeconds": row["window_seconds"],
        "cooldownSeconds": row["cooldown_seconds"],
        "severity": row["severity"],
        "channelIds": row["channel_ids"],
        "enabled": row["enabled"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def channel_out(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "orgId": row["org_id"],
        "name": row["name"],
        "type": row["type"],
        **row["config"],
        "secret": MASK if row["sealed_secret"] else None,
        "enabled": row["enabled"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def alert_out(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "orgId": row["org_id"],
        "kind": row["kind"],
        "severity": row["severity"],
        "subjectId": row["subject_id"],
        "message": row["message"],
        "details": row["details"],
        "createdAt": row["created_at"],
        "acknowledged": row["acknowledged_at"] is not None,
        "acknowledgedAt": row["acknowledged_at"],
        "notifications": row.get("results"),
    }


# ---------------------------------------------------------------------- the API side


class AlertService:
    def __init__(self, db: Database, secretbox: SecretBox) -> None:
        self.db = db
        self.box = secretbox

    async def _scope(self, conn: AsyncConnection, tenant: TenantContext | None) -> list[int] | None:
        """None: every tenant (an admin without orgId). Else the entity, its units, and
        for an admin the platform's own rules."""
        if tenant is None:
            return None
        ids = [tenant.entity.id]
        if not tenant.entity.is_unit:
            ids.extend(await unit_ids(conn, tenant.entity.id))
        return ids

    def _owner(self, tenant: TenantContext | None) -> int:
        return PLATFORM if tenant is None else tenant.entity.id

    async def rows(self, table: Any, tenant: TenantContext | None) -> list[RowMapping]:
        async with self.db.read() as conn:
            scope = await self._scope(conn, tenant)
            return await q.rows_of(conn, table, [PLATFORM] if scope is None else scope)

    async def create_rule(self, tenant: TenantContext | None, body: dict[str, Any]) -> RowMapping:
        values = _rule_values(body)
        _platform_only(tenant, values)
        now, rule_id = utcnow(), new_id("arl")
        async with self.db.write() as conn:
            await self._check_channels(conn, tenant, values["channel_ids"])
            await q.insert_row(
                conn,
                alert_rules,
                {
                    "id": rule_id,
                    "org_id": self._owner(tenant),
                    **values,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            return await self._get(conn, alert_rules, tenant, rule_id)

    async def update_rule(
        self, tenant: TenantContext | None, rule_id: str, body: dict[str, Any]
    ) -> RowMapping:
        values = _rule_values(body, partial=True)
        _platform_only(tenant, values)
        async with self.db.write() as conn:
            await self._get(conn, alert_rules, tenant, rule_id)
            if "channel_ids" in values:
                await self._check_channels(conn, tenant, values["channel_ids"])
            await q.update_row(conn, alert_rules, rule_id, {**values, "updated_at": utcnow()})
            return await self._get(conn, alert_rules, tenant, rule_id)

    async def create_channel(
        self, tenant: TenantContext | None, body: dict[str, Any]
    ) -> RowMapping:
        now, channel_id = utcnow(), new_id("ach")
        values = _channel_values(body, self.box, channel_id)
        async with self.db.write() as conn:
            await q.insert_row(
                conn,
                alert_channels,
                {
                    "id": channel_id,
                    "org_id": self._owner(tenant),
                    **values,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            return await self._get(conn, alert_channels, tenant, channel_id)

    async def update_channel(
        self, tenant: TenantContext | None, channel_id: str, body: dict[str, Any]
    ) -> RowMapping:
        async with self.db.write() as conn:
            row = await self._get(conn, alert_channels, tenant, channel_id)
            values = _channel_changes(row, body, self.box)
            await q.update_row(conn, alert_channels, channel_id, {**values, "updated_at": utcnow()})
            return await self._get(conn, alert_channels, tenant, channel_id)

    async def delete(self, table: Any, tenant: TenantContext | None, row_id: str) -> None:
        async with self.db.write() as conn:
            await self._get(conn, table, tenant, row_id)
            await q.delete_row(conn, table, row_id)

    async def get(self, table: Any, tenant: TenantContext | None, row_id: str) -> RowMapping:
        async with self.db.read() as conn:
            return await self._get(conn, table, tenant, row_id)

    async def _get(
        self, conn: AsyncConnection, table: Any, tenant: TenantContext | None, row_id: str
    ) -> RowMapping:
        scope = await self._scope(conn, tenant)
        found = await q.row_of(conn, table, row_id, [PLATFORM] if scope is None else scope)
        if found is None:
            raise NotFoundError(f"{row_id} not found")
        return found

    async def _check_channels(
        self, conn: AsyncConnection, tenant: TenantContext | None, ids: Sequence[str]
    ) -> None:
        scope = await self._scope(conn, tenant)
        allowed = [PLATFORM] if scope is None else scope
        for channel_id in ids:
            if await q.row_of(conn, alert_channels, channel_id, allowed) is None:
                raise ValidationError(f"channel {channel_id} not found")

    async def alerts(
        self,
        tenant: TenantContext | None,
        page: PageRequest,
        *,
        acknowledged: bool | None,
        kind: str | None,
    ) -> tuple[list[RowMapping], int]:
        async with self.db.read() as conn:
            scope = await self._scope(conn, tenant)
            return await q.alerts_page(
                conn,
                scope,
                offset=page.offset,
                limit=page.limit,
                acknowledged=acknowledged,
                kind=kind,
            )

    async def acknowledge(self, tenant: TenantContext | None, alert_id: str) -> RowMapping:
        async with self.db.write() as conn:
            scope = await self._scope(conn, tenant)
            found = await q.acknowledge(conn, alert_id, scope, utcnow())
        if found is None:
            raise NotFoundError(f"alert {alert_id} not found")
        return found


# ---------------------------------------------------------------------- channels


class ChannelSender:
    """E-mail through SMTP (``aiosmtplib``), webhooks through the guarded client."""

    def __init__(self, settings: Settings, http: GuardedHttpClient, box: SecretBox) -> None:
        self.settings = settings
        self.http = http
        self.box = box

    async def send(self, channel: RowMapping, alert: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"channelId": channel["id"], "type": channel["type"]}
        try:
            if channel["type"] == "EMAIL":
                await self._email(channel["config"]["recipients"], alert)
            else:
                result["status"] = await self._webhook(channel, alert)
        except (OSError, JunctionboxError, TimeoutError) as exc:
            result.update(ok=False, error=redact_text(_message(exc))[:300])
            log.warning(
                "alert %s to channel %s failed: %s", alert["id"], channel["id"], result["error"]
            )
            return result
        except Exception as exc:  # aiosmtplib's own errors
            result.update(ok=False, error=redact_text(f"{type(exc).__name__}: {exc}")[:300])
            log.warning(
                "alert %s to channel %s failed: %s", alert["id"], channel["id"], result["error"]
            )
            return result
        result["ok"] = result.get("status", 200) < 400
        return result

    async def _email(self, recipients: list[str], alert: dict[str, Any]) -> None:
        import aiosmtplib

        s = self.settings
        if not s.smtp_host:
            raise JunctionboxError("JB_SMTP_HOST is not set: e-mail channels cannot send")
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = ", ".join(recipients)
        message["Subject"] = (
            f"[junctionbox {alert['severity']}] {alert['kind']}: {alert['message'][:120]}"
        )
        message.set_content(_email_text(alert))
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            timeout=15,
        )

    async def _webhook(self, channel: RowMapping, alert: dict[str, Any]) -> int:
        body = orjson.dumps({"type": "alert", "alert": alert}, option=orjson.OPT_UTC_Z)
        headers = {"content-type": "application/json"}
        if channel["sealed_secret"]:
            secret = self.box.open(channel["sealed_secret"], channel["id"])
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["x-junctionbox-signature"] = f"sha256={digest}"
        result = await self.http.send(
            "POST", channel["config"]["url"], headers=headers, body=body, timeout_seconds=10
        )
        return result.status


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, JunctionboxError) else f"{type(exc).__name__}: {exc}"


def _email_text(alert: dict[str, Any]) -> str:
    lines = [
        alert["message"],
        "",
        f"Kind: {alert['kind']}",
        f"Severity: {alert['severity']}",
        f"Tenant: {alert['orgId']}",
        f"Subject: {alert.get('subjectId') or '-'}",
        f"Raised at: {alert['createdAt']}",
        f"Alert id: {alert['id']}",
    ]
    if alert.get("details"):
        lines += [
            "",
            "Details:",
            orjson.dumps(alert["details"], option=orjson.OPT_INDENT_2).decode(),
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- evaluation


Condition = tuple[int, str, str, dict[str, Any]]  # org, subject, message, details


class AlertEvaluator:
    """One evaluation pass: conditions -> alert center rows -> channels."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        sender: ChannelSender,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.sender = sender
        self.clock = clock

    async def tick(self) -> int:
        """Evaluate every rule and route new alerts; the number of notifications sent."""
        now = self.clock()
        async with self.db.read() as conn:
            rules = await q.enabled_rules(conn)
            parents = await q.parents(conn)
        for rule in rules:
            if rule["kind"] == "INTEGRATION_DISABLED":
                continue  # raised by the delivery commit, routed below
            try:
                await self._evaluate(rule, parents, now)
            except Exception:
                log.exception("alert rule %s could not be evaluated", rule["id"])
        return await self.route(rules, parents, now)

    async def _evaluate(
        self, rule: RowMapping, parents: dict[int, int | None], now: datetime
    ) -> None:
        async with self.db.read() as conn:
            conditions = await self._conditions(conn, rule, now)
        covered = [c for c in conditions if _covers(rule["org_id"], c[0], parents)]
        for org_id, subject, message, details in covered:
            key = f"{rule['id']}:{subject}"[:300]
            cooled = now - timedelta(seconds=rule["cooldown_seconds"])
            async with self.db.write() as conn:
                if not await q.claim_firing(conn, key, org_id, now, cooled):
                    continue
                alert_id = await raise_alert(
                    conn,
                    org_id=org_id,
                    kind=rule["kind"],
                    message=message,
                    now=now,
                    severity=rule["severity"],
                    subject_id=subject[:40],
                    details={**details, "ruleId": rule["id"], "dedupeKey": key},
                )
                await q.set_firing_alert(conn, key, alert_id)

    async def _conditions(
        self, conn: AsyncConnection, rule: RowMapping, now: datetime
    ) -> list[Condition]:
        kind, threshold = rule["kind"], rule["threshold"]
        if kind == "DLQ_SIZE":
            limit = DEFAULT_THRESHOLD["DLQ_SIZE"] if threshold is None else threshold
            sizes = await obs.dlq_size_by_org(conn)
            return _dlq_conditions(rule["org_id"], sizes, limit)
        if kind == "ERROR_RATE":
            limit = DEFAULT_THRESHOLD["ERROR_RATE"] if threshold is None else threshold
            since = now - timedelta(seconds=rule["window_seconds"])
            return _rate_conditions(await error_rates(conn, since), limit, rule["window_seconds"])
        if kind == "WORKER_STOPPED":
            stale = timedelta(seconds=self.settings.node_stale_seconds)
            seen = await obs.nodes(conn, now - stale * 30)
            return _stopped_conditions(seen, now - stale)
        if kind == "CIRCUIT_OPEN":
            return [
                (
                    int(row["org_id"]),
                    row["destination"],
                    f"circuit breaker open for {row['destination']}",
                    {"destination": row["destination"], "failures": row["failures"]},
                )
                for row in await obs.open_circuits(conn)
            ]
        return []

    async def route(
        self, rules: Sequence[RowMapping], parents: dict[int, int | None], now: datetime
    ) -> int:
        async with self.db.read() as conn:
            pending = await q.unrouted(conn, now - ROUTE_LOOKBACK)
        sent = 0
        for alert in pending:
            targets = await self._targets(alert, rules, parents, now)
            async with self.db.write() as conn:
                if not await q.claim_routing(conn, alert["id"], alert["org_id"], now):
                    continue  # another node routes it
            results = await self._send(alert, targets)
            sent += sum(1 for r in results if r.get("ok"))
            async with self.db.write() as conn:
                await q.routed(conn, alert["id"], results)
        return sent

    async def _targets(
        self,
        alert: RowMapping,
        rules: Sequence[RowMapping],
        parents: dict[int, int | None],
        now: datetime,
    ) -> list[str]:
        """The channel ids an alert goes to: its rule's, or for an integration switched
        off, those of the INTEGRATION_DISABLED rules covering its tenant (with cool-down)."""
        rule_id = (alert["details"] or {}).get("ruleId")
        if rule_id is not None:
            return next((list(r["channel_ids"]) for r in rules if r["id"] == rule_id), [])
        if alert["kind"] not in _DISABLED_KINDS:
            return []
        channels: list[str] = []
        for rule in rules:
            if rule["kind"] != "INTEGRATION_DISABLED" or not _covers(
                rule["org_id"], alert["org_id"], parents
            ):
                continue
            key = f"{rule['id']}:{alert['subject_id']}"[:300]
            cooled = now - timedelta(seconds=rule["cooldown_seconds"])
            async with self.db.write() as conn:
                if await q.claim_firing(conn, key, alert["org_id"], now, cooled):
                    await q.set_firing_alert(conn, key, alert["id"])
                    channels.extend(rule["channel_ids"])
        return list(dict.fromkeys(channels))

    async def _send(self, alert: RowMapping, channel_ids: list[str]) -> list[dict[str, Any]]:
        if not channel_ids:
            return []
        async with self.db.read() as conn:
            channels = await q.channels_by_id(conn, channel_ids)
        body = alert_out(alert)
        results = []
        for channel_id in channel_ids:
            channel = channels.get(channel_id)
            if channel is None or not channel["enabled"]:
                results.append(
                    {"channelId": channel_id, "ok": False, "error": "channel missing or disabled"}
                )
                continue
            results.append(await self.sender.send(channel, body))
        return results


def _covers(rule_org: int, org_id: int, parents: dict[int, int | None]) -> bool:
    return rule_org in (PLATFORM, org_id) or parents.get(org_id) == rule_org


def _dlq_conditions(rule_org: int, sizes: dict[int, int], limit: float) -> list[Condition]:
    """One condition per tenant entity (organization or unit) over the limit."""
    return [
        (
            org,
            "dlq",
            f"DLQ holds {size} entries (threshold {limit:g})",
            {"size": size, "threshold": limit},
        )
        for org, size in sorted(sizes.items())
        if size > limit
    ]


def _rate_conditions(rows: Sequence[RowMapping], limit: float, window: int) -> list[Condition]:
    by: dict[tuple[int, str], dict[str, int]] = {}
    for row in rows:
        by.setdefault((int(row["org_id"]), row["integration_id"]), {})[row["key"]] = int(
            row["count"]
        )
    out: list[Condition] = []
    for (org, integration), counts in sorted(by.items()):
        attempts = sum(counts.values())
        failed = counts.get("FAILED", 0) + counts.get("RETRYING", 0)
        if attempts >= MIN_ATTEMPTS and failed / attempts > limit:
            rate = round(failed / attempts, 4)
            message = (
                f"integration {integration}: error rate {rate:.1%} over {window}s "
                f"({failed} of {attempts} attempts)"
            )
            details = {
                "integrationId": integration,
                "errorRate": rate,
                "attempts": attempts,
                "failed": failed,
            }
            out.append((org, integration, message, details))
    return out


def _stopped_conditions(seen: Sequence[RowMapping], since: datetime) -> list[Condition]:
    out: list[Condition] = []
    for row in seen:
        roles = [r for r in str(row["roles"]).split(",") if r in BACKGROUND_ROLES]
        if roles and row["stopped_at"] is None and row["last_seen"] < since:
            message = f"process {row['node_id']} ({', '.join(roles)}) stopped sending heartbeats"
            details = {
                "nodeId": row["node_id"],
                "roles": roles,
                "lastSeen": row["last_seen"].isoformat(),
            }
            subject = hashlib.sha256(row["node_id"].encode()).hexdigest()[:32]
            out.append((PLATFORM, subject, message, details))
    return out
