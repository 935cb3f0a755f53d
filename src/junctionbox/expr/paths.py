"""Dot-notation paths for SIMPLE field mappings: parse once, then read and write JSON data.

Grammar (one path, whitespace inside names is kept)::

    path     := segment ( "." name | "[" selector "]" )*
    segment  := name | "[" selector "]"
    selector := ""  | "*"          every element of an array (a wildcard)
              | "-"? digits         an array index (negative counts from the end)
              | '"…"' | "'…'"       a quoted key, for keys containing "." "[" or "]"

``items[].name`` reads the ``name`` of every item (a list, aligned with ``items``);
``items.0.name`` and ``items[0].name`` read the first item's name (a dotted number is an
index on an array and a key on an object). Reading never fails: a missing step yields
:data:`MISSING`. Writing creates objects (and arrays, for numeric steps) as needed and
spreads a list over ``[]`` steps element by element, so ``items[].sku -> lines[].code`` and
``items[].qty -> lines[].quantity`` build one ``lines`` array.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""An absent value (JSON ``undefined``): the field is left out of the output."""

_DIGITS = re.compile(r"[0-9]+")
_INDEX = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class Key:
    """An object key; ``index`` is set when the key is all digits (``a.0.b``)."""

    name: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Index:
    index: int


@dataclass(frozen=True, slots=True)
class Each:
    pass


Segment = Key | Index | Each


class PathError(ValueError):
    """A path that does not parse; ``column`` is 0-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column + 1})")
        self.column = column


@dataclass(frozen=True, slots=True)
class Path:
    text: str
    segments: tuple[Segment, ...]
    wildcards: int = field(init=False)
    # the common case, plain object keys only, gets a fast path
    _keys: tuple[str, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wildcards", sum(isinstance(s, Each) for s in self.segments))
        plain = all(isinstance(s, Key) and s.index is None for s in self.segments)
        keys = tuple(s.name for s in self.segments if isinstance(s, Key)) if plain else None
        object.__setattr__(self, "_keys", keys)

    def get(self, data: Any) -> Any:
        """The value at this path, :data:`MISSING` if absent; one list level per ``[]``."""
        keys = self._keys
        if keys is None:
            return _get(data, self.segments, 0)
        node = data
        for pos, key in enumerate(keys):
            if type(node) is not dict:  # a list, a scalar, another Mapping: the general walk
                return _get(node, self.segments, pos)
            node = node.get(key, MISSING)
            if node is MISSING:
                return MISSING
        return node

    def set(self, root: dict[str, Any], value: Any) -> None:
        """Write ``value`` here in ``root``; a MISSING value writes nothing."""
        if value is MISSING:
            return
        keys = self._keys
        if keys is None:
            _assign(root, self.segments, 0, value, self.text)
            return
        node = root
        for pos in range(len(keys) - 1):
            child = node.get(keys[pos])
            if child is None:
                child = node[keys[pos]] = {}
            elif type(child) is not dict:
                raise AssignError(
                    f"cannot write {self.text!r}: step {pos + 1} is a {_kind(child)}, not an object"
                )
            node = child
        node[keys[-1]] = copy_json(value) if isinstance(value, dict | list) else value


def parse_path(text: str) -> Path:
    """Parse a path; raise :class:`PathError` with the column of the first problem."""
    if not text or not text.strip():
        raise PathError("path is empty", 0)
    segments: list[Segment] = []
    n = len(text)
    i = 0
    need_name = True  # at the start, or right after a "."
    while i < n:
        c = text[i]
        if c == "[":
            i = _parse_bracket(text, i, segments)
            need_name = False
            if i < n and text[i] not in ".[":
                raise PathError("expected '.' or '[' after ']'", i)
        elif c == ".":
            if need_name:
                raise PathError("empty name before '.'", i)
            if i == n - 1:
                raise PathError("path ends with '.'", i)
            need_name = True
            i += 1
        elif c == "]":
            raise PathError("unexpected ']'", i)
        else:
            if not need_name:
                raise PathError("expected '.' or '['", i)
            j = i
            while j < n and text[j] not in ".[]":
                j += 1
            name = text[i:j]
            segments.append(Key(name, int(name) if _DIGITS.fullmatch(name) else None))
            need_name = False
            i = j
    return Path(text, tuple(segments))


def _parse_bracket(text: str, start: int, out: list[Segment]) -> int:
    n = len(text)
    i = start + 1
    if i < n and text[i] in "\"'":
        quote = text[i]
        i += 1
        chars: list[str] = []
        while i < n and text[i] != quote:
            if text[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(text[i])
            i += 1
        if i >= n:
            raise PathError("unterminated quoted key", start)
        i += 1
        if i >= n or text[i] != "]":
            raise PathError("expected ']' after quoted key", i)
        out.append(Key("".join(chars)))
        return i + 1
    close = text.find("]", i)
    if close < 0:
        raise PathError("'[' is never closed", start)
    inner = text[i:close].strip()
    if inner in ("", "*"):
        out.append(Each())
    elif _INDEX.fullmatch(inner):
        out.append(Index(int(inner)))
    else:
        raise PathError("expected [], [*], [<index>] or a quoted key inside '[ ]'", start)
    return close + 1


def _get(node: Any, segments: tuple[Segment, ...], start: int) -> Any:
    for pos in range(start, len(segments)):
        seg = segments[pos]
        if isinstance(seg, Key):
            if isinstance(node, Mapping):
                node = node.get(seg.name, MISSING)
            elif seg.index is not None and isinstance(node, list):
                node = node[seg.index] if seg.index < len(node) else MISSING
            else:
                return MISSING
        elif isinstance(seg, Index):
            if not isinstance(node, list) or not -len(node) <= seg.index < len(node):
                return MISSING
            node = node[seg.index]
        else:
            if not isinstance(node, list):
                return MISSING
            return [_get(item, segments, pos + 1) for item in node]
        if node is MISSING:
            return MISSING
    return node


class AssignError(ValueError):
    """Two mappings disagree about the shape of the output (an object vs a value ...)."""


def copy_json(value: Any) -> Any:
    """Copy containers (so output never aliases input or config); MISSING becomes null."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return None if value is MISSING else value


