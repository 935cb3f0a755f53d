from __future__ import annotations

from typing import Any

import pytest

from junctionbox.errors import ExpressionCompileError, ExpressionRuntimeError
from junctionbox.expr import MISSING, FieldMapping, compile_simple
from junctionbox.expr.paths import PathError, parse_path

PAYLOAD: dict[str, Any] = {
    "order": {"id": "ord_1", "createdAt": "2024-05-01T10:00:00Z", "status": " paid "},
    "customer": {"name": "  Ada Lovelace ", "email": "ADA@Example.COM", "gender": "F"},
    "items": [{"sku": "a-1", "qty": 2}, {"sku": "b-2"}],
    "orders": [{"lines": [{"n": 1}, {"n": 2}]}, {"lines": [{"n": 3}]}, {}],
}


class Tables:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def resolve(self, lookup_type: str, key: str) -> str | None:
        self.calls.append((lookup_type, key))
        return {"GENDER": {"F": "female", "M": "male", "1": "one"}}.get(lookup_type, {}).get(key)


def run(mappings: list[dict[str, Any]], payload: Any = PAYLOAD, **kw: Any) -> Any:
    return compile_simple(mappings, **kw).transform(payload)


def test_nested_source_and_target_build_a_fresh_object() -> None:
    out = run(
        [
            {"sourceField": "order.id", "targetField": "orderId"},
            {"sourceField": "customer.email", "targetField": "contact.email"},
            {"sourceField": "customer.name", "targetField": "contact.name"},
        ]
    )
    assert out == {
        "orderId": "ord_1",
        "contact": {"email": "ADA@Example.COM", "name": "  Ada Lovelace "},
    }


def test_array_paths_read_every_element_and_spread_into_one_target_array() -> None:
    out = run(
        [
            {"sourceField": "items[].sku", "targetField": "lines[].code", "transform": "upper"},
            {"sourceField": "items[].qty", "targetField": "lines[].quantity", "defaultValue": 1},
            {"sourceField": "items[].sku", "targetField": "skus"},
            {"sourceField": "items.0.sku", "targetField": "first"},
            {"sourceField": "items[1].sku", "targetField": "second"},
            {"sourceField": "items[-1].qty", "targetField": "lastQty"},
        ]
    )
    assert out == {
        "lines": [{"code": "A-1", "quantity": 2}, {"code": "B-2", "quantity": 1}],
        "skus": ["a-1", "b-2"],
        "first": "a-1",
        "second": "b-2",
    }  # items[-1].qty is missing: left out


def test_nested_wildcards_keep_alignment_and_missing_elements_become_null() -> None:
    out = run(
        [
            {"sourceField": "orders[].lines[].n", "targetField": "flat"},
            {"sourceField": "orders[].lines[].n", "targetField": "o[].n[]"},
            {"sourceField": "items[].qty", "targetField": "qtys"},
        ]
    )
    assert out["flat"] == [[1, 2], [3], None]
    assert out["o"] == [{"n": [1, 2]}, {"n": [3]}, {}]
    assert out["qtys"] == [2, None]


def test_numeric_target_steps_create_arrays_and_quoted_keys_allow_dots() -> None:
    out = run(
        [
            {"sourceField": "order.id", "targetField": "refs.1.id"},
            {"sourceField": "['a.b']", "targetField": "x['c.d']"},
        ],
        payload={"order": {"id": "o"}, "a.b": 5},
    )
    assert out == {"refs": [None, {"id": "o"}], "x": {"c.d": 5}}


def test_static_fields_and_default_values() -> None:
    out = run(
        [
            {"targetField": "source", "staticValue": "junctionbox"},
            {"targetField": "meta", "staticValue": {"v": 1}},
            {"targetField": "nothing", "staticValue": None},
            {"sourceField": "customer.missing", "targetField": "fallback", "defaultValue": "n/a"},
            {"sourceField": "customer.missing", "targetField": "absent"},
        ]
    )
    assert out == {"source": "junctionbox", "meta": {"v": 1}, "nothing": None, "fallback": "n/a"}


def test_output_never_aliases_input_or_config() -> None:
    static = {"v": 1}
    t = compile_simple(
        [
            {"sourceField": "customer", "targetField": "c"},
            {"sourceField": "order.id", "targetField": "c.orderId"},
            {"targetField": "meta", "staticValue": static},
        ]
    )
    first = t.transform(PAYLOAD)
    first["meta"]["v"] = 2
    assert "orderId" not in PAYLOAD["customer"]
    assert t.transform(PAYLOAD)["meta"] == {"v": 1}


