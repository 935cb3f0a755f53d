"""Pure rules of scheduled jobs: the read-only SQL check, variables, tick timing (time zones
and catch-up with an injected clock) and configuration validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from junctionbox.domain.job_config import parse_job
from junctionbox.domain.job_timing import MAX_CATCH_UP, CatchUp, JobSchedule, ScheduleType, plan
from junctionbox.domain.job_variables import (
    VariableContext,
    VarRef,
    check_refs,
    render_json,
    render_url,
    sql_parts,
)
from junctionbox.domain.sql_guard import SqlNotAllowed, check_read_only
from junctionbox.errors import ValidationError

# --- the read-only SQL check ---


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select * from bills where note = 'a;b' ;",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
        "(SELECT 1) UNION (SELECT 2)",
        'SELECT "update" FROM t -- delete this\n',
        "SELECT created_at::date FROM t /* insert */",
        "SELECT REPLACE(name, 'a', 'b') FROM t",
    ],
)
def test_read_only_queries_pass(sql: str) -> None:
    check_read_only(sql)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT 1; SELECT 2", "one statement"),
        ("DELETE FROM t", "only SELECT"),
        ("UPDATE t SET a = 1", "only SELECT"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE"),
        ("SELECT * INTO copy FROM t", "INTO"),
        ("SELECT * FROM t FOR UPDATE", "UPDATE"),
        ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "INTO"),
        # MySQL reads the backslash as an escape, PostgreSQL does not: refused either way.
        ("SELECT 'a\\'; DELETE FROM x; --'", "one statement"),
        ("SELECT 1 # 2; DELETE FROM x", "one statement"),
        ("", "empty"),
        ("SELECT 1 /* never closed", "unterminated"),
        ("PRAGMA writable_schema = 1", "only SELECT"),
    ],
)
def test_writes_and_several_statements_are_refused(sql: str, why: str) -> None:
    with pytest.raises(SqlNotAllowed, match=why):
        check_read_only(sql)


# --- variables ---

RUN_AT = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)  # already 1 March in UTC...
KOLKATA = ZoneInfo("Asia/Kolkata")  # ...and 06:00 there
NEW_YORK = ZoneInfo("America/New_York")  # ...but still 28 February 19:30 here


def ctx(zone: ZoneInfo = NEW_YORK, **env: str) -> VariableContext:
    return VariableContext(100, "sjb_1", RUN_AT, zone, env)


def test_dates_follow_the_job_time_zone() -> None:
    assert ctx().value(VarRef("date", "today", True)) == date(2026, 2, 28)
    assert ctx().value(VarRef("date", "yesterday", True)) == date(2026, 2, 27)
    assert ctx(KOLKATA).value(VarRef("date", "today", True)) == date(2026, 3, 1)
    start = ctx().value(VarRef("date", "todayStart", True))
    assert start == datetime(2026, 2, 28, 5, 0, tzinfo=UTC)  # midnight EST
    end = ctx().value(VarRef("date", "todayEnd", True))
    assert isinstance(end, datetime)
    assert end.astimezone(NEW_YORK).hour == 23
    assert ctx().value(VarRef("date", "now", True)) == RUN_AT


def test_config_and_allowlisted_env() -> None:
    assert ctx().value(VarRef("config", "tenantId", False)) == 100
    assert ctx(API_KEY="k").value(VarRef("env", "API_KEY", False)) == "k"
    assert check_refs("{{env.SECRET}} {{date.tomorrow()}} {{config.tenantId}}", ["OTHER"]) == [
        "{{env.SECRET}}: SECRET is not an allowlisted environment variable "
        "(JB_SCHEDULED_JOBS_ENV_ALLOWLIST), or it is not set",
        "{{date.tomorrow()}} is not a known variable",
    ]


def test_sql_keeps_values_out_of_the_text() -> None:
    parts = sql_parts("SELECT * FROM b WHERE org = {{config.tenantId}} AND d = '{{date.today()}}'")
    assert parts == [
        "SELECT * FROM b WHERE org = ",
        VarRef("config", "tenantId", False),
        " AND d = ",
        VarRef("date", "today", True),
    ]


def test_urls_encode_values_and_bodies_keep_types() -> None:
    url = render_url("https://x.test/r?key={{env.K}}&org={{config.tenantId}}", ctx(K="a&b=c/d"))
    assert url == "https://x.test/r?key=a%26b%3Dc%2Fd&org=100"
    body = render_json({"org": "{{config.tenantId}}", "on": "day {{date.today()}}"}, ctx())
    assert body == {"org": 100, "on": "day 2026-02-28"}


# --- ticks ---


def cron(expression: str, zone: str = "UTC", catch_up: CatchUp = CatchUp.ONCE) -> JobSchedule:
    return JobSchedule(ScheduleType.CRON, expression, None, zone, catch_up)


def every(ms: int, catch_up: CatchUp = CatchUp.ONCE) -> JobSchedule:
    return JobSchedule(ScheduleType.INTERVAL, None, ms, "UTC", catch_up)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_cron_ticks_use_the_job_time_zone() -> None:
    nine_kolkata = cron("0 9 * * *", "Asia/Kolkata")
    assert nine_kolkata.first_after(at("2026-06-01T00:00:00")) == at("2026-06-01T03:30:00")
    nine_london = cron("0 9 * * *", "Europe/London")  # BST in June, GMT in January
    assert nine_london.first_after(at("2026-06-01T00:00:00")) == at("2026-06-01T08:00:00")
    assert nine_london.first_after(at("2026-01-01T00:00:00")) == at("2026-01-01T09:00:00")


def test_a_tick_not_due_yet_does_nothing() -> None:
    assert plan(every(1000), at("2026-01-01T00:00:10"), at("2026-01-01T00:00:09")) is None


def test_on_time_ticks_run_under_every_policy() -> None:
    for policy in CatchUp:
        tick = plan(
            cron("*/5 * * * *", catch_up=policy),
            at("2026-01-01T10:05:00"),
            now := at("2026-01-01T10:05:00.4"),
        )
        assert tick is not None, policy
        assert tick.run_for == at("2026-01-01T10:05:00"), policy
        assert tick.next_run_at == at("2026-01-01T10:10:00")
        assert tick.next_run_at > now


def test_catch_up_once_runs_the_latest_missed_tick_once() -> None:
    # Down from 10:05 to 13:02: 36 five-minute ticks were missed.
    tick = plan(cron("*/5 * * * *"), at("2026-01-01T10:05:00"), at("2026-01-01T13:02:00"))
    assert tick is not None
    assert tick.run_for == at("2026-01-01T13:00:00")
    assert tick.next_run_at == at("2026-01-01T13:05:00")
    assert tick.skipped == 35


def test_catch_up_skip_drops_late_ticks() -> None:
    schedule = cron("0 * * * *", catch_up=CatchUp.SKIP)
    tick = plan(schedule, at("2026-01-01T10:00:00"), at("2026-01-01T12:30:00"))
    assert tick is not None
    assert tick.run_for is None
    assert tick.next_run_at == at("2026-01-01T13:00:00")
    assert tick.skipped == 3


def test_catch_up_all_runs_each_missed_tick_in_order_with_a_cap() -> None:
    schedule = every(60_000, CatchUp.ALL)
    now = at("2026-01-01T10:03:30")
    first = plan(schedule, at("2026-01-01T10:00:00"), now)
    assert first is not None
    assert first.run_for == at("2026-01-01T10:00:00")
    assert first.next_run_at == at("2026-01-01T10:01:00")
    ran = [first.run_for]
    next_run = first.next_run_at
    while (step := plan(schedule, next_run, now)) is not None:
        ran.append(step.run_for)
        next_run = step.next_run_at
    assert ran == [at(f"2026-01-01T10:0{m}:00") for m in range(4)]
    # A day down: only the most recent MAX_CATCH_UP ticks are kept.
    far = plan(schedule, at("2026-01-01T00:00:00"), at("2026-01-02T00:00:00"))
    assert far is not None
    assert far.run_for is None
    assert far.skipped == 24 * 60 + 1 - MAX_CATCH_UP
    assert at("2026-01-02T00:00:00") - far.next_run_at == timedelta(minutes=MAX_CATCH_UP - 1)


# --- configuration ---


def job(**fields: Any) -> dict[str, Any]:
    return {
        "name": "daily export",
        "targetUrl": "https://partner.example/in",
        "schedule": {"type": "CRON", "expression": "0 2 * * *"},
        "dataSource": {"type": "SQL", "query": "SELECT 1"},
        **fields,
    }


def problems(body: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as caught:
        parse_job(body)
    return {p.loc: p.message for p in caught.value.problems}


def test_a_valid_job_parses_with_credentials_apart() -> None:
    source = {"type": "SQL", "query": "SELECT 1", "connectionString": "mysql://u:p@db/x"}
    config, secrets = parse_job(
        job(dataSource=source, outgoingAuthType="BEARER", outgoingAuthConfig={"token": "t0k"})
    )
    assert config.source.external
    assert secrets.connection_string == "mysql://u:p@db/x"
    assert secrets.auth == {"token": "t0k"}
    assert "token" not in config.auth.settings


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"schedule": {"type": "CRON", "expression": "61 * * * *"}}, "expression"),
        ({"schedule": {"type": "CRON", "expression": "* * * * * *"}}, "expression"),
        ({"schedule": {"type": "CRON", "expression": "0 2 * * *", "timezone": "Mars/Olympus"}}, "timezone"),
        ({"schedule": {"type": "INTERVAL"}}, "intervalMs"),
        ({"schedule": {"type": "INTERVAL", "intervalMs": 10}}, "intervalMs"),
        ({"schedule": {"type": "HOURLY"}}, "type"),
        ({"dataSource": {"type": "SQL", "query": "SELECT 1; DROP TABLE bills"}}, "query"),
        ({"dataSource": {"type": "SQL", "query": "INSERT INTO t VALUES (1)"}}, "query"),
        ({"dataSource": {"type": "API", "url": "ftp://x"}}, "url"),
        ({"dataSource": {"type": "API", "url": "https://x.test", "body": {"a": 1}}}, "body"),
        ({"transformation": {"mode": "PYTHON", "script": "x"}}, "mode"),
        ({"targetUrl": None}, "targetUrl"),
    ],
)  # fmt: skip
def test_bad_configurations_name_the_field(change: dict[str, Any], where: str) -> None:
    found = problems(job(**change))
    assert any(loc[-1] == where for loc in found), found
