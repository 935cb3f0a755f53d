"""JSON Schema compatibility for the per-tenant event-type registry, as Confluent defines it.

The question is always the same: can a *reader* schema read everything a *writer* schema lets
through? ``can_read(reader, writer)`` answers it, and the modes pick who reads whom:

- ``BACKWARD`` (default): the new schema reads data written with the latest previous one.
- ``FORWARD``: the latest previous schema reads data written with the new one.
- ``FULL``: both. ``*_TRANSITIVE``: the same against every previous version, not just the
  latest (a chain of small steps can add up to a break that no single step shows).
- ``NONE``: no check.

``can_read`` is a conservative proof that every instance valid under the writer is valid under
the reader. It reports a problem whenever it cannot prove that, so it may refuse a change
that is in fact safe, never the other way round. Reasons read as the change from the writer's
schema to the reader's (for BACKWARD that is old to new). The rules:

- ``true``/``{}`` accept everything, ``false`` nothing: a writer ``false`` is always readable,
  a reader ``false`` never (unless the writer is ``false`` too).
- ``type``: every writer type must be a reader type; ``integer`` is a subset of ``number``,
  so integer to number widens and number to integer narrows.
- ``enum``/``const``: a writer with finitely many values (``enum``, ``const``, or only
  ``null``/``boolean`` types) is decided exactly by validating each value against the reader,
  so growing an enum is compatible and shrinking it is not. A reader enum against an open
  writer is a narrowing.
- Objects, with Confluent's content models. Each property name is governed by ``properties``,
  then matching ``patternProperties``, then ``additionalProperties`` (absent means ``true``:
  an *open* model; ``false`` is *closed*; a schema is *partially open*). The reader's schema
  for a name must accept the writer's. Hence adding a property to an open model is
  incompatible (old data may hold anything under that name), adding one to a closed model is
  fine, removing one from an open model is fine and from a closed model is not. A partially
  open model works when the new property's schema accepts the writer's
  ``additionalProperties``. ``required`` in the reader must be required by the writer;
  ``minProperties``/``maxProperties`` may only loosen; ``dependentRequired`` must be implied.
  ``patternProperties`` are compared only when both sides use the same patterns (or the
  reader uses none).
- Arrays: ``prefixItems`` position by position, then ``items`` (draft-07 array ``items`` and
  ``additionalItems`` are read the same way); ``minItems``/``maxItems`` may only loosen;
  ``uniqueItems`` may not be added.
- Strings: ``minLength``/``maxLength`` may only loosen; ``pattern`` and ``format`` may be
  dropped but not added or changed (regex inclusion is not decided). ``format`` is treated as
  an assertion, since registries and validators often enforce it.
- Numbers: ``minimum``/``exclusiveMinimum``/``maximum``/``exclusiveMaximum`` may only loosen
  (bounds are compared exactly, with integer-aware rounding for integer data); a reader
  ``multipleOf`` must divide the writer's (integer data is a multiple of 1).
- ``$ref`` to local ``#/$defs/...``/``#/definitions/...`` (any ``#/`` pointer) is followed,
  recursive schemas included; siblings of ``$ref`` combine with it as an ``allOf``. A nested
  ``$id`` does not change how ``#/`` pointers resolve here.
- Combinators, simple cases only: a reader ``allOf`` must accept the writer in every branch;
  a reader ``anyOf`` when one branch accepts the writer (or each of the writer's types); a
  reader ``oneOf`` the same, with the branch's types disjoint from the others'. A writer's
  ``allOf`` passes if one branch alone passes, its ``anyOf``/``oneOf`` if all branches do.
  Anything else, and ``not``, ``if``/``then``/``else``, ``contains``, ``propertyNames``,
  ``dependentSchemas``, ``unevaluated*`` and ``$dynamicRef`` in the reader, is "cannot prove
  compatibility for keyword X" unless reader and writer are identical there. Writer-only
  constraints are ignored, which can only over-report.
- Annotations (``title``, ``description``, ``default``, ``examples``, ``deprecated``,
  ``readOnly``/``writeOnly``, ``content*``, ``$comment``) and unknown keywords do not
  constrain data and are ignored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final, Literal, NoReturn
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from junctionbox.errors import FieldProblem, ValidationError

Schema = Mapping[str, Any] | bool


class CompatibilityMode(StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"


@dataclass(frozen=True)
class Incompatibility:
    """One reason a reader cannot read a writer's data.

    ``path`` is a JSON pointer into the schemas (``""`` is the root). ``direction`` and
    ``version`` are set by ``check_compatibility``: ``version`` is the 1-based position of
    the previous schema in ``previous_versions``.
    """

    path: str
    reason: str
    direction: Literal["backward", "forward"] | None = None
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.reason}"

    def describe(self) -> str:
        """A sentence for API errors, naming who cannot read whom."""
        if self.direction == "backward":
            who = f"the new schema cannot read data written with version {self.version}"
        elif self.direction == "forward":
            who = f"version {self.version} cannot read data written with the new schema"
        else:
            return str(self)
        return f"{who}: {self}"


_BACKWARD_MODES: Final = frozenset(
    {CompatibilityMode.BACKWARD, CompatibilityMode.BACKWARD_TRANSITIVE}
    | {CompatibilityMode.FULL, CompatibilityMode.FULL_TRANSITIVE}
)
_FORWARD_MODES: Final = frozenset(
    {CompatibilityMode.FORWARD, CompatibilityMode.FORWARD_TRANSITIVE}
    | {CompatibilityMode.FULL, CompatibilityMode.FULL_TRANSITIVE}
)
_TRANSITIVE_MODES: Final = frozenset(
    {CompatibilityMode.BACKWARD_TRANSITIVE, CompatibilityMode.FORWARD_TRANSITIVE}
    | {CompatibilityMode.FULL_TRANSITIVE}
)


def check_compatibility(
    new_schema: Schema,
    previous_versions: Sequence[Schema],
    mode: CompatibilityMode | str = CompatibilityMode.BACKWARD,
) -> list[Incompatibility]:
    """Check ``new_schema`` against ``previous_versions`` (oldest first); empty = compatible."""
    mode = _mode(mode)
    if mode is CompatibilityMode.NONE or not previous_versions:
        return []
    numbered = list(enumerate(previous_versions, start=1))
    if mode not in _TRANSITIVE_MODES:
        numbered = numbered[-1:]
    found: list[Incompatibility] = []
    for version, old in numbered:
        if mode in _BACKWARD_MODES:
            found += _tag(can_read(new_schema, old), "backward", version)
        if mode in _FORWARD_MODES:
            found += _tag(can_read(old, new_schema), "forward", version)
    return found


def _mode(mode: CompatibilityMode | str) -> CompatibilityMode:
    try:
        return CompatibilityMode(str(mode).upper())
    except ValueError:
        known = ", ".join(m.value for m in CompatibilityMode)
        raise ValidationError(f"unknown compatibility mode {mode!r}; use one of {known}") from None


def _tag(
    found: list[Incompatibility], direction: Literal["backward", "forward"], version: int
) -> list[Incompatibility]:
    return [replace(i, direction=direction, version=version) for i in found]


def can_read(reader: Schema, writer: Schema) -> list[Incompatibility]:
    """Why some instance valid under ``writer`` may be invalid under ``reader`` (empty = none)."""
    if _json_equal(reader, writer):
        return []
    return _check(reader, writer, "", _Context.build(reader, writer))


def validate_schema_document(schema: object) -> None:
    """Raise ``ValidationError`` unless ``schema`` is a draft 2020-12 schema we can use.

    Besides the metaschema, every ``$ref`` must be a local ``#/...`` pointer that resolves: a
    registry must never fetch a schema from a URL a tenant wrote.
    """
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        _raise_invalid(list(exc.absolute_path), str(exc.message), exc)
    if isinstance(schema, Mapping):
        for ref, location in _refs(schema, []):
            problem = _ref_problem(schema, ref)
            if problem:
                _raise_invalid([*location, "$ref"], problem, None)


def _raise_invalid(location: list[str | int], message: str, cause: Exception | None) -> NoReturn:
    pointer = _pointer(location)
    raise ValidationError(
        f"invalid JSON Schema at {pointer or '(root)'}: {message}",
        problems=[FieldProblem(("schema", *location), message)],
    ) from cause


def _ref_problem(root: Mapping[str, Any], ref: object) -> str | None:
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        return f"only local references ('#/...') are supported, not {ref!r}"
    try:
        _resolve_pointer(root, ref)
    except _Unprovable:
        return f"{ref!r} does not resolve"
    return None


# --- schema structure ---------------------------------------------------------------------

_ANNOTATIONS: Final = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly"}
    | {"writeOnly", "$schema", "$id", "$anchor", "$dynamicAnchor", "$vocabulary", "$defs"}
    | {"definitions", "contentEncoding", "contentMediaType", "contentSchema"}
)
_ONE_SCHEMA: Final = frozenset(
    {"additionalProperties", "additionalItems", "items", "contains", "propertyNames", "not"}
    | {"if", "then", "else", "unevaluatedItems", "unevaluatedProperties"}
)
_SCHEMA_LIST: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP: Final = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_ALL_TYPES: Final = frozenset({"null", "boolean", "object", "array", "number", "string"})
_KNOWN_TYPES: Final = _ALL_TYPES | {"integer"}


def _subschemas(node: Mapping[str, Any]) -> Iterator[tuple[list[str | int], Any]]:
    """(relative location, subschema) for every place in ``node`` that holds a schema."""
    for key, value in node.items():
        if key in _SCHEMA_LIST or (key == "items" and isinstance(value, list)):
            for i, sub in enumerate(_as_list(value)):
                yield [key, i], sub
        elif key in _ONE_SCHEMA:
            yield [key], value
        elif key in _SCHEMA_MAP and isinstance(value, Mapping):
            for name, sub in value.items():
                yield [key, str(name)], sub


def _refs(node: Any, location: list[str | int]) -> Iterator[tuple[object, list[str | int]]]:
    if not isinstance(node, Mapping):
        return
    if "$ref" in node:
        yield node["$ref"], location
    for relative, sub in _subschemas(node):
        yield from _refs(sub, location + relative)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _pointer(location: Sequence[str | int]) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in location)


def _resolve_pointer(root: Schema, ref: str) -> Any:
    if ref != "#" and not ref.startswith("#/"):
        raise _Unprovable(f"$ref {ref!r} (only local '#/' references are followed)")
    node: Any = root
    for token in ref[2:].split("/") if ref != "#" else []:
        key = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise _Unprovable(f"$ref {ref!r} (it does not resolve)")
    return node


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema defines it: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


# --- the checker --------------------------------------------------------------------------


class _Unprovable(Exception):
    """Raised where a keyword cannot be reasoned about; becomes one Incompatibility."""


@dataclass(frozen=True)
class _Context:
    reader_root: Schema
    writer_root: Schema
    reader_validator: Any
    writer_validator: Any
    # (reader node, writer node, depth) pairs being checked through a $ref: the nodes are
    # held (not their ids) so they stay alive and identity comparisons stay meaningful.
    active: tuple[tuple[Any, Any, int], ...] = ()
    depth: int = 0

    @staticmethod
    def build(reader: Schema, writer: Schema) -> _Context:
        checker = Draft202012Validator.FORMAT_CHECKER
        return _Context(
            reader,
            writer,
            Draft202012Validator(reader, format_checker=checker),
            Draft202012Validator(writer, format_checker=checker),
        )

    def deeper(self) -> _Context:
        """For subschemas that apply to a part of the instance (a property, an item)."""
        return replace(self, depth=self.depth + 1)

    def enter(self, reader: Any, writer: Any) -> _Context | None:
        """Track recursion through $ref; None means "already being proved, assume it holds".

        Assuming is sound only if the instance was descended into since (instances are
        finite), so a $ref loop that never descends cannot be proved.
        """
        if not _has_ref(reader) and not _has_ref(writer):
            return self
        for seen_reader, seen_writer, depth in self.active:
            if seen_reader is reader and seen_writer is writer:
                if depth == self.depth:
                    raise _Unprovable("$ref (it loops without descending)")
                return None
        return replace(self, active=(*self.active, (reader, writer, self.depth)))


def _has_ref(node: Any) -> bool:
    return isinstance(node, Mapping) and "$ref" in node


def _check(reader: Any, writer: Any, path: str, ctx: _Context) -> list[Incompatibility]:
    try:
        return _check_node(reader, writer, path, ctx)
    except _Unprovable as exc:
        return [Incompatibility(path, f"cannot prove compatibility for {exc}")]


def _check_node(reader: Any, writer: Any, path: str, ctx: _Context) -> list[Incompatibility]:
    entered = ctx.enter(reader, writer)
    if entered is None:
        return []
    r = _expand(reader, ctx.reader_root)
    w = _expand(writer, ctx.writer_root)
    if w is False:
        return []
    if r is False:
        return [Incompatibility(path, "schema is false: no value is accepted any more")]
    if _same(r, w, entered):
        return []
    values = _finite_values(w)
    if values is not None:
        return _check_values(r, w, values, path, entered)
    found = _check_plain(r, w, path, entered) + _check_reader_combinators(r, w, path, entered)
    if found and _writer_parts_fit(r, w, path, entered):
        return []
    return found


def _expand(node: Any, root: Schema, hops: int = 0) -> Mapping[str, Any] | Literal[False]:
    """The node with booleans normalised and a leading $ref followed."""
    if node is True:
        return {}
    if node is False:
        return False
    if not isinstance(node, Mapping):
        raise _Unprovable("a schema that is neither an object nor a boolean")
    if "$ref" not in node:
        return node
    if hops > 64:
        raise _Unprovable("$ref (it loops)")
    target = _resolve_pointer(root, str(node["$ref"]))
    rest = {k: v for k, v in node.items() if k != "$ref" and k not in _ANNOTATIONS}
    if not rest:
        return _expand(target, root, hops + 1)
    # Since 2019-09 siblings of $ref apply too: the node is their conjunction.
    return {"allOf": [target, rest]}


def _same(a: Any, b: Any, ctx: _Context, active: tuple[tuple[Any, Any], ...] = ()) -> bool:
    """Whether reader node ``a`` and writer node ``b`` constrain data identically.

    Structural, after following $ref on each side against its own root; annotations are
    ignored. A false answer only means "not obviously the same".
    """
    if any(x is a and y is b for x, y in active):
        return True  # a recursive pair already being compared: co-inductively the same
    if _has_ref(a) or _has_ref(b):
        active = (*active, (a, b))
    try:
        x, y = _expand(a, ctx.reader_root), _expand(b, ctx.writer_root)
    except _Unprovable:
        return False
    if x is False or y is False:
        return x is y
    keys = {k for k in x if k not in _ANNOTATIONS}
    if keys != {k for k in y if k not in _ANNOTATIONS}:
        return False
    if keys & {"$dynamicRef", "$recursiveRef"}:
        return False  # resolved by dynamic scope, which differs between documents
    return all(_same_keyword(k, x[k], y[k], ctx, active) for k in keys)


def _same_keyword(
    key: str, a: Any, b: Any, ctx: _Context, active: tuple[tuple[Any, Any], ...]
) -> bool:
    if key in _SCHEMA_LIST or (key == "items" and isinstance(a, list)):
        return _same_list(a, b, ctx, active)
    if key in _ONE_SCHEMA:
        return _same(a, b, ctx, active)
    if key in _SCHEMA_MAP:
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or a.keys() != b.keys():
            return False
        return all(_same(a[k], b[k], ctx, active) for k in a)
    return _json_equal(a, b)


def _same_list(a: Any, b: Any, ctx: _Context, active: tuple[tuple[Any, Any], ...] = ()) -> bool:
    if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
        return False
    return all(_same(x, y, ctx, active) for x, y in zip(a, b, strict=True))


def _types(node: Mapping[str, Any]) -> frozenset[str]:
    declared = node.get("type")
    if declared is None:
        return _ALL_TYPES
    names = {declared} if isinstance(declared, str) else set(_as_list(declared))
    if not names or not names <= _KNOWN_TYPES:
        raise _Unprovable(f"keyword type (value {_show(declared)})")
    if "number" in names:
        names.discard("integer")  # integer is a subset of number
    return frozenset(names)


def _covers(types: frozenset[str], name: str) -> bool:
    return name in types or (name == "integer" and "number" in types)


def _show_types(types: frozenset[str]) -> str:
    return "any" if types == _ALL_TYPES else ", ".join(sorted(types))


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _finite_values(w: Mapping[str, Any]) -> list[Any] | None:
    """The writer's candidate values when there are finitely many, else None."""
    if "const" in w:
        return [w["const"]]
    if "enum" in w:
        if not isinstance(w["enum"], list):
            raise _Unprovable("keyword enum (not an array)")
        return list(w["enum"])
    types = _types(w)
    if types <= {"null", "boolean"}:
        return ([None] if "null" in types else []) + ([True, False] if "boolean" in types else [])
    return None


