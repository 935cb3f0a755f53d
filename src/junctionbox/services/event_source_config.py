"""The configuration of a SQL table event source: its fields, their camelCase API form and
their validation (every bad field named with its location)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final, Literal

from junctionbox.connectors.sql_source import (
    TableQuery,
    check_identifier,
)
from junctionbox.errors import (
    FieldProblem,
    ValidationError,
)

MAX_BATCH: Final = 1000
MAX_INTERVAL_SECONDS: Final = 86_400
MAX_CHECKPOINT_LENGTH: Final = 100
_STREAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PATH = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+){0,15}$")


@dataclass(frozen=True)
class SourceConfig:
    """What to read and how often. Attribute ``x_y`` is the API's and the stored ``xY``."""

    table: str = "notification_queue"
    id_column: str = "id"
    type_column: str = "event_type"
    payload_column: str = "payload"
    tenant_column: str = "entity_rid"
    timestamp_column: str | None = "created_at"
    payload_id_path: str = "id"
    subject_column: str | None = None
    partition_key_column: str | None = None
    stream: str = "default"
    poll_interval_seconds: int = 5
    batch_size: int = 100
    max_event_age_days: int | None = None
    allowed_parent_rids: tuple[int, ...] | None = None
    start_from: Literal["beginning", "latest"] = "beginning"

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        if self.allowed_parent_rids is not None:
            values["allowed_parent_rids"] = list(self.allowed_parent_rids)
        return {_CAMEL[name]: value for name, value in values.items()}

    def columns(self) -> dict[str, str]:
        """Configuration field (camelCase) -> column, for every column read."""
        pairs = {
            "idColumn": self.id_column,
            "typeColumn": self.type_column,
            "payloadColumn": self.payload_column,
            "tenantColumn": self.tenant_column,
            "timestampColumn": self.timestamp_column,
            "subjectColumn": self.subject_column,
            "partitionKeyColumn": self.partition_key_column,
        }
        return {name: value for name, value in pairs.items() if value is not None}

    def table_query(self) -> TableQuery:
        return TableQuery(self.table, self.columns(), "idColumn")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_CAMEL: Final = {f.name: _camel(f.name) for f in fields(SourceConfig)}
_SNAKE: Final = {camel: snake for snake, camel in _CAMEL.items()}
CONFIG_FIELDS: Final = frozenset(_SNAKE)
_OPTIONAL: Final = frozenset(
    {"timestamp_column", "subject_column", "partition_key_column", "max_event_age_days"}
    | {"allowed_parent_rids"}
)


def parse_config(data: Mapping[str, Any]) -> SourceConfig:
    """A validated configuration from its camelCase form (defaults for what is missing);
    ``ValidationError`` naming every bad field otherwise."""
    problems = [
        FieldProblem(("body", key), "unknown configuration field")
        for key in data
        if key not in _SNAKE
    ]
    values: dict[str, Any] = {}
    for camel, value in data.items():
        snake = _SNAKE.get(camel)
        if snake is None:
            continue
        if value is None and snake not in _OPTIONAL:
            problems.append(FieldProblem(("body", camel), "must not be null"))
            continue
        checked, problem = _check_value(snake, value)
        if problem:
            problems.append(FieldProblem(("body", camel), problem))
        else:
            values[snake] = checked
    if not problems:
        config = SourceConfig(**values)
        problems = _check_config(config)
    if problems:
        summary = "; ".join(f"{p.loc[-1]}: {p.message}" for p in problems[:5])
        raise ValidationError(f"invalid source configuration: {summary}", problems=problems)
    return config


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(snake: str, value: Any) -> tuple[Any, str | None]:
    """The value in its stored form, or why it is not acceptable (types and ranges)."""
    if value is None:
        return None, None
    if snake in {"poll_interval_seconds", "batch_size", "max_event_age_days"}:
        limits = {
            "poll_interval_seconds": (1, MAX_INTERVAL_SECONDS),
            "batch_size": (1, MAX_BATCH),
            "max_event_age_days": (1, 36_500),
        }[snake]
        if not is_int(value) or not limits[0] <= value <= limits[1]:
            return None, f"must be an integer from {limits[0]} to {limits[1]}"
        return value, None
    if snake == "allowed_parent_rids":
        if not isinstance(value, list | tuple) or not value or len(value) > 1000:
            return None, "must be a list of 1-1000 organization ids (null allows every one)"
        if not all(is_int(v) and v >= 1 for v in value):
            return None, "must contain positive integer ids"
        return tuple(sorted(set(value))), None
    if snake == "start_from":
        if value not in ("beginning", "latest"):
            return None, "must be 'beginning' or 'latest'"
        return value, None
    if not isinstance(value, str):
        return None, "must be a string"
    return value, None


def _check_config(config: SourceConfig) -> list[FieldProblem]:
    problems = check_identifier(config.table, "table", qualified=True)
    for camel, column in config.columns().items():
        problems += check_identifier(column, camel)
    if not _PATH.match(config.payload_id_path):
        message = "must be a dot path like 'id' or 'data.id'"
        problems.append(FieldProblem(("body", "payloadIdPath"), message))
    if not _STREAM.match(config.stream):
        message = "must be 1-100 letters, digits, '.', '_' or '-', not leading"
        problems.append(FieldProblem(("body", "stream"), message))
    if config.max_event_age_days is not None and config.timestamp_column is None:
        message = "maxEventAgeDays needs a timestampColumn"
        problems.append(FieldProblem(("body", "maxEventAgeDays"), message))
    return problems


def check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(name) <= 200:
        message = "must be 1-200 characters"
        raise ValidationError(
            f"name: {message}", problems=[FieldProblem(("body", "name"), message)]
        )
    return name


def check_checkpoint(checkpoint: str | int | None) -> str | None:
    if checkpoint is None:
        return None
    text = str(checkpoint)
    if not 1 <= len(text) <= MAX_CHECKPOINT_LENGTH:
        message = f"must be 1-{MAX_CHECKPOINT_LENGTH} characters, or null for the beginning"
        problems = [FieldProblem(("body", "checkpoint"), message)]
        raise ValidationError(f"checkpoint: {message}", problems=problems)
    return text
