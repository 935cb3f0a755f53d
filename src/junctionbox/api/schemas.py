"""Shared request/response models: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic.alias_generators import to_camel

from junctionbox.domain.paging import Page
from junctionbox.services.integrations import VersionInfo

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_TIMEZONES = frozenset(available_timezones())


class ApiModel(BaseModel):
    """Response models: camelCase out, built from records."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class RequestModel(ApiModel):
    """Request bodies: an unknown field is a mistake worth reporting."""

    model_config = ConfigDict(extra="forbid")


def as_utc(value: datetime | None) -> datetime | None:
    """Query dates without an offset are taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def check_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def check_timezone(value: str | None) -> str | None:
    if value is not None and value not in _TIMEZONES:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/London)")
    return value


class ErrorBody(ApiModel):
    error: str
    code: str
    status_code: int
    timestamp: datetime
    request_id: str | None
    details: list[dict[str, Any]] | None = None


class UserOut(ApiModel):
    id: str
    email: str
    role: str
    org_id: int | None
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Message(ApiModel):
    message: str


_PAGE_FIELDS: dict[str, Any] = {
    "total": (int, ...),
    "page": (int, ...),
    "limit": (int, ...),
    "has_more": (bool, Field(..., alias="hasMore")),
}


def paged(list_name: str, item: type[ApiModel]) -> type[BaseModel]:
    """A response model ``{<list_name>: [...], total, page, limit, hasMore}``."""
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{item.__name__}Page",
        __config__=ConfigDict(populate_by_name=True),
        **{list_name: (list[item], ...)},  # type: ignore[valid-type]
        **_PAGE_FIELDS,
    )
    return model


def page_body(
    list_name: str, page: Page[Any], convert: Callable[[Any], ApiModel]
) -> dict[str, Any]:
    return {
        list_name: [convert(record) for record in page.items],
        "total": page.total,
        "page": page.request.page,
        "limit": page.request.limit,
        "hasMore": page.has_more,
    }


class ProfileFields(RequestModel):
    """Fields shared by organizations and org units (seed 003)."""

    name: str = Field(min_length=1, max_length=200)
    code: str | None = Field(None, max_length=64)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    address: str | None = Field(None, max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=100)
    region: str | None = Field(None, max_length=64)
    timezone: str | None = None

    _tz = field_validator("timezone")(check_timezone)


class VersionOut(ApiModel):
    """One saved version of an integration (outbound or inbound)."""

    version: int
    change: str = Field(
        description="CREATED, UPDATED, RESTORED:<n>, ENABLED, DISABLED, ROTATED (signing keys)"
    )
    created_at: datetime
    created_by: str | None

    @classmethod
    def of(cls, info: VersionInfo) -> VersionOut:
        return cls.model_validate(info)


class VersionsOut(ApiModel):
    versions: list[VersionOut]
