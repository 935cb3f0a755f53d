"""Delivery-log exports: CSV cells safe against formula injection, JSON arrays, stats."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from junctionbox.services.delivery_logs import csv_cell, csv_chunks, json_chunks, summarize
from junctionbox.store.queries.delivery_logs import StatusCount


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (True, "true"),
        (503, "503"),
        (-1, "-1"),  # numbers are data, not formulas
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTAB", "'\tTAB"),
        ("plain = text", "plain = text"),
        ({"a": "=1"}, '{"a":"=1"}'),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05Z"),
    ],
)
def test_csv_cells(value: Any, cell: str) -> None:
    assert csv_cell(value) == cell


@dataclass
class Row:
    id: str
    note: str | None


async def rows(*items: Row) -> AsyncIterator[Row]:
    for item in items:
        yield item


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


COLUMNS = (("id", "id"), ("note", "note"))


async def test_csv_stream_has_a_header_and_quotes_what_needs_quoting() -> None:
    data = await collect(
        csv_chunks(COLUMNS, rows(Row("1", 'say "hi",\nbye'), Row("2", None)), rows_per_chunk=1)
    )
    parsed = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert parsed == [["id", "note"], ["1", 'say "hi",\nbye'], ["2", ""]]
    assert await collect(csv_chunks(COLUMNS, rows())) == b"id,note\r\n"


async def test_json_stream_is_one_array() -> None:
    data = await collect(json_chunks(COLUMNS, rows(Row("1", "a"), Row("2", None))))
    assert orjson.loads(data) == [{"id": "1", "note": "a"}, {"id": "2", "note": None}]
    assert orjson.loads(await collect(json_chunks(COLUMNS, rows()))) == []


def test_stats_weight_the_mean_response_time_by_count() -> None:
    stats = summarize([StatusCount("FAILED", 1, 40.0), StatusCount("SUCCESS", 3, 20.0)])
    assert (stats.total, stats.by_status) == (4, {"FAILED": 1, "SUCCESS": 3})
    assert stats.success_rate == 0.75
    assert stats.avg_response_time_ms == 25.0
    empty = summarize([])
    assert (empty.total, empty.success_rate, empty.avg_response_time_ms) == (0, None, None)