@pytest.mark.parametrize(
    ("transform", "value", "expected"),
    [
        ("trim", "  x y  ", "x y"),
        ("upper", "abc", "ABC"),
        ("lower", "ÀBC", "àbc"),
        (["trim", "upper"], " a ", "A"),
        ("upper", 42, 42),  # non-strings pass through
    ],
)
def test_string_transformers(transform: Any, value: Any, expected: Any) -> None:
    assert run(
        [{"sourceField": "v", "targetField": "o", "transform": transform}], {"v": value}
    ) == {"o": expected}


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        ("2024-05-01T10:00:00Z", {}, "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T10:00:00+02:00", {}, "2024-05-01T08:00:00.000Z"),
        ("2024-05-01T10:00:00Z", {"format": "DD/MM/YYYY"}, "01/05/2024"),
        ("2024-05-01T10:00:00Z", {"format": "YYYY-MM-DD HH:mm:ss"}, "2024-05-01 10:00:00"),
        (
            "2024-05-01T13:05:09.123Z",
            {"format": "h:mm A [on] ddd, D MMM YY"},
            "1:05 PM on Wed, 1 May 24",
        ),
        ("2024-05-01T13:05:09.123Z", {"format": "SSS"}, "123"),
        ("2024-05-01T10:00:00Z", {"format": "%d.%m.%Y"}, "01.05.2024"),
        ("2024-05-01T10:00:00Z", {"format": "HH:mm Z", "timezone": "Asia/Kolkata"}, "15:30 +05:30"),
        ("2024-05-01T10:00:00Z", {"timezone": "Asia/Kolkata"}, "2024-05-01T15:30:00.000+05:30"),
        ("2024-05-01", {"format": "X"}, "1714521600"),
        (1714521600, {"format": "date"}, "2024-05-01"),
        (1714521600000, {"format": "x"}, "1714521600000"),
        (
            "01/05/2024 10:30",
            {"inputFormat": "DD/MM/YYYY HH:mm", "format": "iso"},
            "2024-05-01T10:30:00.000Z",
        ),
        ("", {"format": "DD/MM/YYYY"}, ""),
    ],
)
def test_date_transformer(value: Any, options: dict[str, Any], expected: str) -> None:
    mapping = {
        "sourceField": "d",
        "targetField": "o",
        "transform": "date",
        "transformOptions": options,
    }
    assert run([mapping], {"d": value}) == {"o": expected}


def test_date_format_may_sit_at_top_level() -> None:
    out = run(
        [{"sourceField": "d", "targetField": "o", "transform": "date", "format": "YYYY"}],
        {"d": "2024-05-01"},
    )
    assert out == {"o": "2024"}


def test_unparseable_date_fails_the_transformation_with_the_mapping_named() -> None:
    t = compile_simple([{"sourceField": "d", "targetField": "o", "transform": "date"}])
    with pytest.raises(
        ExpressionRuntimeError, match=r"fieldMappings\[0\] \(d -> o\).*cannot parse"
    ):
        t.transform({"d": "next tuesday"})


def test_default_transformer_replaces_null_missing_and_empty() -> None:
    mappings = [
        {
            "sourceField": "a",
            "targetField": "a",
            "transform": "default",
            "transformOptions": {"value": "x"},
        },
        {"sourceField": "b", "targetField": "b", "transform": "default", "defaultValue": 0},
        {
            "sourceField": "c",
            "targetField": "c",
            "transform": ["trim", "default"],
            "defaultValue": "-",
        },
        {
            "sourceField": "d",
            "targetField": "d",
            "transform": "default",
            "transformOptions": {"value": "x"},
        },
    ]
    assert run(mappings, {"a": None, "c": "   ", "d": "kept"}) == {
        "a": "x",
        "b": 0,
        "c": "-",
        "d": "kept",
    }


def test_lookup_hit_miss_and_policies() -> None:
    tables = Tables()
    base = {"sourceField": "g", "transform": "lookup", "lookupType": "GENDER"}
    t = compile_simple(
        [
            {**base, "targetField": "hit"},
            {**base, "sourceField": "x", "targetField": "passthrough"},
            {**base, "sourceField": "x", "targetField": "default", "defaultValue": "unknown"},
            {
                **base,
                "sourceField": "x",
                "targetField": "null",
                "transformOptions": {"onMiss": "null"},
            },
            {**base, "sourceField": "n", "targetField": "numberKey"},
            {**base, "sourceField": "missing", "targetField": "absent"},
        ],
        lookups=tables,
    )
    assert t.lookup_types == frozenset({"GENDER"})
    out = t.transform({"g": "F", "x": "Q", "n": 1})
    assert out == {
        "hit": "female",
        "passthrough": "Q",
        "default": "unknown",
        "null": None,
        "numberKey": "one",
    }
    assert ("GENDER", "1") in tables.calls
    assert all(key != "missing" for _, key in tables.calls)


