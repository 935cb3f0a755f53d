"""The field list of an event type's JSON Schema: what the console offers and mappings address.

Every object property and every leaf gets one entry, its path in the dot notation of SIMPLE
mappings (:mod:`junctionbox.expr.paths`): ``patient.address.city``; ``lines[].sku`` for a
property of every array element; ``point[0]`` for a ``prefixItems`` position; ``["a.b"]``
for a key that has to be quoted. The element of an array gets its own entry (``tags[]``)
only when it is not an object, whose properties already list it.

How a schema is read:

- ``$ref`` to a local pointer (``#/$defs/...``) is followed, its siblings combine with it.
  A ``$ref`` met again below itself (a recursive structure) is listed but not expanded
  again; ``max_depth`` and ``max_fields`` bound the list whatever the schema.
- ``allOf`` branches combine: their properties, their ``required``. ``anyOf``/``oneOf``
  branches are alternatives: their properties are all listed, required only when every
  branch requires them, their types united (so the common "X or null" reads as nullable X).
- ``type`` is one JSON type name, the non-null types joined by ``|`` when there are several,
  or ``any``; ``integer`` and ``number`` together read as ``number``. Without ``type`` it is
  inferred from the ``enum``/``const`` values, ``properties`` (object) or ``items`` (array).
- ``required`` is relative to the parent object: ``patient.name`` may be required while
  ``patient`` is not. A property whose schema is ``false`` cannot occur and is left out.
- Properties are listed in name order, parents before children, so the list does not depend
  on how the stored document ordered its keys (PostgreSQL's JSONB sorts them).
- ``additionalProperties``/``patternProperties`` name no field and add none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import unquote

MAX_DEPTH: Final = 16
MAX_FIELDS: Final = 2000
_MAX_NESTING: Final = 64  # combinators and $ref hops inside one node
_NEEDS_QUOTES: Final = frozenset(".[]\"'\\")


@dataclass(frozen=True)
class SchemaField:
    path: str
    type: str
    required: bool
    nullable: bool
    title: str | None = None
    description: str | None = None
    format: str | None = None
    enum: tuple[Any, ...] | None = None


def schema_fields(
    schema: object, *, max_depth: int = MAX_DEPTH, max_fields: int = MAX_FIELDS
) -> list[SchemaField]:
    """The fields of ``schema``, parents before children, at most ``max_fields``."""
    walk = _Walk(schema, max_depth, max_fields)
    root = walk.shape(schema)
    walk.children(root, "", 0, root.refs)
    return walk.found


# --- one node, with its combinators and references resolved -------------------------------

Types = frozenset[str] | None  # None: any type


@dataclass(frozen=True)
class _Shape:
    types: Types = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    prefix: tuple[Any, ...] = ()
    items: Any = None  # schema of the elements after the prefix; None: not constrained
    title: str | None = None
    description: str | None = None
    format: str | None = None
    enum: tuple[Any, ...] | None = None
    refs: frozenset[str] = frozenset()  # the $refs followed to build this shape

    @property
    def nests(self) -> bool:
        return bool(self.properties or self.prefix or self.items is not None)


def _own(node: Mapping[str, Any]) -> _Shape:
    declared = node.get("type")
    types: Types = None
    if isinstance(declared, str):
        types = frozenset({declared})
    elif isinstance(declared, list):
        types = frozenset(t for t in declared if isinstance(t, str))
    properties = node.get("properties")
    required = node.get("required")
    prefix = node.get("prefixItems")
    items = node.get("items")
    values = [node["const"]] if "const" in node else node.get("enum")
    enum = tuple(values) if isinstance(values, list) else None
    if types is None and enum is not None:  # the values say which types are possible
        types = frozenset(_json_type(v) for v in enum)
    return _Shape(
        types=types,
        properties=dict(properties) if isinstance(properties, Mapping) else {},
        required=frozenset(r for r in required if isinstance(r, str))
        if isinstance(required, list)
        else frozenset(),
        prefix=tuple(prefix) if isinstance(prefix, list) else (),
        items=items if isinstance(items, Mapping | bool) else None,
        title=_text(node, "title"),
        description=_text(node, "description"),
        format=_text(node, "format"),
        enum=enum,
    )


def _text(node: Mapping[str, Any], key: str) -> str | None:
    value = node.get(key)
    return value if isinstance(value, str) else None


def _both(a: _Shape, b: _Shape) -> _Shape:
    """What an instance valid under both looks like (``allOf``)."""
    return _Shape(
        types=_intersect(a.types, b.types),
        properties=_merge(a.properties, b.properties, "allOf"),
        required=a.required | b.required,
        prefix=_merge_prefix(a.prefix, b.prefix, "allOf"),
        items=_combine(a.items, b.items, "allOf"),
        title=a.title or b.title,
        description=a.description or b.description,
        format=a.format or b.format,
        enum=a.enum if a.enum is not None else b.enum,
        refs=a.refs | b.refs,
    )


def _either(a: _Shape, b: _Shape) -> _Shape:
    """What an instance valid under one of them looks like (``anyOf``/``oneOf``)."""
    return _Shape(
        types=None if a.types is None or b.types is None else a.types | b.types,
        properties=_merge(a.properties, b.properties, "anyOf"),
        required=a.required & b.required,
        prefix=_merge_prefix(a.prefix, b.prefix, "anyOf"),
        items=_combine(a.items, b.items, "anyOf"),
        title=a.title or b.title,
        description=a.description or b.description,
        format=a.format or b.format,
        enum=_either_enum(a, b),
        refs=a.refs | b.refs,
    )


def _either_enum(a: _Shape, b: _Shape) -> tuple[Any, ...] | None:
    if a.enum is not None and b.enum is not None:
        return a.enum + tuple(v for v in b.enum if v not in a.enum)
    # "one of these values, or null" keeps its values
    if a.enum is not None and b.types == frozenset({"null"}):
        return a.enum
    if b.enum is not None and a.types == frozenset({"null"}):
        return b.enum
    return None


def _intersect(a: Types, b: Types) -> Types:
    if a is None or b is None:
        return b if a is None else a
    common = a & b
    if ("integer" in a and "number" in b) or ("number" in a and "integer" in b):
        common |= {"integer"}
    return frozenset(common)


def _combine(a: Any, b: Any, keyword: str) -> Any:
    if a is None or b is None:
        return b if a is None else a
    return {keyword: [a, b]}


def _merge(a: Mapping[str, Any], b: Mapping[str, Any], keyword: str) -> dict[str, Any]:
    merged = dict(a)
    for name, schema in b.items():
        merged[name] = _combine(merged.get(name), schema, keyword)
    return merged


def _merge_prefix(a: tuple[Any, ...], b: tuple[Any, ...], keyword: str) -> tuple[Any, ...]:
    longest = max(len(a), len(b))
    return tuple(
        _combine(a[i] if i < len(a) else None, b[i] if i < len(b) else None, keyword)
        for i in range(longest)
    )


def _resolve(root: object, ref: str) -> Any:
    """The local target of ``ref``, or None when it is not a local pointer that resolves."""
    if ref != "#" and not ref.startswith("#/"):
        return None
    node: Any = root
    for token in ref[2:].split("/") if ref != "#" else []:
        key = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


# --- the walk -----------------------------------------------------------------------------


class _Walk:
    def __init__(self, root: object, max_depth: int, max_fields: int) -> None:
        self.root = root
        self.max_depth = max_depth
        self.max_fields = max_fields
        self.found: list[SchemaField] = []

    def shape(self, node: Any, following: frozenset[str] = frozenset(), nesting: int = 0) -> _Shape:
        if node is False:
            return _Shape(types=frozenset())
        if not isinstance(node, Mapping) or nesting > _MAX_NESTING:
            return _Shape()
        shape = _own(node)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in following:  # a $ref loop adds nothing
            target = _resolve(self.root, ref)
            if target is not None:
                resolved = self.shape(target, following | {ref}, nesting + 1)
                shape = _both(shape, replace(resolved, refs=resolved.refs | {ref}))
        for branch in _branches(node, "allOf"):
            shape = _both(shape, self.shape(branch, following, nesting + 1))
        for keyword in ("anyOf", "oneOf"):
            alternatives = [self.shape(b, following, nesting + 1) for b in _branches(node, keyword)]
            if alternatives:
                union = alternatives[0]
                for other in alternatives[1:]:
                    union = _either(union, other)
                shape = _both(shape, union)
        return shape

    def children(self, parent: _Shape, path: str, depth: int, ancestors: frozenset[str]) -> None:
        for name, schema, required in _named_children(parent, path):
            if len(self.found) >= self.max_fields:
                return
            if schema is False:
                continue
            child = self.shape(schema)
            if not name.endswith("[]") or not _is_object(child):
                self.found.append(_field(name, child, required))
            recursive = bool(child.refs & ancestors)
            if child.nests and not recursive and depth + 1 < self.max_depth:
                self.children(child, name, depth + 1, ancestors | child.refs)


def _branches(node: Mapping[str, Any], keyword: str) -> list[Any]:
    value = node.get(keyword)
    return list(value) if isinstance(value, list) else []


def _named_children(parent: _Shape, path: str) -> Iterator[tuple[str, Any, bool]]:
    """(path, schema, required) of the parent's properties, then of its array elements."""
    for name in sorted(parent.properties):
        yield _join(path, name), parent.properties[name], name in parent.required
    for i, schema in enumerate(parent.prefix):
        yield f"{path}[{i}]", schema, False
    if parent.items is not None and parent.items is not False:
        yield f"{path}[]", parent.items, False


def _join(path: str, name: str) -> str:
    if name and not _NEEDS_QUOTES.intersection(name):
        return f"{path}.{name}" if path else name
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}["{quoted}"]'


def _is_object(shape: _Shape) -> bool:
    return _types_of(shape) - {"null"} == {"object"}


def _types_of(shape: _Shape) -> frozenset[str]:
    if shape.types is not None:
        return shape.types
    if shape.properties or shape.required:
        return frozenset({"object"})
    if shape.prefix or shape.items is not None:
        return frozenset({"array"})
    return frozenset()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_name(types: frozenset[str]) -> str:
    names = set(types) - {"null"}
    if {"integer", "number"} <= names:
        names.discard("integer")
    if names:
        return "|".join(sorted(names))
    return "null" if "null" in types else "any"


def _field(path: str, shape: _Shape, required: bool) -> SchemaField:
    types = _types_of(shape)
    return SchemaField(
        path=path,
        type=_type_name(types),
        required=required,
        nullable="null" in types,
        title=shape.title,
        description=shape.description,
        format=shape.format,
        enum=shape.enum,
    )