def assign(root: dict[str, Any], path: Path, value: Any) -> None:
    """Write ``value`` at ``path`` in ``root``; a MISSING value writes nothing."""
    path.set(root, value)


def _assign(node: Any, segs: tuple[Segment, ...], pos: int, value: Any, text: str) -> Any:
    seg = segs[pos]
    last = pos == len(segs) - 1
    if isinstance(seg, Each):
        if not isinstance(value, list):  # a MISSING element of an outer spread
            return node if node is not None else _empty_for(seg)
        items = _as_list(node, text, pos)
        if len(items) < len(value):
            items.extend([None] * (len(value) - len(items)))
        for i, item in enumerate(value):
            if last:
                items[i] = copy_json(item)
            elif item is MISSING:
                items[i] = items[i] if items[i] is not None else _empty_for(segs[pos + 1])
            else:
                items[i] = _assign(items[i], segs, pos + 1, item, text)
        return items
    if isinstance(seg, Key) and (seg.index is None or isinstance(node, dict)):
        obj = _as_dict(node, text, pos)
        obj[seg.name] = (
            copy_json(value) if last else _assign(obj.get(seg.name), segs, pos + 1, value, text)
        )
        return obj
    index = seg.index
    assert index is not None  # Index, or an all-digits Key on a list
    items = _as_list(node, text, pos)
    if len(items) <= index:
        items.extend([None] * (index + 1 - len(items)))
    items[index] = copy_json(value) if last else _assign(items[index], segs, pos + 1, value, text)
    return items


def _empty_for(seg: Segment) -> Any:
    if isinstance(seg, Key) and seg.index is None:
        return {}
    return []


def _as_dict(node: Any, text: str, pos: int) -> dict[str, Any]:
    if node is None:
        return {}
    if isinstance(node, dict):
        return node
    raise AssignError(f"cannot write {text!r}: step {pos + 1} is a {_kind(node)}, not an object")


def _as_list(node: Any, text: str, pos: int) -> list[Any]:
    if node is None:
        return []
    if isinstance(node, list):
        return node
    raise AssignError(f"cannot write {text!r}: step {pos + 1} is a {_kind(node)}, not an array")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__