def test_lookup_miss_can_fail_and_needs_a_resolver() -> None:
    mapping = {
        "sourceField": "g",
        "targetField": "o",
        "transform": "lookup",
        "transformOptions": {"lookupType": "GENDER", "onMiss": "error"},
    }
    with pytest.raises(ExpressionRuntimeError, match="no entry for 'Z' in lookup 'GENDER'"):
        compile_simple([mapping], lookups=Tables()).transform({"g": "Z"})
    with pytest.raises(ExpressionRuntimeError, match="no lookup resolver"):
        compile_simple([mapping]).transform({"g": "F"})


def test_resolver_errors_propagate_unchanged() -> None:
    class Down:
        def resolve(self, lookup_type: str, key: str) -> str | None:
            raise ConnectionError("db down")

    t = compile_simple(
        [{"sourceField": "g", "targetField": "o", "transform": "lookup", "lookupType": "T"}],
        lookups=Down(),
    )
    with pytest.raises(ConnectionError):
        t.transform({"g": "F"})


def test_empty_mapping_list_passes_the_payload_through_as_a_copy() -> None:
    out = compile_simple([]).transform(PAYLOAD)
    assert out == PAYLOAD
    assert out is not PAYLOAD
    assert out["items"] is not PAYLOAD["items"]


def test_conflicting_targets_fail_at_run_time() -> None:
    t = compile_simple(
        [{"sourceField": "a", "targetField": "x"}, {"sourceField": "b", "targetField": "x.y"}]
    )
    with pytest.raises(ExpressionRuntimeError, match=r"fieldMappings\[1\].*not an object"):
        t.transform({"a": "scalar", "b": 1})


def test_compile_errors_report_every_problem_with_its_location() -> None:
    with pytest.raises(ExpressionCompileError) as info:
        compile_simple(
            [
                {"sourceField": "a", "targetField": ""},
                {"sourceField": "a..b", "targetField": "ok"},
                {"sourceField": "a", "targetField": "t", "transform": "shout"},
                {"sourceField": "a", "targetField": "t[]"},
                {"sourceField": "a", "targetField": "t", "transform": "lookup"},
                {
                    "sourceField": "a",
                    "targetField": "t",
                    "transform": "date",
                    "transformOptions": {"timezone": "Mars/Olympus"},
                },
                {"sourceField": "a", "targetField": "t", "staticValue": 1},
                {"targetField": "t"},
                "not an object",
            ],
            loc=("body", "fieldMappings"),
        )
    err = info.value
    assert err.status == 400
    locs = [p.loc for p in err.problems]
    assert locs == [
        ("body", "fieldMappings", 0, "targetField"),
        ("body", "fieldMappings", 1, "sourceField"),
        ("body", "fieldMappings", 2, "transform"),
        ("body", "fieldMappings", 3, "targetField"),
        ("body", "fieldMappings", 4, "lookupType"),
        ("body", "fieldMappings", 5, "transformOptions", "timezone"),
        ("body", "fieldMappings", 6, "staticValue"),
        ("body", "fieldMappings", 7, "sourceField"),
        ("body", "fieldMappings", 8),
    ]
    assert "column 3" in err.problems[1].message
    assert "unknown transformer 'shout'" in err.problems[2].message


def test_field_mapping_json_round_trip_keeps_camel_case() -> None:
    raw = {
        "sourceField": "a.b",
        "targetField": "c",
        "transform": ["trim", "date"],
        "transformOptions": {"timezone": "UTC"},
        "format": "YYYY",
        "defaultValue": None,
        "lookupType": "X",
    }
    mapping = FieldMapping.from_json(raw)
    assert mapping.default_value is None
    assert mapping.static_value is MISSING
    assert mapping.to_json() == raw
    with pytest.raises(ExpressionCompileError):
        FieldMapping.from_json({"sourceField": 3, "targetField": "x"})


@pytest.mark.parametrize("bad", ["", ".a", "a.", "a..b", "a[", "a[x]", "a]b", "a[0]b", "['x"])
def test_path_parser_rejects_malformed_paths(bad: str) -> None:
    with pytest.raises(PathError):
        parse_path(bad)