def _check_values(
    r: Mapping[str, Any], w: Mapping[str, Any], values: list[Any], path: str, ctx: _Context
) -> list[Incompatibility]:
    """Decide a finite writer exactly: each value it accepts must pass the reader."""
    found = []
    for value in values:
        if not _errors(ctx.writer_validator, w, value):
            errors = _errors(ctx.reader_validator, r, value)
            if errors:
                found.append(Incompatibility(path, _value_reason(r, value, errors[0])))
    return found


def _value_reason(r: Mapping[str, Any], value: Any, error: str) -> str:
    if isinstance(r.get("enum"), list) and not any(_json_equal(value, e) for e in r["enum"]):
        return f"enum value {_show(value)} removed"
    if "const" in r and not _json_equal(value, r["const"]):
        return f"value {_show(value)} no longer allowed by const {_show(r['const'])}"
    return f"value {_show(value)} is no longer accepted ({error})"


def _errors(validator: Any, schema: Mapping[str, Any], value: Any) -> list[str]:
    try:
        return [str(e.message) for e in validator.evolve(schema=schema).iter_errors(value)]
    except Exception as exc:  # a bad regex, an unresolvable $ref...: nothing is proved
        raise _Unprovable(f"a value check ({type(exc).__name__})") from exc


def _check_plain(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context
) -> list[Incompatibility]:
    """Type, enum and per-type keywords, for a writer with infinitely many values."""
    rt, wt = _types(r), _types(w)
    found: list[Incompatibility] = []
    kept = frozenset(t for t in wt if _covers(rt, t))
    if kept != wt:
        reason = f"type narrowed from [{_show_types(wt)}] to [{_show_types(rt)}]"
        found.append(Incompatibility(path, reason))
    for key in ("const", "enum"):
        if key in r:
            reason = f"{key} {_show(r[key])} added, but the writer allows other values"
            found.append(Incompatibility(path, reason))
    for name in sorted(kept):
        check = _TYPE_CHECKS.get(name)
        if check:
            found += check(r, w, path, ctx, name)
    return found


