"""Per-tenant event types and their JSON Schema versions, with Confluent's evolution rules.

An event type belongs to one entity (an organization or an org unit). A unit sees its
organization's types too, and a type it registers under the same name overrides the
organization's for it (reads, field lists and publish-time validation alike); changing or
deleting a type is done where it belongs.

Registering a schema equal to the latest version (same canonical JSON) creates no version,
as in Confluent Schema Registry; any other schema must pass the type's compatibility mode
(``BACKWARD`` unless chosen) against the previous versions, checked by
:mod:`junctionbox.domain.schema_compat`. A schema equal to an *older* version becomes a new
version (a roll-back is a change like any other and is checked like one). The type's example,
when it has one, always validates against the latest schema.

Publishing validates each event's ``data`` with :meth:`SchemaRegistry.validators`: one query
for a batch's types, and compiled validators kept in a bounded LRU keyed by (type id,
version), so a new version is used from the next batch on without any invalidation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, Generic, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.event_validator import EventValidator
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.schema_compat import (
    CompatibilityMode,
    Incompatibility,
    check_compatibility,
    validate_schema_document,
)
from junctionbox.domain.schema_fields import SchemaField, schema_fields
from junctionbox.errors import ConflictError, FieldProblem, NotFoundError, ValidationError
from junctionbox.services import audit
from junctionbox.services.read_cache import ReadCache
from junctionbox.store.database import Database
from junctionbox.store.queries import event_types as queries
from junctionbox.store.queries.event_types import (
    EventTypeRecord,
    SchemaVersionRecord,
    VersionSummary,
)
from junctionbox.store.types import utcnow

__all__ = [
    "EventTypeView",
    "EventValidator",
    "FieldList",
    "SchemaRegistry",
    "check_event_type_name",
    "entity_chain",
    "fingerprint",
]

DEFAULT_MODE: Final = CompatibilityMode.BACKWARD
_NAME: Final = re.compile(r"[^\s/\x00-\x1f\x7f]{1,200}")
_REASONS_IN_MESSAGE: Final = 3
_UNSET: Final[Any] = object()

# How long another node may validate with a schema replaced (or deleted) elsewhere.
SCHEMA_TTL = 5.0
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class EventTypeView:
    """A type with one of its schema versions (the latest unless asked otherwise)."""

    type: EventTypeRecord
    schema: SchemaVersionRecord
    versions: list[VersionSummary] | None = None


@dataclass(frozen=True)
class FieldList:
    event_type: str
    version: int
    fields: list[SchemaField]


def entity_chain(tenant: TenantContext) -> tuple[int, ...]:
    """Where a tenant's event types are looked up, nearest first: the unit, then its org."""
    entity = tenant.entity
    return (entity.id,) if entity.parent_id is None else (entity.id, entity.parent_id)


def check_event_type_name(name: str) -> str:
    # "/" is excluded too: a decoded %2F would split the name across path segments.
    if not _NAME.fullmatch(name):
        message = "event type names have 1 to 200 characters, no whitespace and no '/'"
        raise ValidationError(message, problems=[FieldProblem(("eventType",), message)])
    return name


def fingerprint(schema: Any) -> str:
    """SHA-256 of the canonical JSON: key order and whitespace do not make a new version."""
    return hashlib.sha256(_canonical(schema, "schema").encode()).hexdigest()


def _canonical(value: Any, name: str) -> str:
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError:  # NaN and Infinity parse in Python but are not JSON
        message = f"{name} must be plain JSON (NaN and Infinity are not)"
        raise ValidationError(message, problems=[FieldProblem((name,), message)]) from None


def parse_mode(value: CompatibilityMode | str) -> CompatibilityMode:
    try:
        return CompatibilityMode(str(value).upper())
    except ValueError:
        known = ", ".join(m.value for m in CompatibilityMode)
        message = f"unknown compatibility mode {value!r}; use one of {known}"
        raise ValidationError(
            message, problems=[FieldProblem(("compatibility",), message)]
        ) from None


