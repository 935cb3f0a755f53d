from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from junctionbox.errors import ExpressionCompileError, ExpressionRuntimeError
from junctionbox.expr import Limits, ScriptTransformer, compile_script

LIMITS = Limits(time_limit=0.1, memory_limit=8 * 1024 * 1024, stack_limit=128 * 1024)


def script(source: str) -> ScriptTransformer:
    return compile_script(source, limits=LIMITS)


def test_body_with_return_receives_payload_and_context() -> None:
    t = script(
        "const total = payload.items.reduce((s, i) => s + i.qty, 0);\nreturn {id: payload.id, total, tenant: context.tenantId};"
    )
    assert t.transform({"id": 7, "items": [{"qty": 2}, {"qty": 3}]}, {"tenantId": "t1"}) == {
        "id": 7,
        "total": 5,
        "tenant": "t1",
    }


def test_transform_function_convention() -> None:
    t = script(
        "function helper(x) { return x * 2 }\nfunction transform(payload, context) { return payload.data.map(helper) }"
    )
    assert t.transform({"data": [1, 2], "metadata": {"job": "daily"}}) == [2, 4]
    assert script("const transform = (p) => ({n: p.n + 1});").transform({"n": 1}) == {"n": 2}


def test_json_in_and_out() -> None:
    payload = {"s": "é😀\u0000", "n": [1, 2.5, None, True], "o": {}}
    assert script("return payload").transform(payload) == payload
    assert script("return null").transform({}) is None
    assert script("return {d: new Date(0), u: undefined}").transform({}) == {
        "d": "1970-01-01T00:00:00.000Z"
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("payload.a + 1", "returned undefined"),
        ("return function () {}", "not JSON"),
        ("async function transform(p) { return p }", "Promise"),
        ("return 10n", "BigInt"),
    ],
)
def test_results_that_are_not_json_fail(source: str, message: str) -> None:
    with pytest.raises(ExpressionRuntimeError, match=message):
        script(source).transform({"a": 1})


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("let x = ;", 1),
        ("const a = 1;\nconst b = {;\nreturn a", 2),
        ("const a = 1;\n\nreturn a +;", 3),
    ],
)
def test_syntax_error_is_a_400_at_compile_time_with_the_line(source: str, line: int) -> None:
    with pytest.raises(ExpressionCompileError) as info:
        compile_script(source, limits=LIMITS, loc=("body", "transformScript"))
    err = info.value
    assert err.status == 400
    assert err.problems[0].loc == ("body", "transformScript")
    assert "SyntaxError" in err.message
    assert f"(line {line}, column " in err.message


def test_compiling_does_not_run_the_script() -> None:
    compile_script("while (true) {}", limits=LIMITS)  # returns at once: only parsed


def test_runtime_throw_is_reported_with_its_line() -> None:
    t = script("const a = 1;\nthrow new TypeError('bad input');")
    with pytest.raises(
        ExpressionRuntimeError, match=r"TypeError: bad input \(line 2, column \d+\)"
    ):
        t.transform({})
    with pytest.raises(ExpressionRuntimeError, match="cannot read property"):
        script("\nreturn payload.x.y").transform({})
    # QuickJS also throws null when the heap is too full to build an error: the message says both
    with pytest.raises(ExpressionRuntimeError, match=r"script failed: null \(thrown by the script"):
        script("throw null").transform({})


def test_endless_loop_is_stopped_within_the_time_limit() -> None:
    t = script("while (true) {}")
    start = time.perf_counter()
    with pytest.raises(ExpressionRuntimeError, match=r"time limit exceeded \(100 ms\)"):
        t.transform({})
    assert time.perf_counter() - start < 1.0


def test_memory_bomb_is_stopped() -> None:
    t = script("const a = []; while (true) { a.push('x'.repeat(1000) + a.length) }")
    with pytest.raises(ExpressionRuntimeError, match=r"memory limit exceeded \(8 MiB\)"):
        t.transform({})
    with pytest.raises(ExpressionRuntimeError, match="memory limit"):
        script("return 'a'.repeat(1e9)").transform({})


def test_deep_recursion_hits_the_stack_limit() -> None:
    with pytest.raises(ExpressionRuntimeError, match="stack limit exceeded"):
        script("function f(n) { return f(n + 1) + 1 }\nreturn f(0)").transform({})


def test_no_host_access() -> None:
    names = [
        "require",
        "process",
        "std",
        "os",
        "print",
        "fetch",
        "setTimeout",
        "XMLHttpRequest",
        "WebAssembly",
        "Deno",
        "Bun",
    ]
    probe = script("return [" + ", ".join(f"typeof {n}" for n in names) + "]")
    assert probe.transform({}) == ["undefined"] * len(names)
    assert script("console.log('x'); console.error('y'); return 1").transform({}) == 1
    # no module loader either: dynamic import never resolves to a host module
    src = "let r = 'pending'; import('std').then(() => { r = 'loaded' }, () => { r = 'refused' }); return r"
    assert script(src).transform({}) == "pending"
    with pytest.raises(ExpressionCompileError):
        compile_script("import * as os from 'os';", limits=LIMITS)


def test_state_from_one_tenant_is_invisible_to_another() -> None:
    tenant_a = script(
        "globalThis.secret = context.tenantId; Object.prototype.polluted = 'yes'; return 1"
    )
    tenant_b = script("return [typeof globalThis.secret, ({}).polluted === undefined]")
    assert tenant_a.transform({}, {"tenantId": "a"}) == 1
    assert tenant_b.transform({}, {"tenantId": "b"}) == ["undefined", True]
    # nor between two evaluations of the same script
    counter = script("globalThis.n = (globalThis.n || 0) + 1; return globalThis.n")
    assert [counter.transform({}) for _ in range(3)] == [1, 1, 1]


def test_hostile_script_does_not_disturb_concurrent_evaluations() -> None:
    hostile = script("while (true) {}")
    good = script("return payload.n * 2")
    results: list[Any] = []
    errors: list[BaseException] = []

    def run_hostile() -> None:
        try:
            hostile.transform({})
        except ExpressionRuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_hostile)
    thread.start()
    for n in range(20):
        results.append(good.transform({"n": n}))
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert results == [n * 2 for n in range(20)]
    assert len(errors) == 1


def test_input_that_is_not_json_fails() -> None:
    with pytest.raises(ExpressionRuntimeError, match="not JSON"):
        script("return 1").transform({"x": object()})


def test_empty_script_is_rejected() -> None:
    with pytest.raises(ExpressionCompileError, match="required"):
        compile_script("   ")
