"""The field list derived from an event type's schema (seed 003's /field-schemas)."""

from __future__ import annotations

from typing import Any

import pytest

from junctionbox.domain.schema_fields import SchemaField, schema_fields
from junctionbox.expr.paths import Each, Index, Key, parse_path


def by_path(schema: Any, **limits: int) -> dict[str, SchemaField]:
    return {f.path: f for f in schema_fields(schema, **limits)}


ORDER = {
    "type": "object",
    "required": ["patient", "lines"],
    "properties": {
        "patient": {
            "type": "object",
            "description": "Who it is for",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "title": "Full name"},
                "address": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                },
            },
        },
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        "placed": {"type": "string", "format": "date-time"},
    },
}


def test_nested_objects_and_arrays_in_dot_notation() -> None:
    fields = schema_fields(ORDER)
    assert [f.path for f in fields] == [
        "lines",
        "lines[].qty",
        "lines[].sku",
        "patient",
        "patient.address",
        "patient.address.city",
        "patient.address.zip",
        "patient.name",
        "placed",
        "tags",
        "tags[]",
    ]
    found = {f.path: f for f in fields}
    assert found["patient"] == SchemaField(
        "patient", "object", required=True, nullable=False, description="Who it is for"
    )
    assert found["patient.name"].required
    assert found["patient.name"].title == "Full name"
    assert not found["patient.address"].required
    assert not found["patient.address.city"].required
    assert found["lines"].type == "array"
    assert found["lines"].required
    assert found["lines[].sku"].required
    assert not found["lines[].qty"].required
    assert found["lines[].qty"].type == "integer"
    assert found["tags[]"] == SchemaField("tags[]", "string", False, False, enum=("a", "b"))
    assert found["placed"].format == "date-time"


def test_every_path_reads_the_data_it_names() -> None:
    data = {
        "patient": {"name": "Ann", "address": {"city": "Leeds", "zip": "LS1"}},
        "lines": [{"sku": "x", "qty": 1}, {"sku": "y", "qty": 2}],
        "tags": ["a"],
        "placed": "2024-01-01T00:00:00Z",
    }
    for field in schema_fields(ORDER):
        assert parse_path(field.path).get(data) is not None, field.path
    assert parse_path("lines[].sku").get(data) == ["x", "y"]


def test_keys_that_need_quoting_round_trip_through_the_path_parser() -> None:
    names = ["a.b", "c[0]", 'say "hi"', "back\\slash", "", "it's"]
    schema = {
        "type": "object",
        "properties": {
            n: {"type": "object", "properties": {"x": {"type": "integer"}}} for n in names
        },
    }
    paths = [f.path for f in schema_fields(schema) if not f.path.endswith("x")]
    assert len(paths) == len(names)
    for path in paths:
        segments = parse_path(path).segments
        assert len(segments) == 1
        assert isinstance(segments[0], Key)
    assert {parse_path(p).segments[0].name for p in paths} == set(names)  # type: ignore[union-attr]
    assert '["a.b"].x' in {f.path for f in schema_fields(schema)}


def test_ref_to_local_defs_with_siblings() -> None:
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/address", "description": "Home address"},
            "work": {"$ref": "#/definitions/address"},
        },
        "required": ["home"],
        "$defs": {
            "address": {
                "type": "object",
                "required": ["city"],
                "properties": {"city": {"type": "string"}, "geo": {"$ref": "#/$defs/geo"}},
            },
            "geo": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}]},
        },
        "definitions": {"address": {"$ref": "#/$defs/address"}},
    }
    found = by_path(schema)
    assert found["home"].type == "object"
    assert found["home"].description == "Home address"
    assert found["home.city"].required
    assert found["home.city"].type == "string"
    assert found["home.geo"].type == "array"
    assert found["home.geo[0]"].type == "number"
    assert "home.geo[1]" in found
    assert found["work.city"].type == "string"
    assert [type(s) for s in parse_path("home.geo[1]").segments] == [Key, Key, Index]


def test_recursive_structures_are_listed_once_below_themselves() -> None:
    schema = {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    "self": {"$ref": "#/$defs/node"},
                },
            }
        },
    }
    # The root follows the $ref, so its properties are the node's and recursion stops there.
    assert sorted(by_path(schema)) == ["children", "name", "self"]
    loop = {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}
    assert schema_fields(loop) == []


def test_depth_and_size_caps() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"n": deep}}
    paths = [f.path for f in schema_fields(deep, max_depth=5)]
    assert paths == ["n", "n.n", "n.n.n", "n.n.n.n", "n.n.n.n.n"]
    assert len(schema_fields(deep)) == 16
    wide = {"type": "object", "properties": {f"f{i:04}": {"type": "string"} for i in range(50)}}
    assert len(schema_fields(wide, max_fields=10)) == 10
    binary = {
        "$defs": {
            "t": {
                "type": "object",
                "properties": {"l": {"$ref": "#/$defs/u"}, "r": {"$ref": "#/$defs/u"}},
            },
            "u": {
                "type": "object",
                "properties": {"l": {"$ref": "#/$defs/t"}, "r": {"$ref": "#/$defs/t"}},
            },
        },
        "$ref": "#/$defs/t",
    }
    assert 0 < len(schema_fields(binary)) < 100


def test_nullable_unions_enums_and_inferred_types() -> None:
    schema = {
        "properties": {
            "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
            "status": {"oneOf": [{"enum": ["open", "closed"]}, {"type": "null"}]},
            "kind": {"const": "order"},
            "amount": {"type": ["integer", "number"]},
            "id": {"type": ["string", "integer"]},
            "anything": {},
            "nothing": False,
            "nested": {"properties": {"x": {"type": "boolean"}}},
            "list": {"items": {"type": "integer"}},
            "nul": {"type": "null"},
        }
    }
    found = by_path(schema)
    assert (found["when"].type, found["when"].nullable, found["when"].format) == (
        "string",
        True,
        "date",
    )
    assert found["status"].enum == ("open", "closed")
    assert found["status"].nullable
    assert found["status"].type == "string"
    assert found["kind"].type == "string"
    assert found["kind"].enum == ("order",)
    assert found["amount"].type == "number"
    assert found["id"].type == "integer|string"
    assert found["anything"].type == "any"
    assert "nothing" not in found
    assert found["nested"].type == "object"
    assert found["nested.x"].type == "boolean"
    assert found["list"].type == "array"
    assert found["list[]"].type == "integer"
    assert found["nul"].type == "null"
    assert found["nul"].nullable


def test_combinators() -> None:
    schema = {
        "type": "object",
        "allOf": [
            {"properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"a": {"maxLength": 3}, "b": {"type": "integer"}}},
        ],
        "oneOf": [
            {
                "properties": {"c": {"type": "string"}, "d": {"type": "string"}},
                "required": ["c", "d"],
            },
            {"properties": {"c": {"type": "integer"}}, "required": ["c"]},
        ],
    }
    found = by_path(schema)
    assert found["a"].required
    assert found["a"].type == "string"
    assert not found["b"].required
    assert found["c"].required
    assert found["c"].type == "integer|string"
    assert not found["d"].required


@pytest.mark.parametrize("schema", [True, False, {}, {"type": "string"}])
def test_schemas_without_fields(schema: Any) -> None:
    assert schema_fields(schema) == []


def test_root_array_and_arrays_of_arrays() -> None:
    schema = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "m": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
            },
        },
    }
    assert [f.path for f in schema_fields(schema)] == ["[].m", "[].m[]", "[].m[][]"]
    assert [type(s) for s in parse_path("[].m[][]").segments] == [Each, Key, Each, Each]
