from __future__ import annotations

from typing import Any

import pytest

from junctionbox.errors import ExpressionCompileError, ExpressionRuntimeError
from junctionbox.expr import Limits, compile_jsonata
from junctionbox.expr.jsonata import DEFAULT_ENGINE, JsonataEngine, available_engines

ENGINES = available_engines()
FAST = Limits(time_limit=0.1)

PAYLOAD: dict[str, Any] = {
    "order": {"id": "ord_1"},
    "customer": {"name": " Ada ", "email": "ADA@X.COM"},
    "items": [{"sku": "A", "qty": 2, "price": 1.5}, {"sku": "B", "qty": 1, "price": 10}],
    "status": "paid",
}
MAPPING = """{
  "orderId": order.id,
  "customer": {"name": $trim(customer.name), "email": $lowercase(customer.email)},
  "skus": [items.sku],
  "total": $sum(items.(price * qty)),
  "status": $uppercase(status),
  "tenant": $context.tenantId
}"""


@pytest.fixture(params=ENGINES, ids=str)
def engine(request: pytest.FixtureRequest) -> JsonataEngine:
    value: JsonataEngine = request.param
    return value


def test_prefers_jsonata2py_when_installed() -> None:
    assert DEFAULT_ENGINE is ENGINES[0]
    if JsonataEngine.JSONATA2PY in ENGINES:
        assert DEFAULT_ENGINE is JsonataEngine.JSONATA2PY


def test_mapping_with_context_binding(engine: JsonataEngine) -> None:
    t = compile_jsonata(MAPPING, engine=engine, limits=FAST)
    assert t.transform(PAYLOAD, {"tenantId": "t1"}) == {
        "orderId": "ord_1",
        "customer": {"name": "Ada", "email": "ada@x.com"},
        "skus": ["A", "B"],
        "total": 13,
        "status": "PAID",
        "tenant": "t1",
    }


def test_results_are_plain_json_and_undefined_is_null(engine: JsonataEngine) -> None:
    out = compile_jsonata("items.sku", engine=engine).transform(PAYLOAD)
    assert type(out) is list
    assert out == ["A", "B"]
    assert compile_jsonata("nothing.here", engine=engine).transform(PAYLOAD) is None


def test_compiled_expression_is_reusable_across_inputs(engine: JsonataEngine) -> None:
    t = compile_jsonata("$count(items)", engine=engine)
    assert [t.transform({"items": [1] * n}) for n in (1, 2, 3)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("expression", "position"),
    [('{"a": order.id', 14), ("items[", 6), ("$foo(", 5)],
)
def test_syntax_error_is_a_400_with_the_position(
    engine: JsonataEngine, expression: str, position: int
) -> None:
    with pytest.raises(ExpressionCompileError) as info:
        compile_jsonata(expression, engine=engine, loc=("body", "transformScript"))
    err = info.value
    assert err.status == 400
    assert err.problems[0].loc == ("body", "transformScript")
    assert f"position {position}" in err.message


def test_multi_line_syntax_error_also_gives_line_and_column(engine: JsonataEngine) -> None:
    with pytest.raises(ExpressionCompileError, match=r"line 3, column \d"):
        compile_jsonata('{\n  "a": $foo(\n}', engine=engine)


def test_empty_expression_is_rejected() -> None:
    with pytest.raises(ExpressionCompileError, match="required"):
        compile_jsonata("  ")


def test_runtime_type_error_is_wrapped(engine: JsonataEngine) -> None:
    with pytest.raises(ExpressionRuntimeError, match="T0410"):
        compile_jsonata("$uppercase(1)", engine=engine).transform({})


def test_function_result_is_not_json(engine: JsonataEngine) -> None:
    with pytest.raises(ExpressionRuntimeError, match="not JSON"):
        compile_jsonata("function($x){$x}", engine=engine).transform({})


def test_endless_recursion_is_stopped(engine: JsonataEngine) -> None:
    t = compile_jsonata(
        "($f := function($n){ $n > 0 ? $f($n) : 0 }; $f(1))", engine=engine, limits=FAST
    )
    with pytest.raises(ExpressionRuntimeError):
        t.transform({})


def test_long_running_expression_hits_the_time_limit(engine: JsonataEngine) -> None:
    t = compile_jsonata("$count([1..3000].([1..3000]))", engine=engine, limits=FAST)
    with pytest.raises(ExpressionRuntimeError, match="time limit of 100 ms"):
        t.transform({})


@pytest.mark.skipif(len(ENGINES) < 2, reason="needs both JSONata engines")
@pytest.mark.parametrize(
    "expression",
    [
        "items[qty>1].sku",
        "$join(items.sku, ',')",
        "items{sku: qty}",
        "$map(items, function($i){$i.sku & $i.qty})",
        "items^(>price).sku",
        "$string(order)",
        "order ~> |$|{'x': 1}|",
        "$round(2.675, 2)",
        "$formatNumber(1234.5, '#,##0.00')",
        "**.sku",
        "$toMillis('2024-05-01T10:00:00Z')",
    ],
)
def test_engines_agree(expression: str) -> None:
    results = [compile_jsonata(expression, engine=e).transform(PAYLOAD) for e in ENGINES]
    assert results[0] == results[1]
