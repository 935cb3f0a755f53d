"""Built-in integration templates: realistic starting points, ready to POST.

Each template's ``body`` is a complete ``/api/v1/outbound-integrations`` request that
validates as it is (a test parses and compiles every one); ``placeholders`` name the fields
to replace before real use (example URLs, client ids, credentials) and ``sample_event`` is an
event to try it with (``POST /{id}/test``). Example hosts use the reserved ``example.com``
domains; credentials are obvious dummies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import orjson


@dataclass(frozen=True)
class Placeholder:
    field: str  # dot path in the body, e.g. "outgoingAuthConfig.clientSecret"
    description: str


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    category: str
    description: str
    body: Mapping[str, Any]
    placeholders: tuple[Placeholder, ...] = ()
    sample_event: Mapping[str, Any] = field(default_factory=dict)

    def request_body(self) -> dict[str, Any]:
        """A fresh deep copy: callers may edit it."""
        copy: dict[str, Any] = orjson.loads(orjson.dumps(self.body))
        return copy


_ORDER_EVENT: Final = {
    "type": "order.created",
    "data": {
        "orderId": "ord_1042",
        "customer": {"name": "  Ada Lovelace ", "email": "Ada@Example.com"},
        "currency": "EUR",
        "items": [
            {"sku": "TEA-01", "name": "Green tea", "quantity": 2, "unitPrice": 4.5},
            {"sku": "MUG-07", "name": "Mug", "quantity": 1, "unitPrice": 12.0},
        ],
        "createdAt": "2026-03-01T09:30:00Z",
    },
}

_PATIENT_EVENT: Final = {
    "type": "patient.updated",
    "data": {
        "patientId": "p-2231",
        "firstName": " grace ",
        "lastName": "Hopper",
        "email": "GRACE@EXAMPLE.ORG",
        "gender": "F",
        "dateOfBirth": "1906-12-09",
        "phone": "+44 20 7946 0000",
    },
}

_APPOINTMENT_EVENT: Final = {
    "type": "appointment.created",
    "data": {
        "appointmentId": "apt-77",
        "patient": {"name": "Alan Turing"},
        "startsAt": "2026-03-02T14:00:00Z",
        "clinician": "Dr. Hodgkin",
        "location": "Ward 3",
    },
}

GENERIC_WEBHOOK = Template(
    id="generic-webhook",
    name="Generic webhook (Standard Webhooks)",
    category="webhook",
    description=(
        "Sends each event's data unchanged, signed with Standard Webhooks headers "
        "(webhook-id, webhook-timestamp, webhook-signature). Receivers verify the signature "
        "with the signing secret returned on creation. Retries with exponential backoff; "
        "auto-disabled after 5 consecutive failures."
    ),
    body={
        "name": "Order webhook",
        "description": "Every order event, as published, to our partner's endpoint.",
        "eventType": "order.*",
        "targetUrl": "https://webhooks.example.com/junctionbox",
        "httpMethod": "POST",
        "outgoingAuthType": "NONE",
        "retryPolicy": {"maxRetries": 5, "initialDelay": 1000, "maxDelay": 300000},
        "timeoutMs": 10000,
        "signing": {"algorithm": "HMAC_SHA256"},
    },
    placeholders=(Placeholder("targetUrl", "The receiver's HTTPS endpoint."),),
    sample_event=_ORDER_EVENT,
)

SLACK = Template(
    id="slack-incoming-webhook",
    name="Slack incoming webhook",
    category="chat",
    description=(
        "Posts a short message to a Slack channel through an incoming webhook. The message "
        "is built with JSONata from the event data; Slack ignores the signature headers."
    ),
    body={
        "name": "Slack: new orders",
        "eventType": "order.created",
        "targetUrl": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "httpMethod": "POST",
        "transformationMode": "JSONATA",
        "transformScript": (
            '{"text": "New order *" & orderId & "* from " & $trim(customer.name) & ": " '
            '& $string($sum(items.(quantity * unitPrice))) & " " & currency}'
        ),
        "rateLimits": {"enabled": True, "maxRequests": 1, "windowSeconds": 1},
        "signing": {"algorithm": "NONE"},
    },
    placeholders=(
        Placeholder(
            "targetUrl",
            "The channel's incoming webhook URL (Slack app > Incoming Webhooks); keep it "
            "private, it is the credential.",
        ),
    ),
    sample_event=_ORDER_EVENT,
)

TEAMS = Template(
    id="microsoft-teams",
    name="Microsoft Teams (Workflows webhook, Adaptive Card)",
    category="chat",
    description=(
        "Posts an Adaptive Card to a Teams channel through a Workflows ('Post to a channel "
        "when a webhook request is received') or incoming webhook URL."
    ),
    body={
        "name": "Teams: appointments",
        "eventType": "appointment.created",
        "targetUrl": "https://example.webhook.office.com/webhookb2/00000000-0000/IncomingWebhook/0000",
        "httpMethod": "POST",
        "transformationMode": "JSONATA",
        "transformScript": (
            '{"type": "message", "attachments": [{'
            '"contentType": "application/vnd.microsoft.card.adaptive", "content": {'
            '"type": "AdaptiveCard", "version": "1.4", '
            '"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "body": ['
            '{"type": "TextBlock", "size": "Medium", "weight": "Bolder", '
            '"text": "New appointment " & appointmentId}, '
            '{"type": "FactSet", "facts": ['
            '{"title": "Patient", "value": patient.name}, '
            '{"title": "Starts", "value": startsAt}, '
            '{"title": "Clinician", "value": clinician}, '
            '{"title": "Location", "value": location}]}]}}]}'
        ),
        "signing": {"algorithm": "NONE"},
    },
    placeholders=(Placeholder("targetUrl", "The channel's Workflows or incoming webhook URL."),),
    sample_event=_APPOINTMENT_EVENT,
)

CRM_UPSERT = Template(
    id="oauth2-crm-upsert",
    name="CRM contact upsert (OAuth2 client credentials, SIMPLE mappings)",
    category="crm",
    description=(
        "Maps patient events onto a CRM contact with SIMPLE field mappings (trim, case, date "
        "format, a lookup table for gender codes, static fields) and upserts it with PUT, "
        "authenticating with an OAuth2 client-credentials token (cached until it expires, "
        "refreshed once on 401). Create the GENDER lookup table first (/api/v1/lookups)."
    ),
    body={
        "name": "CRM contact sync",
        "eventType": "patient.updated",
        "targetUrl": "https://crm.example.com/api/v2/contacts/upsert",
        "httpMethod": "PUT",
        "transformationMode": "SIMPLE",
        "fieldMappings": [
            {"sourceField": "patientId", "targetField": "externalId"},
            {
                "sourceField": "firstName",
                "targetField": "properties.firstName",
                "transform": "trim",
            },
            {"sourceField": "lastName", "targetField": "properties.lastName", "transform": "trim"},
            {
                "sourceField": "email",
                "targetField": "properties.email",
                "transform": ["trim", "lower"],
            },
            {
                "sourceField": "dateOfBirth",
                "targetField": "properties.birthDate",
                "transform": "date",
                "transformOptions": {"format": "DD/MM/YYYY"},
            },
            {
                "sourceField": "gender",
                "targetField": "properties.gender",
                "transform": "lookup",
                "lookupType": "GENDER",
                "defaultValue": "unknown",
            },
            {"sourceField": "phone", "targetField": "properties.phone", "defaultValue": None},
            {"targetField": "source", "staticValue": "junctionbox"},
        ],
        "outgoingAuthType": "OAUTH2",
        "outgoingAuthConfig": {
            "tokenUrl": "https://auth.example.com/oauth2/token",
            "clientId": "replace-with-client-id",
            "clientSecret": "replace-with-client-secret",
            "scope": "contacts.write",
        },
        "retryPolicy": {"maxRetries": 6, "initialDelay": 2000, "maxDelay": 600000},
        "ordering": {"mode": "FIFO", "key": "data.patientId"},
        "rateLimits": {"enabled": True, "maxRequests": 100, "windowSeconds": 10},
    },
    placeholders=(
        Placeholder("targetUrl", "The CRM's upsert endpoint."),
        Placeholder("outgoingAuthConfig.tokenUrl", "The OAuth2 token endpoint."),
        Placeholder("outgoingAuthConfig.clientId", "The client id issued by the CRM."),
        Placeholder("outgoingAuthConfig.clientSecret", "The client secret (stored encrypted)."),
        Placeholder("outgoingAuthConfig.scope", "The scopes the CRM requires, if any."),
    ),
    sample_event=_PATIENT_EVENT,
)

JSONATA_ORDER = Template(
    id="jsonata-order-summary",
    name="JSONata: order summary with totals",
    category="transformation",
    description=(
        "Reshapes an order with a JSONata expression: line totals, the order total and an "
        "item count, authenticated with an API key header."
    ),
    body={
        "name": "Fulfilment: order summaries",
        "eventType": "order.created",
        "targetUrl": "https://fulfilment.example.com/v1/orders",
        "httpMethod": "POST",
        "transformationMode": "JSONATA",
        "transformScript": (
            "{\n"
            '  "reference": orderId,\n'
            '  "customerEmail": $lowercase($trim(customer.email)),\n'
            '  "lines": items.{"sku": sku, "qty": quantity, "total": quantity * unitPrice},\n'
            '  "itemCount": $sum(items.quantity),\n'
            '  "total": $round($sum(items.(quantity * unitPrice)), 2),\n'
            '  "currency": currency,\n'
            '  "eventId": $context.id\n'
            "}"
        ),
        "outgoingAuthType": "API_KEY",
        "outgoingAuthConfig": {"in": "header", "name": "X-Api-Key", "value": "replace-me-api-key"},
    },
    placeholders=(
        Placeholder("targetUrl", "The receiving API."),
        Placeholder("outgoingAuthConfig.value", "The API key (stored encrypted)."),
    ),
    sample_event=_ORDER_EVENT,
)

SCRIPT_ORDER = Template(
    id="script-order-invoice",
    name="JavaScript: invoice lines with VAT",
    category="transformation",
    description=(
        "Builds an invoice in sandboxed JavaScript (QuickJS: no network, files or timers; "
        "time and memory limited). The script is the body of a function of (payload, "
        "context) and returns the new body."
    ),
    body={
        "name": "Accounting: invoices",
        "eventType": "order.created",
        "targetUrl": "https://accounting.example.com/api/invoices",
        "httpMethod": "POST",
        "transformationMode": "SCRIPT",
        "transformScript": (
            "const VAT = 0.2;\n"
            "const lines = payload.items.map(i => ({\n"
            "  description: i.name,\n"
            "  quantity: i.quantity,\n"
            "  net: Math.round(i.quantity * i.unitPrice * 100) / 100,\n"
            "}));\n"
            "const net = lines.reduce((sum, l) => sum + l.net, 0);\n"
            "return {\n"
            "  invoiceFor: payload.orderId,\n"
            "  customer: payload.customer.name.trim(),\n"
            "  currency: payload.currency,\n"
            "  lines,\n"
            "  net,\n"
            "  vat: Math.round(net * VAT * 100) / 100,\n"
            "  gross: Math.round(net * (1 + VAT) * 100) / 100,\n"
            "  eventId: context.id,\n"
            "};"
        ),
        "outgoingAuthType": "BEARER",
        "outgoingAuthConfig": {"token": "replace-with-access-token"},
        "filter": "event.data.currency == 'EUR'",
    },
    placeholders=(
        Placeholder("targetUrl", "The accounting API."),
        Placeholder("outgoingAuthConfig.token", "The bearer token (stored encrypted)."),
    ),
    sample_event=_ORDER_EVENT,
)

DAILY_REMINDER = Template(
    id="recurring-daily-reminder",
    name="Recurring: daily digest reminder",
    category="scheduling",
    description=(
        "RECURRING scheduling: each matching event is delivered every day at 08:00 in the "
        "tenant's time zone, seven times (a daily reminder until a review is done). Use "
        "DELAYED for a single later delivery."
    ),
    body={
        "name": "Care plan review: daily reminder",
        "eventType": "care-plan.review-due",
        "targetUrl": "https://notify.example.com/hooks/reminders",
        "httpMethod": "POST",
        "transformationMode": "SIMPLE",
        "fieldMappings": [
            {"sourceField": "carePlanId", "targetField": "reference"},
            {"sourceField": "resident.name", "targetField": "subject", "transform": "trim"},
            {"sourceField": "dueAt", "targetField": "due"},
            {"targetField": "kind", "staticValue": "daily-review-reminder"},
        ],
        "schedulingMode": "RECURRING",
        "schedulingConfig": {"type": "CRON", "expression": "0 8 * * *", "maxOccurrences": 7},
        "outgoingAuthType": "BASIC",
        "outgoingAuthConfig": {"username": "junctionbox", "password": "replace-me-password"},
    },
    placeholders=(
        Placeholder("targetUrl", "The notification service."),
        Placeholder("outgoingAuthConfig.password", "The basic-auth password (stored encrypted)."),
        Placeholder("schedulingConfig.timezone", "Optional IANA zone; default the tenant's."),
    ),
    sample_event={
        "type": "care-plan.review-due",
        "data": {
            "carePlanId": "cp-19",
            "resident": {"name": " Mary Seacole "},
            "dueAt": "2026-03-05T12:00:00Z",
        },
    },
)

CATALOGUE: Final[Mapping[str, Template]] = MappingProxyType(
    {
        t.id: t
        for t in (
            GENERIC_WEBHOOK,
            SLACK,
            TEAMS,
            CRM_UPSERT,
            JSONATA_ORDER,
            SCRIPT_ORDER,
            DAILY_REMINDER,
        )
    }
)


def find_template(template_id: str) -> Template | None:
    return CATALOGUE.get(template_id)
