"""JSON Schema compatibility with Confluent Schema Registry's semantics."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from junctionbox.domain.schema_compat import (
    CompatibilityMode,
    Incompatibility,
    can_read,
    check_compatibility,
    validate_schema_document,
)
from junctionbox.errors import ValidationError

B, F, FULL = CompatibilityMode.BACKWARD, CompatibilityMode.FORWARD, CompatibilityMode.FULL


def obj(
    props: dict[str, Any], required: tuple[str, ...] = (), additional: Any = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": list(required)}
    if additional is not None:
        schema["additionalProperties"] = additional
    return schema


STR, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
OPEN_A = obj({"a": STR})
CLOSED_A = obj({"a": STR}, additional=False)

# (case, old, new, {mode: expected reason fragment or None for compatible})
EVOLUTIONS: list[tuple[str, Any, Any, dict[CompatibilityMode, str | None]]] = [
    (
        "add optional field to open model",
        OPEN_A,
        obj({"a": STR, "b": STR}),
        {B: "property 'b' added to an open content model", F: None, FULL: "open content"},
    ),
    (
        "add optional field to closed model",
        CLOSED_A,
        obj({"a": STR, "b": STR}, additional=False),
        {B: None, F: "property 'b' removed from a closed content model", FULL: "closed"},
    ),
    (
        "add required field to closed model",
        CLOSED_A,
        obj({"a": STR, "b": STR}, ("b",), additional=False),
        {B: "property 'b' added to required", F: "closed content model", FULL: "required"},
    ),
    (
        "add required field to open model",
        OPEN_A,
        obj({"a": STR, "b": STR}, ("b",)),
        {B: "added to required", F: None, FULL: "added to required"},
    ),
    (
        "remove optional field from open model",
        obj({"a": STR, "b": STR}),
        OPEN_A,
        {B: None, F: "property 'b' added to an open content model", FULL: "open"},
    ),
    (
        "remove optional field from closed model",
        obj({"a": STR, "b": STR}, additional=False),
        CLOSED_A,
        {B: "property 'b' removed from a closed content model", F: None, FULL: "closed"},
    ),
    (
        "remove required field from open model",
        obj({"a": STR, "b": STR}, ("b",)),
        OPEN_A,
        {B: None, F: "property 'b' added to required", FULL: "required"},
    ),
    (
        "make optional field required",
        OPEN_A,
        obj({"a": STR}, ("a",)),
        {B: "property 'a' added to required", F: None, FULL: "required"},
    ),
    (
        "widen integer to number",
        obj({"age": INT}),
        obj({"age": NUM}),
        {B: None, F: "/properties/age: type narrowed from [number] to [integer]", FULL: "age"},
    ),
    (
        "narrow number to integer",
        obj({"age": NUM}),
        obj({"age": INT}),
        {B: "/properties/age: type narrowed from [number] to [integer]", F: None, FULL: "age"},
    ),
    (
        "widen string to string-or-null",
        obj({"a": STR}),
        obj({"a": {"type": ["string", "null"]}}),
        {B: None, F: "type narrowed from [null, string] to [string]", FULL: "narrowed"},
    ),
    (
        "enum grows",
        {"enum": ["a", "b"]},
        {"enum": ["a", "b", "c"]},
        {B: None, F: 'enum value "c" removed', FULL: "removed"},
    ),
    (
        "enum shrinks",
        {"enum": ["a", "b", "c"]},
        {"enum": ["a", "b"]},
        {B: 'enum value "c" removed', F: None, FULL: "removed"},
    ),
    (
        "open model closed",
        OPEN_A,
        CLOSED_A,
        {B: "/additionalProperties: content model closed", F: None, FULL: "closed"},
    ),
    (
        "closed model opened",
        CLOSED_A,
        OPEN_A,
        {B: None, F: "content model closed", FULL: "closed"},
    ),
    (
        "add property covered by partially open model",
        obj({"a": STR}, additional=STR),
        obj({"a": STR, "b": STR}, additional=STR),
        {B: None, F: None, FULL: None},
    ),
    (
        "add property not covered by partially open model",
        obj({"a": STR}, additional=STR),
        obj({"a": STR, "b": INT}, additional=STR),
        {B: "/properties/b: type narrowed from [string] to [integer]", F: "narrowed"},
    ),
    (
        "only annotations change",
        obj({"a": STR}),
        obj({"a": {**STR, "description": "the a", "examples": ["x"]}}, additional=True),
        {B: None, F: None, FULL: None},
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "mode", "expected"),
    [
        pytest.param(old, new, mode, expected, id=f"{case}-{mode.value}")
        for case, old, new, outcomes in EVOLUTIONS
        for mode, expected in outcomes.items()
    ],
)
def test_modes(old: Any, new: Any, mode: CompatibilityMode, expected: str | None) -> None:
    found = check_compatibility(new, [old], mode)
    if expected is None:
        assert found == []
    else:
        assert any(expected in str(i) for i in found), [str(i) for i in found]


def test_none_mode_accepts_anything() -> None:
    assert check_compatibility({"type": "string"}, [{"type": "integer"}], "NONE") == []


def test_mode_names_are_case_insensitive_and_checked() -> None:
    assert check_compatibility(obj({"a": INT}), [obj({"a": NUM})], "forward") == []
    with pytest.raises(ValidationError, match="unknown compatibility mode 'SIDEWAYS'"):
        check_compatibility({}, [{}], "SIDEWAYS")


def test_first_version_is_always_compatible() -> None:
    assert check_compatibility({"type": "string"}, [], CompatibilityMode.FULL_TRANSITIVE) == []


def test_default_mode_is_backward() -> None:
    assert check_compatibility(obj({"a": INT}), [obj({"a": NUM})]) == check_compatibility(
        obj({"a": INT}), [obj({"a": NUM})], B
    )


def test_incompatibilities_name_direction_and_version() -> None:
    found = check_compatibility(obj({"age": INT}), [obj({"age": NUM})], B)
    assert found == [
        Incompatibility(
            "/properties/age", "type narrowed from [number] to [integer]", "backward", 1
        )
    ]
    assert found[0].describe() == (
        "the new schema cannot read data written with version 1: "
        "/properties/age: type narrowed from [number] to [integer]"
    )
    forward = check_compatibility(obj({"age": NUM}), [obj({"age": INT})], F)
    assert forward[0].describe().startswith("version 1 cannot read data written with the new")


def test_full_reports_both_directions() -> None:
    found = check_compatibility(obj({"a": STR}, ("a",)), [obj({"a": INT})], FULL)
    assert {i.direction for i in found} == {"backward", "forward"}


# History registered while the subject was NONE: v1 wrote strings, v2 integers.
V1 = obj({"id": STR, "qty": STR})
V2 = obj({"id": STR, "qty": INT})


@pytest.mark.parametrize(
    ("mode", "compatible"),
    [
        (CompatibilityMode.BACKWARD, True),
        (CompatibilityMode.BACKWARD_TRANSITIVE, False),
        (CompatibilityMode.FORWARD, True),
        (CompatibilityMode.FORWARD_TRANSITIVE, False),
        (CompatibilityMode.FULL, True),
        (CompatibilityMode.FULL_TRANSITIVE, False),
    ],
)
def test_only_transitive_modes_check_every_version(
    mode: CompatibilityMode, compatible: bool
) -> None:
    new = {**V2, "description": "v3: documentation only"}
    found = check_compatibility(new, [V1, V2], mode)
    assert (found == []) is compatible
    if not compatible:
        assert {i.version for i in found} == {1}
        assert all(i.path == "/properties/qty" for i in found)


def test_transitive_check_reports_each_broken_version() -> None:
    found = check_compatibility(obj({"qty": {"type": "boolean"}}), [V1, V2], "BACKWARD_TRANSITIVE")
    assert sorted({i.version for i in found if i.version}) == [1, 2]


# --- can_read: keyword by keyword ---------------------------------------------------------

# (case, reader, writer, expected reasons as "path: reason" strings; [] = compatible)
KEYWORDS: list[tuple[str, Any, Any, list[str]]] = [
    ("identical", obj({"a": STR}), obj({"a": STR}), []),
    ("true reads anything", True, {"type": "string"}, []),
    ("empty object reads anything", {}, obj({"a": INT}), []),
    ("anything reads false", {"type": "string"}, False, []),
    ("false reads nothing", False, {}, ["(root): schema is false: no value is accepted any more"]),
    (
        "constrained reader of true",
        {"type": "string"},
        True,
        ["(root): type narrowed from [any] to [string]"],
    ),
    ("type widened", {"type": ["string", "integer"]}, STR, []),
    ("integer is a number", NUM, INT, []),
    ("number is not an integer", INT, NUM, ["(root): type narrowed from [number] to [integer]"]),
    ("const to enum", {"enum": [1, 2]}, {"const": 1}, []),
    ("true is not 1", {"enum": [1]}, {"const": True}, ["(root): enum value true removed"]),
    ("1.0 is 1", {"enum": [1]}, {"const": 1.0}, []),
    (
        "enum added",
        STR | {"enum": ["a"]},
        STR,
        ['(root): enum ["a"] added, but the writer allows other values'],
    ),
    ("boolean is finite", {"enum": [True, False]}, {"type": "boolean"}, []),
    (
        "const narrows boolean",
        {"const": False},
        {"type": "boolean"},
        ["(root): value true no longer allowed by const false"],
    ),
    ("writer enum filtered by type", STR, {"type": "string", "enum": ["a", 1]}, []),
    (
        "minLength raised",
        STR | {"minLength": 2},
        STR | {"minLength": 1},
        ["(root): minLength raised from 1 to 2"],
    ),
    ("minLength lowered", STR | {"minLength": 1}, STR | {"minLength": 2}, []),
    (
        "maxLength added",
        STR | {"maxLength": 5},
        STR,
        ["(root): maxLength lowered from unbounded to 5"],
    ),
    ("maxLength dropped", STR, STR | {"maxLength": 5}, []),
    ("pattern added", STR | {"pattern": "^a"}, STR, ['(root): pattern "^a" added']),
    (
        "pattern changed",
        STR | {"pattern": "^a"},
        STR | {"pattern": "^ab"},
        ['(root): pattern changed from "^ab" to "^a"'],
    ),
    ("pattern kept", STR | {"pattern": "^a"}, STR | {"pattern": "^a", "minLength": 2}, []),
    ("pattern dropped", STR, STR | {"pattern": "^a"}, []),
    ("format added", STR | {"format": "email"}, STR, ['(root): format "email" added']),
    ("format ignored for non-strings", {"type": "integer", "format": "int32"}, INT, []),
    (
        "minimum raised",
        NUM | {"minimum": 1},
        NUM | {"minimum": 0},
        ["(root): minimum raised from >= 0 to >= 1"],
    ),
    (
        "minimum made exclusive",
        NUM | {"exclusiveMinimum": 0},
        NUM | {"minimum": 0},
        ["(root): minimum raised from >= 0 to > 0"],
    ),
    ("exclusive minimum loosened", NUM | {"minimum": 0}, NUM | {"exclusiveMinimum": 0}, []),
    (
        "maximum added",
        NUM | {"maximum": 10},
        NUM,
        ["(root): maximum lowered from unbounded to <= 10"],
    ),
    ("maximum raised", NUM | {"maximum": 10}, NUM | {"exclusiveMaximum": 10}, []),
    (
        "integer bounds round",
        INT | {"minimum": 1, "maximum": 9},
        INT | {"exclusiveMinimum": 0.5, "exclusiveMaximum": 10},
        [],
    ),
    (
        "number bounds do not round",
        NUM | {"minimum": 1},
        NUM | {"exclusiveMinimum": 0.5},
        ["(root): minimum raised from > 0.5 to >= 1"],
    ),
    ("multipleOf divides", NUM | {"multipleOf": 0.1}, NUM | {"multipleOf": 0.3}, []),
    (
        "multipleOf does not divide",
        NUM | {"multipleOf": 0.2},
        NUM | {"multipleOf": 0.3},
        ["(root): multipleOf changed from 0.3 to 0.2"],
    ),
    ("multipleOf added", NUM | {"multipleOf": 2}, NUM, ["(root): multipleOf 2 added"]),
    ("integers are multiples of 0.5", NUM | {"multipleOf": 0.5}, INT, []),
    (
        "items narrowed",
        {"type": "array", "items": INT},
        {"type": "array", "items": NUM},
        ["/items: type narrowed from [number] to [integer]"],
    ),
    (
        "minItems raised",
        {"type": "array", "minItems": 1},
        {"type": "array"},
        ["(root): minItems raised from 0 to 1"],
    ),
    (
        "maxItems lowered",
        {"type": "array", "maxItems": 2},
        {"type": "array", "maxItems": 3},
        ["(root): maxItems lowered from 3 to 2"],
    ),
    (
        "uniqueItems added",
        {"type": "array", "uniqueItems": True},
        {"type": "array"},
        ["(root): uniqueItems added"],
    ),
    (
        "tuple grows into items",
        {"type": "array", "prefixItems": [STR], "items": INT},
        {"type": "array", "prefixItems": [STR, INT], "items": False},
        [],
    ),
    (
        "tuple shrinks against closed items",
        {"type": "array", "prefixItems": [STR], "items": False},
        {"type": "array", "prefixItems": [STR, INT], "items": False},
        ["/items: schema is false: no value is accepted any more"],
    ),
    (
        "maxItems bounds the tuple",
        {"type": "array", "prefixItems": [STR], "items": False},
        {"type": "array", "prefixItems": [STR, INT], "maxItems": 1},
        [],
    ),
    (
        "draft-07 tuple",
        {"type": "array", "items": [STR], "additionalItems": NUM},
        {"type": "array", "items": [STR, INT], "additionalItems": False},
        [],
    ),
    (
        "nested object path",
        obj({"addr": obj({"zip": INT})}),
        obj({"addr": obj({"zip": NUM})}),
        ["/properties/addr/properties/zip: type narrowed from [number] to [integer]"],
    ),
    (
        "nested required path",
        obj({"addr": obj({"zip": STR}, ("zip",))}),
        obj({"addr": obj({"zip": STR})}),
        ["/properties/addr/required: property 'zip' added to required"],
    ),
    (
        "property names are escaped",
        obj({"a/b~c": INT}),
        obj({"a/b~c": NUM}),
        ["/properties/a~1b~0c: type narrowed from [number] to [integer]"],
    ),
    (
        "minProperties raised",
        {"type": "object", "minProperties": 1},
        {"type": "object"},
        ["(root): minProperties raised from 0 to 1"],
    ),
    (
        "dependentRequired added",
        {"type": "object", "dependentRequired": {"a": ["b"]}},
        {"type": "object"},
        ["/dependentRequired/a: property 'b' now required when 'a' is present"],
    ),
    (
        "dependentRequired implied by required",
        {"type": "object", "dependentRequired": {"a": ["b"]}},
        obj({}, ("b",)),
        [],
    ),
    (
        "patternProperties same patterns",
        {"type": "object", "patternProperties": {"^x_": NUM}},
        {"type": "object", "patternProperties": {"^x_": INT}},
        [],
    ),
    (
        "patternProperties narrowed",
        {"type": "object", "patternProperties": {"^x_": INT}},
        {"type": "object", "patternProperties": {"^x_": NUM}},
        ["/patternProperties/^x_: type narrowed from [number] to [integer]"],
    ),
    (
        "patternProperties new pattern",
        {"type": "object", "patternProperties": {"^y_": INT}},
        {"type": "object"},
        ["/patternProperties: cannot prove compatibility for keyword patternProperties"],
    ),
    (
        "declared property under a pattern",
        obj({"x_a": INT}, additional=False) | {"patternProperties": {"^x_": INT}},
        obj({}, additional=False) | {"patternProperties": {"^x_": INT}},
        [],
    ),
    (
        "ref to $defs",
        {"$defs": {"zip": INT}, "type": "object", "properties": {"zip": {"$ref": "#/$defs/zip"}}},
        obj({"zip": NUM}),
        ["/properties/zip: type narrowed from [number] to [integer]"],
    ),
    (
        "ref to definitions, both sides",
        {"definitions": {"z": STR}, "$ref": "#/definitions/z"},
        {"$defs": {"y": STR | {"minLength": 1}}, "$ref": "#/$defs/y"},
        [],
    ),
    (
        "same ref string, different targets",
        {"$defs": {"z": INT}, "$ref": "#/$defs/z"},
        {"$defs": {"z": NUM}, "$ref": "#/$defs/z"},
        ["(root): type narrowed from [number] to [integer]"],
    ),
    (
        "ref with siblings",
        {"$defs": {"z": STR}, "$ref": "#/$defs/z", "minLength": 2},
        STR,
        ["/allOf/1: minLength raised from 0 to 2"],
    ),
    (
        "dangling ref",
        {"$ref": "#/$defs/missing"},
        STR,
        ["(root): cannot prove compatibility for $ref '#/$defs/missing' (it does not resolve)"],
    ),
    (
        "remote ref",
        {"$ref": "https://example.com/s.json"},
        STR,
        [
            "(root): cannot prove compatibility for $ref 'https://example.com/s.json' (only local '#/' references are followed)"
        ],
    ),
    (
        "self-referencing ref",
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        STR,
        ["(root): cannot prove compatibility for $ref (it loops)"],
    ),
    (
        "anyOf nullable reads union",
        {"anyOf": [STR, {"type": "null"}]},
        {"type": ["string", "null"]},
        [],
    ),
    (
        "oneOf nullable reads union",
        {"oneOf": [STR, {"type": "null"}]},
        {"type": ["string", "null"]},
        [],
    ),
    ("union reads anyOf", {"type": ["string", "null"]}, {"anyOf": [STR, {"type": "null"}]}, []),
    ("anyOf widened", {"anyOf": [STR, INT]}, STR, []),
    (
        "anyOf without a home",
        {"anyOf": [STR, INT]},
        {"type": "array"},
        ["/anyOf: cannot prove compatibility for keyword anyOf"],
    ),
    (
        "oneOf with overlapping branches",
        {"oneOf": [NUM, INT]},
        INT,
        ["/oneOf: cannot prove compatibility for keyword oneOf"],
    ),
    (
        "reader allOf",
        {"allOf": [STR, {"minLength": 1}]},
        STR,
        ["/allOf/1: minLength raised from 0 to 1"],
    ),
    ("writer allOf", STR, {"allOf": [STR, {"minLength": 1}]}, []),
    ("writer anyOf", {"type": ["string", "integer"]}, {"anyOf": [STR, INT]}, []),
    (
        "writer anyOf escapes",
        STR,
        {"anyOf": [STR, INT]},
        ["(root): type narrowed from [any] to [string]"],
    ),
    ("not identical", {"not": {"type": "null"}}, {"not": {"type": "null"}, "minLength": 1}, []),
    (
        "not added",
        {"not": {"type": "null"}},
        STR,
        ["/not: cannot prove compatibility for keyword not"],
    ),
    (
        "if/then/else changed",
        {"if": STR, "then": {"minLength": 1}},
        {"if": STR, "then": {"minLength": 2}},
        ["/if: cannot prove compatibility for keyword if"],
    ),
    (
        "if/then/else same",
        {"if": STR, "then": {"minLength": 1}, "title": "new"},
        {"if": STR, "then": {"minLength": 1}, "maxLength": 9},
        [],
    ),
    (
        "unevaluatedProperties",
        obj({"a": STR}) | {"unevaluatedProperties": False},
        obj({"a": STR, "b": STR}) | {"unevaluatedProperties": False},
        ["/unevaluatedProperties: cannot prove compatibility for keyword unevaluatedProperties"],
    ),
]


@pytest.mark.parametrize(
    ("reader", "writer", "expected"),
    [pytest.param(r, w, e, id=case) for case, r, w, e in KEYWORDS],
)
def test_can_read(reader: Any, writer: Any, expected: list[str]) -> None:
    assert [str(i) for i in can_read(reader, writer)] == expected


TREE_INT = {
    "$defs": {
        "node": obj({"v": INT, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}})
    },
    "$ref": "#/$defs/node",
}
TREE_NUM = {
    "$defs": {
        "node": obj({"v": NUM, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}})
    },
    "$ref": "#/$defs/node",
}


def test_recursive_schemas() -> None:
    assert can_read(TREE_NUM, TREE_INT) == []
    assert can_read(TREE_INT, TREE_INT | {"title": "x"}) == []
    found = [str(i) for i in can_read(TREE_INT, TREE_NUM)]
    assert found[0] == "/properties/v: type narrowed from [number] to [integer]"


# --- soundness: whatever can_read accepts really is readable --------------------------------

scalar_schemas = st.one_of(
    st.sampled_from([STR, INT, NUM, {"type": "null"}, {"type": "boolean"}, {}, True, False]),
    st.builds(lambda n: {"type": "integer", "minimum": n}, st.integers(-2, 2)),
    st.builds(lambda n: {"type": "number", "exclusiveMaximum": n}, st.integers(-2, 2)),
    st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(0, 2)),
    st.builds(
        lambda v: {"enum": v},
        st.lists(st.sampled_from(["a", "b", 1, 2.5, None, True]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda a, b: {"anyOf": [a, b]},
        st.sampled_from([STR, INT, {"type": "null"}]),
        st.sampled_from([STR, NUM]),
    ),
)
schemas = st.recursive(
    scalar_schemas,
    lambda inner: st.one_of(
        st.builds(
            lambda props, req, add: {
                "type": "object",
                "properties": props,
                "required": sorted(req & set(props)),
                "additionalProperties": add,
            },
            st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
            st.sets(st.sampled_from("abc")),
            st.one_of(st.booleans(), inner),
        ),
        st.builds(
            lambda items, n: {"type": "array", "items": items, "maxItems": n},
            inner,
            st.integers(0, 3),
        ),
    ),
    max_leaves=4,
)
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from([2.5, -0.5]),
        st.sampled_from(["", "a", "b", "abc"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abcd"), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas, schemas, st.lists(values, min_size=1, max_size=8))
def test_accepted_changes_never_reject_writer_data(
    reader: Any, writer: Any, data: list[Any]
) -> None:
    if can_read(reader, writer):
        return
    read, write = Draft202012Validator(reader), Draft202012Validator(writer)
    for value in data:
        if write.is_valid(value):
            assert read.is_valid(value), (reader, writer, value)


@settings(max_examples=100, deadline=None)
@given(schemas)
def test_every_schema_reads_itself(schema: Any) -> None:
    assert can_read(schema, schema) == []
    assert can_read(schema, False) == []
    assert can_read(True, schema) == []


# --- validate_schema_document -------------------------------------------------------------


def test_valid_documents() -> None:
    validate_schema_document(TREE_INT)
    validate_schema_document(True)
    validate_schema_document(
        obj({"a": STR}) | {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    )


@pytest.mark.parametrize(
    ("schema", "pointer"),
    [
        (obj({"a": {"type": "strin"}}), "/properties/a/type"),
        ({"type": "object", "required": "a"}, "/required"),
        ({"minLength": -1}, "/minLength"),
        ({"pattern": "("}, "/pattern"),
        (42, "(root)"),
        (obj({"a": {"$ref": "#/$defs/missing"}}), "/properties/a/$ref"),
        ({"items": {"$ref": "https://example.com/other.json"}}, "/items/$ref"),
        ({"$defs": {"x~y": {"$ref": "#/nope"}}}, "/$defs/x~0y/$ref"),
    ],
)
def test_invalid_documents_point_at_the_problem(schema: Any, pointer: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_schema_document(schema)
    assert info.value.message.startswith(f"invalid JSON Schema at {pointer}: ")
    assert info.value.problems[0].loc[0] == "schema"


def test_refs_inside_values_are_not_references() -> None:
    validate_schema_document({"const": {"$ref": "https://example.com/not-a-ref"}})
