"""SIMPLE transformations (seed 003): field mappings with built-in transformers.

A mapping in its JSON form (camelCase, as stored in ``fieldMappings`` /
``requestFieldMappings`` / ``responseFieldMappings``)::

    {"sourceField": "patient.name", "targetField": "customer.fullName",
     "transform": "trim" | ["trim", "upper"], "transformOptions": {...},
     "format": "DD/MM/YYYY", "defaultValue": "n/a", "staticValue": "v1",
     "lookupType": "GENDER"}

Semantics, applied in list order to build a fresh output object:

* ``sourceField`` / ``targetField`` are dot paths (see :mod:`junctionbox.expr.paths`):
  nested objects, ``items[]`` for every element, ``items.0`` / ``items[0]`` / ``items[-1]``
  for one. With ``[]`` in the source, transformers and defaults apply per element; the
  target may spread the list again with ``[]`` (at most as many ``[]`` as the source).
* ``staticValue`` writes a constant (instead of ``sourceField``).
* ``transform`` runs one transformer or a chain: ``trim``, ``upper``, ``lower`` (strings
  only; other values pass unchanged), ``date`` (see :mod:`junctionbox.expr.dates`; options
  ``format`` -- also accepted at the top level --, ``inputFormat``, ``timezone``),
  ``default`` (replaces null, a missing value or ``""`` with ``transformOptions.value``,
  else ``defaultValue``) and ``lookup`` (resolves the value in the ``lookupType`` table;
  on a miss ``transformOptions.onMiss`` decides: ``passthrough`` keeps the value, ``null``,
  ``default`` uses ``defaultValue``, ``error`` fails; unset means ``default`` when the
  mapping has a ``defaultValue``, else ``passthrough``).
* ``defaultValue`` finally replaces a missing or null result.
* A missing source with no default leaves the target out (JSON ``undefined``); inside a
  spread array it becomes ``null`` so elements stay aligned.
* An empty mapping list passes the payload through unchanged (a copy).

Unknown keys in a mapping are ignored (consoles add ``id``, ``description`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from junctionbox.errors import ExpressionRuntimeError

from .base import EMPTY_CONTEXT, Loc, LookupResolver, compile_error, short
from .dates import (
    DateError,
    DateTransform,
    compile_format,
    compile_input_format,
    load_timezone,
)
from .paths import (
    MISSING,
    AssignError,
    Index,
    Key,
    Path,
    PathError,
    assign,
    copy_json,
    parse_path,
)

TRANSFORMS: Final = ("trim", "upper", "lower", "date", "default", "lookup")
ON_MISS: Final = ("passthrough", "null", "default", "error")
_NO_TRANSFORM: Final = frozenset({"", "none"})


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """One SIMPLE mapping (attribute names snake_case; JSON form camelCase, see module doc).

    ``default_value`` / ``static_value`` are :data:`MISSING` when not set (``null`` is a
    legitimate value for both).
    """

    target_field: str
    source_field: str | None = None
    transform: tuple[str, ...] = ()
    transform_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    format: str | None = None
    default_value: Any = field(default=MISSING, hash=False)
    static_value: Any = field(default=MISSING, hash=False)
    lookup_type: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], loc: Loc = ()) -> FieldMapping:
        """Validate the JSON form; raise ``ExpressionCompileError`` pointing at the bad key."""
        problems: list[tuple[Loc, str]] = []
        mapping = _mapping_from_json(data, loc, problems)
        if problems or mapping is None:
            raise compile_error(problems[0][0], problems[0][1], more=problems[1:])
        return mapping

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.source_field is not None:
            out["sourceField"] = self.source_field
        out["targetField"] = self.target_field
        if self.transform:
            out["transform"] = (
                self.transform[0] if len(self.transform) == 1 else list(self.transform)
            )
        if self.transform_options:
            out["transformOptions"] = dict(self.transform_options)
        if self.format is not None:
            out["format"] = self.format
        if self.default_value is not MISSING:
            out["defaultValue"] = self.default_value
        if self.static_value is not MISSING:
            out["staticValue"] = self.static_value
        if self.lookup_type is not None:
            out["lookupType"] = self.lookup_type
        return out


def _opt_str(
    data: Mapping[str, Any], key: str, loc: Loc, problems: list[tuple[Loc, str]]
) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(((*loc, key), f"must be a string, not {type(value).__name__}"))
        return None
    return value


def _mapping_from_json(data: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> FieldMapping | None:
    if not isinstance(data, Mapping):
        problems.append((loc, f"a field mapping must be an object, not {type(data).__name__}"))
        return None
    before = len(problems)
    target = _opt_str(data, "targetField", loc, problems)
    if (target is None or not target.strip()) and len(problems) == before:
        problems.append(((*loc, "targetField"), "is required"))
    source = _opt_str(data, "sourceField", loc, problems)
    if source is not None and not source.strip():
        source = None  # consoles send "" for "no source"
    raw_transform = data.get("transform")
    transforms: tuple[str, ...] = ()
    if isinstance(raw_transform, str):
        transforms = () if raw_transform.strip().lower() in _NO_TRANSFORM else (raw_transform,)
    elif isinstance(raw_transform, list) and all(isinstance(t, str) for t in raw_transform):
        transforms = tuple(t for t in raw_transform if t.strip().lower() not in _NO_TRANSFORM)
    elif raw_transform is not None:
        problems.append(((*loc, "transform"), "must be a transformer name or a list of names"))
    options = data.get("transformOptions")
    if options is None:
        options = {}
    elif not isinstance(options, Mapping):
        problems.append(((*loc, "transformOptions"), "must be an object"))
        options = {}
    fmt = _opt_str(data, "format", loc, problems)
    lookup_type = _opt_str(data, "lookupType", loc, problems)
    if len(problems) > before or target is None:
        return None
    return FieldMapping(
        target_field=target.strip(),
        source_field=source.strip() if source is not None else None,
        transform=tuple(t.strip().lower() for t in transforms),
        transform_options=dict(options),
        format=fmt,
        default_value=data.get("defaultValue", MISSING),
        static_value=data.get("staticValue", MISSING),
        lookup_type=lookup_type,
    )


Step = Callable[[Any], Any]


class _StepError(Exception):
    pass


def _trim(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


_STRING_STEPS: Final[Mapping[str, Step]] = MappingProxyType(
    {"trim": _trim, "upper": _upper, "lower": _lower}
)


def _lookup_key(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise _StepError(f"lookup key must be a string or number, not {short(value)}")


@dataclass(frozen=True, slots=True)
class _CompiledMapping:
    index: int
    mapping: FieldMapping
    source: Path | None
    target: Path
    steps: tuple[Step, ...]

    def value_for(self, payload: Any) -> Any:
        m = self.mapping
        if m.static_value is not MISSING:
            return m.static_value
        if self.source is None:
            return self._leaf(MISSING)
        value = self.source.get(payload)
        return self._spread(value, self.source.wildcards)

    def _spread(self, value: Any, depth: int) -> Any:
        if depth == 0:
            return self._leaf(value)
        if not isinstance(value, list):
            return MISSING
        return [self._spread(item, depth - 1) for item in value]

    def _leaf(self, value: Any) -> Any:
        for step in self.steps:
            value = step(value)
        if (value is MISSING or value is None) and self.mapping.default_value is not MISSING:
            return self.mapping.default_value
        return value

    def describe(self) -> str:
        m = self.mapping
        src = m.source_field if m.source_field is not None else "static"
        return f"fieldMappings[{self.index}] ({src} -> {m.target_field})"


@dataclass(frozen=True, slots=True)
class SimpleTransformer:
    """A compiled list of field mappings. Thread-safe; holds no per-call state."""

    mappings: tuple[FieldMapping, ...]
    _compiled: tuple[_CompiledMapping, ...] = field(repr=False)

    @property
    def lookup_types(self) -> frozenset[str]:
        """The lookup tables this transformation reads (to preload them)."""
        types: set[str] = set()
        for m in self.mappings:
            if "lookup" in m.transform:
                lookup_type = m.lookup_type or m.transform_options.get("lookupType")
                if isinstance(lookup_type, str):
                    types.add(lookup_type)
        return frozenset(types)

    def transform(self, value: Any, context: Mapping[str, Any] = EMPTY_CONTEXT) -> Any:
        if not self._compiled:
            return copy_json(value)
        out: dict[str, Any] = {}
        for cm in self._compiled:
            try:
                assign(out, cm.target, cm.value_for(value))
            except (_StepError, AssignError, DateError) as exc:
                raise ExpressionRuntimeError(f"{cm.describe()}: {exc}") from exc
        return out


def compile_simple(
    mappings: Sequence[FieldMapping | Mapping[str, Any]],
    *,
    lookups: LookupResolver | None = None,
    loc: Loc = ("fieldMappings",),
) -> SimpleTransformer:
    """Validate and compile SIMPLE mappings (objects in JSON form, or FieldMapping).

    Every problem is reported at once (``problems`` on the ``ExpressionCompileError``, each
    located as ``(*loc, index, key)``). ``lookups`` resolves the ``lookup`` transformer; a
    transformation using ``lookup`` without one fails at run time, so the API can validate a
    configuration without a resolver.
    """
    if isinstance(mappings, str | bytes) or not isinstance(mappings, Sequence):
        raise compile_error(loc, "must be a list of field mappings")
    problems: list[tuple[Loc, str]] = []
    parsed: list[FieldMapping] = []
    compiled: list[_CompiledMapping] = []
    for i, raw in enumerate(mappings):
        mloc = (*loc, i)
        mapping = raw if isinstance(raw, FieldMapping) else _mapping_from_json(raw, mloc, problems)
        if mapping is None:
            continue
        cm = _compile_mapping(i, mapping, mloc, lookups, problems)
        if cm is not None:
            parsed.append(mapping)
            compiled.append(cm)
    if problems:
        raise compile_error(problems[0][0], problems[0][1], more=problems[1:])
    return SimpleTransformer(tuple(parsed), tuple(compiled))


def _parse(text: str, loc: Loc, problems: list[tuple[Loc, str]]) -> Path | None:
    try:
        return parse_path(text)
    except PathError as exc:
        problems.append((loc, f"invalid path {text!r}: {exc}"))
        return None


def _compile_mapping(
    index: int,
    m: FieldMapping,
    loc: Loc,
    lookups: LookupResolver | None,
    problems: list[tuple[Loc, str]],
) -> _CompiledMapping | None:
    before = len(problems)
    target = _parse(m.target_field, (*loc, "targetField"), problems)
    source = (
        None if m.source_field is None else _parse(m.source_field, (*loc, "sourceField"), problems)
    )
    if m.source_field is not None and m.static_value is not MISSING:
        problems.append(((*loc, "staticValue"), "use either sourceField or staticValue, not both"))
    if m.source_field is None and m.static_value is MISSING and m.default_value is MISSING:
        problems.append(((*loc, "sourceField"), "is required (or give a staticValue)"))
    if target is not None:
        first = target.segments[0]
        if not isinstance(first, Key) or first.index is not None:
            problems.append(((*loc, "targetField"), "must start with a field name"))
        if any(isinstance(s, Index) and s.index < 0 for s in target.segments):
            problems.append(((*loc, "targetField"), "negative indexes cannot be written"))
        have = source.wildcards if source is not None else 0
        if target.wildcards > have:
            problems.append(
                (
                    (*loc, "targetField"),
                    f"has {target.wildcards} '[]' but the source has {have}: "
                    "a list can only be spread from a source list",
                )
            )
    steps = _compile_steps(m, loc, lookups, problems)
    if len(problems) > before or target is None or steps is None:
        return None
    return _CompiledMapping(index, m, source, target, steps)


def _compile_steps(
    m: FieldMapping,
    loc: Loc,
    lookups: LookupResolver | None,
    problems: list[tuple[Loc, str]],
) -> tuple[Step, ...] | None:
    steps: list[Step] = []
    opts = m.transform_options
    ok = True
    for raw_name in m.transform:
        name = raw_name.strip().lower()
        tloc = (*loc, "transform")
        if name in _STRING_STEPS:
            steps.append(_STRING_STEPS[name])
        elif name == "date":
            step = _date_step(m, loc, problems)
            ok = ok and step is not None
            if step is not None:
                steps.append(step)
        elif name == "default":
            fallback = opts.get("value", m.default_value)
            if fallback is MISSING:
                problems.append((tloc, "'default' needs transformOptions.value or defaultValue"))
                ok = False
            else:
                steps.append(_default_step(fallback))
        elif name == "lookup":
            step = _lookup_step(m, loc, lookups, problems)
            ok = ok and step is not None
            if step is not None:
                steps.append(step)
        else:
            problems.append(
                (tloc, f"unknown transformer {name!r}; use one of {', '.join(TRANSFORMS)}")
            )
            ok = False
    return tuple(steps) if ok else None


def _date_step(m: FieldMapping, loc: Loc, problems: list[tuple[Loc, str]]) -> Step | None:
    opts = m.transform_options
    values: dict[str, str | None] = {}
    locs: dict[str, Loc] = {}
    for key in ("format", "inputFormat", "timezone"):
        if key in opts:
            raw, locs[key] = opts[key], (*loc, "transformOptions", key)
        else:
            raw, locs[key] = (m.format if key == "format" else None), (*loc, key)
        if raw is not None and not isinstance(raw, str):
            problems.append((locs[key], "must be a string"))
            return None
        values[key] = raw
    try:
        key = "timezone"
        tz = load_timezone(values["timezone"])
        key = "format"
        formatter = compile_format(values["format"], has_timezone=tz is not None)
        key = "inputFormat"
        parser = compile_input_format(values["inputFormat"])
    except DateError as exc:
        problems.append((locs[key], str(exc)))
        return None
    transform = DateTransform(formatter, parser, tz)

    def date_step(value: Any) -> Any:
        if value is MISSING or value is None or value == "":
            return value
        return transform(value)

    return date_step


def _default_step(fallback: Any) -> Step:
    def default_step(value: Any) -> Any:
        if value is MISSING or value is None or value == "":
            return copy_json(fallback)
        return value

    return default_step


def _lookup_step(
    m: FieldMapping, loc: Loc, lookups: LookupResolver | None, problems: list[tuple[Loc, str]]
) -> Step | None:
    lookup_type = m.lookup_type or m.transform_options.get("lookupType")
    if not isinstance(lookup_type, str) or not lookup_type.strip():
        problems.append(((*loc, "lookupType"), "is required for the 'lookup' transformer"))
        return None
    on_miss = m.transform_options.get("onMiss")
    if on_miss is None:
        on_miss = "default" if m.default_value is not MISSING else "passthrough"
    if on_miss not in ON_MISS:
        problems.append(
            ((*loc, "transformOptions", "onMiss"), f"must be one of {', '.join(ON_MISS)}")
        )
        return None
    if on_miss == "default" and m.default_value is MISSING:
        problems.append(((*loc, "defaultValue"), "is required when onMiss is 'default'"))
        return None
    table = lookup_type.strip()
    miss = on_miss

    def lookup_step(value: Any) -> Any:
        if value is MISSING or value is None:
            return value
        if lookups is None:
            raise _StepError("no lookup resolver is configured")
        key = _lookup_key(value)
        found = lookups.resolve(table, key)
        if found is not None:
            return found
        if miss == "passthrough":
            return value
        if miss == "error":
            raise _StepError(f"no entry for {key!r} in lookup {table!r}")
        return None  # "null"; "default" is filled in by defaultValue right after

    return lookup_step
