"""Variables of scheduled jobs' data sources (seed 003): ``{{config.*}}``, ``{{date.*}}``,
``{{env.*}}``.

    {{config.tenantId}}       the job's tenant (orgId), an integer
    {{config.integrationId}}  the job's id
    {{date.today()}}          the run's date in the job's time zone        (a date)
    {{date.yesterday()}}      the day before                               (a date)
    {{date.todayStart()}}     00:00:00 of that date in the job's time zone (an instant)
    {{date.todayEnd()}}       23:59:59.999 of that date                    (an instant)
    {{date.now()}}            the run's reference time                     (an instant)
    {{env.NAME}}              an environment variable the operator allowlisted

``date.*`` read the run's reference time: the tick it was scheduled for (so a run that
starts late, or catches up after downtime, reads the day it was meant for), or the request
time for execute-now and test-datasource.

SQL keeps values apart from the text: :func:`sql_parts` splits the query into text and
:class:`VarRef` pieces and the adapter binds each reference as a query parameter (a token
written inside quotes, ``'{{date.today()}}'``, is one parameter with its quotes). Elsewhere
(API URLs, headers, bodies) :func:`render_text` / :func:`render_json` substitute text: dates
as ``YYYY-MM-DD``, instants as ISO 8601 UTC (``2026-01-31T23:00:00.000Z``, as JavaScript's
``toISOString``); URLs percent-encode each value; in a JSON body a string that is exactly
one token becomes the value itself (``tenantId`` stays a number).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

TOKEN: Final = re.compile(
    r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(\(\))?\s*\}\}"
)
_QUOTED_TOKEN: Final = re.compile("'" + TOKEN.pattern + "'")
DATE_FUNCTIONS: Final = ("today", "yesterday", "todayStart", "todayEnd", "now")
CONFIG_FIELDS: Final = ("tenantId", "integrationId")
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

Value = int | str | date | datetime


class VariableError(ValueError):
    """A token that names no variable (or an environment variable not allowlisted)."""


@dataclass(frozen=True)
class VarRef:
    """One ``{{namespace.name}}`` token; ``call`` is True when written with ``()``."""

    namespace: str
    name: str
    call: bool

    @property
    def text(self) -> str:
        return "{{" + f"{self.namespace}.{self.name}" + ("()" if self.call else "") + "}}"


@dataclass(frozen=True)
class VariableContext:
    """What variables resolve against for one run."""

    tenant_id: int
    integration_id: str
    reference: datetime  # aware
    zone: ZoneInfo
    env: Mapping[str, str] = field(default_factory=dict)  # the allowlisted variables only

    def value(self, ref: VarRef) -> Value:
        """The typed value of ``ref``; ``VariableError`` for an unknown one."""
        if ref.namespace == "config" and not ref.call:
            if ref.name == "tenantId":
                return self.tenant_id
            if ref.name == "integrationId":
                return self.integration_id
        if ref.namespace == "date" and ref.call and ref.name in DATE_FUNCTIONS:
            return self._date(ref.name)
        if ref.namespace == "env" and not ref.call:
            if ref.name not in self.env:
                raise VariableError(
                    f"{ref.text}: {ref.name} is not an allowlisted environment variable "
                    "(JB_SCHEDULED_JOBS_ENV_ALLOWLIST), or it is not set"
                )
            return self.env[ref.name]
        raise VariableError(f"{ref.text} is not a known variable")

    def _date(self, name: str) -> date | datetime:
        local = self.reference.astimezone(self.zone)
        today = local.date()
        if name == "today":
            return today
        if name == "yesterday":
            return today - timedelta(days=1)
        if name == "todayStart":
            return _local_instant(today, time(0, 0), self.zone)
        if name == "todayEnd":
            return _local_instant(today, time(23, 59, 59, 999_000), self.zone)
        return self.reference.astimezone(UTC)


def _local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def refs(text: str) -> list[VarRef]:
    return [VarRef(m.group(1), m.group(2), bool(m.group(3))) for m in TOKEN.finditer(text)]


def check_refs(text: str, allowed_env: Sequence[str]) -> list[str]:
    """Problems with the tokens of ``text`` (empty when every token names a variable)."""
    probe = VariableContext(
        0, "", datetime.now(UTC), ZoneInfo("UTC"), dict.fromkeys(allowed_env, "")
    )
    problems = []
    for ref in refs(text):
        try:
            probe.value(ref)
        except VariableError as exc:
            problems.append(str(exc))
    return problems


def as_text(value: Value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def sql_parts(sql: str) -> list[str | VarRef]:
    """The query as text pieces and variable references, in order (``'{{x}}'`` included
    with its quotes in the reference: it is bound as one value)."""
    parts: list[str | VarRef] = []
    position = 0
    pattern = re.compile(f"{_QUOTED_TOKEN.pattern}|{TOKEN.pattern}")
    for match in pattern.finditer(sql):
        parts.append(sql[position : match.start()])
        groups = match.groups()
        namespace, name, call = groups[0:3] if groups[0] else groups[3:6]
        parts.append(VarRef(namespace, name, bool(call)))
        position = match.end()
    parts.append(sql[position:])
    return [p for p in parts if p != ""]


def render_text(text: str, ctx: VariableContext, encode: Callable[[str], str] = str) -> str:
    """``text`` with every token replaced by its value's text, passed through ``encode``."""

    def one(match: re.Match[str]) -> str:
        ref = VarRef(match.group(1), match.group(2), bool(match.group(3)))
        return encode(as_text(ctx.value(ref)))

    return TOKEN.sub(one, text)


def render_url(url: str, ctx: VariableContext) -> str:
    """A URL with each value percent-encoded (a value cannot add a path segment or a query
    parameter of its own)."""
    return render_text(url, ctx, lambda value: quote(value, safe=""))


def render_json(value: Any, ctx: VariableContext) -> Any:
    """A JSON value with tokens substituted in every string (keys included); a string that
    is exactly one token becomes that variable's JSON value."""
    if isinstance(value, str):
        whole = TOKEN.fullmatch(value.strip())
        if whole:
            typed = ctx.value(VarRef(whole.group(1), whole.group(2), bool(whole.group(3))))
            return typed if isinstance(typed, int) else as_text(typed)
        return render_text(value, ctx)
    if isinstance(value, Mapping):
        return {render_text(str(k), ctx): render_json(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(item, ctx) for item in value]
    return value


def json_strings(value: Any) -> list[str]:
    """Every string in a JSON value (keys included), to check their tokens."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in (str(k), *json_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in json_strings(item)]
    return []
