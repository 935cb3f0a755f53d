"""SQL table event sources: the service (CRUD, test, poll step) that feeds the event log.

A source reads a table of an external database (seed 003's ``notification_queue``) after its
checkpoint, in id order, a batch at a time. Each row becomes an event of the tenant the row
names (the source's own entity or one of its units; rows of any other tenant are skipped and
counted, never logged elsewhere), unless it is filtered out (``maxEventAgeDays``,
``allowedParentRids``), malformed, refused by its type's registered schema, or a repeat within
the dedupe window. The events and the new checkpoint commit in one transaction: a failure
anywhere leaves the checkpoint where it was and the whole batch is read again (no loss, no
gap); rows that are filtered out still move the checkpoint (they were processed).

Duplicates: a row read twice (a retried batch, a checkpoint reset) has the same event id
(``<source id>:<row id>``, source ``sql:<source name>``), so the log's unique (tenant, source,
event id) answers it as a duplicate. The seed's 5-minute window, keyed by
``<type>:<payload id>:<tenant>``, drops *different* rows that repeat an event; it lives in
memory on the node that polls, so it starts empty after a restart or when another node takes
the lease over. Renaming a source changes the event source attribute, so rows re-read after a
rename and a checkpoint reset are logged again.

Ordering caveat: the checkpoint is an id cursor, so the table's ids must become visible in
increasing order (one writer, or a sequence that commits in order). A row committed late with
an id below the checkpoint is never read; this is the seed's design, made explicit here.

One poller per source across nodes: a lease in the source row, claimed with a conditional
UPDATE; the checkpoint update is fenced by it (and by the checkpoint it started from), so a
node that lost its lease, or raced a reset, rolls its batch back instead of moving it.

Creating and changing a source reaches arbitrary databases, so the API lets only ADMIN do it;
tenants see their sources (connection string masked) and may poll them.

The configuration's fields and validation are in ``event_source_config``; turning rows into
event drafts and the dedupe window, in ``event_source_rows``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.connectors.sql_source import (
    SqlTableReader,
    checkpoint_text,
    mask_url,
    normalize_url,
)
from junctionbox.domain.events import EventDraft, StoredEvent
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.redaction import MASK, redact_text
from junctionbox.domain.secretbox import SecretBox
from junctionbox.errors import (
    ConflictError,
    FieldProblem,
    JunctionboxError,
    NotFoundError,
    ValidationError,
)
from junctionbox.services import audit
from junctionbox.services.event_log import EventLog
from junctionbox.services.event_source_config import (
    CONFIG_FIELDS,
    SourceConfig,
    check_checkpoint,
    check_name,
    is_int,
    parse_config,
)
from junctionbox.services.event_source_rows import (
    DEDUP_MAX_KEYS,
    DEDUP_WINDOW,
    DedupWindow,
    Mapped,
    RowMapper,
    Skip,
)
from junctionbox.services.schema_registry import SchemaRegistry
from junctionbox.store.database import Database
from junctionbox.store.queries import event_sources as queries
from junctionbox.store.queries.event_sources import SourceRecord
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

KIND: Final = "sql"
PREVIEW_ROWS: Final = 10
_ONCE = "once:"  # reader keys of one-off engines (API requests), disposed by their user

PollStatus = Literal["ok", "error", "busy", "inactive", "missing", "fenced", "scheduled"]


# --- views and reports ---


@dataclass(frozen=True)
class EventSource:
    """A source as the API shows it: the connection string masked, the config parsed."""

    id: str
    org_id: int
    name: str
    kind: str
    is_active: bool
    connection: str
    config: SourceConfig
    checkpoint: str | None
    events_ingested: int
    last_polled_at: datetime | None
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PollReport:
    """What one poll did. Skipped rows are counted by reason; ``more`` says the batch was
    full, so the poller reads the next one at once."""

    source_id: str
    status: PollStatus
    polled_at: datetime
    rows_read: int = 0
    appended: int = 0
    duplicates: int = 0
    deduplicated: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    checkpoint_before: str | None = None
    checkpoint_after: str | None = None
    error: str | None = None
    lease_owner: str | None = None
    more: bool = False


@dataclass(frozen=True)
class PreviewRow:
    """A row as the source would map it; ``outcome`` is ``ingest`` or why it would be skipped."""

    row_id: str | None
    outcome: str
    detail: str | None = None
    event_id: str | None = None
    type: str | None = None
    org_id: int | None = None
    time: datetime | None = None
    subject: str | None = None
    partition_key: str | None = None
    data: Any = None


@dataclass(frozen=True)
class TestResult:
    connection: str
    table: str
    after_checkpoint: str | None
    rows: list[PreviewRow]


@dataclass
class _Batch:
    """A read batch sorted out: drafts per tenant, the keys to remember, what was skipped."""

    last_id: str | None
    rows_read: int
    by_org: dict[int, list[EventDraft]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    deduplicated: int = 0


class _Fenced(Exception):
    """The lease was lost or the checkpoint reset while polling: the batch is rolled back."""


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, JunctionboxError):
        return redact_text(exc.message)
    return f"internal error ({type(exc).__name__}); see the logs"


# --- the service ---


class EventSourceService:
    """Configuration of SQL table sources (tenant-scoped, audited) and their poll step."""

    def __init__(
        self,
        db: Database,
        secretbox: SecretBox,
        event_log: EventLog,
        *,
        schemas: SchemaRegistry | None = None,
        reader: SqlTableReader | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_event_bytes: int = 1024 * 1024,
        lease_margin: timedelta = timedelta(seconds=30),
        dedup_window: timedelta = DEDUP_WINDOW,
        dedup_max_keys: int = DEDUP_MAX_KEYS,
    ) -> None:
        self.db = db
        self.secretbox = secretbox
        self.event_log = event_log
        self.schemas = schemas
        self.reader = reader or SqlTableReader()
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.lease_margin = lease_margin
        self.dedup_window = dedup_window
        self.dedup_max_keys = dedup_max_keys
        self._windows: dict[str, DedupWindow] = {}

    # --- configuration ---

    async def create(
        self,
        tenant: TenantContext,
        *,
        name: str,
        connection_string: str,
        config: Mapping[str, Any] | None = None,
        is_active: bool = True,
    ) -> EventSource:
        name = check_name(name)
        url = normalize_url(connection_string)
        parsed = parse_config(config or {})
        source_id = new_id("src")
        checkpoint = None
        if parsed.start_from == "latest":
            checkpoint = await self._once(
                url, lambda key: self.reader.max_id(key, url, parsed.table_query())
            )
        now = self.clock()
        values = {
            "id": source_id,
            "org_id": tenant.org_id,
            "name": name,
            "kind": KIND,
            "is_active": is_active,
            "connection_secret": self.secretbox.seal(_render(url), source_id),
            "config": parsed.to_json(),
            "checkpoint": checkpoint,
            "events_ingested": 0,
            "last_polled_at": None,
            "last_error": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as conn:
            await self._require_free_name(conn, tenant.org_id, name, None)
            record = await queries.create(conn, values)
            view = self._view(record)
            await audit.record(
                conn,
                tenant.principal,
                "event_source.create",
                "event_source",
                source_id,
                org_id=tenant.org_id,
                after=view,
            )
        return view

    async def get(self, tenant: TenantContext, source_id: str) -> EventSource:
        async with self.db.read() as conn:
            return self._view(await self._existing(conn, tenant, source_id))

    async def update(
        self, tenant: TenantContext, source_id: str, changes: Mapping[str, Any]
    ) -> EventSource:
        """Apply ``changes``: ``name``, ``isActive``, ``connectionString`` and any config
        field (null resets an optional one). The checkpoint is kept; reset it explicitly."""
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = check_name(changes["name"])
        if "isActive" in changes:
            values["is_active"] = bool(changes["isActive"])
        url = None
        if changes.get("connectionString") is not None:
            url = normalize_url(changes["connectionString"])
        config_changes = {k: v for k, v in changes.items() if k in CONFIG_FIELDS}
        async with self.db.write() as conn:
            before = await self._existing(conn, tenant, source_id)
            if config_changes:
                values["config"] = parse_config({**before.config, **config_changes}).to_json()
            if url is not None:
                values["connection_secret"] = self.secretbox.seal(_render(url), source_id)
            if "name" in values:
                await self._require_free_name(conn, before.org_id, values["name"], source_id)
            if values.get("is_active") is False:
                values |= {"lease_owner": None, "lease_expires_at": None}
            after = await queries.update_source(
                conn, source_id, {**values, "updated_at": self.clock()}
            )
            assert after is not None
            view = self._view(after)
            await audit.record(
                conn,
                tenant.principal,
                "event_source.update",
                "event_source",
                source_id,
                org_id=before.org_id,
                before=self._view(before),
                after=view,
            )
        if url is not None or config_changes:
            await self.reader.dispose(source_id)
        return view

    async def delete(self, tenant: TenantContext, source_id: str) -> None:
        async with self.db.write() as conn:
            before = await self._existing(conn, tenant, source_id)
            await queries.delete_source(conn, source_id)
            await audit.record(
                conn,
                tenant.principal,
                "event_source.delete",
                "event_source",
                source_id,
                org_id=before.org_id,
                before=self._view(before),
            )
        self._windows.pop(source_id, None)
        await self.reader.dispose(source_id)

    async def reset_checkpoint(
        self,
        tenant: TenantContext,
        source_id: str,
        checkpoint: str | int | None,
        *,
        latest: bool = False,
    ) -> EventSource:
        """Set the checkpoint: rows with a greater id are read next (None: from the
        beginning; ``latest``: the table's highest id now, i.e. only rows added later)."""
        text = check_checkpoint(checkpoint)
        if latest:
            async with self.db.read() as conn:
                record = await self._existing(conn, tenant, source_id)
            url = self._url(record)
            query = parse_config(record.config).table_query()
            text = await self._once(url, lambda key: self.reader.max_id(key, url, query))
        async with self.db.write() as conn:
            before = await self._existing(conn, tenant, source_id)
            after = await queries.update_source(
                conn, source_id, {"checkpoint": text, "updated_at": self.clock()}
            )
            assert after is not None
            view = self._view(after)
            await audit.record(
                conn,
                tenant.principal,
                "event_source.checkpoint",
                "event_source",
                source_id,
                org_id=before.org_id,
                before={"checkpoint": before.checkpoint},
                after={"checkpoint": text},
            )
        return view

    async def test(
        self,
        tenant: TenantContext,
        source_id: str | None = None,
        *,
        connection_string: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> TestResult:
        """Connect and map up to ten rows without logging anything: the rows after a saved
        source's checkpoint, or the first rows of an unsaved configuration."""
        if source_id is not None:
            async with self.db.read() as conn:
                record = await self._existing(conn, tenant, source_id)
            url = self._url(record)
        else:
            if not connection_string:
                message = "connectionString is required to test an unsaved source"
                problems = [FieldProblem(("body", "connectionString"), message)]
                raise ValidationError(message, problems=problems)
            url = normalize_url(connection_string)
            record = _unsaved(tenant, config or {})
        parsed = parse_config(record.config)
        query = parsed.table_query()
        rows = await self._once(
            url,
            lambda key: self.reader.read_after(key, url, query, record.checkpoint, PREVIEW_ROWS),
        )
        previews = await self._preview(record, parsed, rows)
        return TestResult(mask_url(url), parsed.table, record.checkpoint, previews)

    # --- polling ---

    async def due_sources(self, owner: str, now: datetime | None = None) -> list[str]:
        """Active sources ``owner`` may poll (lease free, expired or its own) whose interval
        has passed since their last poll."""
        now = now or self.clock()
        async with self.db.read() as conn:
            candidates = await queries.due_candidates(conn, owner, now)
        await self._forget_except({c.id for c in candidates})
        due = []
        for candidate in candidates:
            interval = timedelta(seconds=_interval(candidate.config))
            if candidate.last_polled_at is None or candidate.last_polled_at + interval <= now:
                due.append(candidate.id)
        return due

    async def _forget_except(self, source_ids: set[str]) -> None:
        """Drop the engines and dedupe windows of sources this node no longer polls (deleted,
        deactivated, or leased by another node)."""
        for key in self.reader.cached_keys():
            if not key.startswith(_ONCE) and key not in source_ids:
                await self.reader.dispose(key)
        for key in set(self._windows) - source_ids:
            del self._windows[key]

    async def release_leases(self, owner: str, source_ids: Iterable[str] | None = None) -> int:
        async with self.db.write() as conn:
            return await queries.release(conn, owner, source_ids)

    async def poll_now(self, tenant: TenantContext, source_id: str) -> PollReport:
        """Poll at once for an operator. When a poller holds the lease, the source is made
        due instead (status ``scheduled``): the holder polls it within its next tick."""
        async with self.db.read() as conn:
            await self._existing(conn, tenant, source_id)
        owner = f"api:{new_id('poll')}"
        try:
            report = await self.poll_once(source_id, owner)
        finally:
            await self.release_leases(owner, [source_id])
        if report.lease_owner == owner:
            # This node may not be a poller: keep no connections open for the source. (Only
            # when we held the lease: then no poll here is using the engine.)
            await self.reader.dispose(source_id)
        if report.status == "busy":
            # A poller holds the lease: make the source due so that it polls within a tick.
            async with self.db.write() as conn:
                await queries.make_due(conn, source_id)
            return replace(report, status="scheduled")
        if report.status == "inactive":
            raise ConflictError("the source is inactive; activate it first")
        return report

    async def poll_once(
        self, source_id: str, owner: str, *, now: datetime | None = None
    ) -> PollReport:
        """One step: claim the lease, read a batch after the checkpoint, sort it out, append
        the events and move the checkpoint in one transaction. A failure is recorded in
        ``last_error`` and leaves the checkpoint where it was."""
        now = now or self.clock()
        record, status = await self._claim(source_id, owner, now)
        if record is None or status != "ok":
            holder = record.lease_owner if record is not None else None
            return PollReport(source_id, status, now, lease_owner=holder)
        try:
            config = parse_config(record.config)
            url = self._url(record)
            rows = await self.reader.read_after(
                record.id, url, config.table_query(), record.checkpoint, config.batch_size
            )
            batch = await self._sort_out(record, config, rows, now)
            return await self._commit(record, config, batch, owner, now)
        except _Fenced:
            return PollReport(
                source_id, "fenced", now, checkpoint_before=record.checkpoint, lease_owner=owner
            )
        except Exception as exc:  # one bad poll is recorded, never raised into the loop
            return await self._failed(record, owner, now, exc)

    async def close(self) -> None:
        await self.reader.close()

    # --- the poll step's parts ---

    async def _claim(
        self, source_id: str, owner: str, now: datetime
    ) -> tuple[SourceRecord | None, PollStatus]:
        async with self.db.write() as conn:
            record = await queries.get(conn, source_id)
            if record is None:
                return None, "missing"
            if not record.is_active:
                return None, "inactive"
            until = self._lease_until(record.config, now)
            if not await queries.claim(conn, source_id, owner, now, until):
                return record, "busy"
            return replace(record, lease_owner=owner, lease_expires_at=until), "ok"

    def _lease_until(self, config: Mapping[str, Any], now: datetime) -> datetime:
        return now + timedelta(seconds=_interval(config)) + self.lease_margin

    async def _sort_out(
        self,
        record: SourceRecord,
        config: SourceConfig,
        rows: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> _Batch:
        last_id = checkpoint_text(rows[-1]["idColumn"]) if rows else None
        batch = _Batch(last_id, len(rows))
        mapped = self._map_rows(record, config, rows, batch.skipped)
        admitted = await self._admit(record, config, mapped, now, batch.skipped)
        window = self._window(record.id)
        taken: set[str] = set()
        for item in admitted:
            if item.dedupe_key in taken or window.contains(item.dedupe_key, now):
                batch.deduplicated += 1
                continue
            taken.add(item.dedupe_key)
            batch.keys.append(item.dedupe_key)
            batch.by_org.setdefault(item.tenant_id, []).append(item.draft)
        return batch

    def _map_rows(
        self,
        record: SourceRecord,
        config: SourceConfig,
        rows: Sequence[Mapping[str, Any]],
        skipped: Counter[str],
    ) -> list[Mapped]:
        mapper = RowMapper(record, config, self.max_event_bytes)
        mapped = []
        for row in rows:
            result = mapper.map(row)
            if isinstance(result, Skip):
                skipped[result.reason] += 1
                log.warning(
                    "SQL source %s skipped row %s: %s",
                    record.id,
                    checkpoint_text(row["idColumn"]),
                    result.detail,
                )
            else:
                mapped.append(result)
        return mapped

    async def _admit(
        self,
        record: SourceRecord,
        config: SourceConfig,
        mapped: list[Mapped],
        now: datetime,
        skipped: Counter[str],
    ) -> list[Mapped]:
        """The rows that pass the tenant, parent, age and schema filters."""
        if not mapped:
            return []
        async with self.db.read() as conn:
            parents = await queries.entity_parents(conn, {m.tenant_id for m in mapped})
            verdicts = {m.row_id: _filter(record, config, m, parents, now) for m in mapped}
            passing = [m for m in mapped if verdicts[m.row_id] is None]
            refused = await self._schema_refusals(conn, passing, parents)
        admitted = []
        for item in mapped:
            reason = verdicts[item.row_id] or refused.get(item.row_id)
            if reason is None:
                admitted.append(item)
            else:
                skipped[reason] += 1
        return admitted

    async def _schema_refusals(
        self, conn: AsyncConnection, items: list[Mapped], parents: Mapping[int, int | None]
    ) -> dict[str, str]:
        """Row id -> ``schema_invalid`` for rows whose data fails their type's schema."""
        if self.schemas is None or not items:
            return {}
        refused: dict[str, str] = {}
        by_tenant: dict[int, list[Mapped]] = {}
        for item in items:
            by_tenant.setdefault(item.tenant_id, []).append(item)
        for tenant_id, group in by_tenant.items():
            parent = parents.get(tenant_id)
            chain = (tenant_id,) if parent is None else (tenant_id, parent)
            validators = await self.schemas.validators(conn, chain, {i.draft.type for i in group})
            for item in group:
                validator = validators.get(item.draft.type)
                if validator is not None and validator.errors(item.draft.json_value()):
                    refused[item.row_id] = "schema_invalid"
        return refused

    async def _commit(
        self, record: SourceRecord, config: SourceConfig, batch: _Batch, owner: str, now: datetime
    ) -> PollReport:
        checkpoint = batch.last_id if batch.last_id is not None else record.checkpoint
        until = self._lease_until(record.config, now)

        async def work(conn: AsyncConnection) -> tuple[list[StoredEvent], int]:
            stored: list[StoredEvent] = []
            duplicates = 0
            for org_id, drafts in batch.by_org.items():
                results, fresh = await self.event_log.append_in(
                    conn, org_id, drafts, stream=config.stream
                )
                stored += fresh
                duplicates += sum(1 for r in results if r.duplicate)
            moved = await queries.advance(
                conn,
                record.id,
                owner,
                expected=record.checkpoint,
                checkpoint=checkpoint,
                ingested=len(stored),
                now=now,
                until=until,
            )
            if not moved:
                raise _Fenced
            return stored, duplicates

        stored, duplicates = await self.event_log.write_retrying(work)
        self.event_log.notify(stored)
        self._window(record.id).remember(batch.keys, now)
        return PollReport(
            record.id,
            "ok",
            now,
            rows_read=batch.rows_read,
            appended=len(stored),
            duplicates=duplicates,
            deduplicated=batch.deduplicated,
            skipped=dict(batch.skipped),
            checkpoint_before=record.checkpoint,
            checkpoint_after=checkpoint,
            lease_owner=owner,
            more=batch.rows_read >= config.batch_size,
        )

    async def _failed(
        self, record: SourceRecord, owner: str, now: datetime, exc: Exception
    ) -> PollReport:
        reason = _reason_of(exc)
        if isinstance(exc, JunctionboxError) and exc.status != 500:
            log.warning("SQL source %s poll failed: %s", record.id, reason)
        else:  # not an outage we know: keep the trace
            log.error("SQL source %s poll failed: %s", record.id, reason, exc_info=exc)
        try:
            async with self.db.write() as conn:
                until = self._lease_until(record.config, now)
                await queries.record_failure(conn, record.id, owner, reason, now, until)
        except Exception:  # the store itself may be what failed; the next poll retries
            log.warning("could not record the failure of SQL source %s", record.id, exc_info=True)
        return PollReport(
            record.id,
            "error",
            now,
            checkpoint_before=record.checkpoint,
            checkpoint_after=record.checkpoint,
            error=reason,
            lease_owner=owner,
        )

    def _window(self, source_id: str) -> DedupWindow:
        window = self._windows.get(source_id)
        if window is None:
            window = self._windows[source_id] = DedupWindow(self.dedup_window, self.dedup_max_keys)
        return window

    async def _preview(
        self, record: SourceRecord, config: SourceConfig, rows: Sequence[Mapping[str, Any]]
    ) -> list[PreviewRow]:
        mapper = RowMapper(record, config, self.max_event_bytes)
        results = [mapper.map(row) for row in rows]
        mapped = [r for r in results if isinstance(r, Mapped)]
        verdicts: dict[str, str | None] = {}
        if mapped:
            now = self.clock()
            async with self.db.read() as conn:
                parents = await queries.entity_parents(conn, {m.tenant_id for m in mapped})
                verdicts = {m.row_id: _filter(record, config, m, parents, now) for m in mapped}
                passing = [m for m in mapped if verdicts[m.row_id] is None]
                verdicts |= await self._schema_refusals(conn, passing, parents)
        return [
            _preview_row(row, result, verdicts) for row, result in zip(rows, results, strict=True)
        ]

    # --- helpers ---

    async def _existing(
        self, conn: AsyncConnection, tenant: TenantContext, source_id: str
    ) -> SourceRecord:
        record = await queries.get(conn, source_id, org_id=tenant.org_id)
        if record is None:
            raise NotFoundError("event source not found")
        return record

    async def _require_free_name(
        self, conn: AsyncConnection, org_id: int, name: str, source_id: str | None
    ) -> None:
        if await queries.name_taken(conn, org_id, name, source_id):
            raise ConflictError(f"a source named {name!r} already exists")

    def _url(self, record: SourceRecord) -> URL:
        try:
            text = self.secretbox.open(record.connection_secret, record.id)
        except ValueError as exc:
            raise JunctionboxError(
                "the connection string cannot be decrypted (was JB_SECRET_KEY changed?)"
            ) from exc
        return normalize_url(text)

    def _view(self, record: SourceRecord) -> EventSource:
        try:
            connection = mask_url(self._url(record))
        except JunctionboxError:
            connection = MASK
        values = {
            f.name: getattr(record, f.name)
            for f in fields(EventSource)
            if f.name not in {"connection", "config"}
        }
        return EventSource(**values, connection=connection, config=_stored_config(record.config))

    async def _once(self, url: URL, work: Callable[[str], Any]) -> Any:
        """Run ``work(key)`` on an engine of its own, disposed afterwards (API requests must
        not leave connections open on nodes that do not poll)."""
        key = f"{_ONCE}{new_id('conn')}"
        try:
            return await work(key)
        finally:
            await self.reader.dispose(key)

    # Last in the class: a method named ``list`` would shadow the builtin in annotations.
    async def list(
        self, tenant: TenantContext, page: PageRequest, *, is_active: bool | None = None
    ) -> Page[EventSource]:
        async with self.db.read() as conn:
            items, total = await queries.list_page(
                conn, page, org_id=tenant.org_id, is_active=is_active
            )
        return Page([self._view(r) for r in items], total, page)


def _interval(config: Mapping[str, Any]) -> int:
    value = config.get("pollIntervalSeconds", SourceConfig.poll_interval_seconds)
    return int(value) if is_int(value) and value >= 1 else SourceConfig.poll_interval_seconds


def _stored_config(stored: Mapping[str, Any]) -> SourceConfig:
    try:
        return parse_config(stored)
    except ValidationError:  # written by an older version: show what can be read
        return SourceConfig()


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _unsaved(tenant: TenantContext, config: Mapping[str, Any]) -> SourceRecord:
    """A stand-in record for testing a configuration that is not saved yet."""
    now = utcnow()
    return SourceRecord(
        id="src_unsaved",
        org_id=tenant.org_id,
        name="unsaved",
        kind=KIND,
        is_active=True,
        connection_secret="",
        config=parse_config(config).to_json(),
        checkpoint=None,
        events_ingested=0,
        last_polled_at=None,
        last_error=None,
        lease_owner=None,
        lease_expires_at=None,
        created_at=now,
        updated_at=now,
    )


def _filter(
    record: SourceRecord,
    config: SourceConfig,
    item: Mapped,
    parents: Mapping[int, int | None],
    now: datetime,
) -> str | None:
    """Why a mapped row is not logged (None: it is)."""
    tenant = item.tenant_id
    if tenant not in parents or record.org_id not in (tenant, parents[tenant]):
        return "foreign_tenant"
    root = parents[tenant] or tenant
    if config.allowed_parent_rids is not None and root not in config.allowed_parent_rids:
        return "parent_not_allowed"
    moment = item.draft.time
    age_limit = config.max_event_age_days
    if age_limit is not None and moment is not None and now - moment > timedelta(days=age_limit):
        return "too_old"
    return None


def _preview_row(
    row: Mapping[str, Any], result: Mapped | Skip, verdicts: Mapping[str, str | None]
) -> PreviewRow:
    row_id = None if row.get("idColumn") is None else checkpoint_text(row["idColumn"])
    if isinstance(result, Skip):
        return PreviewRow(row_id, result.reason, result.detail)
    draft = result.draft
    return PreviewRow(
        row_id,
        verdicts.get(result.row_id) or "ingest",
        event_id=draft.event_id,
        type=draft.type,
        org_id=result.tenant_id,
        time=draft.time,
        subject=draft.subject,
        partition_key=draft.partition_key,
        data=draft.json_value(),
    )
