"""The small interface every expression engine sits behind, and the helpers they share.

* :class:`Transformer` -- ``transform(value, context) -> value``: SIMPLE field mappings,
  JSONata expressions and sandboxed JavaScript all compile to one of these.
* :class:`Predicate` -- ``matches(event) -> bool``: CEL content filters.
* :class:`LookupResolver` -- the port the SIMPLE ``lookup`` transformer reads through; the
  service layer implements it over its (cached) lookup tables, so ``expr`` stays pure.
* :class:`Limits` -- per-evaluation resource limits for the engines that can run away.

Engines validate at compile time (``compile_*`` raise :class:`ExpressionCompileError`, a
400 whose message and ``problems`` carry the location) and fail at run time with
:class:`ExpressionRuntimeError` (a transformation failure: never retried).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

import orjson

from junctionbox.errors import (
    ConfigurationError,
    ExpressionCompileError,
    ExpressionRuntimeError,
    FieldProblem,
)

Loc = tuple[str | int, ...]
"""Where an expression lives in the request that carried it, e.g. ``("body", "filter")``."""

EMPTY_CONTEXT: Final[Mapping[str, Any]] = MappingProxyType({})
"""The context passed when the caller has none (read-only, so sharing it is safe)."""


class TransformationMode(StrEnum):
    """``transformationMode`` of seed 003, plus JSONata."""

    SIMPLE = "SIMPLE"
    SCRIPT = "SCRIPT"
    JSONATA = "JSONATA"


@runtime_checkable
class Transformer(Protocol):
    """A compiled transformation. Thread-safe; evaluate as often as you like."""

    def transform(self, value: Any, context: Mapping[str, Any] = EMPTY_CONTEXT) -> Any:
        """Return the transformed value; raise ``ExpressionRuntimeError`` on failure.

        ``value`` is JSON-shaped data (the event payload; for scheduled jobs
        ``{"data": rows, "metadata": {...}}``). ``context`` is JSON-shaped metadata about
        the run (tenant, integration, event id ...), visible to SCRIPT as ``context`` and to
        JSONata as ``$context``.
        """
        ...


@runtime_checkable
class Predicate(Protocol):
    """A compiled boolean filter over an event. Thread-safe."""

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True if the event passes; ``ExpressionRuntimeError`` if it cannot be decided."""
        ...


class LookupResolver(Protocol):
    """Resolves a lookup-table entry, synchronously (the service layer caches the tables).

    Returns ``None`` on a miss. Exceptions it raises propagate unchanged, so that a store
    outage keeps its own (retryable) classification instead of becoming a transform error.
    """

    def resolve(self, lookup_type: str, key: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-evaluation limits.

    ``time_limit`` (seconds) applies to SCRIPT and JSONata. QuickJS measures it as process
    CPU time (``clock()``), so under CPU contention from other threads a script is cut off
    sooner, never later. ``memory_limit`` and ``stack_limit`` (bytes) bound the QuickJS heap
    and stack; ``max_depth`` bounds JSONata recursion (jsonata-python engine; jsonata2py
    relies on Python's recursion limit). Pure-Python engines cannot bound memory.
    """

    time_limit: float = 1.0
    memory_limit: int = 64 * 1024 * 1024
    stack_limit: int = 512 * 1024
    max_depth: int = 250

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_limit) and self.time_limit > 0):
            raise ConfigurationError(f"time_limit must be a positive number, not {self.time_limit}")
        if self.memory_limit < 1024 * 1024:
            raise ConfigurationError(
                f"memory_limit must be at least 1 MiB, not {self.memory_limit}"
            )
        if self.stack_limit < 64 * 1024:
            raise ConfigurationError(f"stack_limit must be at least 64 KiB, not {self.stack_limit}")
        if self.max_depth < 10:
            raise ConfigurationError(f"max_depth must be at least 10, not {self.max_depth}")

    @property
    def time_limit_ms(self) -> int:
        return max(1, round(self.time_limit * 1000))


DEFAULT_LIMITS: Final = Limits()


def compile_error(
    loc: Loc, message: str, *, more: Sequence[tuple[Loc, str]] = ()
) -> ExpressionCompileError:
    """An ``ExpressionCompileError`` whose ``problems`` point at ``loc``."""
    problems = [FieldProblem(loc, message), *(FieldProblem(lc, msg) for lc, msg in more)]
    where = ".".join(str(part) for part in loc)
    text = f"{where}: {message}" if where else message
    if more:
        text += f" (and {len(more)} more problem{'s' if len(more) > 1 else ''})"
    return ExpressionCompileError(text, problems=problems)


def runtime_error(message: str) -> ExpressionRuntimeError:
    return ExpressionRuntimeError(message)


def to_json_value(value: Any, what: str = "result") -> Any:
    """Copy ``value`` into plain JSON types (dict/list/str/int/float/bool/None).

    Engines return list subclasses or even functions; downstream code (signing, orjson)
    needs plain data. A round trip through orjson (~0.6 µs for a small object) is both the
    check and the copy. Raises ``ExpressionRuntimeError`` for anything that is not JSON.
    """
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise runtime_error(f"{what} is not JSON data ({exc})") from exc


def short(value: Any, limit: int = 80) -> str:
    """A short, log-safe rendering of a value for error messages."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
