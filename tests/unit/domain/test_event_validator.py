"""The compiled validator publishing uses: JSON pointers to what failed, at most ten errors."""

from __future__ import annotations

import pytest

from junctionbox.domain.event_validator import MAX_ERRORS, EventValidator
from junctionbox.errors import ValidationError

SCHEMA = {
    "type": "object",
    "required": ["patient"],
    "properties": {
        "patient": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "email": {"format": "email"}},
        },
        "lines": {
            "type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer"}}},
        },
        "a/b~c": {"type": "integer"},
    },
}


def test_valid_data_has_no_errors() -> None:
    validator = EventValidator("order.created", 3, SCHEMA)
    assert (validator.event_type, validator.version) == ("order.created", 3)
    assert validator.errors({"patient": {"name": "Ann"}, "lines": [{"qty": 1}]}) == []


def test_pointers_name_the_failing_member() -> None:
    validator = EventValidator("t", 1, SCHEMA)
    assert validator.errors({}) == [("/patient", '"patient" is a required property')]
    errors = validator.errors({"patient": {}, "lines": [{"qty": 1}, {"qty": "2"}], "a/b~c": "x"})
    pointers = sorted(p for p, _ in errors)
    assert pointers == ["/a~1b~0c", "/lines/1/qty", "/patient/name"]
    assert dict(errors)["/lines/1/qty"] == '"2" is not of type "integer"'


def test_format_is_asserted() -> None:
    validator = EventValidator("t", 1, SCHEMA)
    assert [p for p, _ in validator.errors({"patient": {"name": "A", "email": "nope"}})] == [
        "/patient/email"
    ]


def test_errors_are_capped_and_messages_shortened() -> None:
    validator = EventValidator("t", 1, {"type": "array", "items": {"type": "string"}})
    errors = validator.errors(list(range(50)))
    assert len(errors) == MAX_ERRORS
    assert errors[0] == ("/0", '0 is not of type "string"')
    long = EventValidator("t", 1, {"type": "string"}).errors({"k": "x" * 5000})
    assert len(long) == 1
    assert len(long[0][1]) <= 200
    assert long[0][1].endswith("…")


def test_data_that_is_not_json() -> None:
    errors = EventValidator("t", 1, {"type": "array"}).errors({1, 2})
    assert errors[0][0] == ""
    assert "not JSON data" in errors[0][1]


def test_a_schema_the_engine_cannot_compile_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="cannot be compiled"):
        EventValidator("t", 1, {"type": "string", "pattern": "(unclosed"})


def test_remote_references_are_never_fetched() -> None:
    with pytest.raises(ValidationError):
        EventValidator("t", 1, {"$ref": "https://example.com/schema.json"})