class SchemaRegistry:
    def __init__(self, db: Database, *, cache_size: int = 1024) -> None:
        self.db = db
        self._validators: _Lru[tuple[str, int], EventValidator] = _Lru(cache_size)
        self._fields: _Lru[tuple[str, int], list[SchemaField]] = _Lru(cache_size)
        # (entity chain, type) -> the validator of its latest schema, or None when no schema
        # is registered; see ``validators_for``.
        self._applies: ReadCache[tuple[tuple[int, ...], str], EventValidator | None] = ReadCache(
            SCHEMA_TTL
        )

    # --- registration ---------------------------------------------------------------------

    async def register(
        self,
        tenant: TenantContext,
        event_type: str,
        schema: Any,
        compatibility: CompatibilityMode | str | None = None,
        description: str | None = None,
        example: Any = None,
    ) -> tuple[EventTypeView, bool]:
        """Register ``schema`` for the tenant's type; True when a new version was created."""
        check_event_type_name(event_type)
        validate_schema_document(schema)
        validator = EventValidator(event_type, 0, schema)  # 400 if the engine cannot compile it
        mode = None if compatibility is None else parse_mode(compatibility)
        if example is not None:
            _check_example(validator, example)
        digest = fingerprint(schema)
        try:
            async with self.db.write() as conn:
                current = await queries.get_own(conn, tenant.org_id, event_type, for_update=True)
                if current is None:
                    view = await self._create(
                        conn, tenant, event_type, schema, digest, mode, description, example
                    )
                    return view, True
                return await self._evolve(
                    conn, tenant, current, schema, digest, validator, mode, description, example
                )
        finally:
            self._applies.invalidate()  # after the commit: publishes here use it at once

    async def _create(
        self,
        conn: AsyncConnection,
        tenant: TenantContext,
        name: str,
        schema: Any,
        digest: str,
        mode: CompatibilityMode | None,
        description: str | None,
        example: Any,
    ) -> EventTypeView:
        now = utcnow()
        record = await queries.create_type(
            conn,
            {
                "id": new_id("etp"),
                "org_id": tenant.org_id,
                "name": name,
                "description": description,
                "example": example,
                "compatibility": (mode or DEFAULT_MODE).value,
                "latest_version": 1,
                "created_at": now,
                "updated_at": now,
            },
        )
        version = await self._insert_version(conn, tenant, record.id, 1, schema, digest)
        await audit.record(
            conn,
            tenant.principal,
            "event_type.create",
            "event_type",
            record.id,
            org_id=record.org_id,
            after=_snapshot(record, version),
        )
        return EventTypeView(record, version)

    async def _evolve(
        self,
        conn: AsyncConnection,
        tenant: TenantContext,
        current: EventTypeRecord,
        schema: Any,
        digest: str,
        validator: EventValidator,
        mode: CompatibilityMode | None,
        description: str | None,
        example: Any,
    ) -> tuple[EventTypeView, bool]:
        latest = await _latest(conn, current)
        changes: dict[str, Any] = {}
        if mode is not None and mode.value != current.compatibility:
            changes["compatibility"] = mode.value
        if description is not None and description != current.description:
            changes["description"] = description
        if example is not None and example != current.example:
            changes["example"] = example
        if latest.fingerprint == digest:
            if not changes:
                return EventTypeView(current, latest), False
            record = await self._apply(conn, tenant, current, changes)
            return EventTypeView(record, latest), False
        effective = mode or CompatibilityMode(current.compatibility)
        await self._require_compatible(conn, current, schema, effective)
        if example is None and current.example is not None:
            _check_example(validator, current.example, stored=True)
        number = current.latest_version + 1
        version = await self._insert_version(conn, tenant, current.id, number, schema, digest)
        record = await queries.update_type(
            conn, current.id, {**changes, "latest_version": number, "updated_at": utcnow()}
        )
        await audit.record(
            conn,
            tenant.principal,
            "event_type.register",
            "event_type",
            record.id,
            org_id=record.org_id,
            before=_snapshot(current, latest),
            after=_snapshot(record, version),
        )
        return EventTypeView(record, version), True

    async def _insert_version(
        self,
        conn: AsyncConnection,
        tenant: TenantContext,
        type_id: str,
        number: int,
        schema: Any,
        digest: str,
    ) -> SchemaVersionRecord:
        values = {
            "event_type_id": type_id,
            "version": number,
            "schema": schema,
            "fingerprint": digest,
            "created_by": tenant.principal.id,
            "created_at": utcnow(),
        }
        return await queries.insert_version(conn, values)

    async def _require_compatible(
        self, conn: AsyncConnection, current: EventTypeRecord, schema: Any, mode: CompatibilityMode
    ) -> None:
        found = await _incompatibilities(conn, current, schema, mode)
        if not found:
            return
        reasons = [i.describe() for i in found]
        shown = "; ".join(reasons[:_REASONS_IN_MESSAGE])
        more = len(reasons) - _REASONS_IN_MESSAGE
        suffix = f" (and {more} more)" if more > 0 else ""
        raise ConflictError(
            f"schema is not {mode.value} compatible with event type {current.name!r}: "
            f"{shown}{suffix}",
            problems=[FieldProblem(("schema", *_tokens(i.path)), i.describe()) for i in found],
        )

    async def check(
        self, tenant: TenantContext, name: str, schema: Any
    ) -> tuple[EventTypeRecord, list[Incompatibility]]:
        """Whether ``schema`` could be registered as the next version (nothing is written)."""
        validate_schema_document(schema)
        async with self.db.read() as conn:
            current = await self._visible(conn, tenant, name)
            mode = CompatibilityMode(current.compatibility)
            return current, await _incompatibilities(conn, current, schema, mode)

    # --- reading ------------------------------------------------------------------------------

    async def list_types(
        self, tenant: TenantContext, page: PageRequest, search: str | None = None
    ) -> Page[EventTypeRecord]:
        async with self.db.read() as conn:
            items, total = await queries.list_page(conn, entity_chain(tenant), page, search=search)
        return Page(items, total, page)

    async def get_type(self, tenant: TenantContext, name: str) -> EventTypeView:
        async with self.db.read() as conn:
            current = await self._visible(conn, tenant, name)
            latest = await _latest(conn, current)
            versions = await queries.version_summaries(conn, current.id)
        return EventTypeView(current, latest, versions)

    async def get_version(
        self, tenant: TenantContext, name: str, version: int | Literal["latest"]
    ) -> EventTypeView:
        async with self.db.read() as conn:
            current = await self._visible(conn, tenant, name)
            number = current.latest_version if version == "latest" else version
            found = await queries.get_version(conn, current.id, number)
        if found is None:
            raise NotFoundError(f"event type {name!r} has no version {version}")
        return EventTypeView(current, found)

    async def fields(self, tenant: TenantContext, name: str) -> FieldList:
        lists = await self.field_lists(tenant, name)
        if not lists:
            raise NotFoundError(f"event type {name!r} not found")
        return lists[0]

    async def field_lists(self, tenant: TenantContext, name: str | None = None) -> list[FieldList]:
        """The field list of every visible type (or of the one named), by name."""
        async with self.db.read() as conn:
            found = await queries.latest_with_schemas(conn, entity_chain(tenant), name)
        return [self._field_list(record, version) for record, version in found]

    def _field_list(self, record: EventTypeRecord, version: SchemaVersionRecord) -> FieldList:
        key = (record.id, version.version)
        fields = self._fields.get(key)
        if fields is None:
            fields = schema_fields(version.schema)
            self._fields.put(key, fields)
        return FieldList(record.name, version.version, fields)

    # --- changing -----------------------------------------------------------------------------

    async def update_type(
        self,
        tenant: TenantContext,
        name: str,
        *,
        description: str | None = _UNSET,
        example: Any = _UNSET,
        compatibility: CompatibilityMode | str | None = None,
    ) -> EventTypeView:
        """Change the description or example (None clears them) or the compatibility mode."""
        changes: dict[str, Any] = {}
        if description is not _UNSET:
            changes["description"] = description
        if example is not _UNSET:
            changes["example"] = example
        if compatibility is not None:
            changes["compatibility"] = parse_mode(compatibility).value
        async with self.db.write() as conn:
            current = await self._own(conn, tenant, name, for_update=True)
            latest = await _latest(conn, current)
            if changes.get("example") is not None:
                _check_example(EventValidator(name, latest.version, latest.schema), example)
            record = await self._apply(conn, tenant, current, changes) if changes else current
        return EventTypeView(record, latest)

    async def _apply(
        self,
        conn: AsyncConnection,
        tenant: TenantContext,
        current: EventTypeRecord,
        changes: Mapping[str, Any],
    ) -> EventTypeRecord:
        record = await queries.update_type(conn, current.id, {**changes, "updated_at": utcnow()})
        await audit.record(
            conn,
            tenant.principal,
            "event_type.update",
            "event_type",
            record.id,
            org_id=record.org_id,
            before=current,
            after=record,
        )
        return record

    async def delete_type(self, tenant: TenantContext, name: str) -> None:
        """Delete the type and all its versions; events already logged are kept."""
        try:
            await self._delete_type(tenant, name)
        finally:
            self._applies.invalidate()  # after the commit

    async def _delete_type(self, tenant: TenantContext, name: str) -> None:
        async with self.db.write() as conn:
            current = await self._own(conn, tenant, name, for_update=True)
            await queries.delete_type(conn, current.id)
            await audit.record(
                conn,
                tenant.principal,
                "event_type.delete",
                "event_type",
                current.id,
                org_id=current.org_id,
                before=current,
            )

    # --- the publish path ---------------------------------------------------------------------

    async def validators_for(
        self, entity_chain: tuple[int, ...], types: Iterable[str]
    ) -> dict[str, EventValidator]:
        """``validators`` in a read transaction of its own, answered from memory for
        ``SCHEMA_TTL`` seconds after a lookup (most types have no schema: that is kept too).

        Registering or deleting a type through this registry drops what is kept, so this
        node validates with the new schema at once; other nodes within ``SCHEMA_TTL``.
        """
        found: dict[str, EventValidator] = {}
        missing: set[str] = set()
        for name in set(types):
            hit = self._applies.get((entity_chain, name))
            if hit is None:
                missing.add(name)
            elif hit[0] is not None:
                found[name] = hit[0]
        if not missing:
            return found
        if len(missing) == 1:  # the common case: one read shared by concurrent publishes
            (name,) = missing
            one = await self._applies.load(
                (entity_chain, name), lambda: self._read_validator(entity_chain, name)
            )
            return found if one is None else found | {name: one}
        generation = self._applies.generation
        async with self.db.read() as conn:
            read = await self.validators(conn, entity_chain, missing)
        for name in missing:
            self._applies.put((entity_chain, name), read.get(name), generation)
        return found | read

    async def _read_validator(
        self, entity_chain: tuple[int, ...], name: str
    ) -> EventValidator | None:
        async with self.db.read() as conn:
            return (await self.validators(conn, entity_chain, [name])).get(name)

    async def validators(
        self, conn: AsyncConnection, entity_chain: tuple[int, ...], types: Iterable[str]
    ) -> dict[str, EventValidator]:
        """Compiled validators of the latest schemas of ``types`` (absent: none registered).

        ``entity_chain`` is ``(org_id,)`` or ``(unit_id, org_id)``; a unit's type wins over
        its organization's. One query finds the types and their latest versions; schema
        documents are read (a second query) only for versions not compiled yet.
        """
        names = set(types)
        if not names:
            return {}
        latest = await queries.latest_refs(conn, entity_chain, names)
        found: dict[str, EventValidator] = {}
        missing: dict[str, tuple[str, int]] = {}
        for name, ref in latest.items():
            key = (ref.id, ref.latest_version)
            validator = self._validators.get(key)
            if validator is None:
                missing[name] = key
            else:
                found[name] = validator
        if missing:
            documents = await queries.schema_documents(conn, set(missing.values()))
            for name, key in missing.items():
                if key in documents:
                    found[name] = self._validators.put(
                        key, EventValidator(name, key[1], documents[key])
                    )
        return found

    # --- lookups ------------------------------------------------------------------------------

    async def _visible(
        self, conn: AsyncConnection, tenant: TenantContext, name: str
    ) -> EventTypeRecord:
        found = await queries.find_visible(conn, entity_chain(tenant), name)
        if found is None:
            raise NotFoundError(f"event type {name!r} not found")
        return found

    async def _own(
        self, conn: AsyncConnection, tenant: TenantContext, name: str, *, for_update: bool = False
    ) -> EventTypeRecord:
        found = await queries.get_own(conn, tenant.org_id, name, for_update=for_update)
        if found is not None:
            return found
        inherited = await queries.find_visible(conn, entity_chain(tenant), name)
        if inherited is not None:
            raise NotFoundError(
                f"event type {name!r} belongs to organization {inherited.org_id}: change it "
                f"there (orgId={inherited.org_id}), or register it on this unit to override it"
            )
        raise NotFoundError(f"event type {name!r} not found")


