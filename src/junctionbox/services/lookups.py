"""Lookup tables: CRUD, CSV/Excel import and export, cached resolution for SIMPLE mappings.

An entry maps ``(type, key)`` to a value within one tenant (an organization or a unit). The
``lookup`` transformer reads them through :meth:`LookupService.resolver`: an immutable
snapshot of the tenant's tables (a unit sees its organization's entries, its own override
them), cached per tenant.

Cache freshness: a snapshot lives at most ``ttl`` (60 minutes, seed 003). Every write made
through this service drops the affected snapshots at once. Writes made on other nodes are
noticed by a signature check (entry count and newest ``updated_at`` per entity, one indexed
aggregate query) that runs at most once per ``recheck_interval`` seconds per tenant, so a
cluster sees a change within that interval. Between checks a resolver call costs a dict
look-up and a clock read, no query. If the check itself fails (database down), the cached
snapshot keeps serving until the TTL ends.

Imports are all or nothing: every row is validated first, errors name the row (the header
is row 1, as in a spreadsheet), and the rows are written in one transaction.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final

from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.errors import (
    ConflictError,
    FieldProblem,
    JunctionboxError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from junctionbox.expr import LookupResolver
from junctionbox.services import audit
from junctionbox.store.database import Database
from junctionbox.store.queries import lookups as queries
from junctionbox.store.queries.lookups import LookupRecord, Signature, TypeCount
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

TTL_SECONDS: Final = 3600.0
RECHECK_SECONDS: Final = 5.0
MAX_CACHED_TENANTS: Final = 1000
IMPORT_MAX_BYTES: Final = 5 * 1024 * 1024
IMPORT_MAX_ROWS: Final = 50_000
# An .xlsx is a zip: refuse one that would inflate past this (a decompression bomb).
XLSX_MAX_INFLATED: Final = 100 * 1024 * 1024
MAX_LISTED_PROBLEMS: Final = 20

TYPE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_KEY, MAX_VALUE, MAX_DESCRIPTION = 500, 10_000, 2_000

CSV_TYPE: Final = "text/csv"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ZIP_MAGIC, _OLE_MAGIC = b"PK\x03\x04", b"\xd0\xcf\x11\xe0"
# Exported cells that a spreadsheet would run as a formula get a leading apostrophe (OWASP
# CSV injection); so do cells already starting with one, so that import can strip exactly
# one apostrophe and give back the original text.
_ESCAPED_START: Final = ("=", "+", "-", "@", "\t", "\r", "\n", "'")


class ImportMode(StrEnum):
    MERGE = "merge"  # add new keys, update existing ones, keep the rest
    REPLACE = "replace"  # the file's types end up holding exactly the file's entries


class FileFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


@dataclass(frozen=True)
class EntryInput:
    """A validated entry, before it has an id."""

    type: str
    key: str
    value: str
    description: str | None


@dataclass(frozen=True)
class ImportReport:
    types: list[str]
    mode: ImportMode
    rows: int
    created: int
    updated: int
    deleted: int


@dataclass(frozen=True)
class ExportFile:
    data: bytes
    media_type: str
    filename: str
    rows: int


# --- validation ---


def check_entry(
    lookup_type: Any, key: Any, value: Any, description: Any, loc: tuple[str | int, ...]
) -> tuple[EntryInput | None, list[FieldProblem]]:
    """The entry with surrounding whitespace of type and key removed, or its problems."""
    problems: list[FieldProblem] = []

    def text(name: str, raw: Any, limit: int, *, required: bool, strip: bool) -> str | None:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if required:
                problems.append(FieldProblem((*loc, name), "is required"))
            return None
        if not isinstance(raw, str):
            problems.append(FieldProblem((*loc, name), "must be a string"))
            return None
        cleaned = raw.strip() if strip else raw
        if len(cleaned) > limit:
            problems.append(FieldProblem((*loc, name), f"is longer than {limit} characters"))
        elif "\x00" in cleaned:
            problems.append(FieldProblem((*loc, name), "contains a NUL character"))
        return cleaned

    kind = text("type", lookup_type, 100, required=True, strip=True)
    if kind is not None and not TYPE_PATTERN.match(kind):
        message = "may hold only letters, digits and _ . : - (at most 100)"
        problems.append(FieldProblem((*loc, "type"), message))
    found_key = text("key", key, MAX_KEY, required=True, strip=True)
    found_value = text("value", value, MAX_VALUE, required=True, strip=False)
    found_description = text(
        "description", description, MAX_DESCRIPTION, required=False, strip=False
    )
    if problems or kind is None or found_key is None or found_value is None:
        return None, problems
    return EntryInput(kind, found_key, found_value, found_description), []


def _problem_error(problems: Sequence[FieldProblem], what: str) -> ValidationError:
    listed = list(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ValidationError(f"{what}: {_describe(listed[0])}{suffix}", problems=listed)


def _describe(problem: FieldProblem) -> str:
    """``row 3: key is required`` / ``type: may hold only ...``."""
    parts = [str(part) for part in problem.loc[1:]]
    if parts and parts[0].startswith("row "):
        field = f"{' '.join(parts[1:])} " if len(parts) > 1 else ""
        return f"{parts[0]}: {field}{problem.message}"
    return f"{'.'.join(parts) or 'file'}: {problem.message}"


def _require(entry: EntryInput | None, problems: list[FieldProblem]) -> EntryInput:
    if entry is None:
        raise _problem_error(problems, "invalid lookup entry")
    return entry


# --- reading files ---


@dataclass(frozen=True)
class SheetRow:
    """One data row of an uploaded table; ``number`` counts the header as row 1."""

    number: int
    cells: dict[str, Any]


def read_table(data: bytes, *, filename: str | None, max_rows: int) -> list[SheetRow]:
    """The rows of an uploaded CSV or .xlsx (first sheet), keyed by lower-cased header.

    Blank rows are skipped. Columns: ``key``, ``value``, optional ``description`` and
    ``type``; any other column is an error (a typo would otherwise lose data silently)."""
    if data.startswith(_OLE_MAGIC):
        raise UnsupportedMediaTypeError(
            "legacy .xls workbooks are not supported: save the sheet as .xlsx or CSV"
        )
    is_zip = data.startswith(_ZIP_MAGIC)
    if (filename or "").lower().endswith(".xlsx") and not is_zip:
        raise _file_error(1, "the file is named .xlsx but is not an Excel workbook")
    grid = _xlsx_rows(data) if is_zip else _csv_rows(data)
    return _table(grid, max_rows)


def _file_error(row: int, message: str, column: str | None = None) -> ValidationError:
    loc: tuple[str | int, ...] = ("file", f"row {row}") + ((column,) if column else ())
    return _problem_error([FieldProblem(loc, message)], "invalid file")


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n") + 1
        raise _file_error(row, "is not UTF-8 text (save the CSV as UTF-8)") from exc
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    number = 0
    try:
        for cells in reader:
            number += 1
            yield number, [_unescape(c) for c in cells]
    except csv.Error as exc:
        raise _file_error(number + 1, f"is not valid CSV ({exc})") from exc


def _delimiter(text: str) -> str:
    """Comma, or the semicolon or tab a spreadsheet's locale chose, read off the header."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _unescape(cell: str) -> str:
    return cell[1:] if len(cell) > 1 and cell[0] == "'" and cell[1] in _ESCAPED_START else cell


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    _check_zip(data)
    try:
        import openpyxl
    except ImportError as exc:
        raise UnsupportedMediaTypeError("Excel files need openpyxl; upload CSV") from exc
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # any failure to read the workbook is the file's fault
        raise _file_error(1, "could not be read as an Excel workbook") from exc
    try:
        sheet = book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(v) for v in values]
    except JunctionboxError:
        raise
    except Exception as exc:
        raise _file_error(1, "could not be read as an Excel workbook") from exc
    finally:
        book.close()


