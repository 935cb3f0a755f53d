"""Content filters: a CEL expression over the event, compiled once.

The event (a JSON-shaped mapping, e.g. ``{"type", "tenantId", "payload", ...}``) is bound
as ``event``::

    event.type == "order.created" && event.payload.total > 100
    has(event.payload.vip) && event.payload.vip
    event.payload.tags.exists(t, t == "urgent")

The result must be a boolean: anything else (``1``, ``"yes"``, ``null``) is an
``ExpressionRuntimeError``, never truthiness. Reading a missing key is an error in CEL, so
guard optional fields with ``has()``. Syntax errors are reported with line and column.
Unknown functions are only detected when evaluated (the binding exposes no checker); a
filter without variables is evaluated at compile time, so ``1 + 1`` is rejected at save.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cel

from junctionbox.errors import ExpressionRuntimeError

from .base import Loc, compile_error, short

_ERROR_LINE: Final = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")


@dataclass(frozen=True, slots=True)
class CelPredicate:
    """A compiled CEL filter. Thread-safe."""

    source: str
    _program: cel.Program = field(repr=False, compare=False)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return _as_bool(self.evaluate(event))

    def evaluate(self, event: Mapping[str, Any]) -> Any:
        """The raw CEL value of the expression (for previews in the console)."""
        data = event if isinstance(event, dict) else dict(event)
        try:
            return self._program.execute({"event": data})
        except Exception as exc:
            raise ExpressionRuntimeError(f"CEL filter failed: {_runtime_message(exc)}") from exc


def _as_bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise ExpressionRuntimeError(
        f"CEL filter must return a boolean, got {type(value).__name__} {short(value, 40)}"
    )


def _runtime_message(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such key {exc.args[0]!r} (guard optional fields with has())"
    text = str(exc).strip()
    return text or type(exc).__name__


def compile_cel(expression: str, *, loc: Loc = ("filter",)) -> CelPredicate:
    """Compile a CEL filter; a syntax error raises ``ExpressionCompileError`` with one
    problem per error found, each with its line and column."""
    if not isinstance(expression, str) or not expression.strip():
        raise compile_error(loc, "a CEL expression is required")
    try:
        program = cel.compile(expression)
    except Exception as exc:
        found = _ERROR_LINE.findall(str(exc))
        if not found:
            raise compile_error(loc, f"CEL syntax error: {str(exc).strip()}") from exc
        messages = [f"CEL {msg.strip()} at line {ln}, column {col}" for ln, col, msg in found]
        raise compile_error(
            loc, messages[0], more=[(loc, message) for message in messages[1:]]
        ) from exc
    predicate = CelPredicate(expression, program)
    if not program.variables():
        try:
            _as_bool(program.execute({}))
        except Exception as exc:
            message = str(exc) if isinstance(exc, ExpressionRuntimeError) else _runtime_message(exc)
            raise compile_error(loc, f"CEL constant expression: {message}") from exc
    return predicate
