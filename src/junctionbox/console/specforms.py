"""Forms described by a list of fields, for the requests-in pages (inbound integrations,
gateway routes, webhook sources): pure mapping between HTML form values and the API's JSON
body, and the API's request-model problems keyed by the field they are about.

Scalar fields are inputs, nested structures are JSON text areas (as on the outbound page);
the body is validated by the same request model and service as an API call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

M = TypeVar("M", bound=BaseModel)
Kind = Literal["text", "number", "select", "check", "json", "list", "area"]


@dataclass(frozen=True)
class Spec:
    """One form field: ``name`` is the API body's (camelCase) key."""

    name: str
    label: str
    kind: Kind = "text"
    options: tuple[str, ...] = ()
    hint: str = ""
    section: str = ""


def _number(raw: str) -> Any:
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw  # the model says what is wrong with it


def body_of(
    specs: Sequence[Spec], values: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body of the submitted values (empty fields left out) and the problems found
    before the model (JSON that does not parse)."""
    body: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for spec in specs:
        raw = (values.get(spec.name) or "").strip()
        if spec.kind == "check":
            body[spec.name] = raw == "on"
        elif not raw:
            continue
        elif spec.kind == "number":
            body[spec.name] = _number(raw)
        elif spec.kind == "list":
            body[spec.name] = [p.strip() for p in raw.replace("\n", ",").split(",") if p.strip()]
        elif spec.kind == "json":
            try:
                body[spec.name] = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                problems[spec.name] = f"not valid JSON: {exc}"
        else:
            body[spec.name] = values.get(spec.name, "")
    return body, problems


def values_of(specs: Sequence[Spec], document: Mapping[str, Any]) -> dict[str, str]:
    """Form values of an API document (credentials already masked by the caller)."""
    values: dict[str, str] = {}
    for spec in specs:
        value = document.get(spec.name)
        if spec.kind == "check":
            values[spec.name] = "on" if value else ""
        elif spec.kind == "json":
            values[spec.name] = pretty(value) if value not in (None, {}, []) else ""
        elif spec.kind == "list":
            values[spec.name] = ", ".join(str(v) for v in value or ())
        else:
            values[spec.name] = "" if value is None else str(value)
    return values


def validated(model: type[M], body: Any) -> tuple[M | None, dict[str, str]]:
    """The body parsed by the API's request model, or its problems keyed by top field."""
    try:
        return model.model_validate(body), {}
    except PydanticError as exc:
        return None, model_problems(exc)


def model_problems(exc: PydanticError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors():
        parts = [str(p) for p in error["loc"]]
        message = str(error["msg"])
        key = parts[0] if parts else "_"
        inner = ".".join(parts[1:])
        found.setdefault(key, f"{inner}: {message}" if inner else message)
        if inner:  # also beside a nested field shown on its own (``a.b``)
            found.setdefault(".".join(parts), message)
    return found


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
