"""The proxy route's query parsing: its fast path answers what ``parse_qsl`` does."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from junctionbox.api.routers.integration_proxy import _query


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "orgId=1",
        "orgId=1&orgId=2",
        "a=1&b=&c",
        "&&a==b&",
        "=x",
        "a=b=c",
        ";a=1",
        "x=%20y",
        "a+b=c+d",
        "q=%E2%82%AC&orgId=7",
        "é=ü",
    ],
)
def test_query_pairs_are_parse_qsl_s(raw: str) -> None:
    assert _query(raw) == parse_qsl(raw, keep_blank_values=True)