def _check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise _file_error(1, "is not a valid .xlsx workbook") from exc
    if inflated > XLSX_MAX_INFLATED:
        raise PayloadTooLargeError("the workbook inflates to more than 100 MB")


def _cell_text(value: Any) -> Any:
    """Excel cells as text: whole numbers without ``.0``, dates in ISO 8601."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


_COLUMNS: Final = ("type", "key", "value", "description")


def _table(grid: Iterable[tuple[int, list[Any]]], max_rows: int) -> list[SheetRow]:
    rows = iter(grid)
    header: list[str] = []
    for number, cells in rows:
        if _blank(cells):
            continue
        header = [str(c or "").strip().lower() for c in cells]
        _check_header(header, number)
        break
    else:
        raise _file_error(1, "the file is empty (expected a header row key,value[,description])")
    found: list[SheetRow] = []
    for number, cells in rows:
        if _blank(cells):
            continue
        if len(found) >= max_rows:
            raise _file_error(number, f"more than {max_rows} rows: split the file")
        named = {name: cells[i] if i < len(cells) else None for i, name in enumerate(header)}
        extra = [c for c in cells[len(header) :] if not _blank([c])]
        if extra:
            raise _file_error(number, "has more cells than the header has columns")
        found.append(SheetRow(number, {k: v for k, v in named.items() if k}))
    return found


def _blank(cells: Sequence[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _check_header(header: list[str], number: int) -> None:
    unknown = [h for h in header if h and h not in _COLUMNS]
    if unknown:
        message = f"unknown column {unknown[0]!r}: expected key, value, description, type"
        raise _file_error(number, message)
    missing = [c for c in ("key", "value") if c not in header]
    if missing:
        raise _file_error(number, f"the header has no {missing[0]!r} column")
    duplicated = {h for h in header if h and header.count(h) > 1}
    if duplicated:
        raise _file_error(number, f"the header repeats the column {sorted(duplicated)[0]!r}")


def validate_rows(rows: Sequence[SheetRow], default_type: str | None) -> list[EntryInput]:
    """Every row as an entry, or a ValidationError listing the rows at fault."""
    if not rows:
        raise _file_error(2, "the file has no data rows")
    problems: list[FieldProblem] = []
    entries: list[EntryInput] = []
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        loc = ("file", f"row {row.number}")
        lookup_type = row.cells.get("type") or default_type
        if lookup_type is None:
            problems.append(FieldProblem((*loc, "type"), "no type: give ?type= or a type column"))
            continue
        entry, found = check_entry(
            lookup_type,
            row.cells.get("key"),
            row.cells.get("value"),
            row.cells.get("description"),
            loc,
        )
        problems.extend(found)
        if entry is None:
            continue
        first = seen.setdefault((entry.type, entry.key), row.number)
        if first != row.number:
            problems.append(FieldProblem((*loc, "key"), f"repeats the key of row {first}"))
        entries.append(entry)
    if problems:
        raise _problem_error(problems, "import refused, nothing was imported")
    return entries


# --- writing files ---


def csv_cell(text: str | None) -> str:
    if text is None:
        return ""
    return "'" + text if text.startswith(_ESCAPED_START) else text


def write_csv(records: Sequence[LookupRecord], *, with_type: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow((["type"] if with_type else []) + ["key", "value", "description"])
    for r in records:
        cells = ([r.type] if with_type else []) + [r.key, r.value, r.description]
        writer.writerow([csv_cell(c) for c in cells])
    return buffer.getvalue().encode()


def write_xlsx(records: Sequence[LookupRecord], *, with_type: bool, title: str) -> bytes:
    try:
        import openpyxl
        from openpyxl.cell import WriteOnlyCell
    except ImportError as exc:
        raise UnsupportedMediaTypeError("Excel export needs openpyxl; use format=csv") from exc
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31] or "lookups")

    def text_cell(value: str | None) -> Any:
        cell = WriteOnlyCell(sheet, value=value)
        if value is not None:
            cell.data_type = "s"  # never a formula, whatever the text starts with
        return cell

    sheet.append([text_cell(h) for h in (["type"] if with_type else []) + list(_COLUMNS[1:])])
    for r in records:
        cells = ([r.type] if with_type else []) + [r.key, r.value, r.description]
        sheet.append([text_cell(c) for c in cells])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- the resolver cache ---


@dataclass(frozen=True)
class LookupSnapshot:
    """One tenant's lookup tables at one moment: an ``expr.LookupResolver``."""

    org_id: int
    table: Mapping[tuple[str, str], str]

    def resolve(self, lookup_type: str, key: str) -> str | None:
        return self.table.get((lookup_type, key))

    def __len__(self) -> int:
        return len(self.table)