TypeCheck = Callable[
    [Mapping[str, Any], Mapping[str, Any], str, _Context, str], list[Incompatibility]
]


# --- strings, arrays, counts --------------------------------------------------------------


def _count(node: Mapping[str, Any], key: str) -> int | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _Unprovable(f"keyword {key} (value {_show(value)})")
    if isinstance(value, float) and not value.is_integer():
        raise _Unprovable(f"keyword {key} (value {_show(value)})")
    return int(value)


def _check_min(
    r: Mapping[str, Any], w: Mapping[str, Any], key: str, path: str
) -> list[Incompatibility]:
    new, old = _count(r, key) or 0, _count(w, key) or 0
    return [Incompatibility(path, f"{key} raised from {old} to {new}")] if new > old else []


def _check_max(
    r: Mapping[str, Any], w: Mapping[str, Any], key: str, path: str
) -> list[Incompatibility]:
    new, old = _count(r, key), _count(w, key)
    if new is None or (old is not None and old <= new):
        return []
    shown = "unbounded" if old is None else str(old)
    return [Incompatibility(path, f"{key} lowered from {shown} to {new}")]


def _check_string(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context, name: str
) -> list[Incompatibility]:
    found = _check_min(r, w, "minLength", path) + _check_max(r, w, "maxLength", path)
    for key in ("pattern", "format"):
        if key in r and not _json_equal(r[key], w.get(key)):
            if key in w:
                reason = f"{key} changed from {_show(w[key])} to {_show(r[key])}"
            else:
                reason = f"{key} {_show(r[key])} added"
            found.append(Incompatibility(path, reason))
    return found


