from __future__ import annotations

from typing import Any

import pytest

from junctionbox.errors import ExpressionCompileError, ExpressionRuntimeError
from junctionbox.expr import Predicate, compile_filter

EVENT: dict[str, Any] = {
    "type": "order.created",
    "tenantId": "t1",
    "payload": {
        "total": 150,
        "tags": ["vip", "eu"],
        "customer": {"email": "a@b.com"},
        "note": None,
    },
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('event.type == "order.created" && event.payload.total > 100', True),
        ('event.type == "order.created" && event.payload.total > 200', False),
        ('event.payload.tags.exists(t, t == "vip")', True),
        ("has(event.payload.missing)", False),
        ('event.payload.customer.email.endsWith("@b.com")', True),
        ("event.payload.note == null", True),
        ('event.type.startsWith("invoice.")', False),
    ],
)
def test_true_and_false(expression: str, expected: bool) -> None:
    predicate = compile_filter(expression)
    assert isinstance(predicate, Predicate)
    assert predicate.matches(EVENT) is expected


@pytest.mark.parametrize("expression", ["event.payload.total", "event.type", "event.payload.note"])
def test_non_boolean_result_is_an_error_not_truthiness(expression: str) -> None:
    with pytest.raises(ExpressionRuntimeError, match="must return a boolean"):
        compile_filter(expression).matches(EVENT)


def test_missing_key_is_a_runtime_error_with_a_hint() -> None:
    with pytest.raises(ExpressionRuntimeError, match=r"no such key 'missing'.*has\(\)"):
        compile_filter("event.payload.missing == 1").matches(EVENT)


def test_type_mismatch_is_a_runtime_error() -> None:
    with pytest.raises(ExpressionRuntimeError, match="CEL filter failed"):
        compile_filter('event.payload.total + "x" == "1x"').matches(EVENT)


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("event.type ==", "line 1, column 14"),
        ("event.type == 'a' &&\n  (event.payload", "line 2, column"),
        ("1 +* 2", "line 1, column 4"),
    ],
)
def test_syntax_error_is_a_400_with_line_and_column(expression: str, where: str) -> None:
    with pytest.raises(ExpressionCompileError) as info:
        compile_filter(expression, loc=("body", "filter"))
    assert info.value.status == 400
    assert info.value.problems[0].loc == ("body", "filter")
    assert where in info.value.message


def test_constant_non_boolean_is_rejected_at_compile_time() -> None:
    with pytest.raises(ExpressionCompileError, match="must return a boolean"):
        compile_filter("1 + 1")
    assert compile_filter("true").matches({}) is True


def test_non_dict_mappings_are_accepted() -> None:
    from types import MappingProxyType

    assert compile_filter('event.type == "x"').matches(MappingProxyType({"type": "x"}))
