"""How data source values become JSON and SQL parameters, and how logs are capped."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.dialects import mysql, postgresql, sqlite

from junctionbox.connectors.job_sources import bind_query, cap_json, json_value, sample
from junctionbox.domain.job_variables import VariableContext

CTX = VariableContext(100, "sjb_1", datetime(2026, 5, 2, 8, 0, tzinfo=UTC), ZoneInfo("UTC"))
SQL = (
    "SELECT ':not_a_param' AS t, x::date FROM b WHERE org = {{config.tenantId}} "
    "AND d = '{{date.yesterday()}}' AND at < {{date.now()}}::timestamptz AND p LIKE 'a%'"
)


def test_values_become_json() -> None:
    assert json_value(Decimal("12.50")) == "12.50"  # no precision lost
    assert json_value(date(2026, 1, 2)) == "2026-01-02"
    assert json_value(datetime(2026, 1, 2, 3, 4, tzinfo=UTC)) == "2026-01-02T03:04:00+00:00"
    assert json_value(time(1, 2)) == "01:02:00"
    assert json_value(timedelta(minutes=2)) == 120.0
    assert json_value(b"text") == "text"
    assert json_value(b"\xff\x00") == "/wA="
    assert json_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert json_value({"a": [1, None]}) == {"a": [1, None]}


def test_variables_are_parameters_on_every_dialect() -> None:
    for dialect, backend in (
        (sqlite.dialect(), "sqlite"),
        (postgresql.dialect(), "postgresql"),
        (mysql.dialect(), "mysql"),
    ):
        compiled = bind_query(SQL, CTX, backend).compile(dialect=dialect)
        text = str(compiled)
        assert "100" not in text, text
        assert "2026-05-01" not in text, text
        assert "':not_a_param'" in text  # a colon in a string is not a parameter
        values = list(compiled.params.values())
        assert values[0] == 100
        assert str(values[1]).startswith("2026-05-01")
    pg = str(bind_query(SQL, CTX, "postgresql").compile(dialect=postgresql.dialect()))
    assert "(%(jbv5)s" in pg  # parenthesised: ":name::type" would not be read as a parameter
    assert ")::timestamptz" in pg


def test_logs_are_capped_at_item_boundaries() -> None:
    rows = [{"id": i, "pad": "x" * 100} for i in range(1000)]
    kept, cut = cap_json(rows, 50 * 1024)
    assert cut
    assert 0 < len(kept) < 1000
    assert kept == rows[: len(kept)]
    assert len(orjson.dumps(kept)) <= 50 * 1024
    assert cap_json(rows[:3], 50 * 1024) == (rows[:3], False)
    text, cut = cap_json({"blob": "y" * 100_000}, 1024)
    assert cut
    assert len(text["truncatedPreview"]) <= 1024
    assert sample(rows, 10) == rows[:10]
    assert sample({"a": 1}, 10) == {"a": 1}