def _check_array(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context, name: str
) -> list[Incompatibility]:
    found = _check_min(r, w, "minItems", path) + _check_max(r, w, "maxItems", path)
    if r.get("uniqueItems") is True and w.get("uniqueItems") is not True:
        found.append(Incompatibility(path, "uniqueItems added"))
    return found + _check_items(r, w, path, ctx)


def _item_schemas(node: Mapping[str, Any]) -> tuple[list[Any], Any, str]:
    """(positional schemas, schema for the rest, keyword of the rest)."""
    if isinstance(node.get("items"), list):  # draft-07 tuple form
        return list(node["items"]), node.get("additionalItems", True), "additionalItems"
    return _as_list(node.get("prefixItems")), node.get("items", True), "items"


def _check_items(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context
) -> list[Incompatibility]:
    r_prefix, r_rest, r_rest_key = _item_schemas(r)
    w_prefix, w_rest, _ = _item_schemas(w)
    longest = _count(w, "maxItems")
    span = max(len(r_prefix), len(w_prefix))
    found: list[Incompatibility] = []
    for i in range(span if longest is None else min(span, longest)):
        reader = r_prefix[i] if i < len(r_prefix) else r_rest
        writer = w_prefix[i] if i < len(w_prefix) else w_rest
        where = f"{path}/prefixItems/{i}" if i < len(r_prefix) else f"{path}/{r_rest_key}"
        found += _check(reader, writer, where, ctx.deeper())
    if longest is None or longest > span:
        found += _check(r_rest, w_rest, f"{path}/{r_rest_key}", ctx.deeper())
    return found


