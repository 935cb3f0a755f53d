"""Micro-benchmark of the expression engines on one 5-field mapping.

Run: ``python bench/expr.py [--quick]``. Every engine maps the same payload to the same
output (checked before timing), and the table reports µs per evaluation with the ratio
to a raw baseline measured in the same run: the mapping written as plain Python. The
CEL filter is compared with the same condition written as a Python expression.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import _quickjs
import orjson

from junctionbox.expr import Limits, compile_filter, compile_transformer
from junctionbox.expr.jsonata import JsonataEngine, available_engines

PAYLOAD: dict[str, Any] = {
    "order": {"id": "ord_01HZX", "createdAt": "2024-05-01T10:00:00Z"},
    "customer": {"name": "  Ada Lovelace ", "email": "ADA@Example.COM"},
    "items": [{"sku": "A-1", "qty": 2, "price": 1.5}, {"sku": "B-2", "qty": 1, "price": 10}],
    "status": "paid",
}
EXPECTED = {
    "orderId": "ord_01HZX",
    "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
    "skus": ["A-1", "B-2"],
    "status": "PAID",
}

SIMPLE = [
    {"sourceField": "order.id", "targetField": "orderId"},
    {"sourceField": "customer.name", "targetField": "customer.name", "transform": "trim"},
    {"sourceField": "customer.email", "targetField": "customer.email", "transform": "lower"},
    {"sourceField": "items[].sku", "targetField": "skus"},
    {"sourceField": "status", "targetField": "status", "transform": "upper"},
]
JSONATA = """{
  "orderId": order.id,
  "customer": {"name": $trim(customer.name), "email": $lowercase(customer.email)},
  "skus": [items.sku],
  "status": $uppercase(status)
}"""
SCRIPT = """return {
  orderId: payload.order.id,
  customer: {name: payload.customer.name.trim(), email: payload.customer.email.toLowerCase()},
  skus: payload.items.map((i) => i.sku),
  status: payload.status.toUpperCase(),
};"""
FILTER = 'event.type == "order.created" && event.payload.total > 100 && "vip" in event.payload.tags'
EVENT = {"type": "order.created", "payload": {"total": 150, "tags": ["eu", "vip"]}}


def raw_mapping(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "orderId": p["order"]["id"],
        "customer": {
            "name": p["customer"]["name"].strip(),
            "email": p["customer"]["email"].lower(),
        },
        "skus": [item["sku"] for item in p["items"]],
        "status": p["status"].upper(),
    }


def raw_filter(e: dict[str, Any]) -> bool:
    return bool(
        e["type"] == "order.created"
        and e["payload"]["total"] > 100
        and "vip" in e["payload"]["tags"]
    )


def quickjs_direct() -> Callable[[dict[str, Any]], Any]:
    """The script in one reused QuickJS context (no isolation): the engine's floor."""
    ctx = _quickjs.Context()
    fn = ctx.eval("(function(payload){" + SCRIPT + "\n})")
    to_js = ctx.parse_json

    def call(p: dict[str, Any]) -> Any:
        return orjson.loads(fn(to_js(orjson.dumps(p).decode())).json())

    return call


def measure(fn: Callable[[], Any], budget: float) -> float:
    """Best µs per call over a few rounds filling ``budget`` seconds."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget / 10:
        fn()
        n += 1
    per_round = max(n, 1)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per_round):
            fn()
        best = min(best, (time.perf_counter() - t0) / per_round)
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter rounds")
    args = parser.parse_args()
    budget = 0.1 if args.quick else 0.4
    limits = Limits(time_limit=1.0)

    mappers: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("raw Python (baseline)", raw_mapping),
        ("SIMPLE field mappings", compile_transformer("SIMPLE", SIMPLE).transform),
    ]
    for engine in available_engines():
        t = compile_transformer("JSONATA", JSONATA, jsonata_engine=engine, limits=limits)
        label = f"JSONATA {engine.value}" + (
            " (default)" if engine is available_engines()[0] else ""
        )
        mappers.append((label, t.transform))
    if JsonataEngine.JSONATA2PY not in available_engines():
        print(
            "note: jsonata2py is not installed; `pip install jsonata2py` to compare",
            file=sys.stderr,
        )
    mappers.append(
        (
            "SCRIPT QuickJS, fresh runtime",
            compile_transformer("SCRIPT", SCRIPT, limits=limits).transform,
        )
    )
    mappers.append(("  QuickJS reused context (floor)", quickjs_direct()))

    for label, fn in mappers:
        got = fn(PAYLOAD)
        if got != EXPECTED:
            print(f"MISMATCH {label}: {got}", file=sys.stderr)
            return 1
    predicate = compile_filter(FILTER)
    assert predicate.matches(EVENT) is raw_filter(EVENT) is True

    rows: list[tuple[str, float, float]] = []
    base = measure(lambda: raw_mapping(PAYLOAD), budget)
    for label, fn in mappers:
        us = base if fn is raw_mapping else measure(lambda fn=fn: fn(PAYLOAD), budget)
        rows.append((label, us, us / base))
    fbase = measure(lambda: raw_filter(EVENT), budget)
    rows.append(("raw Python filter (baseline)", fbase, 1.0))
    fus = measure(lambda: predicate.matches(EVENT), budget)
    rows.append(("CEL filter", fus, fus / fbase))

    width = max(len(r[0]) for r in rows)
    print(f"{'engine (5-field mapping)':<{width}}  {'µs/eval':>9}  {'x raw':>8}")
    print("-" * (width + 21))
    for label, us, ratio in rows:
        print(f"{label:<{width}}  {us:>9.2f}  {ratio:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
