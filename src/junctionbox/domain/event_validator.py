"""A compiled validator for one version of an event type's schema: built once, used per event.

jsonschema-rs (about 1 µs per small event) on the hot path. Schemas are read as draft
2020-12, as the registry checks them, with ``format`` asserted, as the compatibility checker
assumes; references are never fetched (the registry admits only local ones anyway).
"""

from __future__ import annotations

from typing import Any, Final

import jsonschema_rs

from junctionbox.errors import FieldProblem, ValidationError

MAX_ERRORS: Final = 10
_MAX_MESSAGE: Final = 200  # messages quote the failing value, which may be large


class EventValidator:
    """Validates event data against one schema version; ``errors`` is empty when valid."""

    __slots__ = ("_validator", "event_type", "version")

    def __init__(self, event_type: str, version: int, schema: Any) -> None:
        self.event_type = event_type
        self.version = version
        try:
            self._validator = jsonschema_rs.Draft202012Validator(
                schema, validate_formats=True, offline=True
            )
        except ValueError as exc:
            # The registry checks schemas with the jsonschema package first; a regular
            # expression the Rust engine cannot compile is the known way to get here.
            message = f"the schema cannot be compiled: {_short(str(exc).splitlines()[0])}"
            raise ValidationError(message, problems=[FieldProblem(("schema",), message)]) from exc

    def errors(self, value: Any) -> list[tuple[str, str]]:
        """(JSON pointer into ``value``, message) of at most ``MAX_ERRORS`` failures."""
        try:
            if self._validator.is_valid(value):
                return []
            found: list[tuple[str, str]] = []
            for error in self._validator.iter_errors(value):
                found.append((_pointer(error), _short(error.message)))
                if len(found) >= MAX_ERRORS:
                    break
            return found
        except ValueError as exc:  # not JSON data (a set, bytes, NaN ...)
            return [("", _short(f"not JSON data: {exc}"))]

    def __repr__(self) -> str:
        return f"EventValidator({self.event_type!r}, version={self.version})"


def _pointer(error: jsonschema_rs.ValidationError) -> str:
    location: list[str | int] = list(error.instance_path)
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        location.append(kind.property)  # point at the missing member, not its parent
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in location)


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