# --- numbers ------------------------------------------------------------------------------

Bound = tuple[Fraction, bool]  # (value, exclusive)


def _fraction(node: Mapping[str, Any], key: str) -> Fraction | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unprovable(f"keyword {key} (value {_show(value)})")
    try:
        # repr() keeps the decimal the author wrote: 0.1 is 1/10, not its binary neighbour.
        return Fraction(value) if isinstance(value, int) else Fraction(repr(value))
    except ValueError:
        raise _Unprovable(f"keyword {key} (value {_show(value)})") from None


def _lower(node: Mapping[str, Any], integer: bool) -> Bound | None:
    bounds = _bounds(node, "minimum", "exclusiveMinimum")
    if integer:  # for integer data, > 2.5 is >= 3 and >= 2.5 is >= 3
        bounds = [(Fraction(math.floor(v) + 1 if ex else math.ceil(v)), False) for v, ex in bounds]
    return max(bounds, default=None)


def _upper(node: Mapping[str, Any], integer: bool) -> Bound | None:
    bounds = _bounds(node, "maximum", "exclusiveMaximum")
    if integer:
        bounds = [(Fraction(math.ceil(v) - 1 if ex else math.floor(v)), False) for v, ex in bounds]
    return min(bounds, key=lambda b: (b[0], not b[1]), default=None)