async def _latest(conn: AsyncConnection, record: EventTypeRecord) -> SchemaVersionRecord:
    latest = await queries.get_version(conn, record.id, record.latest_version)
    assert latest is not None, "latest_version always names a stored version"
    return latest


async def _incompatibilities(
    conn: AsyncConnection, current: EventTypeRecord, schema: Any, mode: CompatibilityMode
) -> list[Incompatibility]:
    """check_compatibility against the versions the mode compares with, numbered as stored."""
    if mode is CompatibilityMode.NONE:
        return []
    transitive = mode.value.endswith("_TRANSITIVE")
    wanted = None if transitive else [current.latest_version]
    previous = await queries.schemas(conn, current.id, wanted)
    found = check_compatibility(schema, [p.schema for p in previous], mode)
    # check_compatibility numbers versions by position in the list it was given
    return [replace(i, version=previous[i.version - 1].version) if i.version else i for i in found]


def _check_example(validator: EventValidator, example: Any, *, stored: bool = False) -> None:
    _canonical(example, "example")
    errors = validator.errors(example)
    if not errors:
        return
    where = "; ".join(f"{pointer or '(root)'}: {message}" for pointer, message in errors[:3])
    if stored:
        message = (
            f"the type's example does not match the new schema ({where}); "
            "send an example that does along with the schema"
        )
    else:
        message = f"example does not match the schema: {where}"
    problems = [FieldProblem(("example", *_tokens(p)), m) for p, m in errors]
    raise ValidationError(message, problems=problems)


def _tokens(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _snapshot(record: EventTypeRecord, version: SchemaVersionRecord) -> dict[str, Any]:
    return {
        **asdict(record),
        "version": version.version,
        "fingerprint": version.fingerprint,
        "schema": version.schema,
    }


class _Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)