@dataclass
class _Cached:
    snapshot: LookupSnapshot
    lineage: tuple[int, ...]
    signature: Signature
    loaded_at: float
    checked_at: float
    checking: bool = False


@dataclass
class _CacheStats:
    hits: int = 0
    loads: int = 0
    checks: int = 0


def build_snapshot(
    org_id: int, lineage: Sequence[int], rows: Iterable[tuple[int, str, str, str]]
) -> LookupSnapshot:
    """Entries of the most general entity first, so that a unit's own entries win."""
    rank = {entity: i for i, entity in enumerate(lineage)}
    ordered = sorted(rows, key=lambda r: rank.get(r[0], 0))
    return LookupSnapshot(org_id, {(t, k): v for _, t, k, v in ordered})


# --- the service ---


class LookupService:
    def __init__(
        self,
        db: Database,
        *,
        ttl: float = TTL_SECONDS,
        recheck_interval: float = RECHECK_SECONDS,
        max_cached_tenants: int = MAX_CACHED_TENANTS,
        import_max_bytes: int = IMPORT_MAX_BYTES,
        import_max_rows: int = IMPORT_MAX_ROWS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.recheck_interval = recheck_interval
        self.max_cached_tenants = max_cached_tenants
        self.import_max_bytes = import_max_bytes
        self.import_max_rows = import_max_rows
        self.clock = clock
        self.now = now
        self.stats = _CacheStats()
        self._cache: dict[int, _Cached] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._epoch = 0

    # --- reading ---

    async def list(
        self,
        tenant: TenantContext,
        page: PageRequest,
        *,
        lookup_type: str | None = None,
        search: str | None = None,
    ) -> Page[LookupRecord]:
        async with self.db.read() as conn:
            items, total = await queries.list_page(
                conn, tenant.org_id, page, lookup_type=lookup_type, search=search
            )
        return Page(items, total, page)

    async def types(self, tenant: TenantContext) -> Sequence[TypeCount]:
        async with self.db.read() as conn:
            return await queries.types(conn, tenant.org_id)

    async def get(self, tenant: TenantContext, lookup_id: str) -> LookupRecord:
        async with self.db.read() as conn:
            return await self._existing(conn, tenant.org_id, lookup_id)

    # --- writing ---

    async def create(
        self,
        tenant: TenantContext,
        *,
        lookup_type: str,
        key: str,
        value: str,
        description: str | None = None,
    ) -> LookupRecord:
        entry = _require(*check_entry(lookup_type, key, value, description, ("body",)))
        org_id = tenant.org_id
        async with self.db.write() as conn:
            await self._require_free(conn, org_id, entry, None)
            stamp = await queries.next_stamp(conn, org_id, self.now())
            lookup_id = new_id("lkp")
            await queries.insert_many(conn, [_row(lookup_id, org_id, entry, stamp, stamp)])
            created = await self._existing(conn, org_id, lookup_id)
            await audit.record(
                conn,
                tenant.principal,
                "lookup.create",
                "lookup",
                lookup_id,
                org_id=org_id,
                after=created,
            )
        self.invalidate(org_id)
        return created

    async def update(
        self, tenant: TenantContext, lookup_id: str, changes: Mapping[str, Any]
    ) -> LookupRecord:
        """Apply ``changes`` (any of ``type``, ``key``, ``value``, ``description``)."""
        org_id = tenant.org_id
        async with self.db.write() as conn:
            before = await self._existing(conn, org_id, lookup_id)
            merged = {
                "type": before.type,
                "key": before.key,
                "value": before.value,
                "description": before.description,
                **changes,
            }
            entry = _require(
                *check_entry(
                    merged["type"],
                    merged["key"],
                    merged["value"],
                    merged["description"],
                    ("body",),
                )
            )
            await self._require_free(conn, org_id, entry, lookup_id)
            stamp = await queries.next_stamp(conn, org_id, self.now())
            values = {**_entry_values(entry), "updated_at": stamp}
            await queries.update_entry(conn, org_id, lookup_id, values)
            after = await self._existing(conn, org_id, lookup_id)
            await audit.record(
                conn,
                tenant.principal,
                "lookup.update",
                "lookup",
                lookup_id,
                org_id=org_id,
                before=before,
                after=after,
            )
        self.invalidate(org_id)
        return after

    async def delete(self, tenant: TenantContext, lookup_id: str) -> None:
        org_id = tenant.org_id
        async with self.db.write() as conn:
            before = await self._existing(conn, org_id, lookup_id)
            await queries.delete_entry(conn, org_id, lookup_id)
            await audit.record(
                conn,
                tenant.principal,
                "lookup.delete",
                "lookup",
                lookup_id,
                org_id=org_id,
                before=before,
            )
        self.invalidate(org_id)

    async def delete_type(self, tenant: TenantContext, lookup_type: str) -> int:
        """Delete every entry of ``lookup_type``; how many there were (404 if none)."""
        org_id = tenant.org_id
        async with self.db.write() as conn:
            deleted = await queries.delete_types(conn, org_id, [lookup_type])
            if not deleted:
                raise NotFoundError(f"no lookup entries of type {lookup_type!r}")
            await audit.record(
                conn,
                tenant.principal,
                "lookup.delete_type",
                "lookup_type",
                lookup_type[:64],
                org_id=org_id,
                before={"type": lookup_type, "entries": deleted},
            )
        self.invalidate(org_id)
        return deleted

    async def import_file(
        self,
        tenant: TenantContext,
        data: bytes,
        *,
        filename: str | None = None,
        lookup_type: str | None = None,
        mode: ImportMode = ImportMode.MERGE,
    ) -> ImportReport:
        """Import a CSV or .xlsx table: all rows or none. ``lookup_type`` is the type of
        rows without a ``type`` cell; in ``replace`` mode the types named by the request
        and the file lose every entry the file does not hold."""
        if len(data) > self.import_max_bytes:
            raise PayloadTooLargeError(f"the file is larger than {self.import_max_bytes} bytes")
        if lookup_type is not None:
            _require(*check_entry(lookup_type, "k", "v", None, ("query",)))
        rows = await asyncio.to_thread(
            read_table, data, filename=filename, max_rows=self.import_max_rows
        )
        entries = validate_rows(rows, lookup_type)
        types = sorted({e.type for e in entries} | ({lookup_type} if lookup_type else set()))
        # Without a description column, merging keeps the descriptions already there.
        descriptions = any("description" in row.cells for row in rows)
        report = await self._write_import(tenant, entries, types, mode, descriptions)
        self.invalidate(tenant.org_id)
        return report

    async def _write_import(
        self,
        tenant: TenantContext,
        entries: Sequence[EntryInput],
        types: Sequence[str],
        mode: ImportMode,
        descriptions: bool,
    ) -> ImportReport:
        org_id = tenant.org_id
        async with self.db.write() as conn:
            stamp = await queries.next_stamp(conn, org_id, self.now())
            deleted = 0
            existing: dict[tuple[str, str], str] = {}
            if mode is ImportMode.REPLACE:
                deleted = await queries.delete_types(conn, org_id, types)
            else:
                existing = await queries.keys_of(conn, org_id, types)
            inserts = [
                _row(new_id("lkp"), org_id, e, stamp, stamp)
                for e in entries
                if (e.type, e.key) not in existing
            ]
            updates = [
                {
                    "b_id": existing[(e.type, e.key)],
                    "b_value": e.value,
                    "b_description": e.description,
                    "b_updated_at": stamp,
                }
                for e in entries
                if (e.type, e.key) in existing
            ]
            await queries.insert_many(conn, inserts)
            await queries.update_many(conn, updates, descriptions=descriptions)
            report = ImportReport(
                list(types), mode, len(entries), len(inserts), len(updates), deleted
            )
            await audit.record(
                conn,
                tenant.principal,
                "lookup.import",
                "lookup_type",
                ",".join(types)[:64],
                org_id=org_id,
                after=report,
            )
        return report

    async def export(
        self, tenant: TenantContext, lookup_type: str | None, fmt: FileFormat
    ) -> ExportFile:
        """Entries of one type (columns key, value, description) or of every type (with a
        leading type column), ordered by type and key."""
        async with self.db.read() as conn:
            records = await queries.of_types(
                conn, tenant.org_id, None if lookup_type is None else [lookup_type]
            )
        with_type = lookup_type is None
        name = f"lookups-{tenant.org_id}-{lookup_type or 'all'}.{fmt.value}"
        if fmt is FileFormat.CSV:
            data = write_csv(records, with_type=with_type)
            return ExportFile(data, f"{CSV_TYPE}; charset=utf-8", name, len(records))
        title = lookup_type or "lookups"
        data = await asyncio.to_thread(write_xlsx, records, with_type=with_type, title=title)
        return ExportFile(data, XLSX_TYPE, name, len(records))

    # --- resolution ---

    async def resolver(self, org_id: int) -> LookupResolver:
        """The tenant's lookup tables for the ``lookup`` transformer (see the module doc
        for how fresh it is). A hit costs no query."""
        now = self.clock()
        cached = self._cache.get(org_id)
        if cached is not None and now - cached.loaded_at < self.ttl:
            if cached.checking or now - cached.checked_at < self.recheck_interval:
                self.stats.hits += 1
                return cached.snapshot
            return await self._recheck(org_id, cached, now)
        return await self._load(org_id, now)

    def invalidate(self, org_id: int) -> None:
        """Forget the snapshots that include ``org_id``'s entries (its own and its units')."""
        self._epoch += 1
        for tenant in [t for t, c in self._cache.items() if org_id in c.lineage]:
            del self._cache[tenant]

    async def _recheck(self, org_id: int, cached: _Cached, now: float) -> LookupSnapshot:
        cached.checking = True
        self.stats.checks += 1
        try:
            async with self.db.read() as conn:
                current = await queries.signature(conn, cached.lineage)
        except JunctionboxError as exc:
            log.warning("lookup cache check failed, serving the cached tables", exc_info=exc)
            cached.checked_at = now
            return cached.snapshot
        finally:
            cached.checking = False
        if current == cached.signature:
            cached.checked_at = now
            return cached.snapshot
        return await self._load(org_id, now)

    async def _load(self, org_id: int, requested: float) -> LookupSnapshot:
        lock = self._locks.setdefault(org_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(org_id)
            if cached is not None and cached.loaded_at >= requested:
                return cached.snapshot  # loaded by another caller while we waited
            epoch = self._epoch
            async with self.db.read() as conn:
                lineage = await queries.lineage(conn, org_id)
                # The signature is read before the rows: a write in between makes the rows
                # newer than the signature, so the next check reloads (never the reverse).
                signature = await queries.signature(conn, lineage)
                rows = await queries.entries(conn, lineage)
            snapshot = build_snapshot(org_id, lineage, rows)
            self.stats.loads += 1
            if epoch == self._epoch:  # no write in this process since we started reading
                now = self.clock()
                self._remember(org_id, _Cached(snapshot, lineage, signature, now, now))
            return snapshot

    def _remember(self, org_id: int, cached: _Cached) -> None:
        self._cache.pop(org_id, None)
        self._cache[org_id] = cached
        while len(self._cache) > self.max_cached_tenants:
            oldest = next(iter(self._cache))
            del self._cache[oldest]
            lock = self._locks.get(oldest)
            if lock is not None and not lock.locked():
                del self._locks[oldest]

    # --- helpers ---

    async def _existing(self, conn: Any, org_id: int, lookup_id: str) -> LookupRecord:
        record = await queries.get(conn, org_id, lookup_id)
        if record is None:
            raise NotFoundError("lookup entry not found")
        return record

    async def _require_free(
        self, conn: Any, org_id: int, entry: EntryInput, except_id: str | None
    ) -> None:
        found = await queries.find(conn, org_id, entry.type, entry.key)
        if found is not None and found.id != except_id:
            raise ConflictError(
                f"type {entry.type!r} already has the key {entry.key!r} (id {found.id})"
            )


def _entry_values(entry: EntryInput) -> dict[str, Any]:
    return {
        "type": entry.type,
        "key": entry.key,
        "value": entry.value,
        "description": entry.description,
    }


def _row(
    lookup_id: str, org_id: int, entry: EntryInput, created: datetime, updated: datetime
) -> dict[str, Any]:
    return {
        "id": lookup_id,
        "org_id": org_id,
        **_entry_values(entry),
        "created_at": created,
        "updated_at": updated,
    }