def _bounds(node: Mapping[str, Any], inclusive: str, exclusive: str) -> list[Bound]:
    found = [(_fraction(node, inclusive), False), (_fraction(node, exclusive), True)]
    return [(v, ex) for v, ex in found if v is not None]


def _show_bound(bound: Bound | None, op: str) -> str:
    if bound is None:
        return "unbounded"
    value, exclusive = bound
    return f"{op}{'' if exclusive else '='} {_show_number(value)}"


def _show_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(float(value))


def _check_numeric(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context, name: str
) -> list[Incompatibility]:
    integer = name == "integer"
    found = []
    r_low, w_low = _lower(r, integer), _lower(w, integer)
    if r_low is not None and (w_low is None or (w_low[0], w_low[1]) < r_low):
        reason = f"minimum raised from {_show_bound(w_low, '>')} to {_show_bound(r_low, '>')}"
        found.append(Incompatibility(path, reason))
    r_high, w_high = _upper(r, integer), _upper(w, integer)
    if r_high is not None and (w_high is None or _looser_upper(w_high, r_high)):
        low, high = _show_bound(w_high, "<"), _show_bound(r_high, "<")
        found.append(Incompatibility(path, f"maximum lowered from {low} to {high}"))
    return found + _check_multiple_of(r, w, path, integer)


def _looser_upper(writer: Bound, reader: Bound) -> bool:
    return writer[0] > reader[0] or (writer[0] == reader[0] and reader[1] and not writer[1])


def _check_multiple_of(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, integer: bool
) -> list[Incompatibility]:
    wanted = _fraction(r, "multipleOf")
    if wanted is None:
        return []
    if wanted <= 0:
        raise _Unprovable(f"keyword multipleOf (value {_show(r['multipleOf'])})")
    step = _fraction(w, "multipleOf")
    if integer:  # integer data is also a multiple of 1
        step = Fraction(1) if step is None or step <= 0 else _lcm(step, Fraction(1))
    if step is not None and step > 0 and (step / wanted).denominator == 1:
        return []
    if step is None:
        return [Incompatibility(path, f"multipleOf {_show_number(wanted)} added")]
    reason = f"multipleOf changed from {_show_number(step)} to {_show_number(wanted)}"
    return [Incompatibility(path, reason)]


