"""Expression engines behind one small interface.

* SIMPLE field mappings, JSONata expressions and sandboxed JavaScript (SCRIPT) compile to a
  :class:`Transformer` -- ``transform(value, context) -> value`` -- through
  :func:`compile_transformer` (or the per-engine ``compile_*``).
* CEL content filters compile to a :class:`Predicate` -- ``matches(event) -> bool`` --
  through :func:`compile_filter`.

Compiling validates (``ExpressionCompileError``: 400, with the location in the message and
``problems``); evaluating fails with ``ExpressionRuntimeError`` (non-retryable). Compiled
objects are immutable and thread-safe; keep them in an :class:`ExpressionCache`. Nothing
here does I/O or keeps global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from .base import (
    DEFAULT_LIMITS,
    EMPTY_CONTEXT,
    Limits,
    Loc,
    LookupResolver,
    Predicate,
    TransformationMode,
    Transformer,
    compile_error,
)
from .cache import ExpressionCache
from .cel import CelPredicate, compile_cel
from .jsonata import DEFAULT_ENGINE, JsonataEngine, JsonataTransformer, compile_jsonata
from .paths import MISSING
from .script import ScriptTransformer, compile_script
from .simple import FieldMapping, SimpleTransformer, compile_simple

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_LIMITS",
    "EMPTY_CONTEXT",
    "MISSING",
    "CelPredicate",
    "ExpressionCache",
    "FieldMapping",
    "JsonataEngine",
    "JsonataTransformer",
    "Limits",
    "LookupResolver",
    "Predicate",
    "ScriptTransformer",
    "SimpleTransformer",
    "TransformationMode",
    "Transformer",
    "compile_cel",
    "compile_filter",
    "compile_jsonata",
    "compile_script",
    "compile_simple",
    "compile_transformer",
    "parse_mode",
]

_DEFAULT_LOC: Mapping[TransformationMode, Loc] = MappingProxyType(
    {
        TransformationMode.SIMPLE: ("fieldMappings",),
        TransformationMode.SCRIPT: ("transformScript",),
        TransformationMode.JSONATA: ("transformScript",),
    }
)


def parse_mode(
    mode: TransformationMode | str, loc: Loc = ("transformationMode",)
) -> TransformationMode:
    """``SIMPLE`` | ``SCRIPT`` | ``JSONATA`` (any case); otherwise ``ExpressionCompileError``."""
    try:
        return TransformationMode(mode.strip().upper() if isinstance(mode, str) else mode)
    except ValueError:
        allowed = ", ".join(m.value for m in TransformationMode)
        raise compile_error(loc, f"must be one of {allowed}, not {mode!r}") from None


def compile_transformer(
    mode: TransformationMode | str,
    config: Sequence[FieldMapping | Mapping[str, Any]] | str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    lookups: LookupResolver | None = None,
    jsonata_engine: JsonataEngine | str | None = None,
    loc: Loc | None = None,
) -> Transformer:
    """Compile a transformation.

    ``config`` is the list of field mappings (JSON form or :class:`FieldMapping`) for
    SIMPLE, the script for SCRIPT, the expression for JSONATA. ``loc`` prefixes error
    locations; by default ``fieldMappings`` for SIMPLE and ``transformScript`` for SCRIPT
    and JSONATA (the expression travels in the same field; the mode says how to read it).
    """
    chosen = parse_mode(mode)
    where = loc if loc is not None else _DEFAULT_LOC[chosen]
    if chosen is TransformationMode.SIMPLE:
        if isinstance(config, str):
            raise compile_error(where, "SIMPLE mode needs a list of field mappings")
        return compile_simple(config, lookups=lookups, loc=where)
    if not isinstance(config, str):
        raise compile_error(where, f"{chosen.value} mode needs the expression text")
    if chosen is TransformationMode.SCRIPT:
        return compile_script(config, limits=limits, loc=where)
    return compile_jsonata(config, limits=limits, engine=jsonata_engine, loc=where)


def compile_filter(expression: str, *, loc: Loc = ("filter",)) -> Predicate:
    """Compile a CEL content filter over ``event``."""
    return compile_cel(expression, loc=loc)