def _lcm(a: Fraction, b: Fraction) -> Fraction:
    common = a.denominator * b.denominator
    return Fraction(math.lcm(a.numerator * b.denominator, b.numerator * a.denominator), common)


# --- objects ------------------------------------------------------------------------------


def _check_object(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context, name: str
) -> list[Incompatibility]:
    found = _check_min(r, w, "minProperties", path) + _check_max(r, w, "maxProperties", path)
    found += _check_required(r, w, path)
    return found + _check_properties(r, w, path, ctx) + _check_undeclared(r, w, path, ctx)


def _names(node: Mapping[str, Any], key: str) -> set[str]:
    return {n for n in _as_list(node.get(key)) if isinstance(n, str)}


def _check_required(r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> list[Incompatibility]:
    w_required = _names(w, "required")
    found = [
        Incompatibility(f"{path}/required", f"property {n!r} added to required")
        for n in sorted(_names(r, "required") - w_required)
    ]
    w_dependent = _map(w, "dependentRequired")
    for trigger, needs in _map(r, "dependentRequired").items():
        implied = w_required | set(_as_list(w_dependent.get(trigger)))
        where = f"{path}/dependentRequired/{_pointer([trigger])[1:]}"
        found += [
            Incompatibility(where, f"property {n!r} now required when {trigger!r} is present")
            for n in _as_list(needs)
            if n not in implied
        ]
    return found


def _map(node: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = node.get(key, {})
    if not isinstance(value, Mapping):
        raise _Unprovable(f"keyword {key} (not an object)")
    return value


def _check_properties(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context
) -> list[Incompatibility]:
    r_props, w_props = _map(r, "properties"), _map(w, "properties")
    names = [*r_props, *(n for n in w_props if n not in r_props)]
    found: list[Incompatibility] = []
    for name in names:
        found += _check_property(name, r, w, f"{path}/properties/{_pointer([name])[1:]}", ctx)
    return found


def _check_property(
    name: str, r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context
) -> list[Incompatibility]:
    """The reader's schemas for ``name`` must each accept the writer's."""
    r_props, w_props = _map(r, "properties"), _map(w, "properties")
    r_additional = r.get("additionalProperties", True)
    readers = _matching(r, name) if name not in r_props else [r_props[name], *_matching(r, name)]
    readers = readers or [r_additional]
    writer = w_props[name] if name in w_props else _governing(w, name)
    found = [i for reader in readers for i in _check(reader, writer, path, ctx.deeper())]
    if found and name not in w_props and _is_open(writer, ctx.writer_root):
        return [Incompatibility(path, f"property {name!r} added to an open content model")]
    if found and name not in r_props and readers == [r_additional] and r_additional is False:
        return [Incompatibility(path, f"property {name!r} removed from a closed content model")]
    return found


def _matching(node: Mapping[str, Any], name: str) -> list[Any]:
    return [s for p, s in _map(node, "patternProperties").items() if _search(p, name)]


def _governing(node: Mapping[str, Any], name: str) -> Any:
    """A schema every writer value under an undeclared ``name`` satisfies."""
    matching = _matching(node, name)
    # With several matching patterns the value satisfies all; any one is a safe superset.
    return matching[0] if matching else node.get("additionalProperties", True)


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        raise _Unprovable(f"patternProperties (pattern {pattern!r})") from None


def _is_open(schema: Any, root: Schema) -> bool:
    expanded = _expand(schema, root)
    return expanded is not False and not set(expanded) - _ANNOTATIONS


def _check_undeclared(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context
) -> list[Incompatibility]:
    """Names neither side declares: patternProperties, then additionalProperties."""
    r_patterns, w_patterns = _map(r, "patternProperties"), _map(w, "patternProperties")
    r_add, w_add = r.get("additionalProperties", True), w.get("additionalProperties", True)
    where, inner = f"{path}/additionalProperties", ctx.deeper()
    if r_patterns and r_patterns.keys() != w_patterns.keys():
        reason = "cannot prove compatibility for keyword patternProperties"
        return [Incompatibility(f"{path}/patternProperties", reason)]
    found: list[Incompatibility] = []
    for pattern, writer in w_patterns.items():
        if r_patterns:  # same patterns on both sides: compare pattern by pattern
            sub = f"{path}/patternProperties/{_pointer([pattern])[1:]}"
            found += _check(r_patterns[pattern], writer, sub, inner)
        else:  # the reader leaves these names to its additionalProperties
            found += _check(r_add, writer, where, inner)
    additional = _check(r_add, w_add, where, inner)
    if additional and r_add is False:
        additional = [Incompatibility(where, "content model closed (additionalProperties: false)")]
    return found + additional


_TYPE_CHECKS: Final[Mapping[str, TypeCheck]] = {
    "string": _check_string,
    "number": _check_numeric,
    "integer": _check_numeric,
    "array": _check_array,
    "object": _check_object,
}


# --- combinators --------------------------------------------------------------------------

# Reader keywords proved only by being identical to the writer's (same keyword group).
_IDENTITY_GROUPS: Final = (
    ("not",),
    ("if", "then", "else"),
    ("contains", "minContains", "maxContains"),
    ("propertyNames",),
    ("dependentSchemas",),
    ("dependencies",),
)
# Their meaning depends on every sibling, so only a wholly identical node proves them.
_WHOLE_NODE: Final = ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef")


def _check_reader_combinators(
    r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context
) -> list[Incompatibility]:
    found: list[Incompatibility] = []
    for i, branch in enumerate(_as_list(r.get("allOf"))):
        found += _check(branch, w, f"{path}/allOf/{i}", ctx)
    for key in ("anyOf", "oneOf"):
        if key in r and not _branches_fit(key, r, w, path, ctx):
            found.append(_unprovable(path, key))
    for group in _IDENTITY_GROUPS:
        present = [k for k in group if k in r]
        if present and not all(_same_optional(r.get(k), w.get(k), ctx) for k in group):
            found.append(_unprovable(path, present[0]))
    for key in _WHOLE_NODE:
        if key in r and (key.startswith("$") or not _is_open(r[key], ctx.reader_root)):
            found.append(_unprovable(path, key))
    return found


def _unprovable(path: str, key: str) -> Incompatibility:
    return Incompatibility(f"{path}/{key}", f"cannot prove compatibility for keyword {key}")


def _same_optional(a: Any, b: Any, ctx: _Context) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and _same(a, b, ctx))


def _branches_fit(
    key: str, r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context
) -> bool:
    """Whether each part of the writer fits one reader branch (exactly one, for oneOf)."""
    branches = _as_list(r.get(key))
    if key in w and _same_list(branches, w[key], ctx):
        return True
    return all(_fits_one(key, branches, part, path, ctx) for part in _split_by_type(w))


def _fits_one(key: str, branches: list[Any], part: Any, path: str, ctx: _Context) -> bool:
    for i, branch in enumerate(branches):
        if _check(branch, part, f"{path}/{key}/{i}", ctx):
            continue
        others = branches[:i] + branches[i + 1 :]
        if key == "anyOf" or all(_disjoint(part, other, ctx) for other in others):
            return True
    return False


def _split_by_type(w: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The writer as a union of one schema per declared type (exact when it lists types)."""
    declared = w.get("type")
    if isinstance(declared, list) and len(declared) > 1:
        return [{**w, "type": name} for name in declared]
    return [w]


def _disjoint(writer: Any, branch: Any, ctx: _Context) -> bool:
    w, b = _expand(writer, ctx.writer_root), _expand(branch, ctx.reader_root)
    if w is False or b is False:
        return True
    bt = _types(b)
    return not any(_covers(bt, t) or (t == "number" and "integer" in bt) for t in _types(w))


def _writer_parts_fit(r: Mapping[str, Any], w: Mapping[str, Any], path: str, ctx: _Context) -> bool:
    """Whether a writer combinator shows the writer fits after all.

    A writer ``allOf`` is within each branch, so one branch fitting suffices; an ``anyOf`` or
    ``oneOf`` is within the union of its branches, so all of them must fit.
    """
    if any(not _check(r, branch, path, ctx) for branch in _as_list(w.get("allOf"))):
        return True
    return any(
        bool(branches) and all(not _check(r, branch, path, ctx) for branch in branches)
        for branches in (_as_list(w.get("anyOf")), _as_list(w.get("oneOf")))
    )
